"""The local smoke test says so when the image it boots was built from another version of the
recipe or templates (its checks follow this checkout), and is silent when it was not."""
from __future__ import annotations

from condor_seed.fingerprint import fingerprint
from condor_seed.local.smoke import built_from_other_sources
from condor_seed.recipe import load_recipe
from condor_seed.render import render


def _build(recipe, tree) -> dict:
    base, version = "debian:trixie:0123456789abcdef", "23.9.6"
    return {"packer_run_uuid": "debian13-local-20261206-000000-abcd",
            "custom_data": {"fingerprint": fingerprint(tree, base, version), "base_image": base,
                            "htcondor_version": version}}


def test_image_of_this_checkout_gets_no_note():
    recipe = load_recipe("debian13-local")
    assert built_from_other_sources(recipe, _build(recipe, render(recipe))) is None


def test_image_of_other_templates_gets_a_note_with_the_rebuild_command():
    recipe = load_recipe("debian13-local")
    tree = render(recipe)
    older = type(tree)(tree.recipe, tree.image_files[1:], tree.bake_script, tree.package_steps)  # a file fewer
    note = built_from_other_sources(recipe, _build(recipe, older))
    assert note and "invoke build-seed --target local --recipe debian13-local" in note


def test_build_without_fingerprint_gets_no_note():
    assert built_from_other_sources(load_recipe("debian13-local"), {"custom_data": {}}) is None

"""Recipe loading: every shipped recipe loads; every kind of mistake is one clear line naming file and field."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from condor_seed.errors import RecipeError
from condor_seed.paths import PROJECT_DIR, RECIPES_DIR
from condor_seed.recipe import available_recipes, load_recipe, load_recipes

SHIPPED = ["rhel9-x86_64", "rhel9-arm64", "rhel8-x86_64", "debian13-local", "debian-sid-local"]


def test_required_recipes_ship_and_load():
    names = available_recipes()
    assert set(SHIPPED) <= set(names)
    recipes = {r.name: r for r in load_recipes("all")}
    assert recipes["rhel9-arm64"].architecture == "arm64"
    assert recipes["rhel8-x86_64"].os_version == "8"
    assert recipes["debian13-local"].target == "local"
    sid = recipes["debian-sid-local"]
    assert (sid.target, sid.os_codename, sid.htcondor_package) == ("local", "sid", "condor")
    assert sid.annex_generation == "htcondor-annex" and recipes["debian13-local"].htcondor_package == "htcondor"
    # shared defaults come from defaults.yaml, not from copies in each recipe
    for name in SHIPPED:
        assert "root_volume" not in yaml.safe_load((RECIPES_DIR / f"{name}.yaml").read_text())
        assert recipes[name].root_volume == {"size_gib": 20, "volume_type": "gp3"}


def test_extends_overrides_only_what_it_names():
    base, child = load_recipe("rhel9-x86_64"), load_recipe("rhel9-x86_64-htcondor25")
    assert child.data["htcondor"]["version"] == "25.0" and child.annex_generation == "htcondor-annex"
    assert base.annex_generation == "condor_annex"
    assert child.base_image == base.base_image and child.regions == base.regions


@pytest.fixture
def recipes_dir(tmp_path):
    shutil.copy(RECIPES_DIR / "defaults.yaml", tmp_path / "defaults.yaml")
    shutil.copy(RECIPES_DIR / "rhel9-x86_64.yaml", tmp_path / "good.yaml")
    return tmp_path


def _write(recipes_dir: Path, mutate) -> None:
    data = yaml.safe_load((recipes_dir / "good.yaml").read_text())
    mutate(data)
    (recipes_dir / "bad.yaml").write_text(yaml.safe_dump(data))


BAD = {
    "missing key": (lambda d: d.pop("architecture"), "(top level): 'architecture' is missing"),
    "unknown key": (lambda d: d.update(colour="blue"), "(top level): unknown key 'colour'"),
    "wrong type": (lambda d: d.update(root_volume={"size_gib": "big", "volume_type": "gp3"}),
                   "root_volume.size_gib: 'big' is not of type 'integer'"),
    "unknown architecture": (lambda d: d.update(architecture="sparc"), "architecture: 'sparc' is not one of x86_64, arm64"),
    "malformed region": (lambda d: d.update(regions=["us-east-1", "mars-north"]),
                         "regions.1: 'mars-north' is not an AWS region name"),
    "name template": (lambda d: d.update(ami={"name": "seed-{{ nonsense }}", "description": "x"}),
                      "ami.name: template does not render ('nonsense' is undefined)"),
    "name renders invalid": (lambda d: d.update(ami={"name": "seed#{{ recipe }}", "description": "x"}),
                             "ami.name: renders to 'seed#bad', not a valid AMI name"),
    "unknown parent": (lambda d: d.update(extends="nowhere"), "extends: no recipe named 'nowhere'"),
    "ec2 without base image pattern": (lambda d: d.pop("base_image"), "base_image: 'name_pattern' is missing"),
    "htcondor series not pinned": (lambda d: d.update(htcondor={"channel": "23.0", "version": "23.0"}),
                                   "signing_keys.htcondor: no pinned key fingerprint for '23.0' (pinned: 24.0, 24.x, "),
    "htcondor pin emptied": (lambda d: d.update(signing_keys={"htcondor": {"24.0": []}}),
                             "signing_keys.htcondor: no pinned key fingerprint for '24.0'"),
    "epel version not pinned": (lambda d: d.update(os={"family": "rhel", "version": "7"}),
                                "signing_keys.epel: no pinned key fingerprint for '7' (pinned: 10, 8, 9)"),
    "malformed htcondor pin": (lambda d: d.update(signing_keys={"htcondor": {"24.0": ["9DF75B52EFFC3BE6"]}}),
                               "signing_keys.htcondor.24.0.0: '9DF75B52EFFC3BE6' does not match"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_recipe_is_one_clear_line(recipes_dir, case):
    mutate, expected = BAD[case]
    _write(recipes_dir, mutate)
    with pytest.raises(RecipeError) as err:
        load_recipe("bad", recipes_dir)
    message = str(err.value)
    assert message.startswith(f"{recipes_dir / 'bad.yaml'}: ")
    assert expected in message
    assert "\n" not in message


def test_yaml_syntax_error_names_the_line(recipes_dir):
    (recipes_dir / "bad.yaml").write_text("description: ok\nos: [unclosed\n")
    with pytest.raises(RecipeError, match=r"bad.yaml: line \d+: not valid YAML"):
        load_recipe("bad", recipes_dir)


def test_extends_cycle(recipes_dir):
    (recipes_dir / "a.yaml").write_text("extends: b\n")
    (recipes_dir / "b.yaml").write_text("extends: a\n")
    with pytest.raises(RecipeError, match="extends: cycle a -> b -> a"):
        load_recipe("a", recipes_dir)


def test_cli_reports_recipe_error_and_exits_nonzero(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "invoke", "render", "--recipe", "no-such-recipe", "--out", str(tmp_path)],
                          cwd=PROJECT_DIR, capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"error: {RECIPES_DIR / 'no-such-recipe.yaml'}: no such recipe (known: {', '.join(available_recipes())})"
    ]
    assert not any(tmp_path.iterdir()), "nothing is written when the recipe is bad"

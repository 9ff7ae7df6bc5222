"""Content fingerprint of everything that defines an image.

Same recipe (after defaults), same rendered files and bake script, same base image and same
HTCondor version -> same fingerprint; any change to one of them -> a new one. Nightly builds use
it to skip images that are already published.
"""
from __future__ import annotations

import hashlib
import json

from .render import RenderedTree

FINGERPRINT_TAG = "condor-seed:fingerprint"


def fingerprint(tree: RenderedTree, base_image_id: str, htcondor_version: str | None = None) -> str:
    recipe = tree.recipe
    document = {
        "recipe": recipe.name,
        "recipe_data": recipe.data,
        "files": [{"path": f.path, "mode": f.mode_octal, "owner": f.owner, "group": f.group,
                   "sha256": hashlib.sha256(f.content.encode()).hexdigest()} for f in tree.image_files],
        "bake_script": hashlib.sha256(tree.bake_script.content.encode()).hexdigest(),
        "base_image": base_image_id,
        "htcondor_version": htcondor_version or recipe.htcondor_series,
    }
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()

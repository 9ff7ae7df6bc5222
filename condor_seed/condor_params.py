"""Read effective HTCondor configuration values with HTCondor's own parser (the htcondor2 bindings).

The bindings read their configuration once per process, so every query runs in a fresh Python
subprocess with CONDOR_CONFIG pointing at a top-level file whose LOCAL_CONFIG_DIR is the rendered
config.d. Nothing here re-implements HTCondor's macro language.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from .errors import ValidationError

_QUERY = r"""
import json, sys
import htcondor2
names, prefixes = json.loads(sys.argv[1])
if prefixes:  # every defined knob whose name starts so
    names = sorted(k for k in htcondor2.param.keys() if k.upper().startswith(tuple(prefixes)))
local_dir = htcondor2.param.get("LOCAL_DIR")
out = {}
for name in names:
    try:
        out[name] = htcondor2.param[name]
    except KeyError:
        out[name] = None
    if prefixes and isinstance(out[name], str) and local_dir:  # comparable across scratch folders
        out[name] = out[name].replace(local_dir, "$(LOCAL_DIR)")
print(json.dumps(out))
"""


def effective_params(config_dir: Path, names: list[str], extra: str = "",
                     prefixes: tuple[str, ...] = ()) -> dict[str, str | None]:
    """Values of `names` after HTCondor reads every file in config_dir (None: not defined).

    With `prefixes`: every defined knob whose name starts with one of them instead."""
    with tempfile.TemporaryDirectory(prefix="condor-seed-params-") as scratch:
        top = Path(scratch) / "condor_config"
        top.write_text(
            "# validation top-level config: only the rendered snippets, nothing from this host\n"
            f"LOCAL_DIR = {scratch}/local\n"
            f"LOCAL_CONFIG_DIR = {config_dir}\n"
            f"{extra}\n"
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith(("_CONDOR_", "CONDOR_"))}
        env["CONDOR_CONFIG"] = str(top)
        proc = subprocess.run(
            [sys.executable, "-c", _QUERY, json.dumps([names, list(prefixes)])], env=env, capture_output=True, text=True, timeout=120
        )
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise ValidationError(f"{config_dir}: HTCondor could not read this configuration: {last}")
    return json.loads(proc.stdout.strip().splitlines()[-1])

"""A small evaluator for iam/builder-policy.json: is an API action allowed by the policy?

It matches `Action` / `NotAction` patterns (IAM wildcards `*` and `?`, case-insensitive) and lets an
explicit Deny win. Resources and Conditions are IGNORED: the emulator does not enforce them, so this
proves that every operation the code makes is granted at all, not that the resource scoping and
conditions (tags, IMDSv2, no instance profile) fit each call; those are reviewed by reading the policy.

Reusable by any test: `disallowed(actions)` returns the actions the policy does not grant.
"""
from __future__ import annotations

import fnmatch
import json
from pathlib import Path

# Every action any AWS test made through a recorded session (the emu fixture adds to it).
SESSION_ACTIONS: set[str] = set()
POLICY_PATH = Path(__file__).resolve().parents[2] / "iam" / "builder-policy.json"


def load_policy(path: Path = POLICY_PATH) -> dict:
    return json.loads(Path(path).read_text())


def _as_list(value) -> list[str]:
    return [value] if isinstance(value, str) else list(value or [])


def _matches(patterns: list[str], action: str) -> bool:
    return any(fnmatch.fnmatchcase(action.lower(), pattern.lower()) for pattern in patterns)


def _applies(statement: dict, action: str) -> bool:
    if "NotAction" in statement:
        return not _matches(_as_list(statement["NotAction"]), action)
    return _matches(_as_list(statement.get("Action")), action)


def is_allowed(action: str, policy: dict | None = None) -> bool:
    statements = _as_list_of_dicts((policy or load_policy())["Statement"])
    if any(s["Effect"] == "Deny" and _applies(s, action) for s in statements):
        return False
    return any(s["Effect"] == "Allow" and _applies(s, action) for s in statements)


def _as_list_of_dicts(value) -> list[dict]:
    return [value] if isinstance(value, dict) else list(value)


def disallowed(actions, policy: dict | None = None) -> list[str]:
    policy = policy or load_policy()
    return sorted(a for a in set(actions) if not is_allowed(a, policy))

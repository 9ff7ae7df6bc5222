"""A small evaluator for iam/builder-policy.json: is an API action allowed by the policy?

It matches `Action` / `NotAction` patterns (IAM wildcards `*` and `?`, case-insensitive) and lets an
explicit Deny win. Resources and Conditions are IGNORED here; test_iam_enforced.py runs the
pipeline against moto with IAM enforcement on, and parliament lints resources and condition keys.

Reusable by any test: `disallowed(actions)` returns the actions the policy does not grant.
`emulator_view(policy)` is the policy as moto 5.2 can enforce it (see that function).
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


def emulator_view(policy: dict | None = None) -> dict:
    """The policy with every Resource made `*`, the only form moto 5.2's enforcement can match.

    What moto evaluates for EC2 and SSM requests (moto/core/responses.py, moto/iam/access_control.py):
    the action against Action/NotAction, Allow versus explicit Deny, over all policies attached to
    the calling user (or its groups). What it does NOT evaluate:
    - Resource: every EC2/SSM request is authorized against the resource `*`, so a statement naming
      ARNs (instance/*, parameter/htcondor/seed/*) never matches and would deny what AWS allows;
      this view therefore widens Resource to `*` (scoping is linted by parliament instead).
    - Condition: no request context is built (no aws:RequestTag, aws:ResourceTag, ec2:CreateAction,
      ec2:MetadataHttpTokens, ...); StringEquals is compared with nothing and passes, every other
      operator (StringLike, Null, ForAllValues:...) is skipped. Tag scoping is not enforced.
    - Calls answered in the test process (EmulatorGaps: image block public access, ImdsSupport
      readback) never reach the server and are checked by `disallowed()` only.
    - sts:GetCallerIdentity is always allowed.
    """
    policy = json.loads(json.dumps(policy or load_policy()))
    for statement in _as_list_of_dicts(policy["Statement"]):
        statement["Resource"] = "*"
    return policy


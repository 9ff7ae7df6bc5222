"""The seed's instance profile: an IAM role that carries iam/seed-instance-policy.json, and its profile.

condor_annex on the seed uses the instance's role (`FROM INSTANCE`), so no key is ever copied onto
the seed. Role and instance profile share one name, `condor-seed-LAUNCH_ID`, and the path
`/condor-seed/`; they are tagged with the launch id and the region (IAM is global), which is how
`launch-seed --terminate` and an undo find them. Every delete is idempotent.
"""
from __future__ import annotations

import json

import botocore.exceptions

from ..paths import PROJECT_DIR
from .tags import tag_dict, tag_list
from .waiters import error_code

SEED_POLICY = PROJECT_DIR / "iam" / "seed-instance-policy.json"
PATH = "/condor-seed/"
POLICY_NAME = "condor-annex"
REGION_TAG = "condor-seed:region"
TRUST_EC2 = {"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}]}


def name_for(launch_id: str) -> str:
    return f"condor-seed-{launch_id}"


def allowed_actions(setup: bool = True) -> set[str]:
    """Every action the seed policy names (it names them exactly, no wildcards)."""
    actions: set[str] = set()
    for statement in json.loads(policy_document(setup))["Statement"]:
        value = statement["Action"]
        actions.update([value] if isinstance(value, str) else value)
    return actions


def policy_document(setup: bool = True) -> str:
    """The seed policy; without the `Setup…` statements when `condor_annex -setup` was already run
    (they let the role create roles and pass them on: as good as administrator rights)."""
    policy = json.loads(SEED_POLICY.read_text())
    if not setup:
        policy["Statement"] = [s for s in policy["Statement"] if not s["Sid"].startswith("Setup")]
    return json.dumps(policy)


def create_role(iam, name: str, tags: dict[str, str], setup: bool = True) -> None:
    iam.create_role(RoleName=name, Path=PATH, AssumeRolePolicyDocument=json.dumps(TRUST_EC2), Tags=tag_list(tags),
                    Description="condor-seed: condor_annex on a seed (iam/seed-instance-policy.json)")
    iam.put_role_policy(RoleName=name, PolicyName=POLICY_NAME, PolicyDocument=policy_document(setup))


def create_instance_profile(iam, name: str, tags: dict[str, str]) -> str:
    profile = iam.create_instance_profile(InstanceProfileName=name, Path=PATH, Tags=tag_list(tags))["InstanceProfile"]
    iam.add_role_to_instance_profile(InstanceProfileName=name, RoleName=name)
    return profile["Arn"]


def _gone(call, **params) -> None:
    try:
        call(**params)
    except botocore.exceptions.ClientError as exc:
        if error_code(exc) != "NoSuchEntity":
            raise


def delete_instance_profile(iam, name: str) -> None:
    _gone(iam.remove_role_from_instance_profile, InstanceProfileName=name, RoleName=name)
    _gone(iam.delete_instance_profile, InstanceProfileName=name)


def delete_role(iam, name: str) -> None:
    _gone(iam.delete_role_policy, RoleName=name, PolicyName=POLICY_NAME)
    _gone(iam.delete_role, RoleName=name)


def launches_in(iam, region: str, tag: str) -> set[str]:
    """Launch ids (value of `tag`) of the seed roles and profiles made for `region`."""
    found = set()
    for page in iam.get_paginator("list_roles").paginate(PathPrefix=PATH):
        for role in page["Roles"]:
            tags = tag_dict(iam.list_role_tags(RoleName=role["RoleName"])["Tags"])
            if tags.get(REGION_TAG) == region and tags.get(tag):
                found.add(tags[tag])
    for page in iam.get_paginator("list_instance_profiles").paginate(PathPrefix=PATH):
        for profile in page["InstanceProfiles"]:  # a profile whose role is already gone
            name = profile["InstanceProfileName"]
            tags = tag_dict(iam.get_instance_profile(InstanceProfileName=name)["InstanceProfile"].get("Tags"))
            if tags.get(REGION_TAG) == region and tags.get(tag):
                found.add(tags[tag])
    return found

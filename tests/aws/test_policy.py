"""iam/builder-policy.json allows every operation build, smoke test and cleanup make (recorded
through botocore event hooks against the emulator), and leaves room for publish/prune/nightly.
Resources and Conditions are not evaluated (see iam_policy.py)."""
from __future__ import annotations

import datetime as dt

from condor_seed.aws.build import build_recipe
from condor_seed.aws.cleanup import cleanup
from condor_seed.aws.smoke import smoke_test
from condor_seed.recipe import load_recipe
from iam_policy import SESSION_ACTIONS, disallowed, is_allowed, load_policy

PUBLISH_OPERATIONS = [
    "ec2:CopyImage", "ec2:ModifyImageAttribute", "ec2:EnableImageDeprecation", "ssm:PutParameter",
    "ssm:GetParameter", "ec2:GetImageBlockPublicAccessState", "ec2:DisableImageBlockPublicAccess",
    "ec2:DeregisterImage", "ec2:DeleteSnapshot", "ec2:DescribeImages", "ec2:CreateTags",
]


def test_policy_document_is_well_formed():
    policy = load_policy()
    assert policy["Version"] == "2012-10-17"
    sids = [s["Sid"] for s in policy["Statement"]]
    assert len(sids) == len(set(sids))
    for statement in policy["Statement"]:
        assert statement["Effect"] in ("Allow", "Deny") and "Action" in statement and "Resource" in statement


def test_least_privilege_spot_checks():
    for action in ("iam:PassRole", "ec2:CreateKeyPair", "ec2:AuthorizeSecurityGroupIngress", "ec2:DeleteVpc",
                   "s3:GetObject", "ec2:ModifyInstanceAttribute"):
        assert not is_allowed(action), action
    assert disallowed(PUBLISH_OPERATIONS) == []
    # granted on main and never used: gone
    for action in ("ec2:StopInstances", "ec2:DisableImageDeprecation", "ssm:DeleteParameter",
                   "ec2:ModifySnapshotAttribute", "ec2:DescribeInstanceAttribute"):
        assert not is_allowed(action), action


def test_every_mutating_statement_is_scoped():
    """No action that changes something is granted on `*` without a condition, except turning off
    image block public access (an account setting, only with --disable-block-public-access)."""
    account_wide = {"ec2:DisableImageBlockPublicAccess"}
    for statement in load_policy()["Statement"]:
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        mutating = [a for a in actions if not a.split(":")[1].startswith(("Describe", "Get"))]
        if mutating and statement["Resource"] == "*" and "Condition" not in statement:
            assert set(mutating) <= account_wide, statement["Sid"]


def test_every_operation_of_build_smoke_and_cleanup_is_allowed(emu):
    recipe = load_recipe("rhel9-x86_64")
    now = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)
    result = build_recipe(emu.aws, recipe, emu.options(now=lambda: now), report=lambda m: None)
    build_recipe(emu.aws, recipe, emu.options(now=lambda: now, force=True), report=lambda m: None)  # --force path
    image_id = emu.ec2.describe_images(Owners=["self"])["Images"][0]["ImageId"]
    smoke_test(emu.aws, "us-east-1", image_id, report=lambda m: None, poll_interval=0.02, timeout=10.0)
    emu.guest.mode = "fail"
    try:
        build_recipe(emu.aws, recipe, emu.options(), report=lambda m: None)
    except Exception:
        pass
    cleanup(emu.aws, "us-east-1", older_than=dt.timedelta(0), dry_run=False, report=lambda m: None)
    actions = emu.recorder.actions()
    # (no ModifyImageAttribute: the build no longer marks the image ImdsSupport=v2.0; publish still uses it)
    expected = {"sts:GetCallerIdentity", "ec2:RunInstances", "ec2:CreateImage",
                "ec2:GetImageBlockPublicAccessState", "ec2:GetEbsEncryptionByDefault", "ec2:DeregisterImage",
                "ec2:DeleteSnapshot", "ec2:TerminateInstances", "ec2:DeleteSecurityGroup", "ec2:GetConsoleOutput",
                "ec2:DeleteTags", "ec2:DescribeRegions"}  # no CreateTags: tags go on at creation
    assert expected <= actions, expected - actions
    assert disallowed(actions) == []
    assert result.image_id
    # and whatever the other AWS tests in this session made before this one
    assert disallowed(SESSION_ACTIONS) == []

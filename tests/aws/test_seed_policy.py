"""iam/seed-instance-policy.json grants what a real condor_annex does on the seed, and nothing else.

The calls are RECORDED: iam/seed-instance-calls.json is what Debian's condor_annex 23.9.6 sent to the
emulator for -setup, -check-setup, an on-demand annex, a lease update, -status and a refused annex
that rolls back (tests/local/annex_recorder.py; tests/local/test_annex_calls.py re-records it with
the real binary and fails when it no longer matches). DERIVED below are the permissions AWS checks
that no request of condor_annex names, each with its reason: what CloudFormation does with the
caller's permissions while building -setup's stacks (moto builds stack resources internally, so no
signed request exists to record) and the implicit permissions of parameters condor_annex sends.

Like tests/aws/test_policy.py, only Actions are evaluated (see iam_policy.py); resources and
conditions are reviewed by reading the policy.
"""
from __future__ import annotations

import json

from condor_seed.aws.seed_role import allowed_actions
from condor_seed.paths import PROJECT_DIR
from iam_policy import disallowed, is_allowed, load_policy

POLICY = PROJECT_DIR / "iam" / "seed-instance-policy.json"
CALLS = PROJECT_DIR / "iam" / "seed-instance-calls.json"

_STACKS = "CloudFormation creates -setup's stack resources with the caller's permissions (no service role)"
_ROLLBACK = "-setup's CreateStack says OnFailure=DELETE: a failed stack is deleted with the caller's permissions"
DERIVED = {
    # AWS::S3::Bucket (configuration bucket, AccessControl: Private)
    "s3:CreateBucket": _STACKS, "s3:PutBucketAcl": _STACKS + " (a canned ACL on CreateBucket)",
    "s3:DeleteBucket": _ROLLBACK,
    # AWS::IAM::Role with inline policies (lease functions' role, workers' role)
    "iam:CreateRole": _STACKS, "iam:GetRole": _STACKS, "iam:PutRolePolicy": _STACKS,
    "iam:DeleteRole": _ROLLBACK, "iam:DeleteRolePolicy": _ROLLBACK,
    # AWS::IAM::InstanceProfile (the workers' profile)
    "iam:CreateInstanceProfile": _STACKS, "iam:GetInstanceProfile": _STACKS, "iam:AddRoleToInstanceProfile": _STACKS,
    "iam:RemoveRoleFromInstanceProfile": _ROLLBACK, "iam:DeleteInstanceProfile": _ROLLBACK,
    # AWS::Lambda::Function and AWS::Lambda::Permission (lease and connectivity functions)
    "lambda:CreateFunction": _STACKS, "lambda:AddPermission": _STACKS,
    "lambda:DeleteFunction": _ROLLBACK, "lambda:RemovePermission": _ROLLBACK,
    # AWS::EC2::SecurityGroup with ingress rules (the workers' group, tagged by CloudFormation)
    "ec2:CreateSecurityGroup": _STACKS, "ec2:AuthorizeSecurityGroupIngress": _STACKS,
    "ec2:DescribeSecurityGroups": _STACKS, "ec2:DeleteSecurityGroup": _ROLLBACK,
    "ec2:CreateTags": "RunInstances carries TagSpecification (htcondor:AnnexName); CloudFormation tags the group",
    "iam:PassRole": "RunInstances passes the workers' instance profile; the stacks pass a role to Lambda",
}


def recorded_calls() -> dict[str, list[str]]:
    return json.loads(CALLS.read_text())["phases"]


def test_policy_document_is_well_formed():
    policy = load_policy(POLICY)
    assert policy["Version"] == "2012-10-17"
    sids = [s["Sid"] for s in policy["Statement"]]
    assert len(sids) == len(set(sids))
    for statement in policy["Statement"]:
        assert statement["Effect"] == "Allow" and "Action" in statement and "Resource" in statement, statement["Sid"]
        assert not any("*" in a for a in ([statement["Action"]] if isinstance(statement["Action"], str)
                                          else statement["Action"])), f"{statement['Sid']}: name actions exactly"


def test_every_recorded_call_is_allowed():
    calls = recorded_calls()
    assert set(calls) == {"setup", "check-setup", "create", "update", "status", "create-rolled-back"}
    recorded = set().union(*calls.values())
    assert {"cloudformation:CreateStack", "ec2:RunInstances", "lambda:InvokeFunction", "s3:PutObject"} <= recorded
    assert disallowed(recorded, load_policy(POLICY)) == []


def test_every_derived_permission_is_allowed():
    assert disallowed(DERIVED, load_policy(POLICY)) == []


def test_nothing_granted_that_is_neither_recorded_nor_derived():
    recorded = set().union(*recorded_calls().values())
    assert allowed_actions() - recorded - set(DERIVED) == set()
    assert not set(DERIVED) & recorded, "a derived permission was recorded: drop it from DERIVED"


def test_least_privilege_spot_checks():
    policy = load_policy(POLICY)
    for action in ("iam:CreateUser", "iam:AttachRolePolicy", "iam:CreateAccessKey", "ec2:TerminateInstances",
                   "ec2:DeleteKeyPair", "s3:GetObject", "ssm:GetParameter", "cloudformation:DeleteStack",
                   "sts:AssumeRole", "ec2:ModifyInstanceMetadataOptions"):
        assert not is_allowed(action, policy), action

"""Checks that run before a build creates anything: each failure is one actionable line."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import botocore.exceptions

from ..errors import PreflightError
from ..recipe import Recipe
from . import images
from .session import Aws


@dataclass
class PreflightResult:
    account: str
    arn: str
    collisions: list[dict] = field(default_factory=list)  # existing images with our AMI name (--force)


HOME_REGION = "us-east-1"  # asked about regions this botocore does not know yet


def identity_and_region(aws: Aws, region: str) -> dict:
    """Caller identity, then: the region must exist and be enabled for this account.

    A region unknown to botocore has no endpoint to ask, so both questions go to HOME_REGION then.
    """
    known = region in aws.known_regions()
    ask = region if known else HOME_REGION
    identity = aws.caller_identity(ask)
    try:
        regions = aws.ec2(ask).describe_regions(AllRegions=True)["Regions"]
    except botocore.exceptions.ClientError as exc:
        raise PreflightError(f"cannot list AWS regions: {exc.response['Error'].get('Message', exc)}") from None
    status = {r["RegionName"]: r.get("OptInStatus", "") for r in regions}
    if region not in status:
        raise PreflightError(f"unknown AWS region {region!r}")
    if status[region] == "not-opted-in":
        raise PreflightError(f"region {region} is not enabled for this account (enable it under Account > AWS Regions)")
    return identity


def check_default_vpc(aws: Aws, region: str) -> None:
    """Builder and smoke-test instances launch into the default VPC (no subnet is named): it must exist."""
    vpcs = aws.ec2(region).describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"]
    if not vpcs:
        raise PreflightError(
            f"no default VPC in {region}: builder and smoke-test instances launch into it; create one with "
            f"`aws ec2 create-default-vpc --region {region}` or build in another region"
        )


def check_public_ready(aws: Aws, recipe: Recipe, build_region: str) -> None:
    """A recipe published publicly needs unencrypted snapshots and image sharing allowed in every region."""
    if not recipe.public:
        return
    for region in dict.fromkeys([build_region, *recipe.regions]):
        ec2 = aws.ec2(region)
        if ec2.get_ebs_encryption_by_default().get("EbsEncryptionByDefault"):
            raise PreflightError(
                f"EBS encryption by default is on in {region}, but recipe {recipe.name} publishes a public AMI and "
                "encrypted AMIs cannot be made public: run `aws ec2 disable-ebs-encryption-by-default "
                f"--region {region}` or set publish.public: false"
            )
        state = images.block_public_access(ec2).get("ImageBlockPublicAccessState", "unblocked")
        if state != "unblocked":
            raise PreflightError(
                f"image block public access is {state!r} in {region}, so recipe {recipe.name}'s AMI cannot be made "
                f"public: run `aws ec2 disable-image-block-public-access --region {region}` (takes up to 10 minutes; "
                "an AWS Organizations declarative policy may lock it) or set publish.public: false"
            )


def find_collisions(aws: Aws, region: str, ami_name: str) -> list[dict]:
    pages = aws.ec2(region).get_paginator("describe_images").paginate(
        Owners=["self"], Filters=[{"Name": "name", "Values": [ami_name]}]
    )
    return [image for page in pages for image in page["Images"]]


def preflight(aws: Aws, region: str, recipe: Recipe, ami_name: str, *, force: bool,
              report: Callable[[str], None]) -> PreflightResult:
    identity = identity_and_region(aws, region)
    report(f"preflight: AWS account {identity['Account']} as {identity['Arn']}, region {region}")
    check_default_vpc(aws, region)
    check_public_ready(aws, recipe, region)
    collisions = find_collisions(aws, region, ami_name)
    if collisions and not force:
        ids = ", ".join(image["ImageId"] for image in collisions)
        raise PreflightError(
            f"an AMI named {ami_name!r} already exists in {region} ({ids}): pass --force to deregister it and delete "
            "its snapshots"
        )
    return PreflightResult(identity["Account"], identity["Arn"], collisions)

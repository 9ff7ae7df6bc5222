"""One image's EC2 calls: create it from the stopped builder, wait, tag it and its snapshots, require
IMDSv2; copy, deprecate and share it when publishing; remove it with its snapshots."""
from __future__ import annotations

import botocore.exceptions

from .tags import EXPIRES_TAG, tag_list, tag_specs
from .waiters import Poller, describe_image, error_code, wait_image_available, wait_image_exists


def create_image(ec2, instance_id: str, name: str, description: str, tags: dict[str, str]) -> str:
    # The snapshots carry the build tags from the start: a run killed before the image is available
    # leaves snapshots `cleanup` finds, and the builder needs no right to tag snapshots afterwards.
    return ec2.create_image(
        InstanceId=instance_id, Name=name, Description=description,
        TagSpecifications=tag_specs(tags, "image", "snapshot"),
    )["ImageId"]


def snapshot_ids(image: dict) -> list[str]:
    return [m["Ebs"]["SnapshotId"] for m in image.get("BlockDeviceMappings", []) if m.get("Ebs", {}).get("SnapshotId")]


def encrypted(image: dict) -> bool:
    """Whether any of the image's EBS volumes is encrypted, as DescribeImages tells."""
    return any(m.get("Ebs", {}).get("Encrypted") for m in image.get("BlockDeviceMappings") or [])


def finish_image(ec2, image_id: str, poller: Poller) -> dict:
    """Wait for the image; return it (its snapshots were tagged at creation). It is not marked
    ImdsSupport=v2.0: condor_annex's EC2 GAHP needs token-less metadata for the role's credentials
    (README, IMDS)."""
    wait_image_exists(ec2, image_id, poller)
    image = wait_image_available(ec2, image_id, poller)
    return image


def mark_finished(ec2, image: dict) -> None:
    """Drop the expiry tag from a finished image and its snapshots: the janitor leaves them alone."""
    ec2.delete_tags(Resources=[image["ImageId"], *snapshot_ids(image)], Tags=[{"Key": EXPIRES_TAG}])


def find_images(ec2, filters: list[dict]) -> list[dict]:
    pages = ec2.get_paginator("describe_images").paginate(Owners=["self"], Filters=filters)
    return [image for page in pages for image in page["Images"]]


def delete_image(ec2, image_id: str, image: dict | None = None) -> list[str]:
    """Deregister an image and delete its snapshots; return what was removed."""
    image = image or describe_image(ec2, image_id)
    removed = []
    if image is not None:
        try:
            ec2.deregister_image(ImageId=image_id)
            removed.append(image_id)
        except botocore.exceptions.ClientError as exc:
            if error_code(exc) not in ("InvalidAMIID.NotFound", "InvalidAMIID.Unavailable"):
                raise
        for snapshot_id in snapshot_ids(image):
            removed += delete_snapshot(ec2, snapshot_id)
    return removed


def delete_snapshot(ec2, snapshot_id: str) -> list[str]:
    try:
        ec2.delete_snapshot(SnapshotId=snapshot_id)
    except botocore.exceptions.ClientError as exc:
        if error_code(exc) == "InvalidSnapshot.NotFound":
            return []
        raise
    return [snapshot_id]


# ------------------------------------------------------------------ publishing one image
def copy_image(ec2, *, source_region: str, source_id: str, name: str, description: str, client_token: str,
               tags: dict[str, str]) -> str:
    """Copy into this client's region, tags (image and snapshots) requested on the copy itself."""
    return ec2.copy_image(
        SourceImageId=source_id, SourceRegion=source_region, Name=name, Description=description,
        ClientToken=client_token, TagSpecifications=tag_specs(tags, "image", "snapshot"),
    )["ImageId"]


def set_description(ec2, image_id: str, description: str) -> None:
    ec2.modify_image_attribute(ImageId=image_id, Description={"Value": description})


def tag_resources(ec2, resource_ids: list[str], tags: dict[str, str]) -> None:
    ec2.create_tags(Resources=resource_ids, Tags=tag_list(tags))


def tag_image(ec2, image: dict, tags: dict[str, str]) -> None:
    """Tag the image and its snapshots."""
    tag_resources(ec2, [image["ImageId"], *snapshot_ids(image)], tags)


def deprecate_at(ec2, image_id: str, when) -> None:
    ec2.enable_image_deprecation(ImageId=image_id, DeprecateAt=when)


def make_public(ec2, image_id: str) -> None:
    ec2.modify_image_attribute(ImageId=image_id, LaunchPermission={"Add": [{"Group": "all"}]})


def snapshots_encrypted(ec2, image: dict) -> bool:
    """Whether any snapshot behind the image is encrypted, as DescribeSnapshots tells."""
    snaps = snapshot_ids(image)
    found = ec2.describe_snapshots(SnapshotIds=snaps)["Snapshots"] if snaps else []
    return any(s.get("Encrypted") for s in found)


# ------------------------------------------------------------------ account: image block public access
def block_public_access(ec2) -> dict:
    """This region's image block public access setting (`ImageBlockPublicAccessState`, `ManagedBy`)."""
    return ec2.get_image_block_public_access_state()


def disable_block_public_access(ec2) -> None:
    ec2.disable_image_block_public_access()

"""The base image a build starts from: the newest RHEL image matching the recipe, or --base-ami."""
from __future__ import annotations

from dataclasses import dataclass

import botocore.exceptions

from ..errors import PreflightError
from ..recipe import Recipe


@dataclass(frozen=True)
class BaseImage:
    image_id: str
    name: str
    creation_date: str
    architecture: str
    root_device_name: str

    @classmethod
    def from_api(cls, image: dict) -> "BaseImage":
        return cls(image["ImageId"], image.get("Name", ""), image.get("CreationDate", ""),
                   image.get("Architecture", ""), image.get("RootDeviceName", "/dev/sda1"))


def find_base_image(ec2, recipe: Recipe) -> BaseImage:
    owner, pattern = recipe.base_image_owner, recipe.base_image_name_pattern
    pages = ec2.get_paginator("describe_images").paginate(
        Owners=[owner],
        Filters=[
            {"Name": "name", "Values": [pattern]},
            {"Name": "architecture", "Values": [recipe.architecture]},
            {"Name": "state", "Values": ["available"]},
        ],
    )
    images = [image for page in pages for image in page["Images"]]
    if not images:
        raise PreflightError(
            f"no base image for {recipe.name}: none owned by {owner} named {pattern!r} for {recipe.architecture} "
            f"in {ec2.meta.region_name}"
        )
    return BaseImage.from_api(max(images, key=lambda image: image.get("CreationDate", "")))


def describe_base_image(ec2, image_id: str, recipe: Recipe, allow_foreign: bool = False) -> BaseImage:
    """--base-ami: it must exist here, match the recipe's architecture and belong to the recipe's base
    image owner (Red Hat), unless --allow-foreign-base says to trust another account's image."""
    try:
        images = ec2.describe_images(ImageIds=[image_id])["Images"]
    except botocore.exceptions.ClientError as exc:
        raise PreflightError(f"--base-ami {image_id}: {exc.response['Error'].get('Message', exc)}") from None
    if not images:
        raise PreflightError(f"--base-ami {image_id}: no such image in {ec2.meta.region_name}")
    base = BaseImage.from_api(images[0])
    owner = images[0].get("OwnerId")
    if owner != recipe.base_image_owner and not allow_foreign:
        raise PreflightError(
            f"--base-ami {image_id} belongs to account {owner}, not {recipe.base_image_owner} (the recipe's base image "
            "owner): pass --allow-foreign-base if you trust it; it becomes a public seed"
        )
    if base.architecture and base.architecture != recipe.architecture:
        raise PreflightError(
            f"--base-ami {image_id} is {base.architecture}, recipe {recipe.name} builds {recipe.architecture}"
        )
    return base

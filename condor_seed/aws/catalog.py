"""The published seeds of a recipe in one region: find them and their copies, read the SSM pointer,
take one out of circulation. Shared by publish, prune and list; every function takes the client of
one region.
"""
from __future__ import annotations

import contextlib

import botocore.exceptions

from ..errors import SeedError
from .images import delete_image, find_images
from .tags import BUILD_ID_TAG, EXPIRES_TAG, RECIPE_TAG
from .waiters import IMAGE_DEAD_STATES, error_code

# Our own tag on a published copy: which image (``region:ami-…``) it was copied from.
SOURCE_AMI_TAG = "condor-seed:source-ami"


def newest_first(images: list[dict]) -> list[dict]:
    return sorted(images, key=lambda i: (i.get("CreationDate", ""), i["ImageId"]), reverse=True)


def live_images(ec2, filters: list[dict]) -> list[dict]:
    """Images we own matching the filters, newest first; deregistered or failed ones left out."""
    return newest_first([i for i in find_images(ec2, filters) if i.get("State") not in IMAGE_DEAD_STATES])


def images_of_recipes(ec2, recipe_names: list[str]) -> list[dict]:
    """Our images (any state, any content) of these recipes, newest first: one call."""
    return newest_first(find_images(ec2, [{"Name": f"tag:{RECIPE_TAG}", "Values": list(recipe_names)}]))


def recipe_images(ec2, recipe_name: str) -> list[dict]:
    return live_images(ec2, [{"Name": f"tag:{RECIPE_TAG}", "Values": [recipe_name]}])


def find_copies(ec2, *, source: str, build_id: str | None, name: str | None) -> list[dict]:
    """Copies of `source` already in this region: by our source tag, the build id, or the image name
    (a copy whose tags never landed still carries the name; AWS refuses a second image of that name)."""
    found: dict[str, dict] = {}
    searches = [[{"Name": f"tag:{SOURCE_AMI_TAG}", "Values": [source]}]]
    if build_id:
        searches.append([{"Name": f"tag:{BUILD_ID_TAG}", "Values": [build_id]}])
    if name:
        searches.append([{"Name": "name", "Values": [name]}])
    for filters in searches:
        for image in live_images(ec2, filters):
            found.setdefault(image["ImageId"], image)
    return newest_first(list(found.values()))


def published_tags(source_tags: dict[str, str], extra: dict[str, str]) -> dict[str, str]:
    """Tags a published image carries: the build's own (minus `aws:` ones, which cannot be set, and the
    janitor's expiry) plus the recipe's and `extra`."""
    tags = {k: v for k, v in source_tags.items() if not k.startswith("aws:") and k != EXPIRES_TAG}
    tags.update(extra)
    return tags


def make_private(ec2, image: dict) -> None:
    if image.get("Public"):
        ec2.modify_image_attribute(ImageId=image["ImageId"], LaunchPermission={"Remove": [{"Group": "all"}]})


def retire(ec2, image: dict) -> list[str]:
    """Take an image out of circulation: private first, then deregister and delete its snapshots."""
    make_private(ec2, image)
    return delete_image(ec2, image["ImageId"], image)


def ssm_value(ssm, name: str | None) -> str | None:
    """The value of an SSM parameter, or None when it does not exist (yet)."""
    if not name:
        return None
    try:
        return ssm.get_parameter(Name=name)["Parameter"]["Value"]
    except Exception as exc:
        if error_code(exc) == "ParameterNotFound":
            return None
        raise


def point_ssm_at(ssm, name: str, image_id: str) -> None:
    """Announce the image: the SSM parameter (data type `aws:ec2:image`, so AWS checks the id) -> image_id."""
    ssm.put_parameter(Name=name, Value=image_id, Type="String", DataType="aws:ec2:image", Overwrite=True)


@contextlib.contextmanager
def aws_errors(what: str, error: type[SeedError] = SeedError):
    """Turn an AWS refusal (access denied, throttled past the retries, unreachable) into one clear line."""
    try:
        yield
    except botocore.exceptions.ClientError as exc:
        err = exc.response.get("Error", {})
        raise error(f"{what}: AWS refused {exc.operation_name}: {err.get('Code')}: {err.get('Message')}") from None
    except botocore.exceptions.BotoCoreError as exc:
        raise error(f"{what}: {exc}") from None

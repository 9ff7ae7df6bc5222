"""`invoke list`: the seed images of a recipe, per region, and which one the SSM parameter calls latest."""
from __future__ import annotations

from dataclasses import dataclass

from ..recipe import Recipe
from .catalog import aws_errors, recipe_images, ssm_value
from .session import Aws

COLUMNS = ("region", "image", "created", "public", "deprecation", "latest")


@dataclass(frozen=True)
class Row:
    region: str
    image: str
    created: str
    public: str
    deprecation: str
    latest: str


def inventory(aws: Aws, recipe: Recipe, regions: list[str] | None = None) -> list[Row]:
    rows = []
    regions = regions or recipe.regions
    aws.caller_identity(regions[0])
    for region in regions:
        with aws_errors(f"listing {recipe.name} in {region}"):
            pointer = ssm_value(aws.ssm(region), recipe.ssm_parameter())
            images = recipe_images(aws.ec2(region), recipe.name)
        for image in images:
            state = image.get("State", "?")
            rows.append(Row(
                region=region,
                image=image["ImageId"] + ("" if state == "available" else f" ({state})"),
                created=image.get("CreationDate", "?"),
                public="yes" if image.get("Public") else "no",
                deprecation=image.get("DeprecationTime") or "-",
                latest="latest" if image["ImageId"] == pointer else "",
            ))
        if pointer and not any(r.latest for r in rows if r.region == region):
            rows.append(Row(region, pointer, "?", "?", "?", "latest (not a seed image of this recipe!)"))
    return rows


def format_table(rows: list[Row], regions: list[str]) -> str:
    """A plain-text table; regions without images say so."""
    cells = [COLUMNS] + [tuple(getattr(r, c) for c in COLUMNS) for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(COLUMNS))]
    lines = ["  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    empty = [r for r in regions if not any(row.region == r for row in rows)]
    lines += [f"{r}: no seed images" for r in empty]
    return "\n".join(lines)

"""Typed command-line flags: each parser turns the text a user typed into a value or one clear line
naming the flag and what is wrong, before anything is created. Pure functions (the output-folder
check only looks at the file system)."""
from __future__ import annotations

import math
import re
from pathlib import Path

from .errors import UsageError
from .recipe import REGION_RE

AMI_ID_RE = r"^ami-([0-9a-f]{8}|[0-9a-f]{17})$"


def positive_number(flag: str, value: str | float | None, *, unit: str = "seconds",
                    maximum: float = 7 * 86400) -> float | None:
    """`--timeout 900`, `--poll-interval 0.5`: a finite number > 0 (None when the flag was not given)."""
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise UsageError(f"{flag} {value!r}: not a number of {unit}") from None
    if not math.isfinite(number) or number <= 0:
        raise UsageError(f"{flag} {value!r}: must be a number of {unit} greater than 0")
    if number > maximum:
        raise UsageError(f"{flag} {value!r}: at most {maximum:g} {unit}")
    return number


def positive_int(flag: str, value: str | int | None, *, maximum: int | None = None) -> int | None:
    """`--keep 3`: a whole number ≥ 1 (and ≤ maximum)."""
    if value is None:
        return None
    text = str(value).strip()
    if not re.fullmatch(r"\d+", text) or int(text) < 1:
        raise UsageError(f"{flag} {value!r}: must be a whole number of at least 1")
    if maximum is not None and int(text) > maximum:
        raise UsageError(f"{flag} {value!r}: at most {maximum}")
    return int(text)


def ami_id(flag: str, value: str | None) -> str | None:
    if value is not None and not re.fullmatch(AMI_ID_RE, value):
        raise UsageError(f"{flag} {value!r}: not an AMI id (ami- and 8 or 17 hex digits)")
    return value


def regions(flag: str, value: str | None) -> list[str] | None:
    """`--regions us-east-1,eu-west-1` (None: not given)."""
    if value is None:
        return None
    names = [r.strip() for r in value.split(",") if r.strip()]
    if not names:
        raise UsageError(f"{flag} {value!r}: name at least one region")
    for name in names:
        if not re.fullmatch(REGION_RE, name):
            raise UsageError(f"{flag}: {name!r} is not an AWS region name (like us-east-1)")
    return names


def target_regions(flag: str, value: str | None, recipe) -> list[str]:
    """The regions a command acts on: the flag's, else the recipe's; never none (a local recipe has none)."""
    wanted = regions(flag, value) or recipe.regions
    if not wanted:
        raise UsageError(f"{recipe.path}: regions: is empty (a local recipe is never published): name some with {flag}")
    return wanted


def output_dir(flag: str, value: str | Path | None) -> Path | None:
    """A folder that exists or can be made: no part of it may be an existing file."""
    if value is None:
        return None
    path = Path(value)
    for part in [path, *path.parents]:
        if part.exists():
            if not part.is_dir():
                what = "is" if part == path else f"is under {part}, which is"
                raise UsageError(f"{flag} {str(value)!r}: {what} a file, not a folder")
            break
    return path

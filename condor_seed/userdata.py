"""EC2 user data: the bake script, gzipped when it would not fit raw (cloud-init reads both)."""
from __future__ import annotations

import gzip

from .errors import ValidationError

USER_DATA_LIMIT = 16 * 1024  # bytes, before boto3's base64


def encode_user_data(script: str) -> bytes:
    raw = script.encode()
    if len(raw) <= USER_DATA_LIMIT:
        return raw
    packed = gzip.compress(raw, compresslevel=9, mtime=0)  # mtime=0: same script, same bytes
    if len(packed) > USER_DATA_LIMIT:
        raise ValidationError(
            f"bake script is {len(raw)} bytes ({len(packed)} gzipped): over the {USER_DATA_LIMIT}-byte user data limit"
        )
    return packed

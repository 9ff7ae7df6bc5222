"""Shared helpers for the Invoke tasks: one clear line on error, consistent progress output."""
from __future__ import annotations

import functools
import sys
import time

from .errors import SeedError


def progress(message: str, *, prefix: str = "") -> None:
    stamp = time.strftime("%H:%M:%S")
    print(f"[{stamp}] {prefix}{message}", file=sys.stderr, flush=True)


def one_line_errors(func):
    """Turn SeedError into `error: <message>` and its exit code; Ctrl-C into exit 130."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except SeedError as exc:
            print(f"error: {exc}", file=sys.stderr, flush=True)
            raise SystemExit(exc.exit_code) from None
        except KeyboardInterrupt:
            print("interrupted: cleaned up what this run created", file=sys.stderr, flush=True)
            raise SystemExit(130) from None

    return wrapper

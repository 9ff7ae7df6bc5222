"""Shared helpers for the Invoke tasks: one clear line on error, consistent progress output."""
from __future__ import annotations

import contextlib
import contextvars
import functools
import sys
import time

from .errors import SeedError


# Set by `log_prefix` for one thread (and the pools that copy its context): which recipe is talking.
_prefix: contextvars.ContextVar[str] = contextvars.ContextVar("condor_seed_log_prefix", default="")


def progress(message: str, *, prefix: str = "") -> None:
    stamp = time.strftime("%H:%M:%S")
    print(f"[{stamp}] {_prefix.get()}{prefix}{message}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def log_prefix(prefix: str):
    """Progress lines printed meanwhile in this context start with `prefix` (concurrent recipes)."""
    token = _prefix.set(_prefix.get() + prefix)
    try:
        yield
    finally:
        _prefix.reset(token)


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
            print("interrupted: stopped; what was undone is listed above (`invoke cleanup` finds anything left)",
                  file=sys.stderr, flush=True)
            raise SystemExit(130) from None

    return wrapper

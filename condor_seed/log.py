"""The one home for progress output: timestamped lines on stderr, prefixed by who is talking.

Every module reports the same way:
- `progress(message)` prints one line now;
- `with prefixed("[rhel9-x86_64] "):` prefixes every line printed meanwhile in this thread (and in the
  threads that copy its context), so concurrent recipes and regions stay readable;
- `reporter(prefix)` returns a `report(message)` callable for the classes that take one (tests pass
  their own, e.g. `lines.append`).
stdout stays for results (ids, tables) that scripts read.
"""
from __future__ import annotations

import contextlib
import contextvars
import sys
import time
from typing import Callable

# Set by `prefixed` for one thread (and the pools that copy its context): which recipe is talking.
_prefix: contextvars.ContextVar[str] = contextvars.ContextVar("condor_seed_log_prefix", default="")

Report = Callable[[str], None]


def progress(message: str, *, prefix: str = "") -> None:
    stamp = time.strftime("%H:%M:%S")
    print(f"[{stamp}] {_prefix.get()}{prefix}{message}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def prefixed(prefix: str):
    """Progress lines printed meanwhile in this context start with `prefix` (concurrent recipes)."""
    token = _prefix.set(_prefix.get() + prefix)
    try:
        yield
    finally:
        _prefix.reset(token)


def reporter(prefix: str = "") -> Report:
    """A `report(message)` callable that prints progress lines with `prefix`."""
    return lambda message: progress(message, prefix=prefix)

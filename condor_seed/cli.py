"""Shared helper for the Invoke tasks: one clear line and the right exit code on error (progress output: `log`)."""
from __future__ import annotations

import functools
import sys

import botocore.exceptions

from .errors import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_PREFLIGHT, SeedError


def one_line_errors(func):
    """Turn SeedError into `error: <message>` and its exit code; Ctrl-C into EXIT_INTERRUPTED (130)."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except SeedError as exc:
            print(f"error: {exc}", file=sys.stderr, flush=True)
            raise SystemExit(exc.exit_code) from None
        except botocore.exceptions.HTTPClientError as exc:  # no answer from an endpoint (timeouts, refused)
            from .aws.session import unreachable

            print(f"error: {unreachable(exc)}", file=sys.stderr, flush=True)
            raise SystemExit(EXIT_PREFLIGHT) from None
        except botocore.exceptions.ClientError as exc:  # AWS said no to something no step expected
            error = exc.response.get("Error", {})
            print(f"error: AWS refused {exc.operation_name}: {error.get('Code', '?')}: "
                  f"{' '.join(str(error.get('Message', exc)).split())}", file=sys.stderr, flush=True)
            raise SystemExit(EXIT_FAILED) from None
        except KeyboardInterrupt:
            print("interrupted: stopped; what was undone is listed above (`invoke cleanup` finds anything left)",
                  file=sys.stderr, flush=True)
            raise SystemExit(EXIT_INTERRUPTED) from None

    return wrapper

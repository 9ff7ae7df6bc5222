"""Errors that end a command with one clear line, and every exit code the commands use.

Exit codes: 0 success, 1 a failure (SeedError and kinds without their own code), 2 a bad recipe or flag,
3 something outside our control is not ready, 4 publishing or rotating seeds failed, 130 interrupted
(Ctrl-C or SIGTERM, after the clean-up).
"""

EXIT_FAILED = 1
EXIT_RECIPE = 2
EXIT_USAGE = 2  # a bad flag: like a bad recipe, the input is wrong
EXIT_PREFLIGHT = 3
EXIT_PUBLISH = 4
EXIT_INTERRUPTED = 130


class SeedError(Exception):
    """Base: the message is shown to the user as is (one line, no traceback)."""

    exit_code = EXIT_FAILED


class RecipeError(SeedError):
    """A recipe is missing, malformed or inconsistent."""

    exit_code = EXIT_RECIPE


class ValidationError(SeedError):
    """A rendered tree fails a check (HTCondor parser, shellcheck, size)."""


class PreflightError(SeedError):
    """Something outside our control is not ready (root, tools, credentials, account settings)."""

    exit_code = EXIT_PREFLIGHT


class PublishError(SeedError):
    """Publishing refused (the gate) or failed in some region."""

    exit_code = EXIT_PUBLISH


class PruneError(SeedError):
    """Rotating old seeds failed."""

    exit_code = EXIT_PUBLISH


class NightlyError(SeedError):
    """At least one recipe of a nightly failed (the table says which and why)."""


class UsageError(SeedError):
    """A command-line flag has a value that cannot be used (wrong type, range or format)."""

    exit_code = EXIT_USAGE

"""Errors that end a command with one clear line and a non-zero exit code."""


class SeedError(Exception):
    """Base: the message is shown to the user as is (one line, no traceback)."""

    exit_code = 1


class RecipeError(SeedError):
    """A recipe is missing, malformed or inconsistent."""

    exit_code = 2


class ValidationError(SeedError):
    """A rendered tree fails a check (HTCondor parser, shellcheck, size)."""


class PreflightError(SeedError):
    """Something outside our control is not ready (root, tools, credentials, account settings)."""

    exit_code = 3

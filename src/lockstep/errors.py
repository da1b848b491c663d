"""Exceptions that carry the exit code and the one line a person reads.

Every error a user can cause or meet is one of these: the CLI prints
``str(error)`` on one line and exits with ``error.exit_code``, never a traceback.
"""

from __future__ import annotations


class LockstepError(Exception):
    """Base class: a message for people plus the exit code it maps to."""

    exit_code = 1


class UsageError(LockstepError):
    """Bad flags, config or input, found before any side effect (exit 2)."""

    exit_code = 2


class ConfigError(UsageError):
    """``lockstep.toml`` is missing, malformed or names an unset variable."""


class ForgeError(LockstepError):
    """A forge read or write failed; the message names repo, branch and status."""

    def __init__(self, message: str, *, status: int | None = None, transient: bool = False):
        super().__init__(message)
        self.status = status
        self.transient = transient


class AuditError(LockstepError):
    """The bypass audit record could not be stored: the bypass is blocked."""


class LockError(LockstepError):
    """The gate's lock could not be taken."""


class Blocked(Exception):
    """A gate step or the preflight said no: the run ends blocked (exit 1) before any push.

    Raised and caught inside the engine only; its message goes into the report.
    """

"""What every command shares: the error wrapper, the ``--config`` option, loading, exit codes.

One place maps a :class:`~lockstep.errors.LockstepError` to one line on stderr
and its exit code, so no command prints a traceback (unless ``LOCKSTEP_DEBUG=1``).
Only click is imported here; each command imports what it needs when it runs.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])

EXIT_CODES = """\b
Exit codes:
  0  promoted, or nothing to promote
  1  blocked: a gate step, the audit, the preflight or the first push failed;
     every target verified unchanged
  2  usage, configuration or input error, found before any side effect
  3  targets left split or in an unknown position: operator action needed
"""


def errors(internal_code: int) -> Callable[[F], F]:
    """Turn LockstepError into one line + its exit code; unexpected errors into one line too."""

    def wrap(fn: F) -> F:
        @functools.wraps(fn)
        def inner(*args: Any, **kwargs: Any) -> Any:
            from lockstep import redact
            from lockstep.errors import LockstepError

            redact.register_environment(os.environ)
            try:
                code = fn(*args, **kwargs)
            except LockstepError as exc:
                for line in redact.scrub(str(exc)).splitlines() or [type(exc).__name__]:
                    click.echo(f"lockstep: {line}", err=True)
                sys.exit(exc.exit_code)
            except (click.exceptions.Exit, click.ClickException, SystemExit):
                raise
            except Exception as exc:
                if os.environ.get("LOCKSTEP_DEBUG") == "1":
                    raise
                click.echo(
                    f"lockstep: internal error ({type(exc).__name__}: {redact.clean_text(str(exc), 200)}); "
                    "re-run with LOCKSTEP_DEBUG=1 for details",
                    err=True,
                )
                sys.exit(internal_code)
            sys.exit(code or 0)

        return inner  # type: ignore[return-value]

    return wrap


config_option = click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Config file (default: $LOCKSTEP_CONFIG, else ./lockstep.toml).",
)


def load(config_path: Path | None) -> Any:
    from lockstep.config import config_path as resolve_path
    from lockstep.config import load_config

    return load_config(resolve_path(str(config_path) if config_path else None, os.environ))




def usage(message: str) -> Exception:
    """A UsageError (exit 2), imported only when one is raised."""
    from lockstep.errors import UsageError

    return UsageError(message)

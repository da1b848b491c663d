"""``lockstep validate``: the config and the environment it needs, checked without contacting anything."""

from __future__ import annotations

import os
from pathlib import Path

import click

from lockstep.cli.common import errors

VALIDATE_EPILOG = """\b
Examples:
  lockstep validate
  lockstep validate --config gates/bs-lml.toml && lockstep plan --config gates/bs-lml.toml

\b
Exit codes: 0 everything needed is present; 2 one line per problem on stderr.
"""


@click.command(epilog=VALIDATE_EPILOG)
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Config file (default: $LOCKSTEP_CONFIG, else ./lockstep.toml).")
@errors(internal_code=2)
def validate(config_path: Path | None) -> int:
    """Check the config and the environment it needs, without contacting anything.

    Loads the config and checks every ${VAR}, every token variable
    (GITHUB_TOKEN or GH_TOKEN and each service's token_env for the github
    forge), the bypass tracker (OWNER/REPO#N, or a file in an existing
    directory for the git forge), that each check's program is found, and
    that local git repositories exist. Makes no network request and runs
    nothing; `lockstep plan` then shows, with the forge, what `run` would do.
    """
    from lockstep.config import config_path as resolve_path
    from lockstep.errors import UsageError
    from lockstep.redact import scrub
    from lockstep.validate import validate as run_validate

    path = resolve_path(str(config_path) if config_path else None, os.environ)
    result = run_validate(path, os.environ)
    for line in result.warnings:
        click.echo(scrub(f"lockstep: warning: {line}"), err=True)
    if not result.ok:
        raise UsageError("\n".join(result.problems))
    click.echo(scrub(result.summary()))
    click.echo("ok")
    return 0

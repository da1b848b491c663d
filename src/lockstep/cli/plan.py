"""``lockstep plan``: what ``run`` would do, without side effects."""

from __future__ import annotations

import os
from pathlib import Path

import click

from lockstep.cli.common import config_option, errors, load


@click.command(epilog="Exit codes: 0 run could proceed or nothing to do; 1 a read failed or a target "
             "is not a fast-forward; 2 configuration error.")
@config_option
@errors(internal_code=1)
def plan(config_path: Path | None) -> int:
    """Show what `run` would do per service, without side effects.

    For each service: its source and target heads and one of noop, seed
    (target missing), fast-forward, or not fast-forward (run would block).

    \b
    Example:
      lockstep plan --config lockstep.toml
    """
    import asyncio

    from lockstep.engine.prepare import build_forge, protect_secrets
    from lockstep.plan import build_plan, plan_exit_code, render_plan
    from lockstep.redact import scrub

    config = load(config_path)
    protect_secrets(config, os.environ)
    rows = asyncio.run(build_plan(config, build_forge(config, os.environ).forge))
    click.echo(scrub(render_plan(rows)))
    return plan_exit_code(rows)

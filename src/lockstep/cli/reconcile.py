"""``lockstep reconcile``: finish or undo a split promotion from its record."""

from __future__ import annotations

import os
from pathlib import Path

import click

from lockstep.cli.common import EXIT_CODES, config_option, errors, load


@click.command(epilog=EXIT_CODES)
@config_option
@click.option("--forward", "direction", flag_value="forward", help="Finish the latest recorded promotion.")
@click.option("--rollback", "direction", flag_value="rollback",
              help="Move the targets it advanced back (needs [recovery] allow_rollback = true).")
@click.option("--justification", metavar="TEXT",
              help="Why (visible text, at most 4000 characters); stored in the audit record before any push.")
@click.option("--recheck", is_flag=True,
              help="--forward only: re-run health, version and checks for the recorded shas "
              "instead of auditing.")
@click.option("--actor", metavar="NAME",
              help="Who runs this (default: $GITHUB_ACTOR in Actions, else your user).")
@click.option("--json", "json_out", is_flag=True, help="Print the JSON report on stdout.")
@click.option("--report", "report_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write the JSON report to this file.")
@errors(internal_code=3)
def reconcile(config_path: Path | None, direction: str | None, justification: str | None, recheck: bool,
              actor: str | None, json_out: bool, report_path: Path | None) -> int:
    """Repair a split: finish (--forward) or undo (--rollback) the latest recorded promotion.

    Reads the latest promotion record and every target fresh. A target that
    moved since the record is never touched (the command refuses). Pushes are
    compare-and-swap and verified like `run`; an audit record is stored first.

    \b
    Examples:
      lockstep reconcile --forward --justification "finish run 4f2a: beta push was refused by a rule"
      lockstep reconcile --forward --recheck
      lockstep reconcile --rollback --justification "undo run 4f2a: beta cannot ship today"
    """
    from lockstep.engine.prepare import RunRequest
    from lockstep.engine.run import execute_reconcile
    from lockstep.errors import UsageError

    if direction is None:
        raise UsageError("say --forward or --rollback")
    config = load(config_path)
    request = RunRequest(justification=justification, actor=actor, json_out=json_out,
                         report_path=report_path, config_path=config_path)
    return execute_reconcile(config, request, "forward" if direction == "forward" else "rollback",
                             recheck, os.environ)

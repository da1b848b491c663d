"""``lockstep run``: one gate run."""

from __future__ import annotations

import os
from pathlib import Path

import click

from lockstep.cli.common import EXIT_CODES, config_option, errors, load


@click.command(epilog=EXIT_CODES)
@config_option
@click.option("--skip-gate", is_flag=True,
              help="Bypass health, version and checks (needs --justification).")
@click.option("--justification", metavar="TEXT",
              help="Why the gate is bypassed (visible text, at most 4000 characters); "
              "stored in the audit record first.")
@click.option("--actor", metavar="NAME",
              help="Who runs this (default: $GITHUB_ACTOR in Actions, else your user).")
@click.option("--json", "json_out", is_flag=True,
              help="Print the JSON report on stdout (summary goes to stderr).")
@click.option("--report", "report_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write the JSON report to this file.")
@click.option("--no-progress", is_flag=True,
              help="Plain timestamped lines instead of the live view (also: NO_COLOR, not a terminal).")
@errors(internal_code=3)
def run(config_path: Path | None, skip_gate: bool, justification: str | None, actor: str | None,
        json_out: bool, report_path: Path | None, no_progress: bool) -> int:
    """Run the gate once: resolve, check staging, promote every target together.

    Resolves every service's source and target heads fresh; if all targets
    already equal their sources it stops (exit 0). Otherwise it polls each
    staging health URL, checks each /version reports the exact source sha,
    runs the [[checks]] in order, verifies every target can fast-forward, and
    then advances the targets one by one in config order, compare-and-swap,
    stopping at the first failure. It re-reads every target before reporting.

    \b
    Examples:
      lockstep run
      lockstep run --config gates/bs-lml.toml --report report.json
      lockstep run --skip-gate --justification "hotfix for INC-123, staging down"
    """
    from lockstep.engine.prepare import RunRequest
    from lockstep.engine.run import execute_run

    config = load(config_path)
    request = RunRequest(skip_gate=skip_gate, justification=justification, actor=actor,
                         json_out=json_out, report_path=report_path, config_path=config_path,
                         progress=not no_progress)
    return execute_run(config, request, os.environ)

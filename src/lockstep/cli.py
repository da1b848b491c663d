"""The ``lockstep`` command line: parse, call, map results to exit codes.

Heavy modules (httpx, pydantic, the gate) are imported inside the commands so
``lockstep --version`` and ``--help`` stay fast.  Every LockstepError becomes
one line on stderr and its exit code; nothing prints a traceback unless
``LOCKSTEP_DEBUG=1``.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from lockstep import __version__

# httpx imports its own command line (click, rich, pygments) at import time unless that
# import fails; lockstep never uses it, and skipping it saves ~60 ms of every run's start-up.
sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]

F = TypeVar("F", bound=Callable[..., Any])

EXIT_CODES = """\b
Exit codes:
  0  promoted, or nothing to promote
  1  blocked: a gate step, the audit, the preflight or the first push failed;
     every target verified unchanged
  2  usage, configuration or input error, found before any side effect
  3  targets left split or in an unknown position: operator action needed
"""


def _errors(internal_code: int) -> Callable[[F], F]:
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


def _load(config_path: Path | None) -> Any:
    from lockstep.config import config_path as resolve_path
    from lockstep.config import load_config

    return load_config(resolve_path(str(config_path) if config_path else None, os.environ))


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="lockstep")
def cli() -> None:
    """Promote several repositories' production branches together, and only
    after their staging deployments run the exact commits being promoted and
    have passed your checks.

    \b
    Start here:
      lockstep demo                 a real gate in a throwaway sandbox
      lockstep plan                 what `run` would do, without doing it
      lockstep run                  one gate run
      lockstep status               where every target stands (consistent / split / drifted)
      lockstep reconcile            finish or undo a split promotion
    """


@cli.command(epilog=EXIT_CODES)
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
@_errors(internal_code=3)
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
    from lockstep.runner import RunRequest, execute_run

    config = _load(config_path)
    request = RunRequest(skip_gate=skip_gate, justification=justification, actor=actor,
                         json_out=json_out, report_path=report_path, config_path=config_path,
                         progress=not no_progress)
    return execute_run(config, request, os.environ)


@cli.command(epilog="Exit codes: 0 run could proceed or nothing to do; 1 a read failed or a target "
             "is not a fast-forward; 2 configuration error.")
@config_option
@_errors(internal_code=1)
def plan(config_path: Path | None) -> int:
    """Show what `run` would do per service, without side effects.

    For each service: its source and target heads and one of noop, seed
    (target missing), fast-forward, or not fast-forward (run would block).

    \b
    Example:
      lockstep plan --config lockstep.toml
    """
    import asyncio

    from lockstep.plan import build_plan, plan_exit_code, render_plan
    from lockstep.redact import scrub
    from lockstep.runner import build_forge, protect_secrets

    config = _load(config_path)
    protect_secrets(config, os.environ)
    rows = asyncio.run(build_plan(config, build_forge(config, os.environ).forge))
    click.echo(scrub(render_plan(rows)))
    return plan_exit_code(rows)


@cli.command(epilog="Exit codes: 0 consistent; 3 split, drifted or unknown; 2 configuration error.")
@config_option
@click.option("--json", "json_out", is_flag=True, help="Machine-readable output.")
@_errors(internal_code=1)
def status(config_path: Path | None, json_out: bool) -> int:
    """Show where every target stands and whether they form one promoted set.

    Per service: source and target heads and the target's relation to its
    source (equal, behind, diverged, missing). Then one verdict, from the
    promotion records lockstep keeps in the forge:

    \b
      consistent  every target is at the shas of one recorded promotion
                  (or lockstep never promoted this gate)
      split       a promotion advanced some targets but not others; the
                  exact `lockstep reconcile` command is printed
      drifted     a target moved outside lockstep since the last record
      unknown     a head or the records could not be read
    """
    import asyncio
    import json

    from lockstep.plan import build_status, render_status
    from lockstep.redact import scrub, scrub_data
    from lockstep.runner import build_forge, protect_secrets

    config = _load(config_path)
    protect_secrets(config, os.environ)
    wiring = build_forge(config, os.environ)
    result = asyncio.run(build_status(config, wiring.forge, wiring.records))
    a = result.assessment
    if json_out:
        click.echo(json.dumps(scrub_data({
            "gate": config.gate.name,
            "verdict": a.verdict,
            "explanation": a.explanation,
            "record": a.record.to_json() if a.record else None,
            "services": [{
                "name": r.service.name, "repo": r.service.repo,
                "source": r.service.source, "target": r.service.target,
                "source_sha": r.heads.source if r.heads else None,
                "target_sha": r.heads.target if r.heads else None,
                "relation": r.relation, "error": r.error,
                "position": next(s.position for s in a.standings if s.name == r.service.name),
            } for r in result.rows],
        }), indent=2))
    else:
        click.echo(scrub(render_status(result, config, str(config_path or "lockstep.toml"))))
    return 0 if a.verdict == "consistent" else 3


@cli.command(epilog=EXIT_CODES)
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
@_errors(internal_code=3)
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
    from lockstep.errors import UsageError
    from lockstep.runner import RunRequest, execute_reconcile

    if direction is None:
        raise UsageError("say --forward or --rollback")
    config = _load(config_path)
    request = RunRequest(justification=justification, actor=actor, json_out=json_out,
                         report_path=report_path, config_path=config_path)
    return execute_reconcile(config, request, "forward" if direction == "forward" else "rollback",
                             recheck, os.environ)


@cli.command()
@click.option("--dir", "directory", type=click.Path(file_okay=False, path_type=Path),
              help="Build the sandbox here (default: a new temporary directory).")
@click.option("--scenario", type=click.Choice(["promote", "noop", "version-mismatch", "bypass", "split"]),
              default="promote", show_default=True, help="Which story to show.")
@_errors(internal_code=1)
def demo(directory: Path | None, scenario: str) -> int:
    """Build a throwaway sandbox and run a real gate in it.

    The sandbox holds two bare git repositories (main ahead of prod), two
    real staging HTTP services on 127.0.0.1 serving /health and /version,
    a lockstep.toml and one passing check. Nothing outside it is touched.

    \b
    Scenarios:
      promote           staging is good: both prods advance together (exit 0)
      noop              prod already equals main: nothing happens (exit 0)
      version-mismatch  staging runs an older commit: the gate blocks (exit 1)
      bypass            --skip-gate with a justification: audit record, then push
      split             the second push is refused: one prod moved, one did not (exit 3)
    """
    from lockstep.demo import run_demo

    return run_demo(directory, scenario)


def _register_setup_commands() -> None:
    from lockstep.cli_setup import register

    register(cli)


_register_setup_commands()


def main() -> None:
    cli(prog_name="lockstep")


if __name__ == "__main__":
    main()

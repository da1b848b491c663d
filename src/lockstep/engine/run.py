"""``run`` and ``reconcile`` from start to exit code: prepare, wire, lock, run the gate, publish.

Everything that can be checked without touching anything is checked first
(:mod:`lockstep.engine.prepare`), so a usage error exits 2 with nothing changed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from lockstep import log
from lockstep.config import Config
from lockstep.engine.gate import RunOptions
from lockstep.engine.prepare import (
    RunRequest,
    build_forge,
    check_outputs,
    check_tracker,
    protect_secrets,
    refuse_secrets_in_checks,
    refuse_secrets_in_urls,
    resolve_options,
)
from lockstep.engine.publish import publish
from lockstep.engine.reconcile import (
    Direction,
    Repair,
    merge_rollback,
    repair_commands,
)
from lockstep.engine.session import Session, signals_routed
from lockstep.errors import ForgeError, LockstepError, UsageError
from lockstep.model import Report, Result
from lockstep.records import latest_run


def execute_run(config: Config, request: RunRequest, env: Mapping[str, str]) -> int:
    """The whole ``lockstep run``: returns the exit code; prints the summary."""
    protect_secrets(config, env)
    refuse_secrets_in_urls(config, env)
    options = resolve_options(config, request, env)
    check_tracker(config, will_audit=options.skip_gate or config.recovery.on_split == "rollback")
    wiring = build_forge(config, env)
    refuse_secrets_in_checks(config, wiring.secret_vars, env)
    check_outputs(request, env)

    async def body(session: Session) -> list[Report]:
        gate = session.gate()
        report = await session.run_gate(gate, options)
        if report.result != Result.SPLIT:
            return [report]
        if wiring.records is not None:  # without records, reconcile has nothing to work from
            config_path = str(request.config_path or "lockstep.toml")
            report.fix_command = repair_commands(config, config_path)["forward"]
        if config.recovery.on_split != "rollback" or session.cancellation.requested:
            return [report]
        log.warn('the run left a split and recovery.on_split = "rollback": rolling back now')
        rollback = RunOptions(
            skip_gate=True,
            justification=f"automatic rollback: run {report.run_id} left the targets split",
            actor=options.actor,
            run_url=options.run_url,
            mode="rollback",
        )
        undone = gate.records.record(report, "finished")
        undo = session.gate(Repair("rollback", undone))
        merge_rollback(report, await session.run_gate(undo, rollback))
        return [report]

    with signals_routed() as router:
        session = Session(config, wiring, env, router, live=request.progress)
        report = asyncio.run(session.run(body))[0]
        return publish(report, config, request, env)


def execute_reconcile(
    config: Config, request: RunRequest, direction: Direction, recheck: bool, env: Mapping[str, str]
) -> int:
    """``lockstep reconcile``: finish or roll back the latest recorded promotion."""
    if direction == "rollback" and not config.recovery.allow_rollback:
        raise UsageError("reconcile --rollback needs [recovery] allow_rollback = true in the config")
    if recheck and direction == "rollback":
        raise UsageError("--recheck only applies to reconcile --forward")
    protect_secrets(config, env)
    refuse_secrets_in_urls(config, env)
    bypass = not recheck
    if bypass and request.justification is None:
        raise UsageError("reconcile needs --justification TEXT (or --forward --recheck to re-run the gate)")
    options = resolve_options(
        config, RunRequest(skip_gate=bypass, justification=request.justification, actor=request.actor), env
    )
    options.mode = f"reconcile-{direction}"
    check_tracker(config, will_audit=bypass)
    wiring = build_forge(config, env)
    if wiring.records is None:
        raise UsageError("[gate] records = false: there are no promotion records to reconcile from")
    refuse_secrets_in_checks(config, wiring.secret_vars, env)
    check_outputs(request, env)
    records = wiring.records

    async def body(session: Session) -> list[Report]:
        latest = latest_run(await records.read_all())
        if latest is None:
            raise LockstepError(f"no promotion record in {records.location}: nothing to reconcile")
        log.info(f"reconciling {direction} to run {latest.run_id} ({latest.time}, {latest.mode})")
        gate = session.gate(Repair(direction, latest))
        return [await session.run_gate(gate, options)]

    with signals_routed() as router:
        try:
            reports = asyncio.run(Session(config, wiring, env, router, live=request.progress).run(body))
        except ForgeError as exc:
            raise LockstepError(f"cannot read the promotion records: {exc}") from None
        return publish(reports[0], config, request, env)

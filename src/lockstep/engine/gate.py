"""One gate run as a sequence of steps over protocols (``docs/design.md``, "What one run does").

The gate does no I/O of its own: heads and pushes go through a
:class:`~lockstep.forges.base.Forge`, the audit through an
:class:`~lockstep.forges.base.AuditSink`, staging through :mod:`lockstep.probes`
and commands through :mod:`lockstep.checks`.  It always returns a
:class:`~lockstep.model.Report` whose per-service positions were re-read from
the forge after any write, so what it says is what is true.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import TypeVar

from lockstep import log
from lockstep.audit import AuditAction, AuditRecord, AuditService, render_markdown, utc_now
from lockstep.config import CheckConfig, Config, ServiceConfig
from lockstep.engine.reconcile import (
    Repair,
    finish_repair,
    resolve_repair,
    rewind_problems,
)
from lockstep.engine.run_records import RunRecords
from lockstep.engine.staging import require_check, require_healthy, require_versions
from lockstep.errors import AuditError, Blocked, ForgeError
from lockstep.forges.base import AuditSink, ExternalCheck, Forge, RecordStore
from lockstep.model import (
    Action,
    Heads,
    Outcome,
    PushResult,
    PushStatus,
    Report,
    Result,
    ServiceReport,
    Sha,
    StepReport,
    StepStatus,
)
from lockstep.probes import probe_client
from lockstep.progress import PlainProgress, Progress
from lockstep.redact import scrub, scrub_data

T = TypeVar("T")


def _audit_action(mode: str) -> AuditAction:
    """What the audit record's heading calls this run."""
    actions: dict[str, AuditAction] = {
        "reconcile-forward": "reconcile-forward",
        "reconcile-rollback": "reconcile-rollback",
        "rollback": "rollback",
    }
    return actions.get(mode, "bypass")


@dataclass
class RunOptions:
    """What the caller asked for; validated before the gate starts."""

    skip_gate: bool = False
    justification: str | None = None
    actor: str = "unknown"
    run_url: str | None = None
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    mode: str | None = None  # default: "bypass" with skip_gate, else "gate"


@dataclass
class Cancellation:
    """Set by a signal handler; the gate stops starting new work when it is set."""

    event: asyncio.Event = field(default_factory=asyncio.Event)
    signal_name: str = ""

    @property
    def requested(self) -> bool:
        return self.event.is_set()


class Gate:
    """Runs resolve → (gate | bypass) → preflight → promote → verify for one config.

    With a :class:`~lockstep.engine.reconcile.Repair` it is a reconcile: the heads come from
    that promotion record instead of the source branches, and a rollback rewinds.
    """

    def __init__(
        self,
        config: Config,
        forge: Forge,
        *,
        env: Mapping[str, str],
        audit_sink: Callable[[], AuditSink] | None = None,
        secret_vars: frozenset[str] = frozenset(),
        cancellation: Cancellation | None = None,
        records: RecordStore | None = None,
        progress: Progress | None = None,
        external_check: ExternalCheck | None = None,
        repair: Repair | None = None,
    ) -> None:
        self.config = config
        self.repair = repair
        self.forge = forge
        self.env = env
        self._audit_sink = audit_sink
        self._secret_vars = secret_vars
        self.cancellation = cancellation or Cancellation()
        self._external_check = external_check
        self.progress: Progress = progress or PlainProgress(env)
        self._heads: dict[str, Heads] = {}
        self._report: Report | None = None
        self.records = RunRecords(config, records, self._heads, repair)
        self.promoting = False  # once True, signals stop new pushes but never interrupt one
        self.finishing = False  # writing the report after a cancellation: never interrupted again

    @property
    def moved_outcome(self) -> Outcome:
        """What a target this run moved is called."""
        return self.repair.moved_outcome if self.repair else Outcome.ADVANCED

    @property
    def interruptible(self) -> bool:
        """Whether a signal may cancel the run outright (only before any write starts)."""
        return not (self.promoting or self.finishing)

    # -- helpers ---------------------------------------------------------------

    async def _step(self, report: Report, name: str, work: Callable[[], Awaitable[T]]) -> T:
        """Run one step (one log group in Actions), recording its outcome and duration even on failure."""
        self.progress.step_started(name)
        start = time.monotonic()
        step = StepReport(name=name, status=StepStatus.PASSED)
        report.steps.append(step)
        try:
            return await work()
        except asyncio.CancelledError:
            step.status = StepStatus.CANCELLED
            step.detail = f"cancelled by {self.cancellation.signal_name or 'signal'}"
            raise
        except (Blocked, ForgeError, AuditError) as exc:
            step.status = StepStatus.FAILED
            step.detail = str(exc)
            raise
        finally:
            step.seconds = round(time.monotonic() - start, 3)
            self.progress.step_finished(name, step.status.value, step.seconds, step.detail)

    def _svc(self, report: Report, service: ServiceConfig) -> ServiceReport:
        return next(s for s in report.services if s.name == service.name)

    # -- the run ---------------------------------------------------------------

    async def run(self, options: RunOptions) -> Report:
        cfg = self.config
        report = Report(
            gate=cfg.gate.name,
            mode=options.mode or ("bypass" if options.skip_gate else "gate"),
            actor=options.actor,
            run_url=options.run_url,
            started_at=utc_now(),
            runbook_url=cfg.gate.runbook_url,
        )
        report.audit.requested = options.skip_gate
        report.services = [
            ServiceReport(name=s.name, repo=s.repo, source=s.source, target=s.target) for s in cfg.services
        ]
        self._report = report
        report.run_id = options.run_id
        try:
            await self._run(report, options)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
            self.finishing = True
            report.result = Result.BLOCKED
            report.messages.append(
                f"cancelled by {self.cancellation.signal_name or 'signal'} before any push"
            )
            for s in report.services:
                if s.action not in (None, Action.NOOP):
                    s.outcome = Outcome.CANCELLED
            await self._verify(report)
        if report.result == Result.BLOCKED:  # a split the run started from is still there: say so
            self.records.start_reading(report)
            await self.records.known(2.0 if self.cancellation.requested else None)
        split = self.records.split
        if split is not None and report.result == Result.BLOCKED:
            # nothing moved, so the split this run started from is still there
            report.result = Result.SPLIT
            report.messages.append(f"the targets are still split: {split.explanation}")
        if self.repair is not None and self.records.repaired is not None:
            finish_repair(report, self.repair, self.records.repaired)
        report.finished_at = utc_now()
        return report

    async def _run(self, report: Report, options: RunOptions) -> None:
        cfg = self.config
        try:
            await self._step(report, "resolve", self._resolve)
        except (ForgeError, Blocked) as exc:
            report.result = Result.BLOCKED
            report.messages.append(f"resolve failed: {exc}")
            return

        pending = [s for s in cfg.services if self._heads[s.name].action(True) != Action.NOOP]
        for svc in report.services:
            if svc.action == Action.NOOP:
                svc.outcome = Outcome.UNCHANGED
        if not pending:
            report.result = Result.NOOP
            for s in report.services:
                s.outcome = Outcome.UNCHANGED
            if options.skip_gate:
                report.audit.suppressed_noop = True
            report.messages.append("nothing to promote: every target already equals its source")
            return

        try:
            if options.skip_gate:  # nothing slow comes before the preflight, which checks the same
                await self._preflight_and_records(report)
                await self._step(report, "audit", lambda: self._audit(report, options))
            else:
                await self._step(report, "fast-forward", self._fast_forward)
                sources = {s.name: self._heads[s.name].source for s in cfg.services}
                async with probe_client() as probes:  # one pool (and TLS setup) for both steps
                    await self._step(report, "health", partial(require_healthy, cfg, probes, self.progress))
                    await self._step(
                        report, "version", partial(require_versions, cfg, sources, probes, self.progress)
                    )
                for check in cfg.checks:
                    work = partial(self._check, check, report, sources)
                    await self._step(report, f"check {check.name}", work)
                await self._preflight_and_records(report)
        except (Blocked, ForgeError, AuditError) as exc:
            report.result = Result.BLOCKED
            report.messages.append(str(exc))
            if isinstance(exc, AuditError):
                report.audit.error = str(exc)
            return

        await self._promote(report, pending)

    async def _resolve(self) -> None:
        if self.repair is not None:
            await self._resolve_repair(self.repair)
            return
        services = self.config.services
        results = await asyncio.gather(*(self.forge.read_heads(s) for s in services), return_exceptions=True)
        errors = []
        for service, result in zip(services, results, strict=True):
            if isinstance(result, BaseException):
                if not isinstance(result, ForgeError):
                    raise result
                errors.append(str(result))
                continue
            self._set_heads(service, result)
        if errors:
            raise ForgeError("; ".join(errors))

    async def _resolve_repair(self, repair: Repair) -> None:
        """A reconcile's heads: each target placed against the promotion record it repairs."""
        found = await resolve_repair(self.forge, self.config.services, repair)
        if found.problems:
            raise Blocked("; ".join(found.problems))
        self.records.repaired = found
        for service in self.config.services:
            self._set_heads(service, found.heads[service.name])
        self.records.note_start(repair.record)

    async def _fast_forward(self) -> None:
        """Every target that moves must be an ancestor of its source: found now, not after the gate
        spent minutes on health and checks (preflight asks again right before the first push)."""

        async def check(service: ServiceConfig) -> str | None:
            heads = self._heads[service.name]
            if heads.target is None or heads.target == heads.source:
                return None
            if await self.forge.is_ancestor(service, heads.target, heads.source):
                return None
            self._svc(self._require_report(), service).action = Action.NOT_FAST_FORWARD
            return self._not_fast_forward(service, heads)

        problems = [p for p in await asyncio.gather(*(check(s) for s in self.config.services)) if p]
        if problems:
            raise Blocked("; ".join(problems))

    def _not_fast_forward(self, service: ServiceConfig, heads: Heads) -> str:
        assert heads.target is not None
        return (
            f"{service.name}: {service.repo} '{service.target}' ({heads.target.short}) is not an "
            f"ancestor of '{service.source}' ({heads.source.short}): not a fast-forward"
        )

    def _set_heads(self, service: ServiceConfig, heads: Heads) -> None:
        self._heads[service.name] = heads
        svc = self._svc(self._require_report(), service)
        svc.source_sha = heads.source
        svc.old_target_sha = heads.target
        svc.final_target_sha = heads.target
        svc.action = heads.action(True)
        self.progress.service(
            service.name,
            "heads",
            f"{service.source}={heads.source.short} "
            f"{service.target}={heads.target.short if heads.target else '(missing: seed)'}",
        )

    async def _push_one(self, service: ServiceConfig, heads: Heads) -> PushResult:
        if self.repair is not None and self.repair.rewinds:
            assert heads.target is not None  # a rewind moves an existing target back
            return await self.forge.rewind(service, heads.target, heads.source)
        if heads.target is None:
            return await self.forge.create(service, heads.source)
        return await self.forge.advance(service, heads.target, heads.source)

    def _require_report(self) -> Report:
        assert self._report is not None
        return self._report

    async def _check(self, check: CheckConfig, report: Report, sources: Mapping[str, Sha]) -> None:
        """One check, its output tail kept in the step ``_step`` just opened for it."""
        await require_check(
            check, report.steps[-1], self.config, sources,
            env=self.env, secret_vars=self._secret_vars, external_check=self._external_check,
        )

    async def _preflight_and_records(self, report: Report) -> None:
        """The records are read beside the pre-push re-read (on GitHub, in its one query), and
        known before anything is written."""
        self.records.start_reading(report)
        await self._step(report, "preflight", self._preflight)
        await self.records.known()

    async def _preflight(self) -> None:
        """Right before the first write, re-read every target that will move (all at once): it must
        still be where resolve found it, and its source must fast-forward it.  A rollback instead
        checks that each rewind goes back along the target's own history."""
        moving = [s for s in self.config.services if self._heads[s.name].source != self._heads[s.name].target]
        # a wait for the forge's write limits comes now, never between two pushes: 2 records
        await self.forge.reserve_writes(moving, 2 if self.records.store is not None else 0)
        if self.repair is not None and self.repair.rewinds:
            problems = await rewind_problems(self.forge, self.config.services, self._heads)
            if problems:
                raise Blocked("; ".join(problems))
            return
        # every service, those with nothing to do included: a target someone moves now would
        # otherwise be reported "unchanged (already at main)" in a run that says "promoted"
        todo = list(self.config.services)

        async def check(service: ServiceConfig) -> str | None:
            heads = self._heads[service.name]
            found = await self.forge.check_target(service, heads.source)
            if found.current != heads.target:
                # the report states where the target is now, as this read found it
                self._svc(self._require_report(), service).final_target_sha = found.current
                now = found.current.short if found.current else "(missing)"
                was = heads.target.short if heads.target else "(missing)"
                return (
                    f"{service.name}: {service.repo} '{service.target}' moved from {was} to {now} "
                    "during this run (another writer): nothing was pushed"
                )
            if found.fast_forward:
                return None
            self._svc(self._require_report(), service).action = Action.NOT_FAST_FORWARD
            return self._not_fast_forward(service, heads)

        problems = [p for p in await asyncio.gather(*(check(s) for s in todo)) if p]
        if problems:
            raise Blocked("; ".join(problems))

    async def _audit(self, report: Report, options: RunOptions) -> None:
        if self._audit_sink is None:
            raise AuditError("no audit sink is configured ([bypass] tracker)")
        sink = self._audit_sink()
        # scrubbed before rendering: quoting can change how a secret is spelled (a table cell's "|")
        record = scrub_data(AuditRecord(
            gate=self.config.gate.name,
            time=utc_now(),
            actor=options.actor,
            run_url=options.run_url,
            tracker=self.config.bypass.tracker or "",
            services=[
                AuditService(
                    name=s.name,
                    repo=s.repo,
                    target=s.target,
                    old_sha=self._heads[s.name].target,
                    new_sha=self._heads[s.name].source,
                )
                for s in self.config.services
            ],
            justification=options.justification or "",
            action=_audit_action(report.mode),
        ))
        location = await sink.store(scrub(render_markdown(record)), record.to_json())
        report.audit.stored = True
        report.audit.location = location
        log.info(f"  audit record stored: {location}")

    # -- promote and verify ------------------------------------------------------

    async def _promote(self, report: Report, pending: list[ServiceConfig]) -> None:
        self.promoting = True
        await self.records.write(report, "started")
        step = StepReport(name="promote", status=StepStatus.PASSED)
        report.steps.append(step)
        start = time.monotonic()
        self.progress.step_started("promote")
        pending = self.repair.order(pending) if self.repair else pending
        failed, cancelled = await self._push_in_order(report, pending)
        step.seconds = round(time.monotonic() - start, 3)
        if failed or cancelled:
            self._stopped(report, step, pending, failed)
        self.progress.step_finished("promote", step.status.value, step.seconds, step.detail)
        for svc in report.services:
            if svc.action == Action.NOOP:
                svc.outcome = Outcome.UNCHANGED
        if failed or cancelled:
            await self._verify(report)
        else:
            self._confirmed(report, pending)
        self._decide(report, failed is not None or cancelled)
        await self.records.write(report, "finished")

    async def _push_in_order(
        self, report: Report, pending: list[ServiceConfig]
    ) -> tuple[ServiceConfig | None, bool]:
        """Push one service after another; stop at the first that is not known to have landed
        (returned), or before the next when a signal asked to stop (True)."""
        for service in pending:
            if self.cancellation.requested:
                return None, True
            heads = self._heads[service.name]
            svc = self._svc(report, service)
            try:
                result = await self._push_one(service, heads)
            except ForgeError as exc:
                result = PushResult(PushStatus.UNKNOWN, str(exc))
            if result.status == PushStatus.LANDED:
                svc.did_push = True
                svc.outcome = self.moved_outcome
                self.progress.service(service.name, "push", f"✓ {service.target} → {heads.source.short}")
                continue
            svc.outcome = Outcome.UNKNOWN if result.status == PushStatus.UNKNOWN else Outcome.FAILED
            svc.detail = result.detail
            log.error(f"{service.name}: push {result.status}: {result.detail}")
            return service, False
        return None, False

    def _stopped(
        self, report: Report, step: StepReport, pending: list[ServiceConfig], failed: ServiceConfig | None
    ) -> None:
        """The promote step failed (``failed``'s push) or was cancelled: say so, and call every
        service it never reached skipped or cancelled."""
        if failed is None:
            step.status = StepStatus.CANCELLED
            step.detail = f"cancelled by {self.cancellation.signal_name or 'signal'}"
        else:
            step.status = StepStatus.FAILED
            step.detail = f"{failed.name}: {self._svc(report, failed).detail}"
        rest = Outcome.SKIPPED if failed else Outcome.CANCELLED
        for service in pending:
            svc = self._svc(report, service)
            if svc.outcome == Outcome.SKIPPED and service is not failed:
                svc.outcome = rest

    def _confirmed(self, report: Report, pushed: list[ServiceConfig]) -> None:
        """Every write landed and the forge confirmed each new sha in its answer: no re-read needed."""
        for service in pushed:
            self._svc(report, service).final_target_sha = self._heads[service.name].source
        report.steps.append(
            StepReport(name="verify", status=StepStatus.PASSED, detail="every write confirmed by the forge")
        )

    async def _verify(self, report: Report) -> None:
        """Re-read every target that was read, so the report states real positions."""
        services = [s for s in self.config.services if s.name in self._heads]
        if not services:
            return
        start = time.monotonic()
        results = await asyncio.gather(*(self.forge.read_target(s) for s in services), return_exceptions=True)
        problems = []
        for service, result in zip(services, results, strict=True):
            svc = self._svc(report, service)
            heads = self._heads[service.name]
            if isinstance(result, BaseException):
                svc.final_target_sha = None
                svc.reread_failed = True
                if svc.did_push:
                    continue  # the forge confirmed the write; keep "advanced"
                if svc.outcome in (Outcome.UNKNOWN, Outcome.FAILED):
                    svc.outcome = Outcome.UNKNOWN
                    problems.append(f"{service.name}: cannot re-read '{service.target}': {result}")
                continue
            svc.final_target_sha = result
            if result == heads.source and heads.target != heads.source:
                svc.did_push = True
                svc.outcome = self.moved_outcome
            elif result == heads.target:
                svc.did_push = False
                if svc.outcome == self.moved_outcome:
                    svc.outcome = Outcome.FAILED
                # an UNKNOWN push stays unknown: a write in flight may land after this re-read
            else:
                svc.did_push = False
                svc.outcome = Outcome.FAILED
                svc.detail = (
                    f"'{service.target}' is at {result.short if result else '(missing)'}, "
                    f"moved outside this run"
                )
                problems.append(f"{service.name}: {svc.detail}")
        report.steps.append(
            StepReport(
                name="verify",
                status=StepStatus.FAILED if problems else StepStatus.PASSED,
                seconds=round(time.monotonic() - start, 3),
                detail="; ".join(problems),
            )
        )

    def _carried(self, report: Report, service: ServiceConfig) -> bool:
        """Already where this promotion moves it, by the earlier run this one finishes."""
        old, new = self.records.shas(service)
        return self._svc(report, service).action == Action.NOOP and old != new

    def _decide(self, report: Report, had_failure: bool) -> None:
        moved = [s.name for s in report.services if s.did_push]
        # already where this promotion moves them, by the earlier run this one finishes
        carried = [s.name for s in self.config.services if self._carried(report, s)]
        unknown = [s.name for s in report.services if s.outcome == Outcome.UNKNOWN]
        behind = [
            s.name for s in report.services
            if s.action not in (None, Action.NOOP) and not s.did_push and s.outcome != Outcome.UNKNOWN
        ]
        if unknown:
            report.result = Result.UNKNOWN
            report.messages.append(f"position unknown for {', '.join(unknown)}: operator action needed")
        elif (moved or carried) and behind:
            report.result = Result.SPLIT
            report.messages.append("split promotion: " + _split_parts(moved, carried, behind))
        elif behind or (had_failure and not moved):
            report.result = Result.BLOCKED
        else:
            report.result = Result.PROMOTED


def _split_parts(moved: list[str], carried: list[str], behind: list[str]) -> str:
    parts = [f"advanced {', '.join(moved)}"] if moved else []
    if carried:
        parts.append(f"already there from an earlier run: {', '.join(carried)}")
    parts.append(f"not advanced {', '.join(behind)}")
    return "; ".join(parts)

"""The promotion records of one run: the start state read behind the gate steps, and the
started and finished records written around the pushes.

The records are a recovery aid, never a gate: a read or write that fails is a warning in the
report, and the run goes on judged against where it found the targets.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass

from lockstep import log
from lockstep.audit import utc_now
from lockstep.config import Config, ServiceConfig
from lockstep.engine.reconcile import Repair, RepairHeads, repair_record_shas
from lockstep.errors import ForgeError
from lockstep.forges.base import RecordStore
from lockstep.model import Heads, Report, Sha
from lockstep.records import Assessment, Phase, PromotionRecord, RecordService, assess, latest_run


@dataclass
class RunRecords:
    """One run's view of the records; ``heads`` is the gate's own map, filled in by resolve."""

    config: Config
    store: RecordStore | None
    heads: Mapping[str, Heads]
    repair: Repair | None = None
    repaired: RepairHeads | None = None  # what a reconcile's resolve found
    # the targets were split when this run started (by the run in split.record): the run
    # finishes that promotion, so its record restates that run's old shas as its own
    split: Assessment | None = None
    _reading: asyncio.Future[None] | None = None

    def start_reading(self, report: Report) -> None:
        """Start reading the records (once; they are needed only before the first push and at the
        end).  The gate starts it beside the pre-push re-read, whose request it shares on GitHub,
        or, for a run that stopped before, at the end.  A reconcile was handed its record instead."""
        if self.store is not None and self.repair is None and self._reading is None:
            self._reading = asyncio.ensure_future(self._read_start_state(self.store, report))

    async def known(self, limit: float | None = None) -> None:
        """Wait for that read (at most ``limit`` seconds); a read still running is left to finish
        unobserved, and the run is judged against where it found the targets."""
        task = self._reading
        if task is None or task.cancelled():
            return
        try:
            await asyncio.wait_for(asyncio.shield(task), limit)  # a done task: at once (or its error)
        except TimeoutError:
            task.cancel()
            log.warn("the promotion records were still being read; judged without them")

    async def _read_start_state(self, store: RecordStore, report: Report) -> None:
        """Whether the targets are split by an earlier run (a re-run before the cause was fixed)."""
        try:
            history = await store.read_recent()
        except (ForgeError, OSError) as exc:
            warning = f"could not read the promotion records in {store.location}: {exc}"
            report.warnings.append(warning)
            log.warn(warning)
            return
        self.note_start(latest_run(history))
        if self.split is not None:
            log.warn(f"the targets are split as this run starts: {self.split.explanation}")

    def note_start(self, record: PromotionRecord | None) -> None:
        """Remember the split ``record`` left, if the targets are still split by it."""
        assessment = assess(record, {name: heads.target for name, heads in self.heads.items()})
        if assessment.verdict == "split":
            self.split = assessment

    def shas(self, service: ServiceConfig) -> tuple[Sha | None, Sha]:
        """(old, new) of ``service`` as the promotion record states them: old is where the last
        consistent set had it (the split run's old sha when this run started from a split)."""
        if self.repair is not None and self.repaired is not None:
            return repair_record_shas(self.repair, self.repaired, service)
        heads = self.heads[service.name]
        split = self.split.record.service(service.name) if self.split and self.split.record else None
        if split is not None:
            return (Sha(split.old_sha) if split.old_sha else None), heads.source
        return heads.target, heads.source

    def record(self, report: Report, phase: Phase) -> PromotionRecord:
        """This run's promotion record (``on_split = "rollback"`` undoes what it states)."""
        outcomes = {s.name: s.outcome for s in report.services}
        return PromotionRecord(
            gate=self.config.gate.name,
            run_id=report.run_id,
            time=utc_now(),
            actor=report.actor,
            mode=report.mode,
            phase=phase,
            run_url=report.run_url,
            audit=report.audit.location,
            result=report.result.value if phase == "finished" else None,
            services=tuple(
                RecordService(
                    name=s.name,
                    repo=s.repo,
                    target=s.target,
                    old_sha=old,
                    new_sha=new,
                    outcome=outcomes[s.name] if phase == "finished" else "pending",
                )
                for s, (old, new) in ((s, self.shas(s)) for s in self.config.services)
            ),
        )

    async def write(self, report: Report, phase: Phase) -> None:
        """Write the promotion record; a failure is a warning and never blocks or undoes a push."""
        if self.store is None:
            return
        try:
            report.record = await self.store.write(self.record(report, phase))
        except (ForgeError, OSError) as exc:
            warning = f"could not write the {phase} promotion record to {self.store.location}: {exc}"
            report.warnings.append(warning)
            log.warn(warning)

"""``lockstep reconcile``: repair a split from the promotion records, with one audited command.

``--forward`` finishes the latest recorded promotion (pushes the targets that
are still at their recorded old sha to their recorded new sha); ``--rollback``
moves the targets that advanced back to their recorded old sha.  Both are the
gate itself with a different resolve step: the heads come from the record and
the current targets, a target that moved since the record is never touched
(the run is refused), and every push is compare-and-swap, verified, recorded.
"""

from __future__ import annotations

import asyncio
import shlex
from typing import Literal

from lockstep.config import Config, ServiceConfig
from lockstep.engine.gate import Gate, RunOptions, _Blocked
from lockstep.errors import ForgeError
from lockstep.model import Heads, Outcome, PushResult, Report, Result, Sha
from lockstep.records import PromotionRecord, RecordService

Direction = Literal["forward", "rollback"]


class ReconcileGate(Gate):
    """The gate, resolving from a promotion record instead of the source branches."""

    reads_records_at_start = False

    def __init__(
        self, *args: object, direction: Direction, record: PromotionRecord, **kwargs: object
    ) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.direction = direction
        self.record = record
        self.absent: set[str] = set()  # rollback: created by the run, and still missing
        self.left_alone: set[str] = set()  # rollback: created by the run; lockstep does not delete it
        if direction == "rollback":
            self.moved_outcome = Outcome.ROLLED_BACK

    async def _resolve(self) -> None:
        services = self.config.services
        results = await asyncio.gather(*(self.forge.read_target(s) for s in services), return_exceptions=True)
        problems: list[str] = []
        for service, current in zip(services, results, strict=True):
            if isinstance(current, BaseException):
                if not isinstance(current, ForgeError):
                    raise current
                problems.append(str(current))
                continue
            recorded = self.record.service(service.name)
            if recorded is None:
                problems.append(f"{service.name}: not in run {self.record.run_id}'s record")
                continue
            heads = self._heads_for(service, recorded, current)
            if heads is None:
                problems.append(
                    f"{service.name}: '{service.target}' is at {current[:7] if current else '(missing)'}, "
                    f"neither the recorded old ({(recorded.old_sha or '(missing)')[:7]}) nor new "
                    f"({recorded.new_sha[:7]}) sha of run {self.record.run_id}: it moved since; "
                    "not touching it"
                )
                continue
            self._set_heads(service, heads)
        if problems:
            raise _Blocked("; ".join(problems))
        self._note_start(self.record)

    def _heads_for(self, service: ServiceConfig, rec: RecordService, current: Sha | None) -> Heads | None:
        """Heads whose 'source' is where this reconcile moves the target; None = moved since."""
        new, old = Sha(rec.new_sha), Sha(rec.old_sha) if rec.old_sha else None
        if self.direction == "forward":
            if current == new:
                return Heads(new, new)
            if current == old:
                return Heads(new, old)
            return None
        if current == old and old is not None:
            return Heads(old, old)
        if old is None:
            # This run created the target. lockstep never deletes a branch: a target still missing is
            # already where it was; one that exists is left alone and reported (see run()).
            if current is None:
                self.absent.add(service.name)
                return Heads(new, new)
            if current == new:
                self.left_alone.add(service.name)
                return Heads(new, new)
            return None
        if current == new:
            return Heads(old, new)
        return None

    async def run(self, options: RunOptions) -> Report:
        report = await super().run(options)
        for svc in report.services:
            if svc.name in self.absent:  # never created: it is missing, as it was before the run
                svc.old_target_sha = svc.final_target_sha = None
                svc.detail = f"'{svc.target}' does not exist, as before run {self.record.run_id}"
            if svc.name in self.left_alone:
                svc.outcome = Outcome.FAILED
                svc.detail = (
                    f"run {self.record.run_id} created '{svc.target}'; lockstep never deletes a branch: "
                    f"delete it in {svc.repo} by hand to finish the rollback"
                )
        if self.left_alone and report.result in (Result.PROMOTED, Result.NOOP):
            report.result = Result.SPLIT
            report.messages.append(
                "rollback incomplete: " + ", ".join(sorted(self.left_alone)) + " still at the new sha"
            )
        return report

    async def _preflight(self) -> None:
        if self.direction == "forward":
            await super()._preflight()
            return
        # a rollback must be a pure rewind: the recorded old sha is an ancestor of the current target
        for service in self.config.services:
            heads = self._heads[service.name]
            if heads.target is None or heads.target == heads.source:
                continue
            if not await self.forge.is_ancestor(service, heads.source, heads.target):
                raise _Blocked(
                    f"{service.name}: {heads.source.short} is not an ancestor of {heads.target.short}"
                )

    def _record_shas(self, service: ServiceConfig) -> tuple[Sha | None, Sha]:
        """A reconcile record restates the promotion it finishes or undoes (its old and new shas),
        so a reconcile that fails half-way still leaves a record that ``status`` reads as a split."""
        rec = self.record.service(service.name)
        if rec is None or service.name in self.absent or service.name in self.left_alone:
            heads = self._heads[service.name]
            return heads.target, heads.source
        new, old = Sha(rec.new_sha), Sha(rec.old_sha) if rec.old_sha else None
        if self.direction == "forward":
            return old, new
        assert old is not None  # a seeded target (no old sha) is absent or left alone
        return new, old

    def _order(self, pending: list[ServiceConfig]) -> list[ServiceConfig]:
        return list(reversed(pending)) if self.direction == "rollback" else pending

    async def _push_one(self, service: ServiceConfig, heads: Heads) -> PushResult:
        if self.direction == "forward":
            return await super()._push_one(service, heads)
        assert heads.target is not None
        return await self.forge.rewind(service, heads.target, heads.source)


def merge_rollback(report: Report, rolled: Report) -> None:
    """Fold the automatic rollback (``on_split = "rollback"``) into the run's own report, so its
    headline, rows and advice say what happened: rolled back, to which shas, or still split."""
    report.rollback = rolled
    # the rollback's re-read positions are newer, where it could resolve the service at all
    finals = {s.name: s.final_target_sha for s in rolled.services if s.source_sha is not None}
    rewound = {s.name for s in rolled.services if s.outcome == Outcome.ROLLED_BACK}
    for svc in report.services:
        if svc.name in finals:
            svc.final_target_sha = finals[svc.name]
        if svc.name in rewound:
            svc.detail = (
                f"advanced to {(svc.source_sha or '')[:7]}, then rolled back to "
                f"{svc.final_target_sha[:7] if svc.final_target_sha else '(missing)'}"
            )
            svc.outcome, svc.did_push = Outcome.ROLLED_BACK, False
    if rolled.result != Result.PROMOTED:
        report.messages.append(
            f"recovery.on_split = rollback: the rollback did not finish ({rolled.result.value}): "
            "the targets are still split"
        )
        return
    report.result = Result.ROLLED_BACK
    report.fix_command = None
    report.messages.append(
        "recovery.on_split = rollback: rolled back "
        + ", ".join(f"{s.name} to {(s.final_target_sha or '')[:7]}" for s in report.services
                    if s.name in rewound)
        + "; every target is where it was before this run"
    )


def repair_commands(config: Config, config_path: str) -> dict[Direction, str]:
    """The reconcile commands that can run with ``config``, exactly as printed with a split.

    Without a ``[bypass] tracker`` a justification has nowhere to go, so the forward repair is
    ``--recheck`` (the gate itself, nothing to audit); a rollback is always audited, so it is
    offered only with a tracker and ``[recovery] allow_rollback = true``.
    """
    path = shlex.quote(config_path)
    why = '--justification "<why>"'
    commands: dict[Direction, str] = {}
    if config.bypass.tracker:
        commands["forward"] = f"lockstep reconcile --forward --config {path} {why}"
        if config.recovery.allow_rollback:
            commands["rollback"] = f"lockstep reconcile --rollback --config {path} {why}"
    else:
        commands["forward"] = f"lockstep reconcile --forward --recheck --config {path}"
    return commands

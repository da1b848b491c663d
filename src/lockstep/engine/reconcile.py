"""``lockstep reconcile``: repair a split from the promotion records, with one audited command.

``--forward`` finishes the latest recorded promotion (pushes the targets that
are still at their recorded old sha to their recorded new sha); ``--rollback``
moves the targets that advanced back to their recorded old sha.  A reconcile is
a :class:`Repair` (which promotion, which direction) handed to the same
:class:`~lockstep.engine.gate.Gate` as a run: the heads come from the record and
the current targets (:func:`resolve_repair`), a target that moved since the
record is never touched (the run is refused), and every push is
compare-and-swap, verified, recorded.
"""

from __future__ import annotations

import asyncio
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from lockstep.config import Config, ServiceConfig
from lockstep.errors import ForgeError
from lockstep.forges.base import Forge
from lockstep.model import Heads, Outcome, Report, Result, Sha
from lockstep.records import PromotionRecord, RecordService

Direction = Literal["forward", "rollback"]


@dataclass(frozen=True)
class Repair:
    """What a reconcile moves: every target of ``record``'s promotion, forward to its recorded new
    sha or back to its recorded old one (a rollback rewinds, in reverse config order)."""

    direction: Direction
    record: PromotionRecord

    @property
    def rewinds(self) -> bool:
        return self.direction == "rollback"

    @property
    def moved_outcome(self) -> Outcome:
        """What a target this reconcile moved is called."""
        return Outcome.ROLLED_BACK if self.rewinds else Outcome.ADVANCED

    def order(self, pending: list[ServiceConfig]) -> list[ServiceConfig]:
        """Push order: a rollback undoes the promotion's pushes last first."""
        return list(reversed(pending)) if self.rewinds else pending


@dataclass
class RepairHeads:
    """What :func:`resolve_repair` found: each service's heads (its 'source' is where the repair
    moves the target), or why the repair is refused."""

    heads: dict[str, Heads] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    absent: set[str] = field(default_factory=set)  # rollback: created by the run, and still missing
    left_alone: set[str] = field(default_factory=set)  # rollback: created by the run; never deleted


async def resolve_repair(forge: Forge, services: Sequence[ServiceConfig], repair: Repair) -> RepairHeads:
    """Read every target and place it against the record: at its old or new sha, or moved since."""
    results = await asyncio.gather(*(forge.read_target(s) for s in services), return_exceptions=True)
    found = RepairHeads()
    record = repair.record
    for service, current in zip(services, results, strict=True):
        if isinstance(current, BaseException):
            if not isinstance(current, ForgeError):
                raise current
            found.problems.append(str(current))
            continue
        recorded = record.service(service.name)
        if recorded is None:
            found.problems.append(f"{service.name}: not in run {record.run_id}'s record")
            continue
        heads = _heads_for(repair.direction, service, recorded, current, found)
        if heads is None:
            found.problems.append(
                f"{service.name}: '{service.target}' is at {current[:7] if current else '(missing)'}, "
                f"neither the recorded old ({(recorded.old_sha or '(missing)')[:7]}) nor new "
                f"({recorded.new_sha[:7]}) sha of run {record.run_id}: it moved since; "
                "not touching it"
            )
            continue
        found.heads[service.name] = heads
    return found


def _heads_for(
    direction: Direction, service: ServiceConfig, rec: RecordService, current: Sha | None, found: RepairHeads
) -> Heads | None:
    """Heads whose 'source' is where this reconcile moves the target; None = moved since."""
    new, old = Sha(rec.new_sha), Sha(rec.old_sha) if rec.old_sha else None
    if direction == "forward":
        if current == new:
            return Heads(new, new)
        if current == old:
            return Heads(new, old)
        return None
    if current == old and old is not None:
        return Heads(old, old)
    if old is None:
        # This run created the target. lockstep never deletes a branch: a target still missing is
        # already where it was; one that exists is left alone and reported (see finish_repair).
        if current is None:
            found.absent.add(service.name)
            return Heads(new, new)
        if current == new:
            found.left_alone.add(service.name)
            return Heads(new, new)
        return None
    if current == new:
        return Heads(old, new)
    return None


async def rewind_problems(
    forge: Forge, services: Sequence[ServiceConfig], heads: dict[str, Heads]
) -> list[str]:
    """A rollback must be a pure rewind: each recorded old sha is an ancestor of the current target."""
    problems = []
    for service in services:
        h = heads[service.name]
        if h.target is None or h.target == h.source:
            continue
        if not await forge.is_ancestor(service, h.source, h.target):
            problems.append(f"{service.name}: {h.source.short} is not an ancestor of {h.target.short}")
    return problems


def repair_record_shas(repair: Repair, found: RepairHeads, service: ServiceConfig) -> tuple[Sha | None, Sha]:
    """A reconcile record restates the promotion it finishes or undoes (its old and new shas),
    so a reconcile that fails half-way still leaves a record that ``status`` reads as a split."""
    rec = repair.record.service(service.name)
    if rec is None or service.name in found.absent or service.name in found.left_alone:
        heads = found.heads[service.name]
        return heads.target, heads.source
    new, old = Sha(rec.new_sha), Sha(rec.old_sha) if rec.old_sha else None
    if repair.direction == "forward":
        return old, new
    assert old is not None  # a seeded target (no old sha) is absent or left alone
    return new, old


def finish_repair(report: Report, repair: Repair, found: RepairHeads) -> None:
    """Say what a rollback could not undo: lockstep never deletes a branch the promotion created."""
    run_id = repair.record.run_id
    for svc in report.services:
        if svc.name in found.absent:  # never created: it is missing, as it was before the run
            svc.old_target_sha = svc.final_target_sha = None
            svc.detail = f"'{svc.target}' does not exist, as before run {run_id}"
        if svc.name in found.left_alone:
            svc.outcome = Outcome.FAILED
            svc.detail = (
                f"run {run_id} created '{svc.target}'; lockstep never deletes a branch: "
                f"delete it in {svc.repo} by hand to finish the rollback"
            )
    if found.left_alone and report.result in (Result.PROMOTED, Result.NOOP):
        report.result = Result.SPLIT
        report.messages.append(
            "rollback incomplete: " + ", ".join(sorted(found.left_alone)) + " still at the new sha"
        )


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

"""``plan`` and ``status``: read-only views of what ``run`` would do and where targets are.

Both resolve every head fresh and test ancestry; neither writes anything.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from lockstep.config import Config, ServiceConfig
from lockstep.engine.reconcile import repair_commands
from lockstep.errors import ForgeError
from lockstep.forges.base import Forge, RecordStore
from lockstep.model import Action, Heads
from lockstep.records import Assessment, PromotionRecord, assess, latest_run


@dataclass(frozen=True)
class PlanRow:
    service: ServiceConfig
    heads: Heads | None
    action: Action | None
    error: str | None = None

    @property
    def relation(self) -> str:
        """The target's relation to its source, for ``status``."""
        if self.error or self.heads is None:
            return "unreadable"
        return {
            Action.NOOP: "equal",
            Action.SEED: "missing",
            Action.FAST_FORWARD: "behind",
            Action.NOT_FAST_FORWARD: "diverged",
        }[self.action or Action.NOOP]


async def _row(forge: Forge, service: ServiceConfig) -> PlanRow:
    try:
        heads = await forge.read_heads(service)
        ancestor = None
        if heads.target is not None and heads.target != heads.source:
            ancestor = await forge.is_ancestor(service, heads.target, heads.source)
        return PlanRow(service, heads, heads.action(ancestor))
    except ForgeError as exc:
        return PlanRow(service, None, None, str(exc))


async def build_plan(config: Config, forge: Forge) -> list[PlanRow]:
    try:
        return list(await asyncio.gather(*(_row(forge, s) for s in config.services)))
    finally:
        await forge.aclose()


@dataclass
class Status:
    rows: list[PlanRow]
    assessment: Assessment


async def build_status(config: Config, forge: Forge, records: RecordStore | None) -> Status:
    """Heads, relations and the verdict from the promotion records (read-only)."""
    try:
        rows_task = asyncio.gather(*(_row(forge, s) for s in config.services))
        error = None
        history: list[PromotionRecord] = []
        if records is not None:
            try:
                history = await records.read_all()
            except ForgeError as exc:
                error = f"cannot read the promotion records in {records.location}: {exc}"
        rows = list(await rows_task)
    finally:
        await forge.aclose()
    targets = {r.service.name: (r.heads.target if r.heads else None) for r in rows}
    unreadable = [r.service.name for r in rows if r.error]
    sources = {r.service.name: (r.heads.source if r.heads else None) for r in rows}
    assessment = assess(latest_run(history), targets, unreadable, sources)
    if error:
        assessment.verdict, assessment.explanation = "unknown", error
    return Status(rows, assessment)


def render_status(status: Status, config: Config, config_path: str) -> str:
    a = status.assessment
    lines = [render_plan(status.rows), ""]
    if a.record is not None:
        lines.append(
            f"last promotion record: run {a.record.run_id} ({a.record.time}, {a.record.mode}, "
            f"by {a.record.actor}, {a.record.phase})"
        )
    lines.append(f"verdict: {a.verdict}: {a.explanation}")
    if a.verdict == "split":
        commands = repair_commands(config, config_path)
        lines.append(f"to finish it:   {commands['forward']}")
        if "rollback" in commands:
            lines.append(f"to undo it:     {commands['rollback']}")
    return "\n".join(lines)


def _short(heads: Heads | None, which: str) -> str:
    if heads is None:
        return "?"
    sha = heads.source if which == "source" else heads.target
    return sha.short if sha else "(missing)"


def render_plan(rows: list[PlanRow]) -> str:
    width = max(len(r.service.name) for r in rows)
    lines = []
    for r in rows:
        what = r.action.value if r.action else f"error: {r.error}"
        lines.append(
            f"{r.service.name:<{width}}  {r.service.source} {_short(r.heads, 'source')}  "
            f"{r.service.target} {_short(r.heads, 'target')}  {what}"
        )
    return "\n".join(lines)


def plan_exit_code(rows: list[PlanRow]) -> int:
    """0 when ``run`` could proceed (or no-op); 1 when a read failed or a target is not a fast-forward."""
    return 1 if any(r.error or r.action == Action.NOT_FAST_FORWARD for r in rows) else 0

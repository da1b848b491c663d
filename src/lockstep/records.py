"""Promotion records and what they say about the targets now.

Every run that is about to move a target writes a ``started`` record (each
service's old and intended new sha) *before* its first push, and a
``finished`` record (with each service's real outcome) after it re-read the
targets.  A run killed between two pushes therefore still leaves a record, and
``status`` can tell a split from the records and the current heads alone.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from lockstep.model import Outcome, Sha
from lockstep.redact import scrub_data

Phase = Literal["started", "finished"]
Pending = Literal["pending"]  # a started record's outcome: the pushes had not happened yet


def _stored_outcome(value: object) -> Outcome | Pending:
    text = str(value)
    return "pending" if text == "pending" else Outcome.parse(text)


@dataclass(frozen=True)
class RecordService:
    name: str
    repo: str
    target: str
    old_sha: str | None  # None: the target did not exist (seeded)
    new_sha: str
    outcome: Outcome | Pending = "pending"

    @property
    def moves(self) -> bool:
        return self.old_sha != self.new_sha


@dataclass(frozen=True)
class PromotionRecord:
    """One run's manifest; ``phase`` says whether its pushes had finished when it was written."""

    gate: str
    run_id: str
    time: str
    actor: str
    mode: str  # gate | bypass | reconcile-forward | reconcile-rollback | rollback
    phase: Phase
    services: tuple[RecordService, ...]
    run_url: str | None = None
    audit: str | None = None  # where the bypass/reconcile justification was stored
    result: str | None = None  # the run's result, on finished records

    def to_json(self) -> dict[str, Any]:
        """The record as stored in the forge, scrubbed of secrets (a repository URL's password)."""
        data = asdict(self)
        data["kind"] = "lockstep-promotion"
        data["version"] = 1
        return scrub_data(data)

    def dumps(self) -> str:
        return json.dumps(self.to_json(), sort_keys=True, ensure_ascii=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PromotionRecord:
        """Parse one record; raise ValueError on anything malformed (records are read from the forge)."""
        if not isinstance(data, Mapping):
            raise ValueError("not a lockstep promotion record")
        try:
            if data.get("kind") != "lockstep-promotion":
                raise ValueError("not a lockstep promotion record")
            services = tuple(
                RecordService(
                    name=str(s["name"]),
                    repo=str(s["repo"]),
                    target=str(s["target"]),
                    old_sha=Sha(s["old_sha"]) if s["old_sha"] is not None else None,
                    new_sha=Sha(s["new_sha"]),
                    outcome=_stored_outcome(s.get("outcome", "pending")),
                )
                for s in data["services"]
            )
            phase = data["phase"]
            if phase not in ("started", "finished"):
                raise ValueError(f"unknown phase {phase!r}")
            return cls(
                gate=str(data["gate"]),
                run_id=str(data["run_id"]),
                time=str(data["time"]),
                actor=str(data["actor"]),
                mode=str(data["mode"]),
                phase=phase,
                services=services,
                run_url=data.get("run_url"),
                audit=data.get("audit"),
                result=data.get("result"),
            )
        except (KeyError, TypeError) as exc:
            raise ValueError(f"malformed promotion record: {exc}") from None

    def service(self, name: str) -> RecordService | None:
        return next((s for s in self.services if s.name == name), None)


def parse_lines(text: str) -> list[PromotionRecord]:
    """Records from JSON lines, oldest first; malformed lines are skipped (and counted by callers)."""
    records = []
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            records.append(PromotionRecord.from_json(json.loads(line)))
        except (ValueError, json.JSONDecodeError):
            continue
    return records


def _best_per_run(records: Sequence[PromotionRecord]) -> list[PromotionRecord]:
    """Each run's best record (its ``finished`` one if it has one), in the order the runs started."""
    best: dict[str, PromotionRecord] = {}
    for record in records:
        if record.run_id not in best or record.phase == "finished":
            best[record.run_id] = record
    return list(best.values())


# outcomes after which a target may be somewhere other than where the run found it
_MAY_HAVE_MOVED: frozenset[Outcome | Pending] = frozenset(
    {Outcome.ADVANCED, Outcome.ROLLED_BACK, Outcome.UNKNOWN, "pending"}
)


def latest_run(records: Sequence[PromotionRecord]) -> PromotionRecord | None:
    """The promotion to judge the targets against: the newest run that moved a target or may have.

    A run that moved nothing (its first push was refused, say) says nothing about where the
    targets stand: judging against it would call a split left by an earlier run "consistent".
    A run killed before its ``finished`` record may have moved anything, so it always counts.
    When no run moved anything, the newest run is the answer.
    """
    runs = _best_per_run(records)
    for record in reversed(runs):
        if record.phase == "started" or any(s.outcome in _MAY_HAVE_MOVED for s in record.services):
            return record
    return runs[-1] if runs else None


Position = Literal["at-record", "before-record", "drifted", "not-recorded", "unreadable"]


@dataclass
class ServiceStanding:
    name: str
    target_sha: str | None
    position: Position


@dataclass
class Assessment:
    """The verdict over all targets: consistent, split or drifted."""

    verdict: Literal["consistent", "split", "drifted", "unknown"]
    record: PromotionRecord | None
    standings: list[ServiceStanding] = field(default_factory=list)
    explanation: str = ""

    @property
    def advanced(self) -> list[str]:
        return [s.name for s in self.standings if s.position == "at-record" and self._moves(s.name)]

    @property
    def behind(self) -> list[str]:
        return [s.name for s in self.standings if s.position == "before-record"]

    def _moves(self, name: str) -> bool:
        svc = self.record.service(name) if self.record else None
        return bool(svc and svc.moves)


def assess(
    record: PromotionRecord | None,
    targets: Mapping[str, str | None],
    unreadable: Collection[str] = (),
    sources: Mapping[str, str | None] | None = None,
) -> Assessment:
    """Compare the current target heads (``name -> sha``, ``None`` = missing) to the latest record.

    A target moved outside lockstep is ``drifted`` unless every target now equals its
    source (``sources``): that set is consistent whoever moved it.
    """
    standings: list[ServiceStanding] = []
    for name, sha in targets.items():
        svc = record.service(name) if record else None
        position: Position
        if name in unreadable:
            position = "unreadable"
        elif svc is None:
            position = "not-recorded"
        elif sha == svc.new_sha:
            position = "at-record"
        elif sha == svc.old_sha:
            position = "before-record"
        else:
            position = "drifted"
        standings.append(ServiceStanding(name, None if name in unreadable else sha, position))
    a = Assessment("consistent", record, standings)
    if any(s.position == "unreadable" for s in standings):
        a.verdict, a.explanation = "unknown", "some targets could not be read"
        return a
    if record is None:
        a.explanation = "never promoted by lockstep"
        return a
    drifted = [s.name for s in standings if s.position in ("drifted", "not-recorded")]
    in_step = sources is not None and all(t is not None and t == sources.get(n) for n, t in targets.items())
    if drifted and in_step:
        a.explanation = (
            f"every target equals its source ({', '.join(drifted)} moved outside lockstep "
            f"since run {record.run_id})"
        )
    elif drifted:
        a.verdict = "drifted"
        a.explanation = f"moved outside lockstep since run {record.run_id}: {', '.join(drifted)}"
    elif a.advanced and a.behind:
        a.verdict = "split"
        a.explanation = f"run {record.run_id} advanced {', '.join(a.advanced)} but not {', '.join(a.behind)}"
    elif a.behind:
        a.explanation = f"run {record.run_id} moved nothing; targets are at the previous promotion"
    else:
        a.explanation = f"every target is at run {record.run_id}'s shas"
    return a

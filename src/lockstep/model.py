"""Value types shared by the gate, the forges and the reports.

They are plain frozen dataclasses and enums so that every layer can pass them
around without importing any I/O code.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum

_SHA_RE = re.compile(r"[0-9a-f]{40}")


def service_slug(name: str) -> str:
    """A service name as an identifier: ``Backend-Service`` → ``BACKEND_SERVICE``.

    The one rule behind ``LOCKSTEP_<SLUG>_SHA`` and the Actions output names.
    """
    return re.sub(r"[^A-Z0-9]+", "_", name.upper()).strip("_")


class Sha(str):
    """A full 40-hex lowercase commit id; constructing one validates it."""

    __slots__ = ()

    def __new__(cls, value: str) -> Sha:
        if not isinstance(value, str) or not _SHA_RE.fullmatch(value):
            raise ValueError(f"not a 40-hex commit sha: {value!r:.60}")
        return super().__new__(cls, value)

    @property
    def short(self) -> str:
        return self[:7]


class Action(StrEnum):
    """What ``run`` would do to one target, decided from its heads."""

    NOOP = "noop"
    SEED = "seed"
    FAST_FORWARD = "fast-forward"
    NOT_FAST_FORWARD = "not fast-forward"


class Outcome(StrEnum):
    """What happened to one target: a stable identifier, stored in the promotion records.

    The words the summary and the JSON report show for it are the report's
    (:data:`lockstep.report.OUTCOME_LABELS`), so they can change without changing what
    a record means.
    """

    ADVANCED = "advanced"
    UNCHANGED = "unchanged"
    SKIPPED = "skipped"
    FAILED = "failed"
    CANCELLED = "cancelled"
    UNKNOWN = "unknown"
    ROLLED_BACK = "rolled back"  # spelled as the records have always stored it

    @classmethod
    def parse(cls, text: str) -> Outcome:
        """An outcome as a record stores it; records written before the identifiers hold the
        summary's words, and an outcome this version does not know counts as unknown (it may
        have moved the target: judging against it is the safe side)."""
        legacy = {"unchanged (already at main)": cls.UNCHANGED, "skipped (earlier step failed)": cls.SKIPPED}
        if text in legacy:
            return legacy[text]
        try:
            return cls(text)
        except ValueError:
            return cls.UNKNOWN


class StepStatus(StrEnum):
    PASSED = "passed"
    FAILED = "failed"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"


class Result(StrEnum):
    """The run's overall result; each maps to one exit code."""

    PROMOTED = "promoted"
    NOOP = "noop"
    BLOCKED = "blocked"
    SPLIT = "split"
    ROLLED_BACK = "rolled-back"  # a split undone by recovery.on_split = "rollback": nothing promoted
    UNKNOWN = "unknown"
    ERROR = "error"

    @property
    def exit_code(self) -> int:
        return {
            Result.PROMOTED: 0,
            Result.NOOP: 0,
            Result.BLOCKED: 1,
            Result.SPLIT: 3,
            Result.ROLLED_BACK: 1,
            Result.UNKNOWN: 3,
            Result.ERROR: 2,
        }[self]


@dataclass(frozen=True)
class Heads:
    """A service's source and target heads as read in this run (target None = missing)."""

    source: Sha
    target: Sha | None

    def action(self, target_is_ancestor: bool | None) -> Action:
        if self.target is None:
            return Action.SEED
        if self.target == self.source:
            return Action.NOOP
        return Action.FAST_FORWARD if target_is_ancestor else Action.NOT_FAST_FORWARD


class PushStatus(StrEnum):
    """What a forge knows about one write after it returns."""

    LANDED = "landed"  # the target is now at the new sha (confirmed)
    REJECTED = "rejected"  # the forge refused; the target did not move (confirmed)
    CONCURRENT = "concurrent"  # the target is at neither the old nor the new sha
    UNKNOWN = "unknown"  # could not be confirmed either way


@dataclass(frozen=True)
class TargetCheck:
    """A target re-read just before the pushes: where it is now, and whether it can fast-forward."""

    current: Sha | None
    fast_forward: bool


@dataclass(frozen=True)
class PushResult:
    status: PushStatus
    detail: str = ""


@dataclass
class StepReport:
    """One gate step (resolve, health, version, a check, audit, preflight, promote, verify)."""

    name: str
    status: StepStatus
    seconds: float = 0.0
    detail: str = ""
    output_tail: str | None = None


@dataclass
class ServiceReport:
    """Everything the report says about one service."""

    name: str
    repo: str
    source: str
    target: str
    source_sha: str | None = None
    old_target_sha: str | None = None
    final_target_sha: str | None = None
    action: Action | None = None
    did_push: bool = False
    outcome: Outcome = Outcome.SKIPPED
    detail: str = ""
    reread_failed: bool = False  # the final re-read failed: final_target_sha is not known


@dataclass
class AuditInfo:
    """The bypass audit record's fate, for the summary footer."""

    requested: bool = False
    stored: bool = False
    suppressed_noop: bool = False
    location: str | None = None
    error: str | None = None


@dataclass
class Report:
    gate: str
    mode: str  # "gate" or "bypass"
    actor: str
    run_url: str | None
    started_at: str
    finished_at: str = ""
    result: Result = Result.ERROR
    services: list[ServiceReport] = field(default_factory=list)
    steps: list[StepReport] = field(default_factory=list)
    audit: AuditInfo = field(default_factory=AuditInfo)
    messages: list[str] = field(default_factory=list)
    runbook_url: str | None = None
    warnings: list[str] = field(default_factory=list)
    run_id: str = ""
    record: str | None = None  # where the promotion record was written
    fix_command: str | None = None  # the exact command that repairs a split, when there is one
    rollback: Report | None = None  # the automatic rollback that followed a split (recovery.on_split)

    @property
    def exit_code(self) -> int:
        return self.result.exit_code

"""The Forge protocol: the only way the gate reads or moves a branch.

A forge knows how to read a service's heads, test ancestry, and move a target
with compare-and-swap semantics.  The gate never learns *how* (git CLI, REST),
so a new forge slots in without touching it.  Forges raise
:class:`lockstep.errors.ForgeError` with a message that names the repo, the
branch and, where there is one, the status.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Protocol

from lockstep.checks import CheckResult
from lockstep.config import CheckConfig, ServiceConfig
from lockstep.model import Heads, PushResult, Sha, TargetCheck
from lockstep.records import PromotionRecord


class Forge(Protocol):
    """Reads and compare-and-swap writes of branch heads, per service."""

    async def read_heads(self, service: ServiceConfig) -> Heads:
        """Read source and target heads fresh.

        A missing target gives ``Heads.target is None`` (seed); a missing source
        raises ForgeError naming repo and branch; so does any other failure.
        """
        ...

    async def read_target(self, service: ServiceConfig) -> Sha | None:
        """Re-read only the target head (used to verify after pushes)."""
        ...

    async def is_ancestor(self, service: ServiceConfig, ancestor: Sha, descendant: Sha) -> bool:
        """True iff ``ancestor`` is reachable from ``descendant`` (fast-forward possible)."""
        ...

    async def check_target(self, service: ServiceConfig, new: Sha) -> TargetCheck:
        """Re-read the target and test whether it can fast-forward to ``new``, in as few requests as the
        forge allows (GitHub: one compare by branch name). The gate calls it for every service, all at
        once, right before the first push, so the pushes that follow are compare-and-swap on a head
        read a moment ago and go out back to back."""
        ...

    async def reserve_writes(self, pushes: Sequence[ServiceConfig], others: int) -> None:
        """Called before the pre-push re-read: wait until the pushes (and ``others`` writes with the
        read credential: the records) fit in the forge's write limits, so no limit is met between two
        pushes; warn when they cannot fit at all (GitHub: about 80 writes a minute). A forge without
        limits returns at once; ForgeError when the wait would be too long (nothing was pushed)."""
        ...

    async def advance(self, service: ServiceConfig, old: Sha, new: Sha) -> PushResult:
        """Move the target from ``old`` to ``new``: fast-forward only, compare-and-swap on ``old``.

        Never forced, never retried blindly: after an unclear result the forge
        re-reads the ref and reports LANDED (at new), REJECTED (at old),
        CONCURRENT (elsewhere) or UNKNOWN (unreadable).
        """
        ...

    async def create(self, service: ServiceConfig, new: Sha) -> PushResult:
        """Create the missing target at ``new``; fails if it exists by now."""
        ...

    async def rewind(self, service: ServiceConfig, current: Sha, to: Sha) -> PushResult:
        """Move the target back from ``current`` to ``to``: only ``reconcile --rollback`` does this.

        Compare-and-swap on ``current``; classified like ``advance``.
        """
        ...

    async def aclose(self) -> None:
        """Release connections and temporary state."""
        ...


class AuditSink(Protocol):
    """Stores the bypass audit record before any push."""

    async def store(self, markdown: str, record: dict[str, object]) -> str:
        """Store the record; return where it went (URL or path). Raise AuditError on failure."""
        ...


class RecordStore(Protocol):
    """Where promotion records live (see :mod:`lockstep.records`)."""

    @property
    def location(self) -> str:
        """A human description of where records go."""
        ...

    async def write(self, record: PromotionRecord) -> str:
        """Append a record; return where it went. Raise ForgeError on failure."""
        ...

    async def read_all(self) -> list[PromotionRecord]:
        """Every record, oldest first."""
        ...

    async def read_recent(self) -> list[PromotionRecord]:
        """Enough records, oldest first, to tell the newest runs apart (may cost less than all)."""
        ...


# An external gate (a commit status or check run another system posts): check, the config's
# services, each service's resolved source sha -> the check's result.
ExternalCheck = Callable[[CheckConfig, Sequence[ServiceConfig], Mapping[str, Sha]], Awaitable[CheckResult]]


@dataclass
class Wiring:
    """Everything one forge provides to a run, built from the config before any request.

    The engine only ever sees this: a new forge is a folder under ``forges/`` whose
    ``wire(config, env)`` returns one, and a line in :data:`lockstep.forges.FORGES`.
    """

    forge: Forge
    audit_sink: Callable[[], AuditSink] | None
    secret_vars: frozenset[str]
    records: RecordStore | None = None
    external_check: ExternalCheck | None = None  # None: this forge has no external gates
    ref_lock: Callable[[], AbstractAsyncContextManager[object]] | None = None  # for [gate] lock = "ref"

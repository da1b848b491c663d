"""An in-memory forge for fast engine tests: a commit graph and branches per repository.

It keeps the :class:`~lockstep.forges.base.Forge` contract as strictly as the real forges
(compare-and-swap on the old sha, fast-forward only except ``rewind``, a refusal leaves the
branch where it was), and it can refuse pushes to a repository, so the engine runs in-process
in milliseconds with the same semantics the git and GitHub forges are tested for.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field

from lockstep.config import ServiceConfig
from lockstep.errors import ForgeError
from lockstep.model import Heads, PushResult, PushStatus, Sha, TargetCheck
from lockstep.records import PromotionRecord

_ids = itertools.count(1)


def new_sha() -> Sha:
    return Sha(f"{next(_ids):040x}")


@dataclass
class MemoryRepo:
    parents: dict[str, tuple[str, ...]] = field(default_factory=dict)
    branches: dict[str, str] = field(default_factory=dict)
    refuse_pushes: bool = False

    def commit(self, *parents: str) -> Sha:
        sha = new_sha()
        self.parents[sha] = parents
        return sha

    def reaches(self, descendant: str, ancestor: str) -> bool:
        todo, seen = [descendant], set()
        while todo:
            sha = todo.pop()
            if sha == ancestor:
                return True
            if sha not in seen:
                seen.add(sha)
                todo.extend(self.parents.get(sha, ()))
        return False


class MemoryForge:
    """``repos`` maps a service's ``repo`` to its :class:`MemoryRepo`."""

    def __init__(self) -> None:
        self.repos: dict[str, MemoryRepo] = {}
        self.writes: list[tuple[str, str | None, str]] = []  # (repo, old, new) of every landed write

    def _repo(self, service: ServiceConfig) -> MemoryRepo:
        try:
            return self.repos[service.repo]
        except KeyError:
            raise ForgeError(f"{service.repo}: repository not found") from None

    async def read_heads(self, service: ServiceConfig) -> Heads:
        repo = self._repo(service)
        source = repo.branches.get(service.source)
        if source is None:
            raise ForgeError(f"{service.repo}: source branch '{service.source}' not found")
        target = repo.branches.get(service.target)
        return Heads(Sha(source), Sha(target) if target else None)

    async def read_target(self, service: ServiceConfig) -> Sha | None:
        target = self._repo(service).branches.get(service.target)
        return Sha(target) if target else None

    async def is_ancestor(self, service: ServiceConfig, ancestor: Sha, descendant: Sha) -> bool:
        return self._repo(service).reaches(descendant, ancestor)

    async def check_target(self, service: ServiceConfig, new: Sha) -> TargetCheck:
        current = await self.read_target(service)
        return TargetCheck(current, current is None or self._repo(service).reaches(new, current))

    def _write(self, service: ServiceConfig, old: Sha | None, new: Sha, *, forward: bool) -> PushResult:
        repo = self._repo(service)
        now = repo.branches.get(service.target)
        if repo.refuse_pushes:
            return PushResult(PushStatus.REJECTED, f"{service.repo}: push to '{service.target}' refused")
        if now != old:
            return PushResult(PushStatus.CONCURRENT, f"{service.repo}: '{service.target}' is at {now}")
        if forward and old is not None and not repo.reaches(new, old):
            return PushResult(PushStatus.REJECTED, f"{service.repo}: not a fast-forward")
        repo.branches[service.target] = new
        self.writes.append((service.repo, old, new))
        return PushResult(PushStatus.LANDED)

    async def reserve_writes(self, pushes: Sequence[ServiceConfig], others: int) -> None:
        """No write limits to plan for."""

    async def advance(self, service: ServiceConfig, old: Sha, new: Sha) -> PushResult:
        return self._write(service, old, new, forward=True)

    async def create(self, service: ServiceConfig, new: Sha) -> PushResult:
        return self._write(service, None, new, forward=True)

    async def rewind(self, service: ServiceConfig, current: Sha, to: Sha) -> PushResult:
        return self._write(service, current, to, forward=False)

    async def aclose(self) -> None:
        return None


class MemoryRecords:
    """A :class:`~lockstep.forges.base.RecordStore` in a list."""

    location = "memory"

    def __init__(self) -> None:
        self.records: list[PromotionRecord] = []

    async def read_all(self) -> list[PromotionRecord]:
        return list(self.records)

    async def read_recent(self) -> list[PromotionRecord]:
        return list(self.records)

    async def write(self, record: PromotionRecord) -> str:
        self.records.append(record)
        return self.location

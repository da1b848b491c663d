"""GitHub's published write limits, planned before the first push instead of met between two.

Why: GitHub accepts about 80 content-creating requests a minute and 500 an hour
(``docs/github-api.md``, "At scale"); the answer past them is a 403 with ``retry-after``.
Met in the middle of the pushes, that wait is a split prod for as long as it lasts (measured at
N = 50 before this module: 61.7 s).  So the forge counts every write it sends, per token, and
before the pre-push re-read it asks whether the run's remaining writes fit; when they would not,
it waits *then* (nothing is split yet, and the re-read after the wait is fresh).

GitHub does not say whether the limits count per token or per account, and writes made by other
processes with the same token are invisible here: the plan is a floor, and a refusal that comes
anyway is still retried once after its ``retry-after`` (see ``GitHubForge._write``).
"""

from __future__ import annotations

import hashlib
import math
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # http.py counts its writes here
    from lockstep.forges.github.http import Secret

__all__ = ["MARGIN", "MINUTE_WAIT", "WINDOWS", "Plan", "WriteBudget"]

# (seconds, writes GitHub accepts in them): its published secondary limits
WINDOWS = ((60.0, 80), (3600.0, 500))
MARGIN = 0.5  # seconds past a window's edge: GitHub's clock and ours need not agree to the millisecond
MINUTE_WAIT = WINDOWS[0][0] + MARGIN  # the longest wait the minute's window can ask for


@dataclass(frozen=True)
class Plan:
    """What the budget says about writes still to send: wait this long first; or they cannot fit."""

    wait: float = 0.0
    why: str = ""  # what the wait is for, or why no wait can help
    fits: bool = True  # False: more writes than one window allows (prod splits while they wait)


@dataclass
class WriteBudget:
    """The writes this process sent, per token, in the longest window."""

    clock: Callable[[], float] = time.monotonic
    _sent: dict[str, deque[float]] = field(default_factory=dict)

    @staticmethod
    def _key(token: Secret) -> str:
        return hashlib.sha256(token.reveal().encode()).hexdigest()  # never the value itself

    def note(self, token: Secret) -> None:
        """One write sent with ``token`` (applied or not: GitHub counts what it received)."""
        now, longest = self.clock(), max(seconds for seconds, _ in WINDOWS)
        sent = self._sent.setdefault(self._key(token), deque())
        sent.append(now)
        while sent[0] <= now - longest:
            sent.popleft()

    def plan(self, needs: Iterable[tuple[Secret, int]]) -> Plan:
        """How long to wait before sending ``count`` more writes with each ``token`` (several
        services holding one token value count together)."""
        tokens: dict[str, Secret] = {}
        counts: dict[str, int] = {}
        for token, count in needs:
            key = self._key(token)
            tokens.setdefault(key, token)
            counts[key] = counts.get(key, 0) + count
        plans = [self._plan(tokens[key], count, seconds, limit)
                 for key, count in counts.items() for seconds, limit in WINDOWS]
        found = [p for p in plans if p is not None]
        if not found:
            return Plan()
        longest = max(found, key=lambda p: p.wait)
        stuck = next((p for p in found if not p.fits), None)
        return Plan(longest.wait, (stuck or longest).why, fits=stuck is None)

    def _plan(self, token: Secret, count: int, seconds: float, limit: int) -> Plan | None:
        now = self.clock()
        recent = [t for t in self._sent.get(self._key(token), ()) if t > now - seconds]
        over = len(recent) + count - limit
        if over <= 0:
            return None
        label = f"{limit} writes {'a minute' if seconds == 60 else 'an hour'}"
        if count > limit:  # cannot fit: start from an empty window, and say the pushes will stall
            wait = recent[-1] + seconds - now + MARGIN if recent else 0.0
            return Plan(wait, f"{count} writes with the token from ${token.source} exceed GitHub's "
                        f"{label}", fits=False)
        return Plan(recent[over - 1] + seconds - now + MARGIN,
                    f"{count} more writes with the token from ${token.source} would pass GitHub's "
                    f"{label} ({len(recent)} sent in the last {math.ceil(seconds / 60)} min)")

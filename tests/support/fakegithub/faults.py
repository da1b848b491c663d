"""Fault injection: the failures a GitHub client must survive, made reproducible.

A :class:`Fault` says *what* goes wrong; :meth:`FakeGitHub.inject` says *which*
request it hits (method, path regex, nth match, how many times).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

FaultKind = Literal["status", "drop_before", "drop_after", "delay", "rate_limit"]


@dataclass(frozen=True)
class Fault:
    """One way a request can fail. Build with the class methods, not the constructor."""

    kind: FaultKind
    code: int = 0
    message: str | None = None
    headers: tuple[tuple[str, str], ...] = ()
    seconds: float = 0.0
    limit: Literal["primary", "secondary"] = "primary"
    retry_after: int | None = None
    reset_in: float = 1.0

    @classmethod
    def status(cls, code: int, message: str | None = None, headers: Mapping[str, str] | None = None) -> Fault:
        """Answer ``code`` with a GitHub-shaped error body; the request is NOT applied."""
        return cls("status", code=code, message=message, headers=tuple((headers or {}).items()))

    @classmethod
    def drop_before(cls) -> Fault:
        """Close the connection without answering; the request is NOT applied."""
        return cls("drop_before")

    @classmethod
    def drop_after(cls) -> Fault:
        """Apply the request, then close without answering: "push landed, response lost"."""
        return cls("drop_after")

    @classmethod
    def delay(cls, seconds: float) -> Fault:
        """Sleep (outside the state lock), then handle normally: for timeouts and races."""
        return cls("delay", seconds=seconds)

    @classmethod
    def rate_limit(
        cls,
        kind: Literal["primary", "secondary"] = "primary",
        status: Literal[403, 429] = 403,
        retry_after: float | None = None,
        reset_in: float = 1.0,
    ) -> Fault:
        """GitHub's rate-limit answer; primary: remaining 0 + reset; secondary: its message."""
        if status not in (403, 429):
            raise ValueError("GitHub rate limits answer 403 or 429")
        return cls(
            "rate_limit",
            code=status,
            limit=kind,
            retry_after=None if retry_after is None else math.ceil(retry_after),
            reset_in=reset_in,
        )


@dataclass
class Injection:
    """A registered fault and its counters (``seen`` matching requests, ``fired`` faults).

    Every injection counts every request it matches; when several are due on the
    same request the earliest registered fires and the others wait for the next match.
    """

    fault: Fault
    method: str | None
    path: re.Pattern[str] | None
    nth: int
    times: int | None
    seen: int = 0
    fired: int = 0

    def matches(self, method: str, path: str) -> bool:
        """Method (case-insensitive) and full-path regex; None matches anything."""
        if self.method is not None and self.method.upper() != method:
            return False
        return self.path is None or self.path.fullmatch(path) is not None

    @property
    def due(self) -> bool:
        """Reached the nth match and not yet exhausted."""
        return self.seen >= self.nth and (self.times is None or self.fired < self.times)

    @property
    def exhausted(self) -> bool:
        """Will never fire again."""
        return self.times is not None and self.fired >= self.times

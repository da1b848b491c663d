"""GitHub's published secondary rate limits, enforced by the fake by default.

Why: a gate that is correct against a forgiving fake can still split prod on the real thing.
At N = 50 GitHub refuses the 81st write in a minute, and a refusal between two pushes is a
split prod for as long as the wait (``docs/github-api.md``, "At scale").  So the fake refuses
exactly where GitHub says it will:

* at most :attr:`concurrent` requests in flight at once (100);
* at most :attr:`points_per_minute` points per endpoint in any 60 s (900; GET, HEAD and
  OPTIONS cost 1, writes 5), and :attr:`graphql_points_per_minute` for ``POST /graphql``
  (2,000; a query 1, a mutation 5, told apart by parsing the operation);
* at most :attr:`writes_per_minute` content-creating requests in any 60 s (80) and
  :attr:`writes_per_hour` in any hour (500).  GitHub does not list which endpoints create
  content, so every REST POST, PATCH, PUT and DELETE counts, as ``docs/github-api.md`` says to
  assume, and every GraphQL mutation; a GraphQL query is a read though it is sent as a POST.

Windows are kept per credential (GitHub applies secondary limits per user or App); a refused
request counts against nothing and is not applied.  The answer is GitHub's: 403 with "You have
exceeded a secondary rate limit" and ``retry-after`` = the whole seconds until the window has
room again.  Tests move time with :meth:`advance` instead of sleeping a minute, and may lower a
limit to make a focused case cheap.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from graphql import GraphQLError, OperationDefinitionNode, OperationType, parse

WRITE_METHODS = frozenset({"POST", "PATCH", "PUT", "DELETE"})
MESSAGE = "You have exceeded a secondary rate limit. Please wait a few minutes before you try again."

# Path parts that vary per call of one endpoint: owner/repo, then ids, shas and ref or file names.
_ENDPOINT_PARTS = (
    (re.compile(r"^/repos/[^/]+/[^/]+"), "/repos/{owner}/{repo}"),
    (re.compile(r"/git/(refs|ref|matching-refs)/.+$"), r"/git/\1/{ref}"),
    (re.compile(r"/(branches|contents|compare)/.+$"), r"/\1/{name}"),
    (re.compile(r"/[0-9a-f]{40}(?=/|$)"), "/{sha}"),
    (re.compile(r"/\d+(?=/|$)"), "/{id}"),
)


def endpoint(method: str, path: str) -> str:
    """``PATCH /repos/{owner}/{repo}/git/refs/{ref}``: the unit GitHub's per-endpoint points count."""
    for pattern, replacement in _ENDPOINT_PARTS:
        path = pattern.sub(replacement, path)
    return f"{method} {path}"


def is_mutation(body: bytes) -> bool:
    """Whether a ``POST /graphql`` body runs a mutation (its operation's type, not a word in it)."""
    try:
        request = json.loads(body)
        document = parse(request["query"])
    except (ValueError, TypeError, KeyError, GraphQLError):
        return False  # GitHub answers it with an error; it costs what a query costs
    name = request.get("operationName")
    return any(
        isinstance(d, OperationDefinitionNode)
        and d.operation is OperationType.MUTATION
        and (name is None or (d.name is not None and d.name.value == name))
        for d in document.definitions
    )


def _cost(method: str, path: str, body: bytes) -> tuple[int, bool]:
    """(points, whether it creates content): a GraphQL query is a read, though it is a POST."""
    if path == "/graphql":
        mutation = is_mutation(body)
        return (5 if mutation else 1), mutation
    write = method in WRITE_METHODS
    return (5 if write else 1), write


@dataclass
class _Window:
    """Timestamps (and weights) inside a rolling window."""

    seconds: float
    events: deque[tuple[float, int]] = field(default_factory=deque)

    def used(self, now: float) -> int:
        while self.events and self.events[0][0] <= now - self.seconds:
            self.events.popleft()
        return sum(weight for _, weight in self.events)

    def wait(self, now: float, weight: int, limit: int) -> float:
        """Seconds until ``weight`` more fits under ``limit`` (0: it fits now)."""
        used = self.used(now)
        if used + weight <= limit:
            return 0.0
        for at, w in self.events:
            used -= w
            if used + weight <= limit:
                return at + self.seconds - now
        return self.seconds


@dataclass
class SecondaryLimits:
    """The limits above; :meth:`admit` is called for every request, under the server's lock."""

    clock: Callable[[], float] = time.monotonic
    concurrent: int = 100
    points_per_minute: int = 900
    graphql_points_per_minute: int = 2000
    writes_per_minute: int = 80
    writes_per_hour: int = 500
    enabled: bool = True
    offset: float = 0.0
    in_flight: int = 0
    refused: int = 0
    _points: dict[tuple[str, str], _Window] = field(default_factory=dict)
    _writes_minute: dict[str, _Window] = field(default_factory=dict)
    _writes_hour: dict[str, _Window] = field(default_factory=dict)

    def now(self) -> float:
        return self.clock() + self.offset

    def advance(self, seconds: float) -> None:
        """Move the limits' clock on (instead of waiting for a window to pass)."""
        self.offset += seconds

    def admit(self, method: str, path: str, body: bytes, who: str) -> int | None:
        """None when the request may go on (it is then counted and in flight until :meth:`done`);
        else the ``retry-after`` seconds of the refusal."""
        if not self.enabled:
            self.in_flight += 1
            return None
        if self.in_flight >= self.concurrent:
            self.refused += 1
            return 1
        now, (points, write) = self.now(), _cost(method, path, body)
        per_endpoint = self._points.setdefault((who, endpoint(method, path)), _Window(60.0))
        limit = self.graphql_points_per_minute if path == "/graphql" else self.points_per_minute
        waits = [per_endpoint.wait(now, points, limit)]
        if write:
            minute = self._writes_minute.setdefault(who, _Window(60.0))
            hour = self._writes_hour.setdefault(who, _Window(3600.0))
            waits += [minute.wait(now, 1, self.writes_per_minute), hour.wait(now, 1, self.writes_per_hour)]
        wait = max(waits)
        if wait > 0:
            self.refused += 1
            return max(1, math.ceil(wait))
        per_endpoint.events.append((now, points))
        if write:
            self._writes_minute[who].events.append((now, 1))
            self._writes_hour[who].events.append((now, 1))
        self.in_flight += 1
        return None

    def done(self) -> None:
        """The admitted request was answered (or dropped)."""
        self.in_flight -= 1

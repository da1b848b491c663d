"""The HTTP layer under the GitHub forge: one pooled client, tokens, bounded retries.

Kept apart from :mod:`lockstep.forges.github.forge` so the forge reads as policy
(what a status *means* for a branch) while this module owns mechanics:

* **One pooled ``httpx.AsyncClient``** with ``follow_redirects=False``: a 301
  on a head lookup may point at a *different* (renamed) branch, so redirects
  are answers for the caller to judge, never something to follow silently.
* **Tokens travel only in the ``Authorization`` header of each request**, are
  held in :class:`Secret` (whose ``repr``/``str`` never show the value) and
  registered with :mod:`lockstep.redact`; every server text this module
  passes on goes through :func:`lockstep.redact.clean_text`, so a token cannot
  leak into an exception, a log line or a report even if GitHub (or a proxy)
  echoes it back.
* **Only idempotent reads retry** (:meth:`GitHubHttp.get`): 5xx, timeouts,
  connection errors, 429, and 403 that is a rate limit (``x-ratelimit-remaining:
  0`` or GitHub's documented "secondary rate limit" message).  Waits honour
  ``retry-after`` and ``x-ratelimit-reset``, back off exponentially with jitter
  otherwise, and are bounded by :class:`RetryPolicy`; a wait the server demands
  that would overrun the budget makes the read give up *at once*, saying so,
  rather than sleeping for nothing.  Writes go through :meth:`GitHubHttp.send`,
  a single attempt: the forge decides what an unclear write means.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx

from lockstep import __version__, log, redact
from lockstep.errors import UsageError
from lockstep.forges.github.budget import WriteBudget
from lockstep.redact import clean_text

__all__ = [
    "API_VERSION",
    "DEFAULT_API_URL",
    "GitHubHttp",
    "Reply",
    "RetryPolicy",
    "Secret",
    "api_url",
]

API_VERSION = "2022-11-28"
DEFAULT_API_URL = "https://api.github.com"


def api_url(env: Mapping[str, str]) -> str:
    """``$GITHUB_API_URL`` (GitHub Enterprise Server), else github.com's; checked before any request,
    and never one with credentials in it (they would be printed wherever the URL is)."""
    raw = env.get("GITHUB_API_URL", "").strip() or DEFAULT_API_URL
    parts = urlsplit(raw)
    if "@" in parts.netloc:
        raise UsageError("GITHUB_API_URL must not contain credentials (tokens go in GITHUB_TOKEN)")
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        raise UsageError(f"GITHUB_API_URL must be an http(s) URL, got {raw!r:.100}")
    return raw.rstrip("/")

class Secret:
    """A token value that never prints: ``repr``, ``str`` and f-strings show its source only.

    Making one registers the value with :mod:`lockstep.redact`, so no output can show it.
    """

    __slots__ = ("_value", "source")

    def __init__(self, value: str, source: str) -> None:
        self._value = value
        self.source = source
        redact.add(value)

    def reveal(self) -> str:
        """The raw value, for the ``Authorization`` header and nothing else."""
        return self._value

    def __repr__(self) -> str:
        return f"<token from ${self.source}>"

    __str__ = __repr__


@dataclass(frozen=True)
class RetryPolicy:
    """Bounds on retrying idempotent reads (tests shrink these to milliseconds).

    ``tries`` counts attempts, the first included; ``budget`` caps the wall time
    from the first attempt to the start of the last; ``max_wait`` caps a single
    wait.  ``secondary_wait`` is the pause GitHub asks for after a secondary
    rate limit that came without ``retry-after`` ("at least a minute").
    """

    tries: int = 4
    budget: float = 60.0
    max_wait: float = 60.0
    base_delay: float = 1.0
    jitter: float = 0.5
    secondary_wait: float = 60.0


@dataclass
class Reply:
    """The outcome of one exchange: a response, or the transport error that replaced it."""

    response: httpx.Response | None
    error: str = ""  # "ReadTimeout: timed out" when there is no response
    transient_error: bool = False  # the transport error is worth retrying (reads)
    not_sent: bool = False  # the connection failed before the request left
    attempts: int = 1
    gave_up: str = ""  # why retrying stopped, for the error message

    @property
    def status(self) -> int | None:
        return None if self.response is None else self.response.status_code

    def json_object(self) -> dict[str, Any] | None:
        """The body when it is a JSON object, else None."""
        if self.response is None:
            return None
        try:
            body = self.response.json()
        except ValueError:
            return None
        return body if isinstance(body, dict) else None

    def header(self, name: str) -> str | None:
        return None if self.response is None else self.response.headers.get(name)

    def message(self) -> str:
        """GitHub's ``message`` (plus 422 ``errors[].message``), sanitised and bounded."""
        body = self.json_object()
        parts: list[str] = []
        if body is not None:
            if isinstance(body.get("message"), str):
                parts.append(body["message"])
            errors = body.get("errors")
            if isinstance(errors, list):
                for item in errors[:3]:
                    if isinstance(item, dict) and isinstance(item.get("message"), str):
                        parts.append(item["message"])
                    elif isinstance(item, str):
                        parts.append(item)
        if not parts and self.response is not None:
            parts.append(self.response.reason_phrase or "")
        return clean_text("; ".join(p for p in parts if p))

    def describe(self) -> str:
        """``HTTP 503: Service Unavailable`` or ``no response (ReadTimeout: timed out)``."""
        if self.response is None:
            return f"no response ({self.error})"
        message = self.message()
        return f"HTTP {self.status}" + (f": {message}" if message else "")


def is_rate_limited(reply: Reply) -> bool:
    """403/429 that GitHub documents as a rate limit (not a permission problem)."""
    if reply.status not in (403, 429):
        return False
    if reply.header("x-ratelimit-remaining") == "0":
        return True
    return "secondary rate limit" in reply.message().lower()


def _number(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        number = float(value.strip())
    except ValueError:
        return None
    return number if number >= 0 and number == number and number != float("inf") else None


class GitHubHttp:
    """The pooled client plus the retry loop for reads.

    ``sleep``, ``rng``, ``clock`` and ``wall`` are injectable so tests can run
    the whole backoff logic in milliseconds and deterministically.
    """

    def __init__(
        self,
        api_url: str,
        *,
        timeout: float,
        retry: RetryPolicy,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.api_url = api_url.rstrip("/")
        self.retry = retry
        self._sleep = sleep
        self._rng = rng or random.Random()  # noqa: S311 (jitter, not cryptography)
        self._clock = clock
        self._wall = wall
        self.budget = WriteBudget(clock)  # every write sent, for planning the next ones
        self._client = httpx.AsyncClient(
            follow_redirects=False,
            timeout=httpx.Timeout(timeout),
            transport=transport,
            headers={
                "Accept": "application/vnd.github+json",
                "X-GitHub-Api-Version": API_VERSION,
                "User-Agent": f"lockstep/{__version__}",
            },
        )

    def __repr__(self) -> str:
        return f"GitHubHttp({self.api_url!r})"

    async def aclose(self) -> None:
        await self._client.aclose()

    async def send(
        self,
        method: str,
        path: str,
        *,
        token: Secret,
        json_body: Mapping[str, object] | None = None,
        params: Mapping[str, str] | None = None,
    ) -> Reply:
        """One attempt, never retried; transport failures become a :class:`Reply`.

        ``path`` is under the REST root, or a whole URL this class made (:attr:`graphql_url`)."""
        headers = {"Authorization": f"Bearer {token.reveal()}"}
        url = path if path.startswith(("http://", "https://")) else self.api_url + path
        if method != "GET" and url != self.graphql_url:  # a GraphQL query is a read
            self.budget.note(token)
        try:
            response = await self._client.request(method, url, headers=headers, json=json_body, params=params)
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            detail = str(exc).strip()
            text = type(exc).__name__ + (f": {detail}" if detail else "")
            return Reply(
                None,
                error=clean_text(text, 200),
                transient_error=isinstance(
                    exc, httpx.TimeoutException | httpx.NetworkError | httpx.RemoteProtocolError
                ),
                not_sent=isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout),
            )
        return Reply(response)

    def _retry_reason(self, reply: Reply) -> str | None:
        """Why this reply deserves another try, or None if it is an answer."""
        if reply.response is None:
            return reply.error if reply.transient_error else None
        status = reply.response.status_code
        if status >= 500:
            return reply.describe()
        if is_rate_limited(reply):
            return f"rate limited ({reply.describe()})"
        return None

    async def sleep(self, seconds: float) -> None:
        await self._sleep(seconds)

    def wait_for(self, reply: Reply, attempt: int) -> tuple[float, str, bool]:
        """(seconds, why, demanded by the server) before the next attempt."""
        retry_after = _number(reply.header("retry-after"))
        if retry_after is not None:
            return retry_after, f"retry-after {retry_after:g}s", True
        if is_rate_limited(reply):
            reset = _number(reply.header("x-ratelimit-reset"))
            if reply.header("x-ratelimit-remaining") == "0" and reset is not None:
                wait = max(0.0, reset - self._wall())
                return wait, f"rate limit resets in {wait:.0f}s", True
            if reply.status in (403, 429) and "secondary" in reply.message().lower():
                wait = max(self.retry.secondary_wait, self._backoff(attempt))
                return wait, "secondary rate limit, no retry-after", True
        return self._backoff(attempt), "backoff", False

    def _backoff(self, attempt: int) -> float:
        policy = self.retry
        delay = policy.base_delay * 2.0 ** (attempt - 1)
        delay *= 1 + policy.jitter * self._rng.random()
        return min(delay, policy.max_wait)

    @property
    def graphql_url(self) -> str:
        """``/graphql`` beside the REST root: GitHub Enterprise Server serves REST under ``/api/v3``
        and GraphQL at ``/api/graphql`` (github.com: ``https://api.github.com/graphql``)."""
        root = self.api_url.removesuffix("/v3") if self.api_url.endswith("/api/v3") else self.api_url
        return root + "/graphql"

    async def get(
        self,
        path: str,
        *,
        token: Secret,
        what: str,
        params: Mapping[str, str] | None = None,
    ) -> Reply:
        """GET with bounded retries of transient failures; returns the final reply.

        The caller turns a non-success reply into an error; ``reply.gave_up``
        then says why no further attempt was made.
        """
        return await self._read("GET", path, token=token, what=what, params=params)

    async def graphql(self, body: Mapping[str, object], *, token: Secret, what: str) -> Reply:
        """A GraphQL query: a POST, but a read, so it retries as :meth:`get` does (never a mutation)."""
        return await self._read("POST", self.graphql_url, token=token, what=what, json_body=body)

    async def _read(
        self,
        method: str,
        path: str,
        *,
        token: Secret,
        what: str,
        params: Mapping[str, str] | None = None,
        json_body: Mapping[str, object] | None = None,
    ) -> Reply:
        policy = self.retry
        start = self._clock()
        attempt, waited = 0, 0.0
        while True:
            attempt += 1
            reply = await self.send(method, path, token=token, params=params, json_body=json_body)
            reply.attempts = attempt
            reason = self._retry_reason(reply)
            if reason is None:
                return reply
            # Waits count even if ``sleep`` is a test double that returns at once.
            elapsed = max(self._clock() - start, waited)
            if attempt >= policy.tries:
                reply.gave_up = f"gave up after {attempt} attempts in {elapsed:.1f}s"
                return reply
            wait, why, demanded = self.wait_for(reply, attempt)
            if demanded and wait > policy.max_wait:
                reply.gave_up = (
                    f"not retrying: GitHub asks to wait {wait:.0f}s ({why}), "
                    f"more than the {policy.max_wait:g}s lockstep allows for one wait"
                )
                return reply
            if elapsed + wait > policy.budget:
                reply.gave_up = (
                    f"not retrying: waiting {wait:.1f}s ({why}) after {attempt} attempt(s) "
                    f"would exceed the {policy.budget:g}s retry budget"
                )
                return reply
            log.warn(
                f"{what}: {reason}; waiting {wait:.1f}s ({why}) "
                f"before attempt {attempt + 1} of {policy.tries}"
            )
            await self._sleep(wait)
            waited += wait

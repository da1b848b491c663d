"""Staging probes: wait for every service's health endpoint, then prove /version.

Both steps look at all services at once (one pooled client, ``asyncio.gather``)
so a gate over N services costs the slowest service's time, not the sum.  The
servers are untrusted: redirects are never followed, no credentials are ever
sent, bodies are read with a size cap, every request has a hard overall
deadline (a server trickling bytes cannot stall us), and anything echoed back
is cut short and stripped of control characters.  Every failure becomes a
:class:`ProbeResult` with one readable line; only cancellation propagates.
"""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from lockstep import log
from lockstep.config import ServiceConfig
from lockstep.markdown import escape_controls
from lockstep.model import Sha
from lockstep.redact import clean_text

__all__ = [
    "BODY_CAP",
    "ProbeResult",
    "human_duration",
    "verify_versions",
    "wait_healthy",
]

BODY_CAP = 64 * 1024
"""Largest /version body we read; anything bigger is refused without reading it all."""

_ECHO_LIMIT = 80
_HEARTBEAT = 30.0  # seconds between "still waiting" progress lines for one service
_USER_AGENT = "lockstep-probe"


@dataclass(frozen=True)
class ProbeResult:
    """The outcome of probing one service; ``detail`` is the line people read."""

    service: str
    ok: bool
    seconds: float
    detail: str  # one human line; on failure names the URL, elapsed time, last status/error
    last_status: int | None = None
    version_seen: str | None = None


def human_duration(seconds: float) -> str:
    """``3.2s`` below a minute, else ``20m`` / ``1m30s`` / ``1h5m``: matches config durations."""
    if seconds < 60:
        return f"{max(seconds, 0.0):.1f}s"
    total = round(seconds)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return "".join(f"{n}{unit}" for n, unit in ((hours, "h"), (minutes, "m"), (secs, "s")) if n)


def probe_client() -> httpx.AsyncClient:
    """The client for staging probes; one per run serves health and version."""
    # trust_env keeps HTTPS_PROXY / SSL_CERT_FILE working; httpx 0.28 never reads .netrc.
    return httpx.AsyncClient(
        follow_redirects=False,
        trust_env=True,
        headers={"User-Agent": _USER_AGENT},
    )


def _request(client: httpx.AsyncClient, url: str, timeout: float) -> httpx.Request:
    """A GET that carries no credentials, whatever the (possibly shared) client holds."""
    request = client.build_request(
        "GET",
        url,
        headers={"Accept": "application/json", "Accept-Encoding": "identity, gzip, deflate"},
        timeout=httpx.Timeout(max(timeout, 0.001)),
    )
    for name in ("Authorization", "Cookie"):
        request.headers.pop(name, None)
    return request


async def _send(client: httpx.AsyncClient, request: httpx.Request) -> httpx.Response:
    # auth=httpx.Auth() overrides any client-level auth and URL userinfo: staging gets no secrets.
    return await client.send(request, stream=True, follow_redirects=False, auth=httpx.Auth())


def _describe_error(exc: BaseException, timeout: float) -> str:
    """One short phrase for a transport failure (``connection refused``, ``DNS lookup failed``...)."""
    if isinstance(exc, TimeoutError | httpx.TimeoutException):
        return f"timed out after {human_duration(timeout)}"
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if isinstance(cause, ConnectionRefusedError):
            return "connection refused"
        if isinstance(cause, socket.gaierror):
            return "DNS lookup failed"
        if isinstance(cause, ConnectionResetError):
            return "connection reset"
        if isinstance(cause, ssl.SSLError):
            return f"TLS error: {clean_text(str(cause), _ECHO_LIMIT)}"
        cause = cause.__cause__ or cause.__context__
    if isinstance(exc, httpx.RemoteProtocolError):
        return f"invalid HTTP response: {clean_text(str(exc), _ECHO_LIMIT)}"
    if isinstance(exc, httpx.ConnectError):
        return f"connection failed: {clean_text(str(exc), _ECHO_LIMIT)}"
    text = clean_text(str(exc), _ECHO_LIMIT)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


# ---------------------------------------------------------------------------- health


async def _poll_health(
    client: httpx.AsyncClient,
    service: ServiceConfig,
    *,
    timeout: float,
    interval: float,
    request_timeout: float,
    progress: Callable[[str, str], None],
) -> ProbeResult:
    """Poll one health URL on a fixed cadence until HTTP 200 or the deadline.

    Attempts start every ``interval`` seconds (a slow reply does not push the
    schedule back), so a service that turns healthy is seen within one
    interval.  No request or sleep runs past the deadline: the last sleep is
    clipped so that one final attempt still gets ``min(request_timeout,
    interval, 1s)`` before the deadline.  The first attempt always happens,
    even with ``timeout=0``.  A timeout of an attempt that the deadline cut
    short does not replace the last real answer in the report.
    """
    loop = asyncio.get_running_loop()
    url = service.health_url
    start = loop.time()
    deadline = start + timeout
    interval = max(interval, 0.01)  # interval=0 would spin on a refused connection
    # The last attempt starts early enough to get this much time before the deadline.
    reserve = min(request_timeout, interval, 1.0, timeout)
    last_try_at = deadline - reserve
    last = "no attempt"
    last_status: int | None = None
    next_heartbeat = start + _HEARTBEAT
    while True:
        attempt_start = loop.time()
        remaining = deadline - attempt_start
        per_request = min(request_timeout, remaining)
        if per_request <= 0:  # only with timeout=0: one real attempt
            per_request = min(request_timeout, 1.0)
        code: int | None = None
        try:
            async with asyncio.timeout(per_request):
                response = await _send(client, _request(client, url, per_request))
                await response.aclose()  # the status is all we need; never read the body
            code = last_status = response.status_code
            status = f"HTTP {code}"
        except (httpx.HTTPError, TimeoutError, OSError) as exc:
            status = _describe_error(exc, per_request)
            # An attempt whose budget the deadline cut short (on a busy machine the last one can
            # start with almost nothing left) and that timed out says nothing about the server:
            # it must not replace what an earlier attempt really saw ("timed out after 0.0s").
            clipped = per_request < request_timeout and isinstance(exc, TimeoutError | httpx.TimeoutException)
            if clipped and last != "no attempt":
                status = last
        now = loop.time()
        if code == 200:
            elapsed = now - start
            state = f"ready after {human_duration(elapsed)}"
            progress(service.name, state)
            return ProbeResult(service.name, True, elapsed, f"health {url} {state}", last_status=200)
        if status != last:
            progress(service.name, f"not ready ({status})")
            next_heartbeat = now + _HEARTBEAT
        elif now >= next_heartbeat:
            progress(service.name, f"still not ready after {human_duration(now - start)} ({status})")
            next_heartbeat = now + _HEARTBEAT
        last = status
        if attempt_start >= last_try_at or now >= deadline:
            elapsed = now - start
            # The window is what people configured: report it, not the last try's start.
            window = human_duration(max(elapsed, timeout))
            detail = f"health {url} not ready after {window} (last: {last})"
            return ProbeResult(service.name, False, elapsed, detail, last_status=last_status)
        next_start = min(attempt_start + interval, last_try_at)
        await asyncio.sleep(max(0.0, next_start - loop.time()))


async def wait_healthy(
    services: Sequence[ServiceConfig],
    *,
    timeout: float,
    interval: float,
    request_timeout: float,
    client: httpx.AsyncClient | None = None,
    on_progress: Callable[[str, str], None] | None = None,
) -> list[ProbeResult]:
    """Poll every service's ``health_url`` concurrently until each returns HTTP 200.

    Returns one result per service, in input order, each ``ok`` or failed with
    the URL, elapsed time and last status/error.  ``on_progress(service,
    state)`` hears each change of state (and a heartbeat every 30 s) as the
    bare state, ``not ready (HTTP 503)`` or ``ready after 1.2s``: the caller
    already labels the line with the service and the step, so a URL or a
    "health" prefix here would be said twice.  The default writes progress
    lines naming the URL with :mod:`lockstep.log`.
    """
    urls = {s.name: s.health_url for s in services}
    progress = on_progress or (lambda name, state: log.info(f"{name}: health {urls[name]}: {state}"))

    async def one(c: httpx.AsyncClient, service: ServiceConfig) -> ProbeResult:
        try:
            return await _poll_health(
                c,
                service,
                timeout=timeout,
                interval=interval,
                request_timeout=request_timeout,
                progress=progress,
            )
        except Exception as exc:  # fail closed with a line, never crash the gate
            return ProbeResult(
                service.name, False, 0.0, f"health {service.health_url}: internal error: "
                f"{type(exc).__name__}: {clean_text(str(exc), _ECHO_LIMIT)}"
            )

    if client is not None:
        return list(await asyncio.gather(*(one(client, s) for s in services)))
    async with probe_client() as own:
        return list(await asyncio.gather(*(one(own, s) for s in services)))


# ---------------------------------------------------------------------------- version


class _VersionError(Exception):
    """A /version failure whose message is already the final one-line detail."""

    def __init__(self, message: str, status: int | None = None, seen: str | None = None):
        super().__init__(message)
        self.status = status
        self.seen = seen


_JSON_TYPES: dict[type, str] = {
    dict: "an object",
    list: "an array",
    bool: "a boolean",
    int: "a number",
    float: "a number",
    type(None): "null",
}


async def _read_capped(response: httpx.Response, fail: Callable[[str], _VersionError]) -> bytes:
    """Read at most :data:`BODY_CAP` decoded bytes; decompress ourselves so a gzip bomb cannot."""
    length = response.headers.get("Content-Length", "")
    if length.strip().isdigit() and int(length) > BODY_CAP and not response.headers.get(
        "Content-Encoding"
    ):
        raise fail(f"body is larger than {BODY_CAP // 1024} KiB ({int(length)} bytes); not read")
    encoding = response.headers.get("Content-Encoding", "identity").strip().lower()
    decoder: Any = None
    if encoding == "gzip":
        decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)
    elif encoding == "deflate":
        decoder = zlib.decompressobj()
    elif encoding not in ("", "identity"):
        raise fail(f"unsupported Content-Encoding {clean_text(encoding, 30)!r}")
    body = bytearray()
    raw_seen = 0
    async for chunk in response.aiter_raw():
        raw_seen += len(chunk)
        if decoder is not None:
            try:
                chunk = decoder.decompress(chunk, BODY_CAP + 1 - len(body))
            except zlib.error:
                raise fail(f"body is not valid {encoding} data") from None
        body += chunk
        if len(body) > BODY_CAP or raw_seen > BODY_CAP * 4:
            raise fail(f"body is larger than {BODY_CAP // 1024} KiB; not read")
    if decoder is not None:
        body += decoder.flush()
        if len(body) > BODY_CAP:
            raise fail(f"body is larger than {BODY_CAP // 1024} KiB; not read")
    return bytes(body)


def _lookup(document: object, path: str) -> object:
    """Follow a dotted path such as ``build.commit`` through nested JSON objects."""
    current = document
    walked: list[str] = []
    for part in path.split("."):
        if not isinstance(current, dict):
            where = ".".join(walked) or "the document"
            kind = _JSON_TYPES.get(type(current), "a string")
            raise KeyError(f'has no field "{path}" ({where} is {kind}, not an object)')
        if part not in current:
            raise KeyError(f'has no field "{path}"')
        current = current[part]
        walked.append(part)
    return current


def _compare(service: ServiceConfig, expected: Sha, value: object) -> tuple[bool, str, str | None]:
    """Decide whether a /version value proves staging runs ``expected``; explain if not."""
    field = service.version_field
    branch = service.source
    if not isinstance(value, str):
        kind = _JSON_TYPES.get(type(value), "not a string")
        return False, f'field "{field}" is {kind}, not a string', None
    # invisible characters are shown escaped (<U+202E>), never dropped: dropping them would print
    # "staging runs X but main is X" for two values that differ
    seen = clean_text(escape_controls(value, keep_newlines=False), _ECHO_LIMIT)
    if value == expected:
        return True, f"version {service.name}: staging runs {expected} ({branch})", seen
    if not value.strip():
        return False, f'field "{field}" is empty', seen
    prefix = f"version mismatch for {service.name}: "
    if value != value.strip() or value.lower() != value:
        canon = value.strip().lower()
        hint = " (same sha, but not exactly as required)" if canon == expected else ""
        return (
            False,
            f'{prefix}staging reports "{seen}", not a lowercase 40-hex sha{hint}; '
            f"{branch} is {expected}",
            seen,
        )
    if len(value) < 40 and expected.startswith(value):
        return (
            False,
            f'{prefix}staging reports a short sha "{seen}"; a full sha is required: '
            f"{branch} is {expected}",
            seen,
        )
    return False, f"{prefix}staging runs {seen} but {branch} is {expected}", seen


async def _verify_one(
    client: httpx.AsyncClient,
    service: ServiceConfig,
    expected: Sha | None,
    request_timeout: float,
) -> ProbeResult:
    loop = asyncio.get_running_loop()
    start = loop.time()
    url = service.version_url
    status: int | None = None

    def fail(message: str) -> _VersionError:
        return _VersionError(f"version check for {service.name} failed: {url} {message}", status)

    try:
        if expected is None:
            raise _VersionError(f"version check for {service.name}: no expected sha was given")
        try:
            async with asyncio.timeout(request_timeout):
                response = await _send(client, _request(client, url, request_timeout))
                try:
                    status = response.status_code
                    if response.is_redirect:
                        location = clean_text(response.headers.get("Location", ""), _ECHO_LIMIT)
                        raise fail(
                            f'redirected (HTTP {status} to "{location}"); '
                            "redirects are not followed"
                        )
                    if status != 200:
                        raise fail(f"returned HTTP {status}")
                    body = await _read_capped(response, fail)
                finally:
                    await response.aclose()
        except (httpx.HTTPError, TimeoutError, OSError) as exc:
            if isinstance(exc, TimeoutError | httpx.TimeoutException):
                raise fail(
                    f"gave no complete response within {human_duration(request_timeout)}"
                ) from None
            raise fail(f"failed: {_describe_error(exc, request_timeout)}") from None
        if not body.strip():
            raise fail("returned an empty body")
        try:
            document = json.loads(body)
        except (ValueError, RecursionError):  # JSONDecodeError, bad UTF-8, huge ints
            start_text = clean_text(body[:_ECHO_LIMIT * 4].decode("utf-8", errors="replace"), _ECHO_LIMIT)
            raise fail(f'did not return JSON (body starts "{start_text}")') from None
        try:
            value = _lookup(document, service.version_field)
        except KeyError as exc:
            raise fail(f"JSON {exc.args[0]}") from None
        ok, detail, seen = _compare(service, expected, value)
        if not ok and not detail.startswith("version mismatch"):
            raise fail(detail)
        return ProbeResult(
            service.name, ok, loop.time() - start, detail, last_status=status, version_seen=seen
        )
    except _VersionError as exc:
        return ProbeResult(
            service.name,
            False,
            loop.time() - start,
            str(exc),
            last_status=exc.status if exc.status is not None else status,
            version_seen=exc.seen,
        )
    except Exception as exc:  # fail closed with a line, never crash the gate
        return ProbeResult(
            service.name,
            False,
            loop.time() - start,
            f"version check for {service.name} failed: {url}: internal error: "
            f"{type(exc).__name__}: {clean_text(str(exc), _ECHO_LIMIT)}",
            last_status=status,
        )


async def verify_versions(
    services: Sequence[ServiceConfig],
    expected: Mapping[str, Sha],
    *,
    request_timeout: float,
    client: httpx.AsyncClient | None = None,
) -> list[ProbeResult]:
    """GET every service's ``version_url`` concurrently; ok only if it reports ``expected[name]``.

    ``expected`` maps service name to the source sha resolved in this run.  The
    value at ``version_field`` must equal that full lowercase sha exactly: a
    short prefix, different case or padding is a mismatch, because "probably
    the same commit" is not proof.  Results are in input order.
    """
    if client is not None:
        return list(
            await asyncio.gather(
                *(_verify_one(client, s, expected.get(s.name), request_timeout) for s in services)
            )
        )
    async with probe_client() as own:
        return list(
            await asyncio.gather(
                *(_verify_one(own, s, expected.get(s.name), request_timeout) for s in services)
            )
        )

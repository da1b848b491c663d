"""``lockstep dispatch``: send a ``repository_dispatch`` event (what a staging deploy job calls).

``POST /repos/{owner}/{repo}/dispatches`` with ``{"event_type", "client_payload"}``
and the token from ``$GITHUB_TOKEN`` (else ``$GH_TOKEN``) in the
``Authorization`` header only; the API root is ``$GITHUB_API_URL``.

Everything GitHub would refuse for its shape is refused here first (exit 2,
nothing sent): ``event_type`` of 1..100 characters, at most 10 payload
fields, a payload under 64 KB.  Every field value is sent as a string, like
``gh api -f``.  One attempt, never retried (each dispatch can start a
workflow run), redirects never followed, and every message that could carry
server text goes through :mod:`lockstep.redact`, like the forge's, so the token
cannot be printed even if a server echoes it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import quote

import httpx

from lockstep import __version__
from lockstep.errors import ForgeError, UsageError
from lockstep.forges.github.forge import parse_repo
from lockstep.forges.github.http import API_VERSION, Reply, Secret, api_url
from lockstep.redact import READ_TOKEN_VARS, clean_text

__all__ = ["DispatchRequest", "build_request", "read_token", "send_dispatch"]

MAX_EVENT_TYPE = 100
MAX_FIELDS = 10
MAX_PAYLOAD_BYTES = 65536


@dataclass(frozen=True)
class DispatchRequest:
    owner: str
    name: str
    event_type: str
    payload: Mapping[str, str]

    @property
    def repo(self) -> str:
        return f"{self.owner}/{self.name}"

    def body(self) -> dict[str, object]:
        return {"event_type": self.event_type, "client_payload": dict(self.payload)}


def build_request(repo: str, event_type: str, fields: Sequence[str]) -> DispatchRequest:
    """Parse and check everything GitHub would refuse for its shape (UsageError, exit 2)."""
    owner, name = parse_repo(repo, "--repo")
    if not 1 <= len(event_type) <= MAX_EVENT_TYPE:
        raise UsageError(f"--event: must be 1 to {MAX_EVENT_TYPE} characters, got {len(event_type)}")
    payload: dict[str, str] = {}
    for item in fields:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"--field: expected KEY=VALUE, got {item!r:.80}")
        if key in payload:
            raise UsageError(f"--field {key!r:.80}: given twice")
        payload[key] = value
    if len(payload) > MAX_FIELDS:
        raise UsageError(f"--field: GitHub accepts at most {MAX_FIELDS} payload fields, got {len(payload)}")
    size = len(json.dumps(payload).encode("utf-8"))
    if size >= MAX_PAYLOAD_BYTES:
        raise UsageError(f"--field: the payload is {size} bytes; GitHub accepts less than 64 KB")
    return DispatchRequest(owner, name, event_type, payload)


def read_token(env: Mapping[str, str]) -> Secret:
    """The token from ``GITHUB_TOKEN`` (else ``GH_TOKEN``), checked to be a valid header value."""
    for var in READ_TOKEN_VARS:
        value = env.get(var, "").strip()
        if value:
            if not all(0x21 <= ord(c) <= 0x7E for c in value):
                raise UsageError(f"environment variable {var} holds characters a token cannot contain")
            return Secret(value, var)
    raise UsageError(
        "environment variable GITHUB_TOKEN (or GH_TOKEN) is not set: it needs a token with "
        "Contents: read and write on the repository that receives the dispatch"
    )


def send_dispatch(
    request: DispatchRequest,
    env: Mapping[str, str],
    *,
    timeout: float = 30.0,
    transport: httpx.BaseTransport | None = None,
) -> str:
    """Send it; the success line, or ForgeError (exit 1) / UsageError (exit 2) with one line."""
    token = read_token(env)
    root = api_url(env)
    url = f"{root}/repos/{quote(request.owner)}/{quote(request.name)}/dispatches"
    headers = {
        "Accept": "application/vnd.github+json",
        "X-GitHub-Api-Version": API_VERSION,
        "User-Agent": f"lockstep/{__version__}",
        "Authorization": f"Bearer {token.reveal()}",
    }
    try:
        with httpx.Client(
            follow_redirects=False, timeout=httpx.Timeout(timeout), transport=transport
        ) as client:
            response = client.post(url, headers=headers, json=request.body())
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        detail = str(exc).strip()
        text = clean_text(type(exc).__name__ + (f": {detail}" if detail else ""), 200)
        raise ForgeError(
            f"{request.repo}: cannot reach {root}: {text}; the dispatch was not confirmed"
        ) from None
    return _classify(request, Reply(response), token)


def _classify(request: DispatchRequest, reply: Reply, token: Secret) -> str:
    status = reply.status or 0
    message = reply.message()
    var = token.source
    repo = request.repo
    if 200 <= status < 300:
        n = len(request.payload)
        return f"sent {request.event_type!r} to {repo} ({n} payload field{'s' if n != 1 else ''})"
    if status == 404:
        raise ForgeError(
            f"{repo}: repository not found or the token cannot see it (HTTP 404; the token in {var} "
            "needs Contents: read and write on it)",
            status=404,
        )
    if status == 422:
        raise ForgeError(f"{repo}: GitHub refused the dispatch (HTTP 422): {message}", status=422)
    if status == 401:
        raise ForgeError(
            f"{repo}: GitHub rejected the token in {var} (HTTP 401: {message or 'Bad credentials'}); "
            "it is wrong, expired or revoked",
            status=401,
        )
    if status in (403, 429) and (
        reply.header("x-ratelimit-remaining") == "0" or "rate limit" in message.lower()
    ):
        raise ForgeError(f"{repo}: rate limited by GitHub (HTTP {status}: {message}); try again later",
                         status=status, transient=True)
    if status == 403:
        needed = clean_text(reply.header("x-accepted-github-permissions") or "", 100)
        raise ForgeError(
            f"{repo}: the token in {var} may not send dispatches here (HTTP 403: {message}); it needs "
            + (f"{needed}" if needed else "Contents: read and write on the repository"),
            status=403,
        )
    if 300 <= status < 400:
        location = clean_text(reply.header("location") or "(none)", 200)
        raise ForgeError(
            f"{repo}: GitHub answered HTTP {status} (moved to {location}); not followed: "
            "dispatch to the repository's current OWNER/NAME",
            status=status,
        )
    raise ForgeError(f"{repo}: the dispatch failed ({reply.describe()})", status=status or None)

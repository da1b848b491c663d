"""A stateful fake GitHub REST server over real HTTP/1.1 on loopback.

Why real HTTP: the forge client's pooling, keep-alive, timeouts, redirects and
lost-response handling are exactly what must be tested, and a mocked transport
would hide them. Stdlib only (``ThreadingHTTPServer``), so it starts in
milliseconds and adds no dependency. Test-side helpers (``commit``,
``set_branch`` ...) change state directly and are not recorded as requests.
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import json
import re
import socket
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler
from typing import Any, Literal
from urllib.parse import parse_qsl, urlsplit

from lockstep.loopback import LoopbackServer, Served
from tests.support.fakegithub import contents as _contents  # noqa: F401 (registers the endpoints)
from tests.support.fakegithub.api import Api, ApiError, Request, Response, World, error_body, phrase
from tests.support.fakegithub.deployments import new_deployment, new_status  # also registers the endpoints
from tests.support.fakegithub.events import Event, events_for
from tests.support.fakegithub.faults import Fault, Injection
from tests.support.fakegithub.graphql import GraphQLControls  # also registers POST /graphql
from tests.support.fakegithub.limits import MESSAGE as SECONDARY_MESSAGE
from tests.support.fakegithub.limits import SecondaryLimits, is_mutation
from tests.support.fakegithub.state import Issue, Repo, Token
from tests.support.fakegithub.statuses import (  # also registers the endpoints
    CHECK_CONCLUSIONS,
    CHECK_STATUSES,
    STATUS_STATES,
    new_check_run,
    new_commit_status,
    update_check_run,
)

_WRITE_METHODS = frozenset({"POST", "PATCH", "PUT", "DELETE"})
_user_ids = itertools.count(5_000_001)


@dataclass
class RecordedRequest:
    """One request as the server saw it, faulted ones included.

    ``headers`` keeps the Authorization value so tests can scan for token leaks;
    ``status`` is None when no answer was sent (dropped); ``fault`` names the
    injected fault kind, if any; ``connection`` identifies the TCP connection;
    ``seq`` is its index in the log (what an :class:`Event` points at).
    """

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    json: object | None
    status: int | None
    at: float
    fault: str | None = None
    connection: int = 0
    seq: int = -1


@dataclass
class _Reply:
    response: Response | None  # None: close the connection without answering


class _Server(LoopbackServer):
    fake: FakeGitHub


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    timeout = 60  # idle keep-alive connections end on their own
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.connection_id = self.server.fake._track(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.fake._untrack(self.connection)

    def log_message(self, format: str, *args: Any) -> None:
        """Silence: pytest output stays readable."""

    def _serve(self) -> None:
        body = self._read_body()
        if body is None:
            self.close_connection = True
            self._send(Response(400, error_body(400, "Bad Request")), head=False)
            return
        headers: dict[str, str] = {}
        for name, value in self.headers.items():
            key = name.lower()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        reply = self.server.fake._dispatch(self.command, self.path, headers, body, self.connection_id)
        if reply.response is None:
            self.close_connection = True
            return
        self._send(reply.response, head=self.command == "HEAD")

    do_GET = do_HEAD = do_POST = do_PATCH = do_PUT = do_DELETE = do_OPTIONS = _serve

    def _read_body(self) -> bytes | None:
        """The request body by Content-Length or chunked framing; None if malformed."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks: list[bytes] = []
            while True:
                size_line = self.rfile.readline(1024).split(b";")[0].strip()
                try:
                    size = int(size_line, 16)
                except ValueError:
                    return None
                if size == 0:
                    while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline(1024)
        length = self.headers.get("Content-Length")
        if length is None:
            return b""
        if not length.strip().isdigit():
            return None
        return self.rfile.read(int(length))

    def _send(self, resp: Response, head: bool) -> None:
        """Status line, headers and body in one write (no Nagle/delayed-ACK stalls)."""
        no_body = resp.status in (204, 304)
        payload = b"" if no_body or resp.body is None else _encode(resp.body)
        headers = {
            "Server": "GitHub.com",
            "Date": formatdate(usegmt=True),
            "Content-Type": "application/json; charset=utf-8",
            "X-GitHub-Media-Type": "github.v3; format=json",
            "X-GitHub-Request-Id": f"FAKE:{id(resp):X}:{time.monotonic_ns():X}",
        }
        if no_body:
            del headers["Content-Type"]
        else:
            headers["Content-Length"] = str(len(payload))
        headers.update(resp.headers)
        if self.close_connection:
            headers["Connection"] = "close"
        lines = [f"HTTP/1.1 {resp.status} {phrase(resp.status)}"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        data = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        self.wfile.write(data if head else data + payload)
        self.wfile.flush()


def _encode(body: Any) -> bytes:
    return json.dumps(body, separators=(",", ":")).encode()


class FakeGitHub(Served):
    """Fake GitHub REST API with a real commit graph, tokens and fault injection.

    Use as a context manager (or ``start()``/``stop()``). Every handled request is
    atomic under one lock. See ``tests/support/fakegithub/__init__.py`` for the API.
    """

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._world = World()
        self._api = Api(self._world)
        self._requests: list[RecordedRequest] = []
        self._events: list[Event] = []
        self.limits = SecondaryLimits()  # GitHub's published secondary limits, on by default
        self._injections: list[Injection] = []
        self._connections: dict[int, socket.socket] = {}
        self._connection_ids = itertools.count(1)
        self._server: _Server | None = None
        self.latency = 0.0
        self.url = ""
        self.graphql = GraphQLControls(self._lock, self._world, lambda: self.requests)

    # ---- lifecycle ---------------------------------------------------------------

    def start(self) -> FakeGitHub:
        """Bind 127.0.0.1 on an OS-chosen port and serve in a daemon thread."""
        if self._server is not None:
            return self
        server = _Server(_Handler)
        server.fake = self
        self._server = server
        self.url = server.url
        self._world.api_url = self.url
        server.start(poll_interval=0.02)
        return self

    def stop(self) -> None:
        """Stop serving and cut open keep-alive connections so clients see it."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        with self._lock:
            sockets = list(self._connections.values())
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        server.stop()  # closes the socket and joins the serving thread (shutdown is already done)


    def _track(self, sock: socket.socket) -> int:
        with self._lock:
            conn_id = next(self._connection_ids)
            self._connections[conn_id] = sock
            return conn_id

    def _untrack(self, sock: socket.socket) -> None:
        with self._lock:
            for conn_id, known in list(self._connections.items()):
                if known is sock:
                    del self._connections[conn_id]

    # ---- test setup (direct state changes, not recorded) -------------------------

    def _repo(self, repo: str, create: bool = False) -> Repo:
        key = repo.lower()
        if key not in self._world.repos:
            if not create:
                raise KeyError(f"unknown repo {repo!r}: call add_repo first")
            if repo.count("/") != 1:
                raise ValueError(f"repo must be 'owner/name', got {repo!r}")
            self._world.repos[key] = Repo(full_name=repo)
        return self._world.repos[key]

    def add_repo(self, repo: str, default_branch: str = "main") -> None:
        """An empty repository (no commits, no branches); names are case-insensitive."""
        with self._lock:
            self._repo(repo, create=True).default_branch = default_branch

    def commit(self, repo: str, parents: Iterable[str] = (), message: str | None = None) -> str:
        """Add a commit (parents must exist in ``repo``); returns its random 40-hex sha."""
        with self._lock:
            return self._repo(repo).add_commit(tuple(parents), message)

    def file(self, repo: str, ref: str, path: str) -> bytes | None:
        """A file's content at a branch, tag or commit (None: no such ref or file)."""
        with self._lock:
            state = self._repo(repo)
            sha = state.resolve(ref)
            return None if sha is None else state.commits[sha].files.get(path)

    def put_file(self, repo: str, branch: str, path: str, data: bytes) -> str:
        """Commit ``data`` at ``path`` on top of ``branch`` (which must exist); the new commit's sha.
        A test helper, not a request: no event, no limit."""
        with self._lock:
            state = self._repo(repo)
            head = state.refs[f"refs/heads/{branch}"]
            sha = state.add_commit((head,), f"put {path}", files=state.commits[head].files | {path: data})
            state.refs[f"refs/heads/{branch}"] = sha
            return sha

    def set_branch(self, repo: str, branch: str, sha: str) -> None:
        """Create or move a branch to a known commit, bypassing every rule."""
        with self._lock:
            state = self._repo(repo)
            if sha not in state.commits:
                raise ValueError(f"{repo}: unknown commit {sha}")
            state.refs[f"refs/heads/{branch}"] = sha

    def set_ref(self, repo: str, ref: str, sha: str) -> None:
        """Like ``set_branch`` for any full ref name (``refs/tags/v1``)."""
        with self._lock:
            state = self._repo(repo)
            if not ref.startswith("refs/") or sha not in state.commits:
                raise ValueError(f"{repo}: bad ref {ref!r} or unknown commit {sha}")
            state.refs[ref] = sha

    def branch(self, repo: str, branch: str) -> str | None:
        """The branch head, or None if it does not exist."""
        with self._lock:
            return self._repo(repo).refs.get(f"refs/heads/{branch}")

    def ref(self, repo: str, ref: str) -> str | None:
        """Any ref by full name, or None."""
        with self._lock:
            return self._repo(repo).refs.get(ref)

    def is_ancestor(self, repo: str, ancestor: str, descendant: str) -> bool:
        """Graph query for assertions."""
        with self._lock:
            return self._repo(repo).is_ancestor(ancestor, descendant)

    def delete_branch(self, repo: str, branch: str) -> None:
        """Remove a branch if present."""
        with self._lock:
            self._repo(repo).refs.pop(f"refs/heads/{branch}", None)

    def rename_branch(self, repo: str, old: str, new: str) -> None:
        """Rename like GitHub: the old name then answers 301 on the branches endpoint."""
        with self._lock:
            state = self._repo(repo)
            state.refs[f"refs/heads/{new}"] = state.refs.pop(f"refs/heads/{old}")
            for source, target in list(state.renamed.items()):
                if target == old:
                    state.renamed[source] = new
            state.renamed[old] = new
            state.renamed.pop(new, None)
            if old in state.protected:
                state.protected[new] = state.protected.pop(old)
            if state.default_branch == old:
                state.default_branch = new

    def protect(
        self,
        repo: str,
        branch: str,
        message: str = "Repository rule violations found\n\nCannot update this protected ref.\n\n",
    ) -> None:
        """Make PATCH/DELETE of the branch answer 422 ``message`` (a ruleset or protection)."""
        with self._lock:
            self._repo(repo).protected[branch] = message

    def unprotect(self, repo: str, branch: str) -> None:
        """Undo ``protect``."""
        with self._lock:
            self._repo(repo).protected.pop(branch, None)

    def add_token(
        self,
        token: str,
        read: Iterable[str] = (),
        write: Iterable[str] = (),
        login: str = "lockstep-bot",
        kind: Literal["pat", "integration"] = "pat",
    ) -> None:
        """Register a token; write implies read; ``kind`` picks the 403 wording."""
        with self._lock:
            self._world.tokens[token] = Token(
                value=token,
                read=frozenset(r.lower() for r in read),
                write=frozenset(r.lower() for r in write),
                login=login,
                user_id=next(_user_ids),
                kind=kind,
            )

    def add_issue(self, repo: str, number: int, locked: bool = False) -> None:
        """An issue that accepts comments (creates the repo if needed); re-adding sets ``locked``."""
        with self._lock:
            issues = self._repo(repo, create=True).issues
            issues.setdefault(number, Issue(number)).locked = locked

    def disable_issues(self, repo: str, disabled: bool = True) -> None:
        """Comments on this repo then answer 410."""
        with self._lock:
            self._repo(repo, create=True).issues_enabled = not disabled

    def comments(self, repo: str, number: int) -> list[dict[str, Any]]:
        """Comments stored on an issue, as the API returned them (``user`` is ``{login, ...}``)."""
        with self._lock:
            return copy.deepcopy(self._repo(repo).issues[number].comments)

    def dispatches(self, repo: str) -> list[dict[str, Any]]:
        """repository_dispatch events received: ``{event_type, client_payload}``."""
        with self._lock:
            return copy.deepcopy(self._repo(repo).dispatches)

    def deployments(self, repo: str) -> list[dict[str, Any]]:
        """Deployments as the API shows them, oldest first, each with ``statuses`` (oldest first) added."""
        with self._lock:
            return [
                copy.deepcopy(d.body) | {"statuses": copy.deepcopy(d.statuses)}
                for d in self._repo(repo).deployments.values()
            ]

    def add_deployment(
        self,
        repo: str,
        ref: str,
        environment: str = "production",
        payload: object = None,
        *,
        states: Iterable[str] = (),
        description: str = "",
        login: str = "someone-else",
        production: bool | None = None,
    ) -> int:
        """Store a deployment (and statuses, in order) bypassing the API's rules; returns its id.

        ``ref`` must resolve (sha, branch or tag); ``payload`` None stores ``{}``.
        """
        with self._lock:
            state = self._repo(repo)
            sha = state.resolve(ref)
            if sha is None:
                raise ValueError(f"{repo}: unknown ref {ref!r}")
            user_id = next(_user_ids)
            deployment = new_deployment(
                self._world,
                state,
                sha=sha,
                ref=ref,
                environment=environment,
                payload={} if payload is None else payload,
                description=description,
                login=login,
                user_id=user_id,
                production=production,
            )
            for status in states:
                new_status(self._world, state, deployment, state=status, login=login, user_id=user_id)
            return deployment.id

    def set_status(
        self,
        repo: str,
        sha: str,
        context: str,
        state: str,
        *,
        description: str | None = None,
        target_url: str | None = None,
        login: str = "ci-bot",
    ) -> dict[str, Any]:
        """Add a commit status on ``sha`` (the newest one per context is what counts); returns it."""
        if state not in STATUS_STATES:
            raise ValueError(f"state must be one of {STATUS_STATES}, got {state!r}")
        with self._lock:
            state_repo = self._repo(repo)
            if sha not in state_repo.commits:
                raise ValueError(f"{repo}: unknown commit {sha}")
            status = new_commit_status(
                self._world, state_repo, sha, state=state, context=context,
                description=description, target_url=target_url, login=login,
            )
            return copy.deepcopy(status)

    def statuses(self, repo: str, sha: str) -> list[dict[str, Any]]:
        """Every commit status on ``sha``, oldest first."""
        with self._lock:
            return copy.deepcopy(self._repo(repo).statuses.get(sha, []))

    def add_check_run(
        self,
        repo: str,
        sha: str,
        name: str,
        status: str = "completed",
        conclusion: str | None = None,
        *,
        details_url: str | None = None,
        title: str | None = None,
    ) -> int:
        """Add a check run on ``sha`` (a re-run is simply a newer one); returns its id."""
        if status not in CHECK_STATUSES or (conclusion is not None and conclusion not in CHECK_CONCLUSIONS):
            raise ValueError(f"bad check run status/conclusion {status!r}/{conclusion!r}")
        if (status == "completed") != (conclusion is not None):
            raise ValueError("a completed check run needs a conclusion, and only a completed one has one")
        with self._lock:
            state_repo = self._repo(repo)
            if sha not in state_repo.commits:
                raise ValueError(f"{repo}: unknown commit {sha}")
            run = new_check_run(
                self._world, state_repo, sha, name=name, status=status, conclusion=conclusion,
                details_url=details_url, title=title,
            )
            return int(run["id"])

    def update_check_run(self, repo: str, run_id: int, status: str, conclusion: str | None = None) -> None:
        """Move an existing check run on (queued → in_progress → completed)."""
        if (status == "completed") != (conclusion is not None):
            raise ValueError("a completed check run needs a conclusion, and only a completed one has one")
        with self._lock:
            run = next(r for r in self._repo(repo).check_runs if r["id"] == run_id)
            update_check_run(run, status, conclusion)

    # ---- rate limit --------------------------------------------------------------

    @property
    def rate_limit_remaining(self) -> int:
        """Requests left in the window; at 0 every counted request gets 403."""
        return self._world.rate.remaining

    @rate_limit_remaining.setter
    def rate_limit_remaining(self, value: int) -> None:
        with self._lock:
            self._world.rate.remaining = value
            self._world.rate.limit = max(self._world.rate.limit, value)

    @property
    def rate_limit_reset(self) -> int:
        """Epoch second when the window resets (remaining goes back to the limit)."""
        return self._world.rate.reset

    @rate_limit_reset.setter
    def rate_limit_reset(self, value: float) -> None:
        with self._lock:
            self._world.rate.reset = int(value)

    # ---- requests and faults -----------------------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        """Snapshot of every request received, in arrival order."""
        with self._lock:
            return list(self._requests)

    def writes(self) -> list[RecordedRequest]:
        """Recorded requests that write: REST POST/PATCH/PUT/DELETE and GraphQL mutations (a
        GraphQL query is a POST that reads)."""
        return [r for r in self.requests if r.method in _WRITE_METHODS
                and (r.path != "/graphql" or is_mutation(r.body))]

    def clear_requests(self) -> None:
        """Forget recorded requests and the events they sent (e.g. after setup through the API)."""
        with self._lock:
            self._requests.clear()
            self._events.clear()

    def inject(
        self,
        fault: Fault,
        method: str | None = None,
        path: str | None = None,
        nth: int = 1,
        times: int | None = 1,
    ) -> Injection:
        """Apply ``fault`` to the nth request matching method and path.

        ``path`` is a regex fullmatched against the raw request path (as sent, no query).

        ``times`` matching requests from the nth on are faulted (None = all of them).
        Returns the injection, whose ``seen``/``fired`` counters tests may assert.
        """
        if nth < 1 or (times is not None and times < 1):
            raise ValueError("nth and times are 1-based")
        injection = Injection(
            fault=fault,
            method=method.upper() if method else None,
            path=re.compile(path) if path is not None else None,
            nth=nth,
            times=times,
        )
        with self._lock:
            self._injections.append(injection)
        return injection

    def clear_faults(self) -> None:
        """Remove every injection."""
        with self._lock:
            self._injections.clear()

    # ---- the request path --------------------------------------------------------

    def _dispatch(
        self, method: str, target: str, headers: dict[str, str], body: bytes, connection: int
    ) -> _Reply:
        split = urlsplit(target)
        path = split.path
        try:
            parsed: object | None = json.loads(body) if body else None
        except (ValueError, UnicodeDecodeError):
            parsed = None
        record = RecordedRequest(
            method=method,
            path=path,
            query=dict(parse_qsl(split.query, keep_blank_values=True)),
            headers=headers,
            body=body,
            json=parsed,
            status=None,
            at=time.monotonic(),
            connection=connection,
        )
        with self._lock:
            record.seq = len(self._requests)
            self._requests.append(record)
            credential = headers.get("authorization", "").partition(" ")[2].strip()
            retry_after = self.limits.admit(method, path, body, credential or "anonymous")
            if retry_after is not None:  # refused before anything is applied, as GitHub does
                record.fault = "secondary"
                response = self._secondary_response(retry_after)
                record.status = response.status
                return _Reply(response)
            fault = self._take_fault(method, path)
            latency = self.latency
        try:
            return self._serve(record, fault, latency, headers, body)
        finally:
            with self._lock:
                self.limits.done()

    def _serve(
        self, record: RecordedRequest, fault: Fault | None, latency: float, headers: dict[str, str], body: bytes
    ) -> _Reply:
        """An admitted request: latency, faults, then the API (state changes under the lock)."""
        method, path = record.method, record.path
        if latency > 0:
            time.sleep(latency)
        if fault is not None:
            record.fault = fault.kind
            if fault.kind == "delay":
                time.sleep(fault.seconds)
            elif fault.kind == "drop_before":
                return _Reply(None)
            elif fault.kind in ("status", "rate_limit"):
                with self._lock:
                    response = self._fault_response(fault)
                    record.status = response.status
                return _Reply(response)
        request = Request(method, path, record.query, headers, body, received=record.at)
        with self._lock:
            try:
                response = self._api.handle(request)
            except Exception as exc:  # a bug in the fake must be loud, not a hang
                response = ApiError(500, f"fake GitHub crashed: {exc!r}").response
            response.headers = self._world.rate.headers() | response.headers
            if method in _WRITE_METHODS and 200 <= response.status < 300:
                self._record_events(record, headers)  # applied, even if the answer is lost below
            if fault is not None and fault.kind == "drop_after":
                return _Reply(None)
            record.status = response.status
        return _Reply(response)

    def _record_events(self, record: RecordedRequest, headers: dict[str, str]) -> None:
        """The webhook events GitHub would send for this applied write (the caller holds the lock)."""
        credential = headers.get("authorization", "").partition(" ")[2].strip()
        token = self._world.tokens.get(credential)
        sender = token.login if token is not None else "anonymous"

        def default_branch(full: str) -> str | None:
            repo = self._world.repos.get(full.lower())
            return repo.default_branch if repo is not None else None

        match = re.fullmatch(r"/repos/([^/]+/[^/]+)/.*", record.path)
        branch = default_branch(match.group(1)) if match else None
        for repo, name, ref in events_for(record.method, record.path, record.json, branch):
            self._events.append(Event(repo, name, ref, sender, record.seq))

    def events(self, repo: str | None = None) -> list[Event]:
        """Webhook events the applied writes would have sent (in ``repo`` only, when given), in order."""
        with self._lock:
            return [e for e in self._events if repo is None or e.repo.lower() == repo.lower()]

    def _take_fault(self, method: str, path: str) -> Fault | None:
        chosen: Fault | None = None
        for injection in self._injections:
            if not injection.matches(method, path):
                continue
            injection.seen += 1
            if chosen is None and injection.due:
                injection.fired += 1
                chosen = injection.fault
        return chosen

    def _secondary_response(self, retry_after: int) -> Response:
        """GitHub's answer when a published secondary limit is reached (:mod:`.limits`)."""
        headers = self._world.rate.headers() | {"retry-after": str(retry_after)}
        return Response(403, error_body(403, SECONDARY_MESSAGE), headers)

    def _fault_response(self, fault: Fault) -> Response:
        rate = self._world.rate
        headers = rate.headers()
        if fault.kind == "status":
            message = fault.message or phrase(fault.code)
            return Response(fault.code, error_body(fault.code, message), headers | dict(fault.headers))
        if fault.limit == "primary":
            reset = int(time.time() + fault.reset_in + 0.999)
            headers |= {
                "x-ratelimit-remaining": "0",
                "x-ratelimit-used": str(rate.limit),
                "x-ratelimit-reset": str(reset),
            }
            message = "API rate limit exceeded for user ID 1."
        else:
            message = SECONDARY_MESSAGE
        if fault.retry_after is not None:
            headers["retry-after"] = str(fault.retry_after)
        return Response(fault.code, error_body(fault.code, message), headers)


__all__ = ["FakeGitHub", "Fault", "Injection", "RecordedRequest"]

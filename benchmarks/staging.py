"""One loopback HTTP server standing in for N staging deployments (benchmark helper).

``/<service>/health`` answers 200 (or 503 until the service's ``ready_at``) and
``/<service>/version`` answers ``{"sha": ...}``.  Every answer waits
``latency`` seconds first, like the fake GitHub, so staging costs one round
trip per request as a remote deployment would.  One server (one accept
thread) for all services keeps the benchmark machine quiet at N = 50, where
fifty ``tests.support.staging.Staging`` instances would mean fifty polling threads.

Each health request is logged with its arrival time and status, so the
benchmark can measure when a poller first saw a service ready.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

from lockstep.loopback import LoopbackServer, Served, respond


@dataclass
class ServiceState:
    sha: str
    ready_at: float | None = 0.0  # time.monotonic() from which /health answers 200
    ready_after_first_poll: float | None = None  # sets ready_at when the first health request arrives


@dataclass
class HealthHit:
    service: str
    at: float
    status: int


@dataclass
class _Shared:
    latency: float = 0.0
    services: dict[str, ServiceState] = field(default_factory=dict)
    hits: list[HealthHit] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


class MultiStaging(Served):
    """``with MultiStaging() as st: st.set("svc-0", sha); st.url_for("svc-0")``."""

    def __init__(self, latency: float = 0.0) -> None:
        self._shared = _Shared(latency=latency)
        self._server: LoopbackServer | None = None

    @property
    def latency(self) -> float:
        return self._shared.latency

    @latency.setter
    def latency(self, value: float) -> None:
        self._shared.latency = value

    @property
    def url(self) -> str:
        assert self._server is not None, "use MultiStaging as a context manager"
        return self._server.url

    def url_for(self, service: str) -> str:
        return f"{self.url}/{service}"

    def set(
        self, service: str, sha: str, ready_after: float = 0.0, *, after_first_poll: bool = False
    ) -> None:
        """Serve ``sha`` for ``service``; /health is 503 for ``ready_after`` seconds.

        Counted from now, or with ``after_first_poll`` from the arrival of the
        first health request (so a test can place "ready" precisely inside a
        poller's schedule whatever the poller's start-up time).
        """
        with self._shared.lock:
            if after_first_poll:
                state = ServiceState(sha, None, ready_after)
            else:
                state = ServiceState(sha, time.monotonic() + ready_after)
            self._shared.services[service] = state

    def ready_at(self, service: str) -> float | None:
        """When the service turned (or turns) ready; None if it was never polled yet."""
        with self._shared.lock:
            return self._shared.services[service].ready_at

    def hits(self) -> list[HealthHit]:
        with self._shared.lock:
            return list(self._shared.hits)

    def clear(self) -> None:
        with self._shared.lock:
            self._shared.hits.clear()

    def start(self) -> MultiStaging:
        shared = self._shared

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as real staging servers do
            disable_nagle_algorithm = True
            timeout = 30

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                arrived = time.monotonic()
                _, _, rest = self.path.partition("/")
                name, _, endpoint = rest.partition("/")
                endpoint = endpoint.split("?", 1)[0]
                with shared.lock:
                    state = shared.services.get(name)
                    latency = shared.latency
                    if state is not None and endpoint == "health" and state.ready_at is None:
                        state.ready_at = arrived + (state.ready_after_first_poll or 0.0)
                if latency > 0:
                    time.sleep(latency)
                if state is None or endpoint not in ("health", "version"):
                    status, body = 404, b"not found"
                elif endpoint == "health":
                    assert state.ready_at is not None
                    status = 200 if arrived >= state.ready_at else 503
                    body = b"ok" if status == 200 else b"starting"
                    with shared.lock:
                        shared.hits.append(HealthHit(name, arrived, status))
                else:
                    status, body = 200, json.dumps({"sha": state.sha}).encode()
                respond(self, status, body)

        self._server = LoopbackServer(Handler)
        self._server.start(poll_interval=0.2)
        return self

    def stop(self) -> None:
        assert self._server is not None
        self._server.stop()

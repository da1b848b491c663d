"""A real staging service on loopback for tests: /health, /healthcheck and /version.

Every knob is a plain attribute that may be changed while the server runs::

    with Staging(version_body={"sha": sha}) as staging:
        staging.health_ready_after = 0.3   # 503 until 0.3 s after start (or restart_clock())
        url = staging.url                  # http://127.0.0.1:PORT

It records each request's path and headers in ``requests`` so tests can prove
what was (not) sent.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler
from typing import Any

from lockstep.loopback import LoopbackServer, Served

Body = bytes | str | Mapping[str, Any] | list[Any] | None


def render(body: Body) -> bytes:
    """bytes as-is, str as UTF-8, anything else as JSON."""
    if body is None:
        return b""
    if isinstance(body, bytes):
        return body
    if isinstance(body, str):
        return body.encode("utf-8")
    return json.dumps(body).encode("utf-8")


def closed_port_url() -> str:
    """A loopback URL on which nothing listens (connection refused)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


class Staging(Served):
    """A loopback HTTP server in a thread, standing in for one staging deployment."""

    def __init__(
        self,
        *,
        health_status: int = 200,
        health_ready_after: float = 0.0,
        health_body: Body = b"ok",
        health_headers: Mapping[str, str] | None = None,
        version_body: Body = None,
        version_status: int = 200,
        version_headers: Mapping[str, str] | None = None,
        version_content_length: bool = True,
        delay: float = 0.0,
        trickle: float | None = None,
        sha: str | None = None,
        port: int = 0,
    ) -> None:
        self.health_status = health_status
        self.health_ready_after = health_ready_after
        self.health_body = health_body
        self.health_headers = dict(health_headers or {})
        self.version_body: Body = version_body if sha is None else {"sha": sha}
        self.version_status = version_status
        self.version_headers = dict(version_headers or {})
        self.version_content_length = version_content_length
        self.delay = delay
        self.trickle = trickle  # seconds between body bytes; None = send at once
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.port = port
        self._lock = threading.Lock()
        self._started = time.monotonic()
        self._server: LoopbackServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None, "use Staging as a context manager"
        return self._server.url

    @property
    def health_hits(self) -> int:
        return sum(1 for path, _ in self.requests if path in ("/health", "/healthcheck"))

    def restart_clock(self) -> None:
        """Count ``health_ready_after`` from now."""
        self._started = time.monotonic()

    def start(self) -> Staging:
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                stub._handle(self)

        self._server = LoopbackServer(Handler, self.port)
        self._server.start(poll_interval=0.02)
        self.restart_clock()
        return self

    def stop(self) -> None:
        assert self._server is not None
        self._server.stop()

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        path = h.path.split("?", 1)[0]
        with self._lock:
            self.requests.append((path, dict(h.headers.items())))
        if self.delay:
            time.sleep(self.delay)
        headers: dict[str, str] = {"Content-Type": "application/json"}
        send_length = True
        if path in ("/health", "/healthcheck"):
            ready = time.monotonic() - self._started >= self.health_ready_after
            status = self.health_status if ready else 503
            body = render(self.health_body) if ready else b"starting"
            if ready:
                headers.update(self.health_headers)
        elif path == "/version":
            status = self.version_status
            body = render(self.version_body)
            headers.update(self.version_headers)
            send_length = self.version_content_length
        else:
            status, body = 404, b"not found"
        try:
            h.send_response(status)
            for name, value in headers.items():
                h.send_header(name, value)
            if send_length:
                h.send_header("Content-Length", str(len(body)))
            h.send_header("Connection", "close")
            h.end_headers()
            if self.trickle is None:
                h.wfile.write(body)
            else:
                for i in range(len(body)):
                    h.wfile.write(body[i : i + 1])
                    h.wfile.flush()
                    time.sleep(self.trickle)
        except (BrokenPipeError, ConnectionResetError):
            pass
        h.close_connection = True

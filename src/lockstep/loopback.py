"""One HTTP server on 127.0.0.1, served from a daemon thread.

The demo's staging services are built on it, and so are the test suite's and the
benchmarks' servers (the staging stubs, the fake GitHub), so every loopback server
binds, queues, ignores hung-up clients and stops the same way.
"""

from __future__ import annotations

import socketserver
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self


class LoopbackServer(ThreadingHTTPServer):
    """``ThreadingHTTPServer`` on 127.0.0.1 (port 0: one the OS picks) with a thread to serve from."""

    daemon_threads = True
    # The default backlog (5) drops SYNs when 50 probes connect at once: each retry costs 1 s.
    request_queue_size = 256

    def __init__(self, handler: type[BaseHTTPRequestHandler], port: int = 0) -> None:
        super().__init__(("127.0.0.1", port), handler)
        self._thread: threading.Thread | None = None

    def server_bind(self) -> None:
        # HTTPServer.server_bind does a reverse DNS lookup (getfqdn): slow in sandboxes.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that timed out or hung up mid-answer (a probe giving up, a process exiting) is normal.
        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_port}"

    def start(self, poll_interval: float = 0.05) -> None:
        self._thread = threading.Thread(
            target=self.serve_forever, kwargs={"poll_interval": poll_interval}, daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop serving, close the socket and wait (briefly) for the serving thread."""
        self.shutdown()
        self.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)


class Served:
    """``with server:`` starts it and stops it on the way out, for every wrapper of a LoopbackServer."""

    def start(self) -> Self:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def respond(
    handler: BaseHTTPRequestHandler, status: int, body: bytes, content_type: str = "application/json"
) -> None:
    """One complete answer with its length, so keep-alive clients know where it ends."""
    handler.send_response(status)
    handler.send_header("Content-Type", content_type)
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)

"""A tiny staging service for the demo: ``/health`` and ``/version`` on 127.0.0.1.

Each service reports the sha of a branch in a local git repository, read on
every request, so the sandbox keeps working after new commits.  To re-run a
demo gate, run it by hand with the interpreter lockstep is installed in
(``lockstep demo`` prints the exact line): ``PYTHON -m lockstep.staging_stub
--config DIR/lockstep.toml``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import threading
import tomllib
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from urllib.parse import urlsplit

from lockstep.loopback import LoopbackServer, Served, respond


class StagingService(Served):
    """One loopback HTTP server whose /version reports ``sha()``; ``healthy`` toggles /health."""

    def __init__(self, sha: Callable[[], str], *, port: int = 0, healthy: bool = True) -> None:
        self.sha = sha
        self.healthy = healthy
        service = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path in ("/health", "/healthcheck"):
                    ok = service.healthy
                    self._send(200 if ok else 503, {"status": "ok" if ok else "starting"})
                elif path == "/version":
                    self._send(200, {"sha": service.sha()})
                else:
                    self._send(404, {"error": "not found"})

            def _send(self, status: int, body: object) -> None:
                respond(self, status, json.dumps(body).encode())

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = LoopbackServer(Handler, port)

    @property
    def url(self) -> str:
        return self._server.url

    def start(self) -> StagingService:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop()


def branch_sha(repo: Path, branch: str) -> Callable[[], str]:
    """A callable reading ``branch`` of ``repo`` fresh each time."""

    def read() -> str:
        out = subprocess.run(
            ["git", "--git-dir", str(repo), "rev-parse", f"refs/heads/{branch}"],
            capture_output=True, text=True, check=False,
        )
        return out.stdout.strip()

    return read


def main() -> None:
    parser = argparse.ArgumentParser(description="Serve the demo sandbox's staging services.")
    parser.add_argument("--config", type=Path, required=True, help="the sandbox's lockstep.toml")
    args = parser.parse_args()
    config = tomllib.loads(args.config.read_text())
    base = args.config.resolve().parent
    services = []
    for svc in config["services"]:
        port = urlsplit(svc["health_url"]).port or 80
        repo = (base / svc["repo"]).resolve()
        services.append(StagingService(branch_sha(repo, svc.get("source", "main")), port=port).start())
        print(f"{svc['name']}: serving {svc['health_url']} and {svc['version_url']}")
    print("press Ctrl-C to stop")
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        for s in services:
            s.stop()


if __name__ == "__main__":
    main()

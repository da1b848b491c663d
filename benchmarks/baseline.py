"""BASELINE — the seed's way, NOT lockstep: one blocking call after another, a new connection each.

This is the reference the benchmark compares lockstep against.  It does what
the seed's shell helpers (``resolve-shas.sh``, ``poll-staging-health.sh``,
``verify-version.sh``, ``push-prod.sh``) did, written in Python with
``urllib`` so every request opens (and closes) its own TCP connection, as each
``gh api`` / ``curl`` call did:

1. resolve: for each service in turn, GET its main branch, then its prod branch;
2. health: for each service in turn, poll its health URL until HTTP 200;
3. version: for each service in turn, GET /version and compare with main's sha;
4. checks: run each ``[[checks]]`` command;
5. compare: for each service in turn, GET ``compare/prod...main`` (fast-forward?);
6. push: for each service in turn, PATCH ``git/refs/heads/prod`` (``force: false``).

It is deliberately *kinder* than the seed: no process start per call (the seed
paid one ``gh`` process per request), no retries, no re-read after the
pushes, no audit, no lock.  It exists only to be measured::

    python -m benchmarks.baseline --config lockstep.toml
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
import tomllib
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def _fill(value: Any) -> Any:
    if isinstance(value, str):
        return _VAR.sub(lambda m: os.environ[m.group(1)], value)
    if isinstance(value, list):
        return [_fill(v) for v in value]
    if isinstance(value, dict):
        return {k: _fill(v) for k, v in value.items()}
    return value


def _duration(text: str) -> float:
    units = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m|h)", text)
    if not m:
        raise SystemExit(f"baseline: unsupported duration {text!r}")
    return float(m.group(1)) * units[m.group(2)]


def call(method: str, url: str, token: str | None = None, body: object = None) -> tuple[int, Any]:
    """One request on a brand-new connection (urllib closes it after the answer)."""
    headers = {"User-Agent": "seed-baseline", "Accept": "application/vnd.github+json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    request = urllib.request.Request(url, data=data, headers=headers, method=method)  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            raw = response.read()
            status = response.status
    except urllib.error.HTTPError as exc:
        raw, status = exc.read(), exc.code
    try:
        return status, json.loads(raw) if raw else None
    except ValueError:
        return status, None


Heads = dict[str, tuple[str, str | None]]  # service name -> (source sha, target sha or None)


@dataclass(frozen=True)
class Api:
    """The forge's REST API as the seed's helpers called it: a base URL and the read token."""

    url: str
    read_token: str

    def branch(self, svc: dict[str, Any], name: str) -> str | None:
        """The head of branch ``name`` of the service's repository (None: no such branch)."""
        status, body = call("GET", f"{self.url}/repos/{svc['repo']}/branches/{quote(name)}", self.read_token)
        if status == 404:
            return None
        if status != 200:
            raise SystemExit(f"baseline: {svc['repo']} {name}: HTTP {status}")
        return str(body["commit"]["sha"])


def resolve(api: Api, services: list[dict[str, Any]]) -> Heads:
    """Step 1: each service's source and target heads, one call after another."""
    heads: Heads = {}
    for svc in services:
        source = api.branch(svc, svc.get("source", "main"))
        if source is None:
            raise SystemExit(f"baseline: {svc['repo']}: no source branch")
        heads[svc["name"]] = (source, api.branch(svc, svc.get("target", "prod")))
    return heads


def wait_healthy(services: list[dict[str, Any]], interval: float, timeout: float) -> None:
    """Step 2: poll each service's health URL in turn until it answers 200."""
    for svc in services:
        deadline = time.monotonic() + timeout
        while True:
            try:
                status, _ = call("GET", svc["health_url"])
            except OSError:
                status = 0
            if status == 200:
                break
            if time.monotonic() + interval > deadline:
                raise SystemExit(f"baseline: {svc['name']} not healthy")
            time.sleep(interval)


def verify_versions(services: list[dict[str, Any]], heads: Heads) -> None:
    """Step 3: each service's staging /version must name its source sha."""
    for svc in services:
        status, body = call("GET", svc["version_url"])
        seen = body
        for part in svc.get("version_field", "sha").split("."):
            seen = seen.get(part) if isinstance(seen, dict) else None
        if status != 200 or seen != heads[svc["name"]][0]:
            raise SystemExit(f"baseline: {svc['name']} staging runs {seen!r}")


def run_checks(checks: list[dict[str, Any]]) -> None:
    """Step 4: run each ``[[checks]]`` command; any non-zero exit stops the promotion."""
    for check in checks:
        env = os.environ | check.get("env", {})
        if subprocess.run(check["run"], env=env, check=False).returncode != 0:
            raise SystemExit(f"baseline: check {check['name']} failed")


def check_fast_forwards(api: Api, services: list[dict[str, Any]], heads: Heads) -> None:
    """Step 5: every existing target that differs from its source must be a fast-forward away."""
    for svc in services:
        source, target = heads[svc["name"]]
        if target is None or target == source:
            continue
        url = f"{api.url}/repos/{svc['repo']}/compare/{target}...{source}"
        status, body = call("GET", url, api.read_token)
        if status != 200 or body.get("status") not in ("ahead", "identical"):
            raise SystemExit(f"baseline: {svc['name']}: not a fast-forward")


def push(api: Api, services: list[dict[str, Any]], heads: Heads) -> None:
    """Step 6: move each target to its source, one service after another (create it if missing)."""
    for svc in services:
        source, target = heads[svc["name"]]
        if target == source:
            continue
        token = os.environ[svc["token_env"]]
        repo, tgt = svc["repo"], svc.get("target", "prod")
        if target is None:
            status, _ = call(
                "POST", f"{api.url}/repos/{repo}/git/refs", token, {"ref": f"refs/heads/{tgt}", "sha": source}
            )
            ok = status == 201
        else:
            status, _ = call(
                "PATCH",
                f"{api.url}/repos/{repo}/git/refs/heads/{quote(tgt)}",
                token,
                {"sha": source, "force": False},
            )
            ok = status == 200
        if not ok:
            raise SystemExit(f"baseline: push {svc['name']}: HTTP {status}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True)
    args = parser.parse_args(argv)
    with open(args.config, "rb") as fh:
        cfg = _fill(tomllib.load(fh))
    api = Api(
        os.environ.get("GITHUB_API_URL", "https://api.github.com").rstrip("/"),
        os.environ["GITHUB_TOKEN"],
    )
    gate = cfg["gate"]
    interval = _duration(gate.get("health_interval", "5s"))
    timeout = _duration(gate.get("health_timeout", "5m"))
    services = cfg["services"]

    heads = resolve(api, services)
    if all(src == tgt for src, tgt in heads.values()):
        print("baseline: nothing to promote")
        return 0
    wait_healthy(services, interval, timeout)
    verify_versions(services, heads)
    run_checks(cfg.get("checks", []))
    check_fast_forwards(api, services, heads)
    push(api, services, heads)
    print(f"baseline: promoted {len(services)} services")
    return 0


if __name__ == "__main__":
    sys.exit(main())

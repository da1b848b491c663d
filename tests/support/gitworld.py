"""A world of real bare git repositories, real staging servers and the real CLI, for integration tests.

Tests drive ``python -m lockstep`` as a subprocess and then read the refs'
true positions straight from the bare repositories.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lockstep.demo import git, make_repo
from tests.support.cli import CliResult, run_cli
from tests.support.staging import Staging

SRC = Path(__file__).resolve().parents[2] / "src"


def write_ref(repo: Path, branch: str, sha: str) -> None:
    """Set a branch by writing its loose ref file (no git process: the chaos worlds build many repos)."""
    path = repo / "refs" / "heads" / branch
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(sha + "\n")


def read_ref(repo: Path, branch: str) -> str | None:
    """A branch head straight from the repository files (loose ref, else packed-refs), None if absent."""
    loose = repo / "refs" / "heads" / branch
    if loose.exists():
        return loose.read_text().strip() or None
    packed = repo / "packed-refs"
    if packed.exists():
        for line in packed.read_text().splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[1] == f"refs/heads/{branch}":
                return parts[0]
    return None


def install_hook(repo: Path, hook: str, script: str) -> None:
    """A ``/bin/sh`` server-side hook (``pre-receive``, ``post-receive``...) in a bare repository."""
    path = repo / "hooks" / hook
    path.parent.mkdir(exist_ok=True)
    path.write_text("#!/bin/sh\n" + script + "\n")
    path.chmod(0o755)


@dataclass
class GitWorld:
    root: Path
    names: tuple[str, ...]
    repos: dict[str, Path] = field(default_factory=dict)
    staging: dict[str, Staging] = field(default_factory=dict)
    stack: ExitStack = field(default_factory=ExitStack)

    def sha(self, name: str, branch: str) -> str | None:
        out = subprocess.run(
            ["git", "--git-dir", str(self.repos[name]), "rev-parse", "--verify", "-q", f"refs/heads/{branch}"],
            capture_output=True, text=True, check=False,
        )
        return out.stdout.strip() or None

    def set_branch(self, name: str, branch: str, sha: str) -> None:
        git("--git-dir", str(self.repos[name]), "update-ref", f"refs/heads/{branch}", sha)

    def delete_branch(self, name: str, branch: str) -> None:
        git("--git-dir", str(self.repos[name]), "update-ref", "-d", f"refs/heads/{branch}")

    def commit_on(self, name: str, branch: str, parent: str | None = None) -> str:
        """A new commit on ``branch`` (child of ``parent`` or of the branch head)."""
        repo = str(self.repos[name])
        base = parent or self.sha(name, branch)
        tree = git("--git-dir", repo, "rev-parse", f"{base}^{{tree}}")
        sha = git("--git-dir", repo, "commit-tree", tree, "-p", str(base), "-m", f"extra on {branch}")
        self.set_branch(name, branch, sha)
        return sha

    def hook(self, name: str, hook: str, script: str) -> None:
        install_hook(self.repos[name], hook, script)

    def config(self, *, gate: Mapping[str, str] | None = None, services: Mapping[str, str] | None = None, extra: str = "",
               checks: str = "", tracker: str | None = "audit.md") -> Path:
        """Write lockstep.toml; ``services`` maps a name to extra TOML lines for that service."""
        services = services or {}
        settings = {"name": '"test"', "forge": '"git"', "health_timeout": '"3s"',
                    "health_interval": '"50ms"', "request_timeout": '"2s"', **(gate or {})}
        text = "[gate]\n" + "".join(f"{k} = {v}\n" for k, v in settings.items())
        if tracker is not None:
            text += f'[bypass]\ntracker = "{tracker}"\n'
        for name in self.names:
            url = self.staging[name].url
            text += (
                f'\n[[services]]\nname = "{name}"\nrepo = "{name}.git"\n'
                f'health_url = "{url}/health"\nversion_url = "{url}/version"\n{services.get(name, "")}\n'
            )
        text += extra + checks
        path = self.root / "lockstep.toml"
        path.write_text(text)
        return path

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "LOCKSTEP_"))}
        env["XDG_STATE_HOME"] = str(self.root / ".state")
        env["PYTHONPATH"] = str(SRC)
        env.update(extra)
        return env

    def run(self, *args: str, env: Mapping[str, str] | None = None, timeout: float = 60) -> CliResult:
        return run_cli(self.root, args, env or self.env(), timeout)

    def start(self, *args: str, env: Mapping[str, str] | None = None) -> subprocess.Popen[str]:
        cmd = [sys.executable, "-m", "lockstep", *args, "--config", str(self.root / "lockstep.toml"),
               "--report", str(self.root / "report-background.json")]
        return subprocess.Popen(cmd, cwd=self.root, env=dict(env or self.env()), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)

    def service(self, report: dict[str, Any], name: str) -> dict[str, Any]:
        return next(s for s in report["services"] if s["name"] == name)


def build_world(root: Path, names: tuple[str, ...] = ("alpha", "beta")) -> Iterator[GitWorld]:
    world = GitWorld(root=root, names=names)
    with world.stack:
        for name in names:
            world.repos[name] = make_repo(root, name)
            world.staging[name] = world.stack.enter_context(Staging(sha=world.sha(name, "main")))
        yield world

"""``lockstep demo``: a real gate in a throwaway sandbox, no account needed.

The sandbox holds two bare git repositories with ``main`` ahead of ``prod``,
two staging services on 127.0.0.1 (:mod:`lockstep.staging_stub`), a
``lockstep.toml`` and one passing check.  The gate that runs is the real one:
same CLI path, same git forge, same reports.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

import click

from lockstep.errors import UsageError
from lockstep.redact import scrub
from lockstep.staging_stub import StagingService, branch_sha

_GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "lockstep demo",
    "GIT_AUTHOR_EMAIL": "demo@lockstep.invalid",
    "GIT_COMMITTER_NAME": "lockstep demo",
    "GIT_COMMITTER_EMAIL": "demo@lockstep.invalid",
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": os.devnull,
}

SERVICES = ("backend", "metadata")

CHECK_SCRIPT = '''\
"""Demo check: staging answers and reports the shas being promoted."""
import json, os, sys, urllib.request

for name in ("BACKEND", "METADATA"):
    url = os.environ[f"{name}_URL"] + "/version"
    seen = json.load(urllib.request.urlopen(url, timeout=5))["sha"]
    want = os.environ[f"LOCKSTEP_{name}_SHA"]
    print(f"{name.lower()}: staging runs {seen[:7]}, promoting {want[:7]}")
    if seen != want:
        sys.exit(f"{name.lower()}: staging does not run the sha being promoted")
print("smoke test passed")
'''


def git(*args: str, cwd: Path | None = None, input: str | None = None) -> str:
    """Run git with a fixed identity and no user config, so the sandbox is reproducible."""
    env = {**os.environ, **_GIT_IDENTITY}
    out = subprocess.run(
        ["git", *args], cwd=cwd, env=env, input=input, capture_output=True, text=True, check=False
    )
    if out.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} failed: {out.stderr.strip()}")
    return out.stdout.strip()


def make_repo(root: Path, name: str, *, prod_commits: int = 1, main_commits: int = 2) -> Path:
    """A bare repo ``root/name.git`` with ``prod`` at commit N and ``main`` some commits ahead."""
    bare = root / f"{name}.git"
    work = root / f".{name}-work"
    git("init", "--quiet", "--bare", "--initial-branch=main", str(bare))
    git("init", "--quiet", "--initial-branch=main", str(work))
    for i in range(prod_commits + main_commits):
        (work / "CHANGELOG").write_text(f"{name} change {i}\n")
        git("add", "CHANGELOG", cwd=work)
        git("commit", "--quiet", "-m", f"{name}: change {i}", cwd=work)
        if i == prod_commits - 1:
            git("push", "--quiet", str(bare), "HEAD:refs/heads/prod", cwd=work)
    git("push", "--quiet", str(bare), "HEAD:refs/heads/main", cwd=work)
    return bare


def write_config(root: Path, urls: dict[str, str]) -> Path:
    services = "".join(
        f'''
[[services]]
name = "{name}"
repo = "{name}.git"
health_url = "{urls[name]}/health"
version_url = "{urls[name]}/version"
'''
        for name in SERVICES
    )
    text = f'''# A lockstep gate over two local repositories (see the README for every key).
[gate]
name = "demo"
forge = "git"
health_timeout = "5s"
health_interval = "200ms"
request_timeout = "2s"

[bypass]
tracker = "audit.md"
{services}
[[checks]]
name = "smoke"
run = ["{sys.executable}", "check_staging.py"]
env = {{ BACKEND_URL = "{urls['backend']}", METADATA_URL = "{urls['metadata']}" }}
timeout = "30s"
'''
    path = root / "lockstep.toml"
    path.write_text(text)
    (root / "check_staging.py").write_text(CHECK_SCRIPT)
    return path


def run_demo(directory: Path | None, scenario: str) -> int:
    from lockstep.config import load_config
    from lockstep.engine.prepare import RunRequest
    from lockstep.engine.run import execute_run

    root = Path(directory) if directory else Path(tempfile.mkdtemp(prefix="lockstep-demo-"))
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"--dir {root}: cannot create the sandbox there ({exc.strerror or exc})") from None
    if (root / "lockstep.toml").exists():
        raise UsageError(f"--dir {root} already holds a sandbox; pass another --dir")
    root = root.resolve()
    repos = {name: make_repo(root, name) for name in SERVICES}
    if scenario == "noop":
        for repo in repos.values():
            git("--git-dir", str(repo), "update-ref", "refs/heads/prod", "refs/heads/main")

    staging = {}
    for name, repo in repos.items():
        sha = branch_sha(repo, "main")
        if scenario == "version-mismatch" and name == "metadata":
            sha = branch_sha(repo, "prod")  # staging still runs the old commit
        staging[name] = StagingService(sha, healthy=not (scenario == "bypass" and name == "metadata"))
    for s in staging.values():
        s.start()
    config_path = write_config(root, {name: s.url for name, s in staging.items()})
    if scenario == "split":
        hook = repos["metadata"] / "hooks" / "pre-receive"
        hook.write_text("#!/bin/sh\necho 'demo: prod is protected, push refused' >&2\nexit 1\n")
        hook.chmod(0o755)

    click.echo(scrub(f"lockstep demo ({scenario}): sandbox in {root}"), err=True)
    request = RunRequest(
        skip_gate=scenario == "bypass",
        justification="demo: metadata staging is down; promoting the reviewed fix" if scenario == "bypass"
        else None,
        actor="demo",
    )
    env = {k: v for k, v in os.environ.items() if k != "GITHUB_ACTIONS"}
    env["XDG_STATE_HOME"] = str(root / ".state")
    try:
        config = load_config(config_path, env)
        code = execute_run(config, request, env)
    finally:
        for s in staging.values():
            s.stop()
    click.echo(scrub(
        f"\nSandbox: {root}\n"
        f"  repositories: {', '.join(str(r.name) for r in repos.values())} (bare; `git --git-dir "
        f"{repos['backend']} log --oneline --all`)\n"
        + (f"  audit record: {root / 'audit.md'}\n" if scenario == "bypass" else "")
        + "To run the gate there again (staging stubs in the background, then the gate):\n"
        + "".join(f"  {line}\n" for line in rerun_commands(root, config_path))
        + f"Exit code of this demo gate: {code}"),
        err=True,
    )
    return code


def rerun_commands(root: Path, config_path: Path) -> list[str]:
    """Shell lines that re-run the sandbox's gate with the interpreter running this demo.

    ``lockstep`` need not be on PATH (``uv run lockstep demo`` does not put it
    there) and a bare ``python`` may be another interpreter without lockstep,
    so both lines name this one by its absolute path.
    """
    python = shlex.quote(sys.executable)
    return [
        f"{python} -m lockstep.staging_stub --config {shlex.quote(str(config_path))} &",
        f"cd {shlex.quote(str(root))} && {python} -m lockstep run",
    ]

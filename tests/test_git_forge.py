"""The git forge in-process against real bare repositories: what it answers when git hangs or
refuses, with a short timeout so a hang costs a second, not the CLI's 30 s.

A remote that hangs (a server that never answers, a hook that never returns) must end in a
clear, transient error or an honest "unknown", and the hanging git must be killed with its
whole process group: a push left running could land after lockstep reported.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

from lockstep.config import Config, ServiceConfig, parse_config
from lockstep.errors import ForgeError
from lockstep.forges.git.forge import GitForge
from lockstep.model import PushStatus, Sha
from tests.support.gitworld import GitWorld


def _config(world: GitWorld, repo: str | None = None) -> Config:
    text = '[gate]\nname = "git-forge"\nforge = "git"\n'
    for name in world.names:
        text += (f'\n[[services]]\nname = "{name}"\nrepo = "{repo or world.repos[name]}"\n'
                 'health_url = "http://127.0.0.1:9/health"\nversion_url = "http://127.0.0.1:9/version"\n')
    return parse_config(text, env={}, source="git-forge.toml", base_dir=world.root)


def _service(config: Config, name: str) -> ServiceConfig:
    return next(s for s in config.services if s.name == name)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_a_push_whose_hook_hangs_is_unknown_and_the_hook_is_killed(world: GitWorld, tmp_path: Path) -> None:
    pid_file = tmp_path / "hook.pid"
    world.hook("alpha", "pre-receive", f"echo $$ > {pid_file}; exec sleep 30")
    old, new = Sha(world.sha("alpha", "prod") or ""), Sha(world.sha("alpha", "main") or "")
    service = _service(_config(world), "alpha")

    async def push() -> tuple[PushStatus, str]:
        forge = GitForge(base_dir=world.root, timeout=2.0)  # each git process: the fetch takes ~50 ms
        try:
            result = await forge.advance(service, old, new)
            return result.status, result.detail
        finally:
            await forge.aclose()

    started = time.monotonic()
    status, detail = asyncio.run(push())
    assert time.monotonic() - started < 10
    assert status == PushStatus.UNKNOWN
    assert detail == f"{service.repo}: push timed out; 'prod' still at the old sha, but the push may still land"
    hook_pid = int(pid_file.read_text())
    deadline = time.monotonic() + 5
    while _alive(hook_pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(hook_pid), "the hook outlived lockstep's push"
    assert world.sha("alpha", "prod") == old  # and nothing lands later


def test_a_remote_that_never_answers_is_a_transient_timeout(world: GitWorld, tmp_path: Path) -> None:
    # an ssh remote whose "ssh" never answers: the same as a server that accepts and hangs
    config = _config(world, repo="ssh://git.invalid/alpha.git")
    ssh = tmp_path / "hanging-ssh"
    ssh.write_text("#!/bin/sh\nexec sleep 30\n")
    ssh.chmod(0o755)

    async def read() -> ForgeError:
        forge = GitForge(base_dir=world.root, timeout=1.0, env={**os.environ, "GIT_SSH_COMMAND": str(ssh)})
        try:
            await forge.read_heads(_service(config, "alpha"))
        except ForgeError as exc:
            return exc
        finally:
            await forge.aclose()
        raise AssertionError("read_heads returned")

    started = time.monotonic()
    error = asyncio.run(read())
    assert time.monotonic() - started < 10
    assert str(error) == "ssh://git.invalid/alpha.git: reading main, prod timed out after 1s"
    assert error.transient


def test_advance_refuses_a_target_that_is_not_an_ancestor(world: GitWorld) -> None:
    main = Sha(world.sha("alpha", "main") or "")
    side = Sha(world.commit_on("alpha", "prod"))  # prod diverged from main: main cannot fast-forward it
    service = _service(_config(world), "alpha")

    async def push() -> tuple[PushStatus, str]:
        forge = GitForge(base_dir=world.root)
        try:
            result = await forge.advance(service, side, main)
            return result.status, result.detail
        finally:
            await forge.aclose()

    status, detail = asyncio.run(push())
    assert status == PushStatus.REJECTED
    assert detail == f"{service.repo}: 'prod' at {side.short} is not an ancestor of {main.short}"
    assert world.sha("alpha", "prod") == side

"""Check commands run as real subprocesses: env, exit codes, timeouts, process groups."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from lockstep.checks import CheckResult, check_environment, run_check
from lockstep.config import CheckConfig
from lockstep.model import Sha

SHA = Sha("0123456789abcdef0123456789abcdef01234567")
PY = sys.executable


def check(*run: str, name: str = "e2e", timeout: float = 10.0, **kw: Any) -> CheckConfig:
    return CheckConfig(name=name, run=run, timeout=timeout, **kw)


def run(c: CheckConfig, env: dict[str, str] | None = None, **kw: Any) -> tuple[CheckResult, list[str]]:
    lines: list[str] = []
    kw.setdefault("on_line", lines.append)
    result = asyncio.run(run_check(c, env=env if env is not None else dict(os.environ), **kw))
    return result, lines


def gone(pid: int) -> bool:
    """No such process, or only a zombie (where nothing reaps orphans)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] in (b"Z", b"X")
    except FileNotFoundError:
        return True


def wait_gone(pid: int, within: float = 2.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if gone(pid):
            return True
        time.sleep(0.02)
    return gone(pid)


def test_pass() -> None:
    r, lines = run(check(PY, "-c", "print('hello')"))
    assert r.ok and r.exit_code == 0 and not r.timed_out
    assert lines == ["hello"] and r.output_tail == "hello"
    assert r.detail.startswith("check e2e passed in ") and r.detail.endswith("s")


def test_fail_with_exit_code() -> None:
    r, _ = run(check(PY, "-c", "import sys; print('boom', file=sys.stderr); sys.exit(3)"))
    assert not r.ok and r.exit_code == 3 and not r.timed_out
    assert r.detail.startswith("check e2e failed with exit 3 after ")
    assert r.output_tail == "boom"  # stderr is merged


def test_killed_by_signal_is_reported() -> None:
    r, _ = run(check(PY, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGSEGV)"))
    assert not r.ok and r.exit_code is not None and r.exit_code < 0
    assert "killed by SIGSEGV" in r.detail


def test_environment_has_shas_and_check_env_but_no_secrets() -> None:
    c = check(
        PY, "-c", "import json, os; print(json.dumps(dict(os.environ)))",
        env={"E2E_BASE_URL": "http://staging", "PROD_PUSH_TOKEN_BS": "smuggled"},
    )
    base = {"PATH": os.environ["PATH"], "PROD_PUSH_TOKEN_BS": "s3cret", "GITHUB_TOKEN": "gh",
            "KEEP": "1"}
    env = check_environment(base, c, {"BACKEND_SERVICE": SHA},
                            secret_vars={"PROD_PUSH_TOKEN_BS", "GITHUB_TOKEN", "UNSET_ONE"})
    assert env == {"PATH": os.environ["PATH"], "KEEP": "1", "E2E_BASE_URL": "http://staging",
                   "LOCKSTEP_BACKEND_SERVICE_SHA": SHA}
    r, lines = run(c, env)
    assert r.ok
    seen = json.loads(lines[0])
    assert seen["LOCKSTEP_BACKEND_SERVICE_SHA"] == SHA
    assert seen["E2E_BASE_URL"] == "http://staging"
    assert "PROD_PUSH_TOKEN_BS" not in seen and "GITHUB_TOKEN" not in seen
    assert "s3cret" not in lines[0] and "smuggled" not in lines[0]


def test_argv_is_never_a_shell() -> None:
    r, lines = run(check(PY, "-c", "import sys; print(sys.argv[1])", "$(echo hi); `id` | x"))
    assert r.ok and lines == ["$(echo hi); `id` | x"]


def test_timeout_kills_the_whole_process_group(tmp_path: Path) -> None:
    pidfile = tmp_path / "pids"
    script = f"sleep 100 & echo $! > {pidfile}; echo $$ >> {pidfile}; echo started; sleep 100"
    start = time.monotonic()
    r, lines = run(check("sh", "-c", script, timeout=0.5), kill_grace=1.0)
    wall = time.monotonic() - start
    assert r.timed_out and not r.ok and r.exit_code is None
    assert r.detail == "check e2e timed out after 0.5s, killed"
    assert lines == ["started"]
    assert wall < 2.0
    pids = [int(p) for p in pidfile.read_text().split()]
    assert len(pids) == 2 and all(wait_gone(p) for p in pids)


def test_sigterm_ignored_gets_sigkill_after_grace() -> None:
    code = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); " \
           "print('ready', flush=True); time.sleep(100)"
    start = time.monotonic()
    r, lines = run(check(PY, "-c", code, timeout=0.5), kill_grace=0.3)
    wall = time.monotonic() - start
    assert r.timed_out and lines == ["ready"]
    assert 0.8 <= wall < 2.0


def test_background_process_holding_the_pipe_does_not_hang_us(tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    script = f"sleep 100 & echo $! > {pidfile}; echo done"
    start = time.monotonic()
    r, lines = run(check("sh", "-c", script), kill_grace=0.5)
    assert r.ok and lines == ["done"]
    assert r.detail.endswith("(stopped the background processes it left running)")
    assert time.monotonic() - start < 3.0
    assert wait_gone(int(pidfile.read_text()))


def test_command_not_found() -> None:
    r, lines = run(check("lockstep-no-such-command-xyz", "run"))
    assert not r.ok and r.exit_code is None and not r.timed_out and lines == []
    assert r.detail == "check e2e: command not found: lockstep-no-such-command-xyz"


def test_command_not_found_uses_the_check_path() -> None:
    r, _ = run(check("sh", "-c", "true"), env={"PATH": "/nonexistent"})
    assert r.detail == "check e2e: command not found: sh"


def test_permission_denied(tmp_path: Path) -> None:
    script = tmp_path / "run.sh"
    script.write_text("#!/bin/sh\necho hi\n")
    script.chmod(0o644)
    r, _ = run(check(str(script)))
    assert not r.ok and r.detail == f"check e2e: permission denied: {script}"


def test_missing_interpreter(tmp_path: Path) -> None:
    script = tmp_path / "run.sh"
    script.write_text("#!/nonexistent/interpreter\necho hi\n")
    script.chmod(0o755)
    r, _ = run(check(str(script)))
    assert not r.ok and "its interpreter was not found" in r.detail


def test_output_streamed_line_by_line_in_order() -> None:
    code = (
        "import sys, time\n"
        "for i in range(3):\n"
        "    print(f'line {i}', flush=True); time.sleep(0.2)\n"
    )
    stamps: list[tuple[float, str]] = []
    r, _ = run(check(PY, "-c", code), on_line=lambda s: stamps.append((time.monotonic(), s)))
    end = time.monotonic()
    assert r.ok and [s for _, s in stamps] == ["line 0", "line 1", "line 2"]
    # Relative to the check's own sleeps, not to its start: a loaded CI machine can take
    # half a second to start Python, but buffered output would arrive all at the end.
    assert end - stamps[0][0] >= 0.5  # arrived while the check was still running
    assert stamps[2][0] - stamps[0][0] >= 0.3


def test_tail_keeps_the_last_lines_and_bytes() -> None:
    code = "print('\\x1b[31mred\\x1b[0m'); [print(f'line {i}') for i in range(1000)]; " \
           "print('x' * 40000, end='')"
    r, lines = run(check(PY, "-c", code))
    assert len(lines) == 1000 + 1 + 3  # the 40000-char unterminated line arrives in 3 pieces
    assert lines[0] == "\x1b[31mred\x1b[0m"  # streamed raw
    assert len(r.output_tail.encode()) <= 16 * 1024
    assert r.output_tail.endswith("x" * 100)
    r2, _ = run(check(PY, "-c", "print('\\x1b[31mred\\x1b[0m'); [print(f'l{i}') for i in range(100)]"))
    assert r2.output_tail.splitlines() == [f"l{i}" for i in range(40, 100)]
    r3, _ = run(check(PY, "-c", "print('\\x1b[31mred\\x1b[0m')"))
    assert r3.output_tail == "red"  # ANSI colour removed from the kept tail


def test_invalid_utf8_is_replaced() -> None:
    r, lines = run(check(PY, "-c", "import sys; sys.stdout.buffer.write(b'a\\xffb\\r\\n')"))
    assert r.ok and lines == ["a\ufffdb"]


def test_default_on_line_logs(capsys: pytest.CaptureFixture[str]) -> None:
    r = asyncio.run(run_check(check(PY, "-c", "print('hi')"), env=dict(os.environ)))
    assert r.ok and "[e2e] hi" in capsys.readouterr().err


def test_broken_on_line_callback_does_not_hang() -> None:
    def bad(_: str) -> None:
        raise RuntimeError("nope")

    r, _ = run(check(PY, "-c", "[print(i) for i in range(100000)]"), on_line=bad)
    assert r.ok and r.output_tail.endswith("99999")


def test_cancellation_kills_the_group_and_reraises(tmp_path: Path) -> None:
    pidfile = tmp_path / "pids"
    script = f"sleep 100 & echo $! > {pidfile}; echo $$ >> {pidfile}; echo started; sleep 100"

    async def main() -> float:
        started = asyncio.Event()
        task = asyncio.create_task(run_check(
            check("sh", "-c", script), env=dict(os.environ),
            on_line=lambda s: started.set(), kill_grace=1.0))
        await asyncio.wait_for(started.wait(), 5)
        task.cancel()
        t0 = time.monotonic()
        with pytest.raises(asyncio.CancelledError):
            await task
        return time.monotonic() - t0

    assert asyncio.run(main()) < 1.5
    pids = [int(p) for p in pidfile.read_text().split()]
    assert len(pids) == 2 and all(wait_gone(p) for p in pids)


def test_cwd(tmp_path: Path) -> None:
    (tmp_path / "run.sh").write_text("#!/bin/sh\npwd\n")
    (tmp_path / "run.sh").chmod(0o755)
    r, lines = run(check("./run.sh"), cwd=tmp_path)
    assert r.ok and lines == [str(tmp_path)]
    r, _ = run(check("./run.sh"), cwd=tmp_path / "missing")
    assert not r.ok and r.detail == f"check e2e: working directory not found: {tmp_path}/missing"

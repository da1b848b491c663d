"""Hangups, the bypass tracker file, the report path and the config file, through the real CLI.

Real bare repositories, real staging servers and ``python -m lockstep`` in
subprocesses (:mod:`tests.gitworld`); every test reads the refs' true positions
back from the repositories, so "nothing changed" is checked, not assumed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.gitworld import GitWorld

RECORDS_REF = "refs/lockstep/test/records"


def records(world: GitWorld) -> list[dict[str, Any]]:
    """The promotion records on alpha.git's records ref ([] when it does not exist)."""
    git_dir = str(world.repos["alpha"])
    show = subprocess.run(["git", "--git-dir", git_dir, "show", f"{RECORDS_REF}:records.jsonl"],
                          capture_output=True, text=True, check=False)
    return [json.loads(line) for line in show.stdout.splitlines() if line.strip()]


def prods(world: GitWorld) -> dict[str, str | None]:
    return {n: world.sha(n, "prod") for n in world.names}


def wait_for(path: Path, proc: subprocess.Popen[str], seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        assert time.monotonic() < deadline and proc.poll() is None, proc.communicate(timeout=30)
        time.sleep(0.01)


# -- 3. SIGHUP is a safe stop, like SIGTERM -----------------------------------------------


class Session:
    """``lockstep run`` in the background, its stdout/stderr on pipes or on a pseudo-terminal.

    ``hang_up`` is what closing the terminal or losing the ssh session does: with ``terminal`` the
    pty's master side is closed first, so every later write to stdout/stderr fails with EIO (and
    lockstep's live view is on, since stderr is a terminal), then SIGHUP arrives.
    """

    def __init__(self, world: GitWorld, *, terminal: bool) -> None:
        self.report = world.root / "report-background.json"
        cmd = [sys.executable, "-m", "lockstep", "run", "--config", str(world.root / "lockstep.toml"),
               "--report", str(self.report)]
        env = world.env(TERM="xterm")
        env.pop("NO_COLOR", None)
        self.master: int | None = None
        if terminal:
            self.master, slave = os.openpty()
            self.proc = subprocess.Popen(cmd, cwd=world.root, env=env, stdin=slave, stdout=slave,
                                         stderr=slave, text=True, start_new_session=True)
            os.close(slave)
        else:
            self.proc = subprocess.Popen(cmd, cwd=world.root, env=env, stdout=subprocess.PIPE,
                                         stderr=subprocess.PIPE, text=True)

    def hang_up(self) -> tuple[int, str, str]:
        if self.master is not None:
            os.close(self.master)
        self.proc.send_signal(signal.SIGHUP)
        out, err = self.proc.communicate(timeout=30)
        return self.proc.returncode, out or "", err or ""


@pytest.mark.parametrize("terminal", [False, True], ids=["pipes", "closed-terminal"])
def test_sighup_during_a_push_lets_it_land_then_reports_the_split(world: GitWorld, terminal: bool) -> None:
    """The terminal closes while alpha's push is in flight (a slow pre-receive hook): lockstep used to
    die at once (exit -1/129) with no report and no finished record while the push landed after it;
    with the terminal really gone, writing a progress line then killed the run instead (exit 1)."""
    marker = world.root / "alpha-push-started"
    world.hook("alpha", "pre-receive",
               f'while read o n r; do if [ "$r" = refs/heads/prod ]; then touch {marker}; sleep 1.5; fi; done')
    world.config()
    before = prods(world)
    session = Session(world, terminal=terminal)
    wait_for(marker, session.proc)
    code, out, err = session.hang_up()
    assert code == 3, (code, err)
    assert prods(world) == {"alpha": world.sha("alpha", "main"), "beta": before["beta"]}
    report = json.loads(session.report.read_text())
    assert report["result"] == "split" and report["exit_code"] == 3
    alpha, beta = (world.service(report, n) for n in ("alpha", "beta"))
    assert (alpha["did_push"], alpha["final_target_sha"]) == (True, world.sha("alpha", "main"))
    assert (beta["did_push"], beta["final_target_sha"]) == (False, before["beta"])
    assert (beta["outcome"], alpha["outcome"]) == ("cancelled", "advanced")
    promote = next(s for s in report["steps"] if s["name"] == "promote")
    assert promote["detail"] == "cancelled by SIGHUP"
    if not terminal:  # on the closed terminal the summary had nowhere to go; the report above has it
        assert "Split promotion" in out and "| cancelled |" in out
        assert "SIGHUP received: no new push will start" in err
    phases = [(r["phase"], r["result"]) for r in records(world)]
    assert phases == [("started", None), ("finished", "split")]


@pytest.mark.parametrize("terminal", [False, True], ids=["pipes", "closed-terminal"])
def test_sighup_during_a_check_stops_it_and_moves_nothing(
    world: GitWorld, tmp_path: Path, terminal: bool
) -> None:
    """SIGHUP while a check runs: the check is stopped, nothing is pushed, exit 1 with a report."""
    started, stopped = tmp_path / "started", tmp_path / "stopped"
    script = tmp_path / "hang.py"
    script.write_text(
        "import pathlib, signal, sys, time\n"
        f"signal.signal(signal.SIGTERM, lambda *_: (pathlib.Path({str(stopped)!r}).touch(), sys.exit(1)))\n"
        f"pathlib.Path({str(started)!r}).touch()\ntime.sleep(60)\n"
    )
    world.config(checks=f'[[checks]]\nname = "hang"\nrun = ["{sys.executable}", "{script}"]\n')
    before = prods(world)
    session = Session(world, terminal=terminal)
    wait_for(started, session.proc)
    t0 = time.monotonic()
    code, _out, err = session.hang_up()
    assert time.monotonic() - t0 < 7, "the report must be written within 7 s of SIGHUP"
    assert code == 1, (code, err)
    assert prods(world) == before
    assert stopped.exists(), "the check was left running"
    report = json.loads(session.report.read_text())
    assert report["result"] == "blocked" and report["exit_code"] == 1
    check = next(s for s in report["steps"] if s["name"] == "check hang")
    assert (check["status"], check["detail"]) == ("cancelled", "cancelled by SIGHUP")
    assert records(world) == []

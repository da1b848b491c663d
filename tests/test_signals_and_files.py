"""Hangups, the bypass tracker file, the report path and the config file, through the real CLI.

Real bare repositories, real staging servers and ``python -m lockstep`` in
subprocesses (:mod:`tests.support.gitworld`); every test reads the refs' true positions
back from the repositories, so "nothing changed" is checked, not assumed.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from lockstep.scaffold import toml_string
from tests.support.gitworld import GitWorld

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
    assert stopped.exists(), ("the check was not stopped with SIGTERM", err)
    report = json.loads(session.report.read_text())
    assert report["result"] == "blocked" and report["exit_code"] == 1
    check = next(s for s in report["steps"] if s["name"] == "check hang")
    assert (check["status"], check["detail"]) == ("cancelled", "cancelled by SIGHUP")
    assert records(world) == []


# -- 4. the git forge's tracker is a regular file, never followed through a link ------------


def plant(world: GitWorld, kind: str) -> tuple[Path, bytes | None]:
    """Make ``audit.md`` (or its twin) something other than a regular file.

    Returns the file a followed link would write to and its bytes now (None: it does not exist,
    so following the link would create it).
    """
    audit = world.root / "audit.md"
    victim = world.root / "elsewhere" / "notes.txt"
    victim.parent.mkdir()
    if kind == "dangling-link":
        audit.symlink_to(victim)
        return victim, None
    victim.write_bytes(b"someone else's file\n")
    if kind == "link":
        audit.symlink_to(victim)
    elif kind == "twin-link":
        audit.write_text("# audit log\n")
        (world.root / "audit.md.jsonl").symlink_to(victim)
    elif kind == "fifo":
        os.mkfifo(audit)
    elif kind == "directory":
        audit.mkdir()
    return victim, victim.read_bytes()


TRACKER_KINDS = ["link", "dangling-link", "twin-link", "fifo", "directory"]
BYPASS = ("--skip-gate", "--justification", "hotfix for INC-1")


def assert_refused(res_code: int, err: str, victim: Path, before: bytes | None) -> None:
    assert res_code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("lockstep: "), err
    assert "bypass.tracker" in lines[0] and "Traceback" not in err
    assert ("symbolic link" in lines[0]) or ("not a regular file" in lines[0])
    assert (victim.read_bytes() if victim.exists() else None) == before, "the other file was written"


@pytest.mark.parametrize("kind", TRACKER_KINDS)
def test_bypass_refuses_a_tracker_that_is_not_a_regular_file(world: GitWorld, kind: str) -> None:
    """``audit.md -> elsewhere`` used to make the bypass append its record to the other file (a
    dangling link created it) and promote; a FIFO blocked nothing either. Now: exit 2, nothing moved."""
    world.config()
    victim, before = plant(world, kind)
    olds = prods(world)
    res = world.run("run", *BYPASS, timeout=30)
    assert_refused(res.code, res.err, victim, before)
    assert prods(world) == olds and records(world) == []
    assert res.report is None


@pytest.mark.parametrize("kind", ["link", "twin-link"])
def test_reconcile_refuses_a_symlinked_tracker_before_reading_anything(world: GitWorld, kind: str) -> None:
    world.config(extra="[recovery]\nallow_rollback = true\n")
    victim, before = plant(world, kind)
    olds = prods(world)
    res = world.run("reconcile", "--rollback", "--justification", "undo", "--config",
                    str(world.root / "lockstep.toml"), timeout=30)
    assert_refused(res.code, res.err, victim, before)
    assert prods(world) == olds


@pytest.mark.parametrize("kind", TRACKER_KINDS)
def test_validate_refuses_a_tracker_that_is_not_a_regular_file(world: GitWorld, kind: str) -> None:
    """``validate`` used to say ok for a symlinked tracker or twin."""
    world.config()
    victim, before = plant(world, kind)
    res = world.run("validate", "--config", str(world.root / "lockstep.toml"), timeout=30)
    assert_refused(res.code, res.err, victim, before)
    assert "ok" not in res.out.split()


def test_a_regular_tracker_still_takes_the_bypass_record(world: GitWorld) -> None:
    world.config()
    (world.root / "audit.md").write_text("# audit log\n")
    res = world.run("run", *BYPASS)
    assert res.code == 0, res.err
    assert "hotfix for INC-1" in (world.root / "audit.md").read_text()
    assert json.loads((world.root / "audit.md.jsonl").read_text())["justification"] == "hotfix for INC-1"


@pytest.mark.parametrize("twin", [False, True], ids=["markdown", "jsonl"])
def test_file_sink_never_follows_a_link_planted_after_the_check(tmp_path: Path, twin: bool) -> None:
    """The run checks the tracker first, but a link can be planted between that check and the write:
    the sink opens with O_NOFOLLOW and blocks the bypass instead of writing through it."""
    import asyncio

    from lockstep.audit import FileAuditSink
    from lockstep.errors import AuditError

    victim = tmp_path / "victim.txt"
    victim.write_text("keep me\n")
    path = tmp_path / "audit.md"
    (tmp_path / "audit.md.jsonl" if twin else path).symlink_to(victim)
    with pytest.raises(AuditError, match="symbolic link"):
        asyncio.run(FileAuditSink(path).store("### record\n", {"kind": "lockstep-bypass"}))
    assert victim.read_text() == "keep me\n"


# -- 5a. --report is checked before the first push --------------------------------------------


@pytest.fixture
def read_only_dir(tmp_path: Path) -> Iterator[Path]:
    """A directory no file can be created in, even by root (``chattr +i``); skipped where neither
    permissions (root ignores them) nor the immutable attribute can make one."""
    path = tmp_path / "read-only"
    path.mkdir()
    if os.geteuid() != 0:
        path.chmod(0o555)
        yield path
        path.chmod(0o755)
        return
    if shutil.which("chattr") is None or subprocess.run(["chattr", "+i", str(path)], capture_output=True,
                                                         check=False).returncode != 0:
        pytest.skip("running as root without chattr +i: no directory is read-only")
    try:
        yield path
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=False)


def bad_report_path(world: GitWorld, kind: str, read_only: Path | None = None) -> Path:
    if kind == "missing-directory":
        return world.root / "no-such-dir" / "report.json"
    if kind == "under-a-file":
        (world.root / "plain-file").write_text("x")
        return world.root / "plain-file" / "report.json"
    if kind == "directory":
        (world.root / "reports").mkdir()
        return world.root / "reports"
    assert read_only is not None
    return read_only / "report.json"


def run_with_report(world: GitWorld, report: Path, *args: str, env: dict[str, str] | None = None
                    ) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "lockstep", *args, "--config", str(world.root / "lockstep.toml"),
           "--report", str(report)]
    return subprocess.run(cmd, cwd=world.root, env=env or world.env(), capture_output=True, text=True,
                          timeout=60, check=False)


def assert_report_refused(proc: subprocess.CompletedProcess[str], report: Path) -> None:
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert "Traceback" not in proc.stderr
    assert str(report) in proc.stderr and "--report" in proc.stderr, proc.stderr
    if "Usage:" not in proc.stderr:  # click's own refusal of a directory has its usage block
        assert len(lines) == 1 and lines[0].startswith("lockstep: --report "), proc.stderr


@pytest.mark.parametrize("kind", ["missing-directory", "under-a-file", "read-only", "directory"])
def test_unwritable_report_stops_run_before_any_push(world: GitWorld, kind: str, request: Any) -> None:
    """An unwritable ``--report`` was found only after both pushes (exit 0 and an error line): the
    promotion happened without the report a pipeline relies on. Now exit 2 and nothing moved."""
    read_only = request.getfixturevalue("read_only_dir") if kind == "read-only" else None
    world.config()
    report = bad_report_path(world, kind, read_only)
    olds = prods(world)
    proc = run_with_report(world, report, "run")
    assert_report_refused(proc, report)
    assert prods(world) == olds and records(world) == []
    assert not (world.root / "no-such-dir").exists()
    assert not any(s.requests for s in world.staging.values()), "staging was contacted"


def split_world(world: GitWorld) -> dict[str, str | None]:
    """alpha advanced, beta refused by a pre-receive hook (then removed): a split to reconcile."""
    world.config()
    olds = prods(world)
    world.hook("beta", "pre-receive", "echo 'protected branch' >&2; exit 1")
    assert world.run("run").code == 3
    (world.repos["beta"] / "hooks" / "pre-receive").unlink()
    return olds


def test_unwritable_report_stops_reconcile_before_any_push(world: GitWorld) -> None:
    olds = split_world(world)
    report = world.root / "no-such-dir" / "report.json"
    proc = run_with_report(world, report, "reconcile", "--forward", "--justification", "finish it")
    assert_report_refused(proc, report)
    assert world.sha("beta", "prod") == olds["beta"], "reconcile pushed despite the refusal"
    assert len(records(world)) == 2  # only the split run's


def test_unwritable_github_output_stops_reconcile_before_any_push(world: GitWorld) -> None:
    """``run`` already refused an unwritable $GITHUB_OUTPUT before pushing; ``reconcile`` pushed and then
    failed to write it (exit 0 with an error line)."""
    olds = split_world(world)
    event = world.root / "event.json"
    event.write_text("{}")
    (world.root / "outdir").mkdir()
    env = world.env(GITHUB_ACTIONS="true", GITHUB_EVENT_NAME="workflow_dispatch",
                    GITHUB_EVENT_PATH=str(event), GITHUB_ACTOR="octocat",
                    GITHUB_OUTPUT=str(world.root / "outdir"))
    proc = run_with_report(world, world.root / "report.json", "reconcile", "--forward",
                           "--justification", "finish it", env=env)
    assert proc.returncode == 1, proc.stderr
    assert "GITHUB_OUTPUT" in proc.stderr and "nothing was pushed" in proc.stderr
    assert world.sha("beta", "prod") == olds["beta"]


def test_checking_the_report_path_creates_and_truncates_nothing(tmp_path: Path) -> None:
    from lockstep.engine.prepare import check_report_path

    new = tmp_path / "new.json"
    check_report_path(new)
    assert not new.exists()
    old = tmp_path / "old.json"
    old.write_text('{"previous": true}')
    check_report_path(old)
    assert old.read_text() == '{"previous": true}'
    check_report_path(Path(os.devnull))  # a device: only its permission is checked


# -- 5b. the config is a regular file of at most 1 MiB ---------------------------------------


def _limit_memory() -> None:
    """Keep a regression from eating the machine: ``--config /dev/zero`` once grew to 24 GB."""
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))


def bad_config(world: GitWorld, kind: str) -> Path:
    if kind == "dev-zero":
        return Path("/dev/zero")
    path = world.root / f"config-{kind}.toml"
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "directory":
        path.mkdir()
    elif kind == "2-MiB":  # a valid config, padded with comments: only its size is wrong
        text = world.config().read_text()
        path.write_text(text + ("# padding" + " " * 90 + "\n") * (2 * 1024 * 1024 // 100))
    return path


# click refuses a directory given as --config itself (dir_okay=False); LOCKSTEP_CONFIG reaches lockstep
CONFIG_CASES = [(kind, how) for kind in ("dev-zero", "fifo", "2-MiB", "directory")
                for how in ("--config", "LOCKSTEP_CONFIG") if (kind, how) != ("directory", "--config")]


@pytest.mark.parametrize("command", ["run", "validate"])
@pytest.mark.parametrize(("kind", "how"), CONFIG_CASES)
def test_config_that_is_not_a_small_regular_file_is_one_line_exit_2(
    world: GitWorld, kind: str, command: str, how: str
) -> None:
    """``/dev/zero`` grew without bound, a FIFO blocked forever and a 2 MiB file was read whole."""
    path = bad_config(world, kind)
    world.config()
    olds = prods(world)
    cmd = [sys.executable, "-m", "lockstep", command]
    env = world.env()
    if how == "--config":
        cmd += ["--config", str(path)]
    else:
        env["LOCKSTEP_CONFIG"] = str(path)
    try:
        proc = subprocess.run(cmd, cwd=world.root, env=env, capture_output=True, text=True, timeout=20,
                              check=False, preexec_fn=_limit_memory)
    except subprocess.TimeoutExpired:
        pytest.fail(f"lockstep {command} with {kind} as its config did not finish in 20 s")
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr[-2000:]
    assert lines[0].startswith(f"lockstep: {path}: "), lines[0]
    assert ("regular file" in lines[0]) or ("larger than 1 MiB" in lines[0]), lines[0]
    assert prods(world) == olds and records(world) == []


def test_config_of_exactly_1_mib_still_loads(world: GitWorld) -> None:
    from lockstep.config import MAX_CONFIG_BYTES, load_config

    text = world.config().read_text()
    path = world.root / "big.toml"
    path.write_text(text + "#" * (MAX_CONFIG_BYTES - len(text.encode()) - 1) + "\n")
    assert path.stat().st_size == MAX_CONFIG_BYTES
    assert load_config(path, {}).gate.name == "test"


# -- 5c. booleans are TOML booleans ------------------------------------------------------------


def _bool_keys() -> list[str]:
    """Every boolean key of the config, found in the models (a new one is covered automatically)."""
    from lockstep import config as cfg

    tables: dict[str, type[BaseModel]] = {"gate": cfg.GateConfig, "bypass": cfg.BypassConfig, "recovery": cfg.RecoveryConfig,
              "services[0]": cfg.ServiceConfig, "checks[0]": cfg.CheckConfig}
    return [f"{table}.{name}" for table, model in tables.items()
            for name, field in model.model_fields.items() if field.annotation is bool]


BOOL_KEYS = _bool_keys()
_LAX_TRUE_FALSE = ["yes", "no", "true", "false", "on", "off", "1", "0", "t", "f", "y", "n", "True"]


def _toml_float(value: float) -> str:
    if value != value:
        return "nan"
    if value in (float("inf"), float("-inf")):
        return "inf" if value > 0 else "-inf"
    return repr(value)


NON_BOOLEANS = st.one_of(
    st.sampled_from(_LAX_TRUE_FALSE).map(toml_string),  # what pydantic's lax bool took for a boolean
    st.text(max_size=20).filter(lambda t: "${" not in t).map(toml_string),  # no ${VAR} to substitute
    st.integers(min_value=-(2**63), max_value=2**63 - 1).map(str),
    st.floats().map(_toml_float),
)


def _config_with(key: str, value: str) -> str:
    table, name = key.split(".")
    gate = f"{name} = {value}\n" if table == "gate" else ""
    text = (f'[gate]\nname = "t"\n{gate}\n[[services]]\nname = "a"\nrepo = "a.git"\n'
            'health_url = "http://127.0.0.1:9/health"\nversion_url = "http://127.0.0.1:9/version"\n')
    if table == "recovery":
        text += f"\n[recovery]\n{name} = {value}\n"
    return text


def test_the_config_has_the_boolean_keys_this_file_covers() -> None:
    assert BOOL_KEYS == ["gate.records", "recovery.allow_rollback"]


@settings(max_examples=60, deadline=None)
@given(key=st.sampled_from(BOOL_KEYS), value=NON_BOOLEANS)
@example(key="gate.records", value='"yes"')
@example(key="recovery.allow_rollback", value="1")
@example(key="recovery.allow_rollback", value="0.0")
def test_a_boolean_key_refuses_anything_but_true_or_false(key: str, value: str) -> None:
    """``records = "yes"`` and ``allow_rollback = 1`` used to validate (as true); every command that
    loads the config now refuses them: exit 2, one line naming the key path."""
    from click.testing import CliRunner

    from lockstep.cli import cli

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "lockstep.toml"
        path.write_text(_config_with(key, value), encoding="utf-8")
        for command in ("validate", "run", "plan"):
            result = CliRunner().invoke(cli, [command, "--config", str(path)], env={"LOCKSTEP_CONFIG": None})
            assert result.exit_code == 2, (command, value, result.output)
            assert result.stderr.splitlines() == [
                f"lockstep: {path}: {key}: must be true or false (a TOML boolean, not a string or a number)"
            ], (command, value)


@pytest.mark.parametrize("key", BOOL_KEYS)
@pytest.mark.parametrize("value", [True, False])
def test_a_boolean_key_takes_true_and_false(key: str, value: bool) -> None:
    from lockstep.config import parse_config

    config = parse_config(_config_with(key, str(value).lower()), env={}, source="t", base_dir=Path("."))
    table, name = key.split(".")
    assert getattr(getattr(config, table), name) is value


def test_run_with_records_yes_moves_nothing(world: GitWorld) -> None:
    """On main this run promoted both services (``"yes"`` read as true)."""
    world.config(gate={"records": '"yes"'})
    olds = prods(world)
    res = world.run("run")
    assert res.code == 2, res.err
    assert res.err.strip() == (f"lockstep: {world.root / 'lockstep.toml'}: gate.records: must be true or false "
                               "(a TOML boolean, not a string or a number)")
    assert prods(world) == olds and records(world) == [] and res.report is None


def test_a_signal_while_a_check_is_starting_still_gives_it_sigterm_and_its_grace(tmp_path: Path) -> None:
    """A cancellation that landed while asyncio was still connecting a new check's pipes made asyncio
    SIGKILL that one process: no SIGTERM, no grace, its own children left running. (Found as a rare
    flake of the SIGHUP-during-a-check test under load.) SIGTERM is blocked here while the check starts,
    as the mask is inherited, so the check sees it only once its handler is in place: deterministic."""
    import asyncio

    from lockstep.checks import run_check
    from lockstep.config import CheckConfig

    stopped = tmp_path / "stopped"
    script = tmp_path / "slow_start.py"
    script.write_text(
        "import pathlib, signal, sys, time\n"
        f"signal.signal(signal.SIGTERM, lambda *_: (pathlib.Path({str(stopped)!r}).touch(), sys.exit(0)))\n"
        "signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})\n"
        "time.sleep(30)\n"
    )
    check = CheckConfig(name="slow-start", run=(sys.executable, str(script)))

    async def cancel_while_starting() -> None:
        task = asyncio.create_task(run_check(check, env=dict(os.environ), kill_grace=10.0))
        await asyncio.sleep(0)  # the task runs up to its first wait: the new process exists by then
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    try:
        asyncio.run(cancel_while_starting())
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
    assert stopped.exists(), "the check was killed without SIGTERM"


def test_ctrl_c_while_lockstep_is_still_loading_is_one_line_and_exit_1(tmp_path: Path) -> None:
    """A SIGINT that lands while the modules load (a slow disk, a busy runner) raises
    KeyboardInterrupt inside an import. Here it is made to land exactly there: a startup hook
    interrupts the import of the CLI, as the signal would."""
    hook = tmp_path / "hooks"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(
        "import sys\n"
        "class Interrupt:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'lockstep.cli':\n"
        "            raise KeyboardInterrupt\n"
        "sys.meta_path.insert(0, Interrupt())\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(hook), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-m", "lockstep", "run"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=60, check=False)
    assert (proc.returncode, proc.stdout, proc.stderr) == (1, "", "lockstep: interrupted before anything was done\n")

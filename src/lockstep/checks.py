"""Check commands (E2E suites, canary smoke, anything): argv, env, timeout, output.

A check is an argv run directly (never through a shell, so nothing in it is
ever re-parsed), in its own session so that a timeout or a cancelled gate can
kill the whole process tree: a forgotten background server in an E2E script
must not keep the gate waiting on its pipe.  Push tokens are removed from the
environment the check sees.  Output is streamed line by line as it arrives
and its tail is kept for the report.
"""

from __future__ import annotations

import asyncio
import errno
import os
import re
import signal
from collections import deque
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass

from lockstep import log
from lockstep.config import CheckConfig
from lockstep.model import Sha
from lockstep.probes import human_duration
from lockstep.redact import clean_text

__all__ = ["CheckResult", "check_environment", "run_check"]

TAIL_LINES = 60
TAIL_BYTES = 16 * 1024
_MAX_LINE = 16 * 1024  # a longer line without a newline is emitted in pieces
_DRAIN = 0.5  # seconds to wait for the last output after the check's main process exits
_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_]")


@dataclass(frozen=True)
class CheckResult:
    """How one check ended; ``detail`` is the line people read."""

    name: str
    ok: bool
    seconds: float
    exit_code: int | None  # None when it never started or was killed on timeout
    timed_out: bool
    output_tail: str  # last ~60 lines / 16 KiB of combined output, ANSI escapes removed
    detail: str


def check_environment(
    base_env: Mapping[str, str],
    check: CheckConfig,
    shas: Mapping[str, Sha],
    secret_vars: Collection[str],
) -> dict[str, str]:
    """The environment for one check: ``base_env`` without secrets, plus ``check.env``
    and ``LOCKSTEP_<SLUG>_SHA`` for each service (``shas`` maps slug → sha).

    Secret names are removed last, so not even ``check.env`` can put a push
    token's variable back.
    """
    secrets = set(secret_vars)
    env = {k: v for k, v in base_env.items() if k not in secrets}
    env.update(check.env)
    for slug, sha in shas.items():
        env[f"LOCKSTEP_{slug}_SHA"] = str(sha)
    for name in secrets:
        env.pop(name, None)
    return env


def _signal_group(pgid: int, sig: int) -> bool:
    """Send ``sig`` to a process group; False when the group no longer exists."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    except PermissionError:  # only possible if the pgid was reused by someone else's group
        return False
    return True


def _group_alive(pgid: int) -> bool:
    """Whether any process of the group is still running (zombies do not count).

    Zombies matter where orphans are never reaped (containers without an init):
    ``killpg(pgid, 0)`` still finds them, and we would wait out the grace period.
    """
    if not _signal_group(pgid, 0):
        return False
    try:
        entries = os.listdir("/proc")
    except OSError:
        return True
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if len(fields) > 2 and fields[2] == str(pgid).encode() and fields[0] not in (b"Z", b"X"):
            return True
    return False


async def _wait_exit(proc: asyncio.subprocess.Process, timeout: float | None = None) -> bool:
    """Wait until the main process has exited; False if ``timeout`` passed first.

    Not ``proc.wait()``: on Python 3.11 that also waits for the output pipe to
    close, which a leftover background process can hold open forever.
    """
    loop = asyncio.get_running_loop()
    deadline = None if timeout is None else loop.time() + timeout
    delay = 0.005
    while proc.returncode is None:
        if deadline is not None and loop.time() >= deadline:
            return False
        pause = delay if deadline is None else min(delay, max(0.0, deadline - loop.time()))
        await asyncio.sleep(pause)
        delay = min(delay * 2, 0.05)
    return True


async def _stop_group(proc: asyncio.subprocess.Process, grace: float) -> None:
    """SIGTERM the check's whole process group, SIGKILL whatever is left after ``grace``.

    The SIGKILL also happens if we are cancelled while waiting, so a second
    Ctrl-C never leaves processes behind.
    """
    pgid = proc.pid
    loop = asyncio.get_running_loop()
    if not _signal_group(pgid, signal.SIGTERM):
        return
    try:
        deadline = loop.time() + grace
        while loop.time() < deadline and _group_alive(pgid):
            await asyncio.sleep(min(0.05, max(0.0, deadline - loop.time())))
    finally:
        _signal_group(pgid, signal.SIGKILL)
    await _wait_exit(proc, 5.0)  # SIGKILL is immediate unless the kernel is stuck


async def _spawn(
    check: CheckConfig, env: Mapping[str, str], cwd: str | os.PathLike[str] | None, grace: float
) -> asyncio.subprocess.Process:
    """Start the check in its own session.

    A cancellation (a signal) that lands while asyncio is still connecting the
    pipes of a process that already runs would make asyncio SIGKILL that one
    process: no SIGTERM grace, and its own children left running.  The start
    is shielded instead, and the new process group is stopped like any other.
    """
    spawn = asyncio.ensure_future(
        asyncio.create_subprocess_exec(
            *check.run,
            env=dict(env),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
            cwd=cwd,
        )
    )
    try:
        return await asyncio.shield(spawn)
    except asyncio.CancelledError:
        try:
            proc = await spawn
        except OSError:
            raise asyncio.CancelledError from None  # it never started: nothing to stop
        await _stop_group(proc, grace)
        raise


async def _pump(
    stream: asyncio.StreamReader,
    emit: Callable[[str], None],
    tail: deque[str],
) -> None:
    """Forward output line by line as it arrives; keep the last lines in ``tail``."""
    failed_emit = False

    def line(raw: bytes) -> None:
        nonlocal failed_emit
        text = raw.decode("utf-8", errors="replace").rstrip("\r")
        tail.append(text)
        try:
            emit(text)
        except Exception as exc:  # a broken callback must not stop draining the pipe
            if not failed_emit:
                failed_emit = True
                log.warn(f"check output callback failed: {type(exc).__name__}: {exc}")

    buffer = b""
    while True:
        chunk = await stream.read(65536)
        if not chunk:
            break
        buffer += chunk
        *lines, buffer = buffer.split(b"\n")
        for raw in lines:
            line(raw)
        while len(buffer) > _MAX_LINE:
            line(buffer[:_MAX_LINE])
            buffer = buffer[_MAX_LINE:]
    if buffer:
        line(buffer)


def _tail_text(tail: deque[str]) -> str:
    text = _ANSI.sub("", "\n".join(tail))
    if len(text.encode("utf-8")) > TAIL_BYTES:
        text = text.encode("utf-8")[-TAIL_BYTES:].decode("utf-8", errors="ignore")
        text = text.split("\n", 1)[-1] if "\n" in text else text
    return text


def _start_failure(
    check: CheckConfig, exc: OSError, cwd: str | os.PathLike[str] | None
) -> str:
    """A one-line reason a check could not start, without a traceback."""
    program = clean_text(check.run[0])
    if isinstance(exc, FileNotFoundError):
        if "/" in check.run[0] and os.path.exists(os.path.join(cwd or ".", check.run[0])):
            return f"check {check.name}: cannot execute {program}: its interpreter was not found"
        return f"check {check.name}: command not found: {program}"
    if isinstance(exc, PermissionError):
        return f"check {check.name}: permission denied: {program}"
    if exc.errno == errno.ENOEXEC:
        return f"check {check.name}: cannot execute {program}: not an executable format"
    reason = exc.strerror or type(exc).__name__
    return f"check {check.name}: cannot start {program}: {reason}"


async def run_check(
    check: CheckConfig,
    *,
    env: Mapping[str, str],
    on_line: Callable[[str], None] | None = None,
    kill_grace: float = 5.0,
    cwd: str | os.PathLike[str] | None = None,
) -> CheckResult:
    """Run one check to completion, timeout or cancellation; never raises except on cancel.

    ``on_line`` receives each output line (stdout and stderr merged) as it
    arrives; the default logs it as ``[name] line``.  On timeout or
    cancellation the whole process group gets SIGTERM, then SIGKILL after
    ``kill_grace`` seconds; cancellation is re-raised once the group is gone.
    ``cwd`` (default: ours) lets a config run scripts relative to itself.
    Once the main process has exited, leftover background processes are
    stopped the same way, so one holding the pipe open cannot hang the gate.
    """
    emit = on_line or (lambda text: log.info(f"[{check.name}] {text}"))
    loop = asyncio.get_running_loop()
    start = loop.time()
    if cwd is not None and not os.path.isdir(cwd):
        detail = f"check {check.name}: working directory not found: {clean_text(os.fspath(cwd))}"
        return CheckResult(check.name, False, 0.0, None, False, "", detail)
    try:
        proc = await _spawn(check, env, cwd, kill_grace)
    except OSError as exc:
        return CheckResult(
            check.name, False, loop.time() - start, None, False, "", _start_failure(check, exc, cwd)
        )

    assert proc.stdout is not None
    tail: deque[str] = deque(maxlen=TAIL_LINES)
    reader = asyncio.create_task(_pump(proc.stdout, emit, tail))
    timed_out = False
    leftovers = False
    try:
        if not await _wait_exit(proc, check.timeout):
            timed_out = True
            await _stop_group(proc, kill_grace)
        elapsed = loop.time() - start
        # The main process is gone: collect the rest of the output, but never wait
        # on a leftover background process that still holds the pipe.
        done, _ = await asyncio.wait({reader}, timeout=_DRAIN)
        if not done or _group_alive(proc.pid):
            leftovers = not timed_out
            await _stop_group(proc, kill_grace)
            await asyncio.wait({reader}, timeout=_DRAIN)
    except asyncio.CancelledError:
        await _stop_group(proc, kill_grace)
        raise
    finally:
        if proc.returncode is None:  # unexpected error path: leave nothing running
            _signal_group(proc.pid, signal.SIGKILL)
        reader.cancel()

    output = _tail_text(tail)
    code = proc.returncode
    if timed_out:
        detail = f"check {check.name} timed out after {human_duration(check.timeout)}, killed"
        return CheckResult(check.name, False, elapsed, None, True, output, detail)
    assert code is not None
    took = human_duration(elapsed)
    if code == 0:
        detail = f"check {check.name} passed in {took}"
    elif code < 0:
        try:
            signame = signal.Signals(-code).name
        except ValueError:
            signame = f"signal {-code}"
        detail = f"check {check.name} was killed by {signame} after {took}"
    else:
        detail = f"check {check.name} failed with exit {code} after {took}"
    if leftovers:
        detail += " (stopped the background processes it left running)"
    return CheckResult(check.name, code == 0, elapsed, code, False, output, detail)

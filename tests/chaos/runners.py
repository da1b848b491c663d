"""Running ``lockstep`` for a chaos scenario: in this process (fast) or as a real process (signals)."""

from __future__ import annotations

import contextlib
import io
import os
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.chaos.scenario import INPROC_LIMIT, SRC, SUBPROC_LIMIT, SignalPlan

# ------------------------------------------------------------------------------------ running


@dataclass
class RunOutput:
    code: int | None  # None: hung / crashed in-process; negative: killed by that signal
    stdout: str
    stderr: str
    seconds: float
    exception: str | None = None
    hung: bool = False
    signal_sent: float | None = None  # monotonic time the signal was sent
    exited: float | None = None


_FAST_RETRY: Any = None
_SSL_CONTEXTS: dict[tuple[Any, ...], Any] = {}


def _cached_ssl_context(original: Any) -> Any:
    """httpx builds a fresh SSL context (≈50 ms of certificate loading) per client; reuse one."""

    def create(verify: Any = True, cert: Any = None, trust_env: bool = True) -> Any:
        if verify is not True or cert is not None:
            return original(verify, cert, trust_env)
        key = (trust_env, os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR"))
        if key not in _SSL_CONTEXTS:
            _SSL_CONTEXTS[key] = original(verify, cert, trust_env)
        return _SSL_CONTEXTS[key]

    return create


def _fast_retry_class() -> Any:
    global _FAST_RETRY
    if _FAST_RETRY is None:
        from lockstep.forges.github.http import RetryPolicy

        @dataclass(frozen=True)
        class ChaosRetryPolicy(RetryPolicy):
            tries: int = 3
            budget: float = 3.0
            max_wait: float = 1.5
            base_delay: float = 0.01
            jitter: float = 0.5
            secondary_wait: float = 0.05

        _FAST_RETRY = ChaosRetryPolicy
    return _FAST_RETRY


@contextlib.contextmanager
def _patched_environ(env: dict[str, str]) -> Iterator[None]:
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def run_inprocess(args: list[str], env: dict[str, str], limit: float = INPROC_LIMIT) -> RunOutput:
    """``lockstep <args>`` in this process (must be the main thread: the runner installs signal handlers)."""
    import click
    import httpx._transports.default as httpx_default

    import lockstep.forges.github.forge as github_module
    from lockstep.cli import cli

    out, err = io.StringIO(), io.StringIO()
    code: int | None = None
    exception = None
    fired = threading.Event()
    main_id = threading.main_thread().ident

    def watchdog() -> None:
        if not done.wait(limit):
            fired.set()
            if main_id is not None:
                signal.pthread_kill(main_id, signal.SIGINT)

    done = threading.Event()
    dog = threading.Thread(target=watchdog, daemon=True)
    saved_policy = github_module.RetryPolicy
    saved_ssl = httpx_default.create_ssl_context  # type: ignore[attr-defined]
    start = time.monotonic()
    with _patched_environ(env):
        github_module.RetryPolicy = _fast_retry_class()  # type: ignore[misc]
        httpx_default.create_ssl_context = _cached_ssl_context(saved_ssl)  # type: ignore[attr-defined]
        dog.start()
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                try:
                    rv = cli.main(args=args, prog_name="lockstep", standalone_mode=False)
                    code = rv if isinstance(rv, int) else 0
                except SystemExit as exc:
                    code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
                except click.ClickException as exc:
                    exc.show()
                    code = exc.exit_code
        except BaseException:
            exception = traceback.format_exc()
        finally:
            done.set()
            github_module.RetryPolicy = saved_policy  # type: ignore[misc]
            httpx_default.create_ssl_context = saved_ssl  # type: ignore[attr-defined]
            dog.join()
    return RunOutput(code, out.getvalue(), err.getvalue(), time.monotonic() - start, exception, fired.is_set())


def run_subprocess(
    args: list[str], env: dict[str, str], cwd: Path, plan: SignalPlan | None, anchor: Any,
    limit: float = SUBPROC_LIMIT,
) -> RunOutput:
    """``python -m lockstep <args>`` as a real process, optionally signalled at a random moment."""
    env = {**env, "PYTHONPATH": str(SRC)}
    start = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "lockstep", *args], cwd=cwd, env=env, stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    sent: float | None = None
    outputs: dict[str, bytes] = {}

    def reader(name: str, stream: Any) -> None:
        outputs[name] = stream.read()

    threads = [threading.Thread(target=reader, args=(n, s), daemon=True)
               for n, s in (("out", proc.stdout), ("err", proc.stderr))]
    for t in threads:
        t.start()
    if plan is not None:
        if plan.anchor == "first-request":
            deadline = time.monotonic() + 10
            while proc.poll() is None and not anchor() and time.monotonic() < deadline:
                time.sleep(0.005)
        time.sleep(plan.delay)
        if proc.poll() is None:
            proc.send_signal(getattr(signal, plan.name))
            sent = time.monotonic()
    hung = False
    try:
        proc.wait(timeout=max(1.0, limit - (time.monotonic() - start)))
    except subprocess.TimeoutExpired:
        hung = True
        proc.kill()
        proc.wait()
    exited = time.monotonic()
    for t in threads:
        t.join(5)
    return RunOutput(
        None if hung else proc.returncode,
        outputs.get("out", b"").decode("utf-8", "replace"),
        outputs.get("err", b"").decode("utf-8", "replace"),
        exited - start, None, hung, sent, exited,
    )


# ------------------------------------------------------------------------------------ one scenario



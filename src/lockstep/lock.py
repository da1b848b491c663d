"""One gate run per gate name on this machine: an advisory lock file.

The lock lives under the user's state directory so two shells, two cron jobs
or a cron job and a person never promote the same gate at once.  A second run
waits (logging who holds it) and, once it gets the lock, resolves heads fresh,
so it promotes whatever is newest by then.  The kernel drops the lock when the
holder dies, so a crashed run never leaves a stale lock behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import time
from collections.abc import AsyncIterator, Mapping
from pathlib import Path

from lockstep import log
from lockstep.errors import LockError


def state_dir(env: Mapping[str, str]) -> Path:
    base = env.get("XDG_STATE_HOME") or str(Path(env.get("HOME", "~")).expanduser() / ".local" / "state")
    return Path(base) / "lockstep"


@contextlib.asynccontextmanager
async def local_lock(gate: str, *, env: Mapping[str, str], timeout: float) -> AsyncIterator[Path]:
    """Hold ``<state>/locks/<gate>.lock`` (flock) for the duration of the block."""
    directory = state_dir(env) / "locks"
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(directory / f"{gate}.lock", os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise LockError(f"cannot open the lock file in {directory}: {exc.strerror}") from None
    path = directory / f"{gate}.lock"
    try:
        deadline = time.monotonic() + timeout
        announced = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if not announced:
                    holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "another run"
                    log.info(f"waiting for the lock {path} (held by {holder})")
                    announced = True
                if time.monotonic() >= deadline:
                    raise LockError(
                        f"gave up waiting {timeout:.0f}s for the lock {path}; another lockstep run "
                        "of this gate is still active"
                    ) from None
                await asyncio.sleep(0.2)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} since {time.strftime('%Y-%m-%dT%H:%M:%S%z')}".encode(), 0)
        yield path
    finally:
        os.close(fd)  # releases the flock

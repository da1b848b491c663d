"""One command's session: the gate's lock, and signals (INT, TERM, HUP) turned into a safe stop."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping

from lockstep import actions, log
from lockstep.config import Config
from lockstep.engine.gate import Cancellation, Gate, RunOptions
from lockstep.engine.reconcile import Repair
from lockstep.errors import LockstepError, UsageError
from lockstep.forges.base import Wiring
from lockstep.lock import local_lock
from lockstep.model import Report
from lockstep.progress import Progress, make_progress


@contextlib.asynccontextmanager
async def held_lock(config: Config, env: Mapping[str, str], wiring: Wiring) -> AsyncIterator[None]:
    mode = config.gate.lock
    if mode == "auto":
        mode = "none" if actions.in_actions(env) else "local"
    if mode == "local":
        async with local_lock(config.gate.name, env=env, timeout=config.gate.lock_timeout):
            yield
    elif mode == "ref":
        if wiring.ref_lock is None:
            raise UsageError(f'[gate] lock = "ref" is not available with forge = "{config.gate.forge}"')
        async with wiring.ref_lock():
            yield
    else:
        yield


# SIGHUP is a closed terminal or ssh session: as much a request to stop as SIGTERM, and its default
# action (die at once) would leave a push landing after lockstep, with no report and no record.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class SignalRouter:
    """The process's SIGINT/SIGTERM/SIGHUP handler for a whole command.

    While a session runs, a signal becomes a safe stop on its event loop; before and
    after it (config checks, writing the report), it is only noted: the report of
    pushes that already happened is always written, and a signal that came before
    the session started stops it before it does anything.
    """

    def __init__(self) -> None:
        self.session: Session | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.received: list[str] = []

    def __call__(self, signum: int, _frame: object) -> None:
        name = signal.Signals(signum).name
        if self.session is not None and self.loop is not None and not self.loop.is_closed():
            self.loop.call_soon_threadsafe(self.session.on_signal, name)
        else:
            self.received.append(name)


@contextlib.contextmanager
def signals_routed() -> Iterator[SignalRouter]:
    router = SignalRouter()
    previous = {sig: signal.signal(sig, router) for sig in STOP_SIGNALS}
    try:
        yield router
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if router.received:
            log.warn(f"{router.received[-1]} arrived while lockstep was finishing; the report was written")


class Session:
    """Runs gates one after another under one lock, turning SIGINT/SIGTERM/SIGHUP into a safe stop."""

    def __init__(
        self,
        config: Config,
        wiring: Wiring,
        env: Mapping[str, str],
        router: SignalRouter,
        *,
        live: bool = True,
    ) -> None:
        self.config, self.wiring, self.env = config, wiring, env
        self.router = router
        self.live = live
        self.progress: Progress | None = None
        self.cancellation = Cancellation()
        self._gate: Gate | None = None
        self._gate_task: asyncio.Task[Report] | None = None
        self._main: asyncio.Task[object] | None = None
        self._locked = False

    def gate(self, repair: Repair | None = None) -> Gate:
        """A gate wired for this session; with ``repair``, a reconcile."""
        if self.progress is None:
            self.progress = make_progress(self.env, enabled=self.live)
        return Gate(
            self.config,
            self.wiring.forge,
            env=self.env,
            audit_sink=self.wiring.audit_sink,
            secret_vars=self.wiring.secret_vars,
            cancellation=self.cancellation,
            records=self.wiring.records,
            progress=self.progress,
            external_check=self.wiring.external_check,
            repair=repair,
        )

    async def run_gate(self, gate: Gate, options: RunOptions) -> Report:
        self._gate = gate
        self._gate_task = asyncio.ensure_future(gate.run(options))
        try:
            return await self._gate_task
        finally:
            self._gate_task = None

    def on_signal(self, signame: str) -> None:
        first = not self.cancellation.requested
        self.cancellation.signal_name = signame
        self.cancellation.event.set()
        if first:
            log.warn(f"{signame} received: no new push will start; writing the report")
        if self._gate_task is None:
            if self._main is not None and not self._locked:
                self._main.cancel()  # still waiting for the lock: nothing has happened
        elif self._gate is not None and self._gate.interruptible:
            self._gate_task.cancel()

    async def run(self, body: Callable[[Session], Awaitable[list[Report]]]) -> list[Report]:
        self._main = asyncio.current_task()
        if self.router.received:  # cancelled while lockstep was still starting: do nothing at all
            await self.wiring.forge.aclose()
            raise LockstepError(f"cancelled by {self.router.received.pop()} before anything was done")
        self.router.session, self.router.loop = self, asyncio.get_running_loop()
        try:
            async with held_lock(self.config, self.env, self.wiring):
                self._locked = True
                return await body(self)
        except asyncio.CancelledError:
            raise LockstepError(
                f"cancelled by {self.cancellation.signal_name} while waiting for the lock; nothing was pushed"
            ) from None
        finally:
            self.router.session = None
            if self.progress is not None:
                self.progress.close()
            await self.wiring.forge.aclose()

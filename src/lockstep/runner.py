"""Wires one config to its forge, audit sink, lock and signals, runs the gate, writes the reports.

Everything that can be checked without touching anything (config, flags,
justification, token variables, tokens in URLs or checks, tracker, writable
outputs) is checked here first, so a usage error exits 2 with nothing changed.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import os
import signal
import stat
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from lockstep import actions, forges, log, redact
from lockstep.audit import tracker_problem, validate_actor, validate_justification
from lockstep.config import Config
from lockstep.engine.gate import Cancellation, Gate, RunOptions
from lockstep.engine.reconcile import (
    Direction,
    ReconcileGate,
    merge_rollback,
    repair_commands,
)
from lockstep.errors import ForgeError, LockstepError, UsageError
from lockstep.forges.base import Wiring
from lockstep.lock import local_lock
from lockstep.model import Report, Result
from lockstep.progress import Progress, make_progress
from lockstep.records import latest_run
from lockstep.report import render_json, render_markdown


@dataclass
class RunRequest:
    """The ``run`` command's flags, before they are reconciled with the Actions event."""

    skip_gate: bool = False
    justification: str | None = None
    actor: str | None = None
    json_out: bool = False
    report_path: Path | None = None
    config_path: Path | None = None
    progress: bool = True  # the live view in a terminal (--no-progress turns it off)


def build_forge(config: Config, env: Mapping[str, str]) -> Wiring:
    """The forge and everything around it for ``config`` (see :mod:`lockstep.forges`)."""
    return forges.wire(config, env)


def check_secret_vars(config: Config) -> frozenset[str]:
    """The token variables removed from (and refused in) checks.

    On the git forge ``GITHUB_TOKEN``/``GH_TOKEN`` are not lockstep's tokens, so a
    check that needs one (``gh``, an API call) still gets it.
    """
    return frozenset(redact.token_vars(config, read=config.gate.forge == "github"))


def protect_secrets(config: Config, env: Mapping[str, str]) -> None:
    """Register every secret ``config`` and its token variables hold; under Actions, mask them too.

    Call it before anything is printed: the runner masks only what it was told
    about, and a line printed earlier stays visible in the log.
    """
    redact.register_config(config, env)
    if actions.in_actions(env):
        actions.mask_secrets(
            env, redact.token_vars(config), sys.stderr, values=redact.config_url_secrets(config)
        )


def refuse_secrets_in_urls(config: Config, env: Mapping[str, str]) -> None:
    """A token must never be sent to staging (or shown as a link), even spelled out through ``${VAR}``.

    Probes send no credentials, but a token in a URL's path or query would still
    travel in the request line; so any token variable's value in a URL is refused.
    """
    secrets = _secret_values(redact.token_vars(config), env)
    urls = [("gate.runbook_url", config.gate.runbook_url)]
    for i, service in enumerate(config.services):
        where = f"services[{i}] ({service.name})"
        urls += [(f"{where}.health_url", service.health_url), (f"{where}.version_url", service.version_url)]
    for key, url in urls:
        for name, secret in secrets.items():
            if url and (secret in url or secret in unquote(url)):
                raise UsageError(
                    f"{key} contains the value of {name}: a token never goes in a URL "
                    "(staging gets no credentials)"
                )


def _secret_values(names: Iterable[str], env: Mapping[str, str]) -> dict[str, str]:
    """Each named variable's value, where it is long enough to be a secret (see lockstep.redact)."""
    values = {name: env.get(name, "").strip() for name in names}
    return {name: value for name, value in values.items() if len(value) >= redact.MIN_SECRET}


def refuse_secrets_in_checks(config: Config, secret_vars: frozenset[str], env: Mapping[str, str]) -> None:
    """A push token must never reach a check, even spelled out through ``${VAR}`` in its argv or env."""
    secrets = _secret_values(sorted(secret_vars), env)
    for i, check in enumerate(config.checks):
        for value in (*check.run, *check.env.values()):
            for name, secret in secrets.items():
                if secret in value:
                    raise UsageError(
                        f"checks[{i}] ({check.name}) would receive the value of {name}: "
                        "push and read tokens are never passed to checks"
                    )


def resolve_options(config: Config, request: RunRequest, env: Mapping[str, str]) -> RunOptions:
    """Merge flags with the Actions event; validate the bypass before anything happens."""
    skip, justification, actor = request.skip_gate, request.justification, request.actor
    run_url = None
    if actions.in_actions(env):
        event = actions.read_event(env)
        if not skip and event.skip_gate:
            skip, justification = True, event.justification
        if event.dispatch_action or event.client_payload_summary:
            log.info(
                f"triggered by repository_dispatch {event.dispatch_action!r} "
                f"(payload, information only: {event.client_payload_summary})"
            )
        actor = _actions_actor(actor, env)
        run_url = actions.run_url(env)
    if actor is None:
        try:
            actor = getpass.getuser()
        except (KeyError, OSError):
            actor = "unknown"
    actor = validate_actor(actor)
    if not skip and justification:
        raise UsageError("--justification is only used with --skip-gate")
    if skip:
        justification = validate_justification(justification)
        allowed = config.bypass.allowed_actors
        if allowed and actor not in allowed:
            raise UsageError(f"actor {actor!r} may not bypass this gate (bypass.allowed_actors)")
        if not config.bypass.tracker:
            raise UsageError("bypass.tracker is not set: a bypass needs somewhere to store its audit record")
    return RunOptions(skip_gate=skip, justification=justification, actor=actor, run_url=run_url)


def _actions_actor(flag: str | None, env: Mapping[str, str]) -> str | None:
    """Under Actions the actor is the account GitHub names, never one a flag claims: an ``--actor``
    that differs is refused, so ``allowed_actors`` and the audit record cannot be talked round."""
    named = actions.actor(env)
    if named is None:
        return flag or None  # an empty --actor means "not given" under Actions
    if flag and flag.strip() != named:
        raise UsageError(
            f"--actor {flag.strip()!r} differs from the actor GitHub Actions names ({named!r}, "
            "$GITHUB_TRIGGERING_ACTOR or $GITHUB_ACTOR): drop --actor under Actions"
        )
    return named


def check_tracker(config: Config, *, will_audit: bool) -> None:
    """Refuse a git-forge audit log that is a symlink or not a regular file before anything happens
    (exit 2), not after health, version and checks ran; the sink re-checks as it writes."""
    path = config.tracker_path() if config.gate.forge == "git" else None
    if will_audit and path is not None:
        problem = tracker_problem(path)
        if problem:
            raise UsageError(f"bypass.tracker: {problem}")


@contextlib.asynccontextmanager
async def _lock(config: Config, env: Mapping[str, str], wiring: Wiring) -> AsyncIterator[None]:
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


class _SignalRouter:
    """The process's SIGINT/SIGTERM/SIGHUP handler for a whole command.

    While a session runs, a signal becomes a safe stop on its event loop; before and
    after it (config checks, writing the report), it is only noted: the report of
    pushes that already happened is always written, and a signal that came before
    the session started stops it before it does anything.
    """

    def __init__(self) -> None:
        self.session: _Session | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.received: list[str] = []

    def __call__(self, signum: int, _frame: object) -> None:
        name = signal.Signals(signum).name
        if self.session is not None and self.loop is not None and not self.loop.is_closed():
            self.loop.call_soon_threadsafe(self.session.on_signal, name)
        else:
            self.received.append(name)


@contextlib.contextmanager
def _signals_routed() -> Iterator[_SignalRouter]:
    router = _SignalRouter()
    previous = {sig: signal.signal(sig, router) for sig in STOP_SIGNALS}
    try:
        yield router
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if router.received:
            log.warn(f"{router.received[-1]} arrived while lockstep was finishing; the report was written")


class _Session:
    """Runs gates one after another under one lock, turning SIGINT/SIGTERM/SIGHUP into a safe stop."""

    def __init__(
        self,
        config: Config,
        wiring: Wiring,
        env: Mapping[str, str],
        router: _SignalRouter,
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

    def gate(self, cls: type[Gate] = Gate, **kwargs: Any) -> Gate:
        if self.progress is None:
            self.progress = make_progress(self.env, enabled=self.live)
        return cls(
            self.config,
            self.wiring.forge,
            env=self.env,
            audit_sink=self.wiring.audit_sink,
            secret_vars=self.wiring.secret_vars,
            cancellation=self.cancellation,
            records=self.wiring.records,
            progress=self.progress,
            external_check=self.wiring.external_check,
            **kwargs,
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

    async def run(self, body: Callable[[_Session], Awaitable[list[Report]]]) -> list[Report]:
        self._main = asyncio.current_task()
        if self.router.received:  # cancelled while lockstep was still starting: do nothing at all
            await self.wiring.forge.aclose()
            raise LockstepError(f"cancelled by {self.router.received.pop()} before anything was done")
        self.router.session, self.router.loop = self, asyncio.get_running_loop()
        try:
            async with _lock(self.config, self.env, self.wiring):
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


def execute_run(config: Config, request: RunRequest, env: Mapping[str, str]) -> int:
    """The whole ``lockstep run``: returns the exit code; prints the summary."""
    protect_secrets(config, env)
    refuse_secrets_in_urls(config, env)
    options = resolve_options(config, request, env)
    check_tracker(config, will_audit=options.skip_gate or config.recovery.on_split == "rollback")
    wiring = build_forge(config, env)
    refuse_secrets_in_checks(config, wiring.secret_vars, env)
    check_outputs(request, env)

    async def body(session: _Session) -> list[Report]:
        gate = session.gate()
        report = await session.run_gate(gate, options)
        if report.result != Result.SPLIT:
            return [report]
        if wiring.records is not None:  # without records, reconcile has nothing to work from
            config_path = str(request.config_path or "lockstep.toml")
            report.fix_command = repair_commands(config, config_path)["forward"]
        if config.recovery.on_split != "rollback" or session.cancellation.requested:
            return [report]
        log.warn('the run left a split and recovery.on_split = "rollback": rolling back now')
        rollback = RunOptions(
            skip_gate=True,
            justification=f"automatic rollback: run {report.run_id} left the targets split",
            actor=options.actor,
            run_url=options.run_url,
            mode="rollback",
        )
        undone = gate.promotion_record(report, "finished")
        undo = session.gate(ReconcileGate, direction="rollback", record=undone)
        merge_rollback(report, await session.run_gate(undo, rollback))
        return [report]

    with _signals_routed() as router:
        session = _Session(config, wiring, env, router, live=request.progress)
        report = asyncio.run(session.run(body))[0]
        return publish(report, config, request, env)


def execute_reconcile(
    config: Config, request: RunRequest, direction: Direction, recheck: bool, env: Mapping[str, str]
) -> int:
    """``lockstep reconcile``: finish or roll back the latest recorded promotion."""
    if direction == "rollback" and not config.recovery.allow_rollback:
        raise UsageError("reconcile --rollback needs [recovery] allow_rollback = true in the config")
    if recheck and direction == "rollback":
        raise UsageError("--recheck only applies to reconcile --forward")
    protect_secrets(config, env)
    refuse_secrets_in_urls(config, env)
    bypass = not recheck
    if bypass and request.justification is None:
        raise UsageError("reconcile needs --justification TEXT (or --forward --recheck to re-run the gate)")
    options = resolve_options(
        config, RunRequest(skip_gate=bypass, justification=request.justification, actor=request.actor), env
    )
    options.mode = f"reconcile-{direction}"
    check_tracker(config, will_audit=bypass)
    wiring = build_forge(config, env)
    if wiring.records is None:
        raise UsageError("[gate] records = false: there are no promotion records to reconcile from")
    refuse_secrets_in_checks(config, wiring.secret_vars, env)
    check_outputs(request, env)
    records = wiring.records

    async def body(session: _Session) -> list[Report]:
        latest = latest_run(await records.read_all())
        if latest is None:
            raise LockstepError(f"no promotion record in {records.location}: nothing to reconcile")
        log.info(f"reconciling {direction} to run {latest.run_id} ({latest.time}, {latest.mode})")
        gate = session.gate(ReconcileGate, direction=direction, record=latest)
        return [await session.run_gate(gate, options)]

    with _signals_routed() as router:
        try:
            reports = asyncio.run(_Session(config, wiring, env, router, live=request.progress).run(body))
        except ForgeError as exc:
            raise LockstepError(f"cannot read the promotion records: {exc}") from None
        return publish(reports[0], config, request, env)


def check_outputs(request: RunRequest, env: Mapping[str, str]) -> None:
    """Every file ``publish`` writes after the pushes, checked before the first one: a report that
    cannot be written must stop the run while nothing has moved, not be an error line after it."""
    if request.report_path is not None:
        check_report_path(request.report_path)
    output_path = env.get("GITHUB_OUTPUT") if actions.in_actions(env) else None
    if output_path:
        _check_writable(Path(output_path))


def check_report_path(path: Path) -> None:
    """Raise UsageError (exit 2) unless ``--report`` can be written; never creates or truncates it.

    An existing regular file is opened for appending and closed; a device or
    pipe (``/dev/stdout``) only needs write permission (opening a FIFO would
    wait for, then end, its reader); a new file needs a directory it may create
    files in.
    """
    problem = _report_problem(path)
    if problem:
        raise UsageError(f"--report {path}: {problem}; nothing was done")


def _report_problem(path: Path) -> str | None:
    try:
        info = path.stat()
    except FileNotFoundError:
        parent = path.resolve().parent  # a dangling link's file is created where it points
        if not parent.exists():
            return f"directory {parent} does not exist"
        if not parent.is_dir():
            return f"{parent} is not a directory"
        if not os.access(parent, os.W_OK | os.X_OK, effective_ids=os.access in os.supports_effective_ids):
            return f"cannot create files in {parent}"
        return None
    except OSError as exc:
        return exc.strerror or str(exc)
    if stat.S_ISDIR(info.st_mode):
        return "is a directory"
    if not stat.S_ISREG(info.st_mode):
        return None if os.access(path, os.W_OK) else "not writable"
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC))
    except OSError as exc:
        return exc.strerror or str(exc)
    return None


def _check_writable(path: Path) -> None:
    """Fail before any push when $GITHUB_OUTPUT cannot be written (exit 1, nothing moved)."""
    try:
        with path.open("a", encoding="utf-8"):
            pass
    except OSError as exc:
        raise LockstepError(
            f"cannot write $GITHUB_OUTPUT ({path}): {exc.strerror}; nothing was pushed"
        ) from None


def publish(report: Report, config: Config, request: RunRequest, env: Mapping[str, str]) -> int:
    """Write the summary, JSON report and Actions outputs; a write failure is reported, never hidden.

    The report is scrubbed of secrets before it is rendered (rendering can change
    how a secret is spelled: JSON escapes, markdown table cells), and the
    rendered summary once more.
    """
    report = redact.scrub_data(report)
    markdown = render_markdown(report)
    markdown = redact.scrub(markdown)
    code = report.exit_code
    problems: list[str] = []
    if request.report_path:
        try:
            request.report_path.write_text(render_json(report), encoding="utf-8")
        except OSError as exc:
            problems.append(f"cannot write the report to {request.report_path}: {exc.strerror}")
    if actions.in_actions(env):
        try:
            actions.append_step_summary(env, markdown)
        except LockstepError as exc:
            problems.append(str(exc))
        output_path = env.get("GITHUB_OUTPUT")
        if output_path:
            try:
                actions.OutputWriter(Path(output_path)).write_many(actions.report_outputs(report))
            except LockstepError as exc:
                problems.append(str(exc))
        if report.result in (Result.SPLIT, Result.UNKNOWN):
            actions.annotation("error", " ".join(report.messages) or report.result.value, title="lockstep")
        elif report.result in (Result.BLOCKED, Result.ROLLED_BACK):
            actions.annotation("warning", " ".join(report.messages) or "blocked", title="lockstep")
    # log.write: a terminal closed by now (SIGHUP) loses the screen copy, never the exit code
    if request.json_out:
        log.write(sys.stdout, render_json(report))
        log.write(sys.stderr, markdown + "\n")
    else:
        log.write(sys.stdout, markdown + "\n")
    for problem in problems:
        log.error(problem)
    if report.fix_command:
        log.error(f"the targets are split; to finish the promotion: {report.fix_command}")
    if problems and code == 0 and not any(s.did_push for s in report.services):
        code = 1
    return code

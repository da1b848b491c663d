"""Everything checked before a run touches anything: options, secrets, the tracker, the outputs.

A usage error found here exits 2 with nothing changed: the flags merged with the
Actions event (bypass, justification, actor), tokens refused in staging URLs and
checks, a tracker that is not a regular file, a ``--report`` or ``$GITHUB_OUTPUT``
that cannot be written.
"""

from __future__ import annotations

import getpass
import os
import stat
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

from lockstep import actions, forges, log, redact
from lockstep.audit import tracker_problem, validate_actor, validate_justification
from lockstep.config import Config
from lockstep.engine.gate import RunOptions
from lockstep.errors import LockstepError, UsageError
from lockstep.forges.base import Wiring


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

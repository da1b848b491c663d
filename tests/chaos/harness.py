"""Chaos runs: seeded scenario generation, execution through the real CLI, invariant checking.

One scenario is one integer seed: :func:`generate` draws everything from
``random.Random(seed)`` (services, start states, staging behaviour, checks,
bypass, audit, forge faults, signals), :func:`run_scenario` builds the world
(the fake GitHub or bare git repositories with hooks, real staging servers on
loopback, a ``lockstep.toml``), runs ``lockstep run`` once and then
:func:`check_invariants` compares everything the run said with the true state:
the fake's refs and request log, the bare repositories and their hook log, the
staging servers' logs, the check processes' markers and the audit record.

Runs go through the real entry point: in-process (``lockstep.cli.cli.main``,
stdout/stderr captured) for speed, or as a ``python -m lockstep`` subprocess
for a share of scenarios and for every scenario that sends SIGTERM/SIGINT.

The one deviation from production settings: in-process runs replace the GitHub
forge's default :class:`~lockstep.forges.github.http.RetryPolicy` (1 s base
backoff, 60 s budget, not configurable from ``lockstep.toml`` or the
environment) with a millisecond one, or a single faulted read would cost a
second or more.  Subprocess runs keep the production policy and draw only
transient (single) faults and short rate-limit waits.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lockstep.scaffold import toml_string
from tests.support.outputs import parse_output_file
from tests.support.staging import Staging

REPO_ROOT = Path(__file__).resolve().parents[2]
SRC = REPO_ROOT / "src"

# Tiny timings for every generated config (no fixed sleeps anywhere).
HEALTH_TIMEOUT = 0.3
HEALTH_INTERVAL = 0.02
REQUEST_TIMEOUT = 0.5
CHECK_TIMEOUT_HANG = 0.3
GATE = "chaos"
OWNER = "o"
TRACKER_REPO = "o/tracker"
TRACKER_ISSUE = 7
INPROC_LIMIT = 30.0  # seconds one in-process scenario may take before it counts as hung
SUBPROC_LIMIT = 60.0
CANCEL_LIMIT = 7.0  # DESIGN/GITHUB-API: lockstep must finish within ~7 s of a signal

CHECK_CODE = """\
import json, os, sys, time
marker, kind = sys.argv[1], sys.argv[2]
if kind == "hang":
    time.sleep(20)
if kind == "slow-pass":
    time.sleep(0.05)
if kind == "noisy-fail":
    print("::error::a check may print workflow commands")
    print("\\x1b[31mred\\x1b[0m ::add-mask::not-a-secret")
    sys.stdout.flush()
ok = kind in ("pass", "slow-pass")
with open(marker, "a") as fh:
    fh.write(json.dumps({"mono": time.monotonic(), "wall": time.time(), "ok": ok,
                         "env": dict(os.environ), "argv": sys.argv}) + "\\n")
sys.exit(0 if ok else 3)
"""

VALID_JUSTIFICATIONS = (
    "hotfix for INC-123: staging is down, prod is worse",
    "```\nEOF\n@everyone <script>alert(1)</script> [x](https://evil.example)\n```",
    "rollback \u202eevil\u202c with bidi controls",
    "line one\nEOF\n---\n# heading?\n~~~",
    "🚑 prod down, staging unreachable",
    "$(rm -rf /) `id` ; echo ${GITHUB_TOKEN}",
    "j" * 4000,
)
INVALID_JUSTIFICATIONS = {
    "empty": "",
    "blank": "  \n\t \u00a0 ",
    "invisible": "\u200b\u200d\u2060",
    "too-long": "x" * 4001,
}
ACTORS_OK = ("alice", "chaos-bot", "ünï cödé", "a`b|c @team <b>x</b>")
ACTOR_INVALID = "bad\u202eactor"

VERSION_GARBAGE = (
    "notjson", "empty", "truncated", "wrongtype", "null", "array", "upper", "short", "padded",
    "missingfield", "huge", "huge-nolength", "status500", "redirect", "trickle", "deep", "bidi",
    "nan", "bigint", "gzip-bomb",
)

# ------------------------------------------------------------------------------------ scenario


@dataclass
class ServicePlan:
    name: str
    start: str  # equal | behind | missing | diverged | ahead
    chain: int  # commits on the main chain (>= 2)
    behind_by: int
    health: str  # ok | slow | late | never | hang | refused
    ready_after: float
    health_status: int
    health_path: str
    version: str  # ok | nested | mismatch | garbage:<kind>
    push_token: str = "ok"  # ok | read-only | unknown   (github)
    readable: bool = True  # the read token can see the repo (github)
    protected: bool = False  # (github)
    hook: str = "none"  # none | reject | vanish   (git)
    missing_repo: bool = False  # (git)
    outsider: str = "none"  # none | ahead | between: another writer moves the target mid-run (github)
    outsider_after: int = 1  # ... right after lockstep's nth read of it


@dataclass
class CheckPlan:
    name: str
    kind: str  # pass | slow-pass | fail | noisy-fail | hang | missing


@dataclass
class FaultPlan:
    kind: str  # table label: http-500, timeout, drop-after, rate-limit-primary, ...
    endpoint: str  # table label of what it targets
    method: str | None
    path: str | None
    nth: int
    times: int | None
    seconds: float = 0.0
    retry_after: float | None = None
    reset_in: float = 1.0
    limit: str = "primary"
    status: int = 403


@dataclass
class SignalPlan:
    name: str  # SIGTERM | SIGINT
    anchor: str  # first-request | start
    delay: float


@dataclass
class Scenario:
    seed: int
    forge: str  # github | git
    runner: str  # inproc | subprocess
    services: list[ServicePlan]
    checks: list[CheckPlan]
    bypass: str  # none | valid | empty | blank | invisible | too-long | no-skip
    justification: str | None
    bypass_via_event: bool
    actor_kind: str  # default | ok | not-allowed | invalid
    actor: str | None
    allowed_actors: tuple[str, ...]
    audit: str  # ok | locked | missing-issue | disabled | comment-fault | no-dir
    faults: list[FaultPlan]
    read_token_ok: bool
    lock: str  # auto | ref | none
    actions: bool
    dispatch_payload: bool
    json_out: bool
    setup_error: str  # none | secret-in-check | missing-token-env
    signal: SignalPlan | None
    rollback: bool = False  # [recovery] on_split = "rollback": a split is undone at once

    @property
    def usage_error(self) -> str | None:
        """Why this run must stop with exit 2 before any side effect, or None."""
        if self.setup_error != "none":
            return self.setup_error
        if self.actor_kind == "invalid":
            return "actor-invalid"
        if self.bypass == "no-skip":
            return "justification-without-skip-gate"
        if self.bypass in INVALID_JUSTIFICATIONS:
            return "justification-invalid"
        if self.bypass == "valid" and self.actor_kind == "not-allowed":
            return "actor-not-allowed"
        return None

    @property
    def bypassing(self) -> bool:
        return self.bypass == "valid" and self.usage_error is None

    def gate_expectation(self) -> str:
        """``fail`` when some gate step must fail, ``pass`` when every step must pass."""
        bad = any(
            s.health in ("late", "never", "hang", "refused") or s.version not in ("ok", "nested")
            for s in self.services
        ) or any(c.kind not in ("pass", "slow-pass") for c in self.checks)
        return "fail" if bad else "pass"

    def world_faults(self) -> list[str]:
        """Labels of the faults that live in the world rather than in the fake's injections."""
        out: list[str] = []
        for s in self.services:
            out += self._forge_faults(s) + _staging_faults(s)
        for c in self.checks:
            if c.kind not in ("pass", "slow-pass"):
                out.append(f"check-{c.kind}")
        return out + self._run_faults()

    def _forge_faults(self, s: ServicePlan) -> list[str]:
        """One service's faults on its forge: tokens, visibility, protection, another writer; hooks."""
        if self.forge != "github":
            out = [f"git-hook-{s.hook}"] if s.hook != "none" else []
            if s.missing_repo:
                out.append("git-repo-missing")
            return out
        out = [f"push-token-{s.push_token}"] if s.push_token != "ok" else []
        if not s.readable:
            out.append("read-token-no-access")
        if s.protected:
            out.append("protected-target")
        if s.outsider != "none":
            out.append(f"outside-writer-{s.outsider}")
        return out

    def _run_faults(self) -> list[str]:
        """The faults of the run as a whole: read token, audit store, bypass, actor, setup, signal."""
        out: list[str] = []
        if not self.read_token_ok:
            out.append("read-token-unknown")
        if self.bypass_in_play and self.audit != "ok":
            out.append(f"audit-{self.audit}")
        if self.bypass not in ("none", "valid"):
            out.append(f"bypass-{self.bypass}")
        if self.actor_kind in ("not-allowed", "invalid") and (self.bypass != "none" or self.actor_kind == "invalid"):
            out.append(f"actor-{self.actor_kind}")
        if self.setup_error != "none":
            out.append(self.setup_error)
        if self.signal is not None:
            out.append(self.signal.name.lower())
        return out

    def variants(self) -> list[str]:
        """Configuration choices that are not faults, for the table."""
        out = [f"lock-{self.lock}"] if self.lock != "auto" else []
        if self.rollback:
            out.append("on-split-rollback")
        if self.actions:
            out.append("actions-mode")
        if self.dispatch_payload:
            out.append("hostile-client-payload")
        if self.bypass == "valid":
            out.append("bypass-via-event" if self.bypass_via_event else "bypass-via-flag")
        return out

    @property
    def bypass_in_play(self) -> bool:
        return self.bypass == "valid"


def _staging_faults(s: ServicePlan) -> list[str]:
    """One service's staging faults: health that is not simply ready, a /version that is not right."""
    out = [f"health-{s.health}"] if s.health != "ok" else []
    if s.version not in ("ok", "nested"):
        out.append("version-" + s.version.split(":")[0])
    return out


def _service_names(rng: random.Random, n: int) -> list[str]:
    pool = ["backend", "lml", "web.api", "auth_svc", "search-x", "Billing", "feeds.v2", "queue_1"]
    rng.shuffle(pool)
    return pool[:n]


def generate(seed: int) -> Scenario:
    """The scenario for ``seed``: the same seed always gives the same scenario.

    Every draw comes from one ``random.Random(seed)`` in a fixed order; each helper below
    draws one part of the scenario, and they run in that order.
    """
    rng = random.Random(seed)
    forge = "git" if rng.random() < 0.15 else "github"
    runner, sig = _gen_runner(rng)
    subprocess_run = runner == "subprocess"

    n = rng.choice([1, 1, 2, 2, 2, 3, 3, 4, 5])
    names = _service_names(rng, n)
    # Gate "mood": most scenarios have good staging, the rest one bad service or check.
    bad_gate = rng.random() < 0.35
    bad_index = rng.randrange(n + 1) if bad_gate else -1  # n = a check is the bad one
    services = [_gen_service(rng, name, forge, bad=k == bad_index) for k, name in enumerate(names)]
    checks = _gen_checks(rng, bad=bad_index == n)
    bypass, justification = _gen_bypass(rng)
    actions = rng.random() < 0.2
    bypass_via_event = actions and bypass in ("valid", *INVALID_JUSTIFICATIONS) and rng.random() < 0.6
    actor_kind, actor, allowed = _gen_actor(rng)
    audit = _gen_audit(rng, forge)
    faults = _gen_faults(rng, forge, n, subprocess_run, bypass, audit)
    setup_error = _gen_setup_error(rng, forge, checks)
    lock = rng.choices(["auto", "ref", "none"], [85, 10, 5])[0] if forge == "github" else "auto"
    rollback = rng.random() < 0.15
    read_token_ok = forge == "git" or rng.random() >= 0.02
    dispatch_payload = actions and not bypass_via_event and rng.random() < 0.5
    json_out = rng.random() < 0.2
    return Scenario(
        seed=seed,
        forge=forge,
        runner=runner,
        services=services,
        checks=checks,
        bypass=bypass,
        justification=justification,
        bypass_via_event=bypass_via_event,
        actor_kind=actor_kind,
        actor=actor,
        allowed_actors=allowed,
        audit=audit,
        faults=faults,
        read_token_ok=read_token_ok,
        lock=lock,
        actions=actions,
        dispatch_payload=dispatch_payload,
        json_out=json_out,
        setup_error=setup_error,
        signal=sig,
        rollback=rollback,
    )


def _gen_runner(rng: random.Random) -> tuple[str, SignalPlan | None]:
    """In-process (94 %) or a subprocess, which for 3.5 % of all scenarios gets a signal."""
    r = rng.random()
    if r < 0.035:
        return "subprocess", SignalPlan(
            name="SIGTERM" if rng.random() < 0.8 else "SIGINT",
            anchor="start" if rng.random() < 0.15 else "first-request",
            delay=round(rng.uniform(0.0, 0.6), 3),
        )
    if r < 0.06:
        return "subprocess", None
    return "inproc", None


def _gen_service(rng: random.Random, name: str, forge: str, bad: bool) -> ServicePlan:
    """One service: its start state, its staging behaviour (bad when ``bad``) and its forge faults."""
    chain = rng.randint(2, 4)
    start = rng.choices(["equal", "behind", "missing", "diverged", "ahead"], [24, 48, 12, 9, 7])[0]
    health, version, ready_after = _gen_staging(rng, bad)
    plan = ServicePlan(
        name=name,
        start=start,
        chain=chain,
        behind_by=rng.randint(1, chain - 1),
        health=health,
        ready_after=ready_after,
        health_status=rng.choice([503, 500, 404, 301]) if health == "never" else 200,
        health_path=rng.choice(["/health", "/healthcheck"]),
        version=version,
    )
    if forge == "github":
        _gen_github_service_faults(rng, plan)
    else:
        _gen_git_service_faults(rng, plan)
    return plan


def _gen_staging(rng: random.Random, bad: bool) -> tuple[str, str, float]:
    """(health, version, ready_after) of one service's staging; a bad one fails health or /version."""
    health, version = "ok", "ok" if rng.random() < 0.85 else "nested"
    ready_after = 0.0
    if rng.random() < 0.12:
        health, ready_after = "slow", round(rng.uniform(0.02, 0.12), 3)
    if bad:
        what = rng.choice(["health", "health", "version", "version", "version"])
        if what == "health":
            health = rng.choice(["late", "never", "never", "hang", "refused"])
            ready_after = round(rng.uniform(0.6, 1.0), 3) if health == "late" else 0.0
        else:
            version = "mismatch" if rng.random() < 0.4 else "garbage:" + rng.choice(VERSION_GARBAGE)
    return health, version, ready_after


def _gen_github_service_faults(rng: random.Random, plan: ServicePlan) -> None:
    """Token, visibility, protection and another writer for one service on the fake GitHub."""
    plan.push_token = rng.choices(["ok", "read-only", "unknown"], [95, 3, 2])[0]
    plan.readable = rng.random() >= 0.02
    plan.protected = rng.random() < 0.03
    if rng.random() < 0.03:
        plan.outsider = rng.choice(["ahead", "between"])
        plan.outsider_after = rng.randint(1, 3)


def _gen_git_service_faults(rng: random.Random, plan: ServicePlan) -> None:
    """Hooks and a missing repository for one service on the git forge."""
    plan.hook = rng.choices(["none", "reject", "vanish"], [84, 12, 4])[0]
    plan.missing_repo = rng.random() < 0.03


def _gen_checks(rng: random.Random, bad: bool) -> list[CheckPlan]:
    """0–3 checks that pass; when ``bad``, one of them (added if need be) fails, hangs or is missing."""
    n_checks = rng.choices([0, 1, 2, 3], [40, 35, 20, 5])[0]
    checks = [CheckPlan(f"check-{i}", "slow-pass" if rng.random() < 0.1 else "pass") for i in range(n_checks)]
    if bad:
        if not checks:
            checks.append(CheckPlan("check-0", "pass"))
        rng.choice(checks).kind = rng.choices(["fail", "noisy-fail", "hang", "missing"], [45, 15, 30, 10])[0]
    return checks


def _gen_bypass(rng: random.Random) -> tuple[str, str | None]:
    """The bypass kind and its justification (hostile when valid, one of the invalid kinds otherwise)."""
    bypass = rng.choices(
        ["none", "valid", "empty", "blank", "invisible", "too-long", "no-skip"], [64, 26, 2, 2, 2, 2, 2]
    )[0]
    if bypass in ("valid", "no-skip"):
        return bypass, rng.choice(VALID_JUSTIFICATIONS)
    if bypass in INVALID_JUSTIFICATIONS:
        return bypass, INVALID_JUSTIFICATIONS[bypass]
    return bypass, None


def _gen_actor(rng: random.Random) -> tuple[str, str | None, tuple[str, ...]]:
    """(actor kind, --actor, allowed_actors)."""
    actor_kind = rng.choices(["default", "ok", "not-allowed", "invalid"], [50, 40, 7, 3])[0]
    if actor_kind == "ok":
        actor = rng.choice(ACTORS_OK)
        return actor_kind, actor, (actor, "someone-else") if rng.random() < 0.3 else ()
    if actor_kind == "not-allowed":
        return actor_kind, rng.choice(ACTORS_OK), ("only-this-person",)
    if actor_kind == "invalid":
        return actor_kind, ACTOR_INVALID, ()
    return actor_kind, None, ()


def _gen_audit(rng: random.Random, forge: str) -> str:
    """How the audit store behaves: the tracker issue (GitHub) or the audit file's directory (git)."""
    if forge == "github":
        return rng.choices(["ok", "locked", "missing-issue", "disabled", "comment-fault"], [76, 7, 4, 4, 9])[0]
    return rng.choices(["ok", "no-dir"], [85, 15])[0]


def _gen_faults(
    rng: random.Random, forge: str, n: int, subprocess_run: bool, bypass: str, audit: str
) -> list[FaultPlan]:
    """0–3 injected faults on the fake GitHub, plus one on the audit comment for ``comment-fault``."""
    faults: list[FaultPlan] = []
    if forge != "github":
        return faults
    for _ in range(rng.choices([0, 1, 2, 3], [35, 35, 20, 10])[0]):
        faults.append(_gen_fault(rng, n, subprocess_run, bypass == "valid"))
    if bypass == "valid" and audit == "comment-fault":
        faults.append(_gen_fault(rng, n, subprocess_run, True, endpoint="audit-comment"))
    return faults


def _gen_setup_error(rng: random.Random, forge: str, checks: list[CheckPlan]) -> str:
    """A planted setup error (a token spelled into a check, adding one if need be; a missing token)."""
    r = rng.random()
    if r < 0.03:
        if not checks:
            checks.append(CheckPlan("check-0", "pass"))
        return "secret-in-check"
    if r < 0.05 and forge == "github":
        return "missing-token-env"
    return "none"


_ENDPOINTS = (
    # label, method, path template, weight, how many such requests a run typically makes
    ("source-read", "GET", r"/repos/o/s{k}/branches/main", 10, 1),
    ("target-read", "GET", r"/repos/o/s{k}/branches/prod", 18, 3),
    ("compare", "GET", r"/repos/o/s{k}/compare/.+", 10, 1),
    ("patch-target", "PATCH", r"/repos/o/s{k}/git/refs/heads/prod", 22, 2),
    ("create-ref", "POST", r"/repos/o/s{k}/git/refs", 8, 2),
    ("any-request", None, None, 14, 12),
)


def _gen_fault(
    rng: random.Random, n: int, subprocess_run: bool, bypass: bool, endpoint: str | None = None
) -> FaultPlan:
    if endpoint is None:
        choices = [e for e in _ENDPOINTS]
        endpoint = rng.choices([e[0] for e in choices], [e[3] for e in choices])[0]
    if endpoint == "audit-comment":
        method, path, count = "POST", rf"/repos/{TRACKER_REPO}/issues/{TRACKER_ISSUE}/comments", 1
    else:
        _, method, template, _, count = next(e for e in _ENDPOINTS if e[0] == endpoint)
        path = None if template is None else template.replace("{k}", str(rng.randrange(n)))
    kind = rng.choices(
        ["http-500", "http-502", "http-503", "http-401", "http-403", "rate-limit", "timeout",
         "drop-before", "drop-after", "latency"],
        [10, 6, 8, 6, 6, 10, 10, 10, 14, 5],
    )[0]
    times: int | None = 1
    if not subprocess_run:
        times = rng.choices([1, 2, 3, None], [60, 15, 10, 15])[0]
    plan = FaultPlan(kind=kind, endpoint=endpoint, method=method, path=path,
                     nth=rng.randint(1, max(1, count)), times=times)
    if kind == "rate-limit":
        plan.limit = rng.choice(["primary", "secondary"])
        plan.status = rng.choice([403, 429])
        plan.kind = f"rate-limit-{plan.limit}"
        if rng.random() < 0.75:
            plan.retry_after = rng.choice([0, 0, 1])
        else:
            plan.reset_in = round(rng.uniform(0.0, 0.5), 2)
    elif kind == "timeout":
        plan.seconds = round(rng.uniform(REQUEST_TIMEOUT + 0.1, REQUEST_TIMEOUT * 2.5), 3)
    elif kind == "latency":
        plan.seconds = round(rng.uniform(0.01, 0.15), 3)
    return plan


def describe(sc: Scenario) -> str:
    """A readable dump of the scenario (for ``--replay`` and failure messages)."""
    return json.dumps(dataclasses.asdict(sc), indent=1, ensure_ascii=False)


# ------------------------------------------------------------------------------------ worlds


class LoggedStaging(Staging):
    """A staging stub that logs (monotonic, wall, path, status) per answer.

    ``health_ready_after`` counts from the first health request, so "slow" and
    "late" do not depend on how long the run took to get there.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.log: list[tuple[float, float, str, int]] = []
        self._first_health = True

    def _handle(self, h: Any) -> None:
        path = h.path.split("?", 1)[0]
        if path in ("/health", "/healthcheck") and self._first_health:
            self._first_health = False
            self.restart_clock()
        original = h.send_response

        def send_response(code: int, message: str | None = None) -> None:
            self.log.append((time.monotonic(), time.time(), path, code))
            original(code, message)

        h.send_response = send_response
        super()._handle(h)


def _version_setup(plan: ServicePlan, src: str, other: str) -> tuple[dict[str, Any], str]:
    """Staging keyword arguments and the config's version_field for one service."""
    field_name = "build.commit" if plan.version == "nested" else "sha"
    kw: dict[str, Any] = {}
    if plan.version == "ok":
        kw["version_body"] = {"sha": src}
    elif plan.version == "nested":
        kw["version_body"] = {"build": {"commit": src}}
    elif plan.version == "mismatch":
        kw["version_body"] = {"sha": other}
    else:
        kind = plan.version.split(":", 1)[1]
        big = b'{"sha": "' + b"a" * 100_000 + b'"}'
        bodies: dict[str, Any] = {
            "notjson": b"<html>oops</html>",
            "empty": b"",
            "truncated": b'{"sha": "' + src.encode()[:20],
            "wrongtype": {"sha": 12345},
            "null": {"sha": None},
            "array": [src],
            "upper": {"sha": src.upper()},
            "short": {"sha": src[:7]},
            "padded": {"sha": " " + src + "\n"},
            "missingfield": {"version": src},
            "huge": big,
            "huge-nolength": big,
            "status500": {"sha": src},
            "redirect": {"sha": src},
            "trickle": {"sha": src},
            "deep": b"[" * 60_000,
            "bidi": {"sha": "\u202e" + src},
            "nan": b'{"sha": NaN}',
            "bigint": b'{"sha": 1' + b"0" * 5000 + b"}",
            "gzip-bomb": None,
        }
        kw["version_body"] = bodies[kind]
        if kind == "huge-nolength":
            kw["version_content_length"] = False
        elif kind == "status500":
            kw["version_status"] = 500
        elif kind == "redirect":
            kw["version_status"] = 302
            kw["version_headers"] = {"Location": "http://127.0.0.1:9/version"}
        elif kind == "trickle":
            kw["trickle"] = 0.03
        elif kind == "gzip-bomb":
            import gzip

            kw["version_body"] = gzip.compress(b'{"sha": "' + b"0" * 20_000_000 + b'"}', 9)
            kw["version_headers"] = {"Content-Encoding": "gzip"}
    return kw, field_name


@dataclass
class Write:
    """One attempt to move a target, as the forge saw it (applied or not)."""

    service: int
    order: int  # position in the forge's log
    mono: float | None
    wall: float | None
    sha: str | None
    force: bool
    audit_size: int = -1  # git: audit file size when the push arrived
    kind: str = "forward"  # forward (to the source sha) | rewind (back to the start sha: rollback)


def _place(start: str, chain: list[str], side: str, behind_by: int) -> tuple[str, str | None]:
    """(source head, start target) for a start state."""
    if start == "equal":
        return chain[-1], chain[-1]
    if start == "behind":
        return chain[-1], chain[-1 - behind_by]
    if start == "missing":
        return chain[-1], None
    if start == "diverged":
        return chain[-1], side
    return chain[-2], chain[-1]  # ahead: the target is a descendant of the source


class Tokens:
    """Planted secrets, unique per scenario, that must never show up anywhere."""

    def __init__(self, rng: random.Random, n: int) -> None:
        def make(prefix: str) -> str:
            return prefix + "".join(rng.choice("ABCDEFGHJKLMNPQRSTUVWXYZ23456789") for _ in range(24))

        self.read = make("ghp_CHAOSREAD")
        self.push = [make(f"github_pat_CHAOSPUSH{k}x") for k in range(n)]

    @property
    def all(self) -> list[str]:
        return [self.read, *self.push]


def _fake_fault(fp: FaultPlan) -> Any:
    """The fake GitHub's fault for a planned one."""
    from tests.support.fakegithub import Fault

    if fp.kind.startswith("http-"):
        code = int(fp.kind[5:])
        if code == 403:
            return Fault.status(403, "Resource not accessible by personal access token",
                                {"X-Accepted-GitHub-Permissions": "contents=write"})
        if code == 401:
            return Fault.status(401, "Bad credentials")
        return Fault.status(code)
    if fp.kind.startswith("rate-limit"):
        return Fault.rate_limit(fp.limit, fp.status, fp.retry_after, fp.reset_in)  # type: ignore[arg-type]
    if fp.kind in ("timeout", "latency"):
        return Fault.delay(fp.seconds)
    if fp.kind == "drop-before":
        return Fault.drop_before()
    return Fault.drop_after()


class GitHubWorld:
    clock = "mono"

    def __init__(self, sc: Scenario, root: Path, tokens: Tokens) -> None:
        from tests.support.fakegithub import FakeGitHub

        self.sc, self.tokens = sc, tokens
        self.gh = FakeGitHub().start()
        self.start: list[str | None] = []
        self.source: list[str] = []
        self.other: list[str] = []
        self.outsider: list[str | None] = []
        for k, plan in enumerate(sc.services):
            self._add_service(k, plan)
        self._outsider_done: dict[int, tuple[int, str | None]] = {}
        if any(o is not None for o in self.outsider):
            self._install_outsider()
        self._add_tracker()
        self._add_tokens()
        self.injections = [
            (fp, self.gh.inject(_fake_fault(fp), method=fp.method, path=fp.path, nth=fp.nth, times=fp.times))
            for fp in sc.faults
        ]

    def _add_service(self, k: int, plan: ServicePlan) -> None:
        """Service k's repository: its commits, main and prod at the plan's start state, protection,
        and the commit another writer will move prod to (if any)."""
        gh, repo = self.gh, self.repo(k)
        gh.add_repo(repo)
        chain = [gh.commit(repo, message=f"{plan.name} 0")]
        for i in range(1, plan.chain):
            chain.append(gh.commit(repo, parents=(chain[-1],), message=f"{plan.name} {i}"))
        side = gh.commit(repo, parents=(chain[0],), message=f"{plan.name} side")
        src, s0 = _place(plan.start, chain, side, plan.behind_by)
        gh.set_branch(repo, "main", src)
        if s0 is not None:
            gh.set_branch(repo, "prod", s0)
        if plan.protected:
            gh.protect(repo, "prod")
        self.start.append(s0)
        self.source.append(src)
        self.other.append(s0 if s0 not in (None, src) else chain[0] if chain[0] != src else side)
        outside: str | None = None
        if plan.outsider == "between" and plan.start == "behind" and plan.behind_by >= 2:
            outside = chain[-plan.behind_by]  # strictly between start and source
        elif plan.outsider != "none":
            outside = gh.commit(repo, parents=(src,), message=f"{plan.name} hotfix pushed by hand")
        self.outsider.append(outside)

    def _add_tracker(self) -> None:
        """The bypass tracker issue, as the scenario's audit plan wants it (missing, locked, disabled)."""
        gh, audit = self.gh, self.sc.audit
        if audit == "missing-issue":
            gh.add_issue(TRACKER_REPO, TRACKER_ISSUE + 1)
        else:
            gh.add_issue(TRACKER_REPO, TRACKER_ISSUE, locked=audit == "locked")
        if audit == "disabled":
            gh.disable_issues(TRACKER_REPO)

    def _add_tokens(self) -> None:
        """The read token (unless unknown) and each service's push token (unless unknown)."""
        sc, gh, tokens = self.sc, self.gh, self.tokens
        readable = [self.repo(k) for k, p in enumerate(sc.services) if p.readable]
        if sc.read_token_ok:
            gh.add_token(tokens.read, read=readable, write=[TRACKER_REPO])
        for k, plan in enumerate(sc.services):
            repo = self.repo(k)
            if plan.push_token == "ok":
                gh.add_token(tokens.push[k], read=[repo], write=[repo])
            elif plan.push_token == "read-only":
                gh.add_token(tokens.push[k], read=[repo])

    def _install_outsider(self) -> None:
        """Another writer moves a target right after lockstep's nth successful read of it (a branch read
        or a compare against it; answered, not yet sent): invisible to that read, visible to later ones."""
        gh, original = self.gh, self.gh._dispatch
        counts: Counter[int] = Counter()
        guard = threading.Lock()

        def dispatch(method: str, target: str, headers: Any, body: bytes, connection: int) -> Any:
            began = time.monotonic()
            reply = original(method, target, headers, body, connection)
            path = target.split("?", 1)[0]
            if reply.response is None or reply.response.status != 200:
                return reply  # lockstep must have seen the target before another writer moves it
            if time.monotonic() - began >= REQUEST_TIMEOUT * 0.9:
                return reply  # answered after lockstep gave up waiting: lockstep never saw it
            for k, plan in enumerate(self.sc.services):
                reads = (f"/repos/{OWNER}/s{k}/branches/prod", f"/repos/{OWNER}/s{k}/compare/prod...")
                if self.outsider[k] is None or method != "GET" or not path.startswith(reads):
                    continue
                with guard:
                    counts[k] += 1
                    if counts[k] != plan.outsider_after or k in self._outsider_done:
                        continue
                    self._outsider_done[k] = (len(gh.requests), gh.branch(self.repo(k), "prod"))
                    gh.set_branch(self.repo(k), "prod", self.outsider[k] or "")
            return reply

        gh._dispatch = dispatch  # type: ignore[method-assign]

    def outsider_before(self) -> list[str | None]:
        """Where each target was when another writer moved it (None: no outside move happened)."""
        out: list[str | None] = [None] * len(self.sc.services)
        for k, (_, before) in self._outsider_done.items():
            out[k] = before
        return out

    def final_seen(self, truth: list[str | None]) -> list[str | None]:
        """The positions lockstep could know: an outside move after its last read of a target is invisible."""
        seen = list(truth)
        requests = self.gh.requests
        for k, (index, before) in self._outsider_done.items():
            read = f"/repos/{OWNER}/s{k}/branches/prod"
            patch, post = f"/repos/{OWNER}/s{k}/git/refs/heads/prod", f"/repos/{OWNER}/s{k}/git/refs"
            learned = any(
                (r.method == "GET" and r.path == read and r.status == 200)
                or (r.method == "PATCH" and r.path == patch and r.status == 200)
                or (r.method == "POST" and r.path == post and r.status == 201
                    and isinstance(r.json, dict) and r.json.get("ref") == "refs/heads/prod")
                for r in requests[index:]
            )
            if not learned:  # lockstep neither read nor wrote the target after the move
                seen[k] = before
        return seen

    def env(self) -> dict[str, str]:
        env = {"GITHUB_API_URL": self.gh.url, "GITHUB_TOKEN": self.tokens.read}
        for k in range(len(self.sc.services)):
            if self.sc.setup_error == "missing-token-env" and k == len(self.sc.services) - 1:
                continue
            env[f"CHAOS_PUSH_{k}"] = self.tokens.push[k]
        return env

    def repo(self, k: int) -> str:
        return f"{OWNER}/s{k}"

    def tracker(self) -> str:
        return f"{TRACKER_REPO}#{TRACKER_ISSUE}"

    def first_request_seen(self) -> bool:
        return bool(self.gh.requests)

    def settle(self) -> None:
        """Wait until every delayed request has been handled (a late write lands before we look)."""
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline:
            if all(r.status is not None for r in self.gh.requests if r.fault == "delay"):
                return
            time.sleep(0.01)

    def final(self) -> list[str | None]:
        return [self.gh.branch(self.repo(k), "prod") for k in range(len(self.sc.services))]

    def writes(self) -> list[Write]:
        out = []
        for i, r in enumerate(self.gh.requests):
            body = r.json if isinstance(r.json, dict) else {}
            for k in range(len(self.sc.services)):
                base = f"/repos/{OWNER}/s{k}/git/refs"
                if r.method == "PATCH" and r.path == base + "/heads/prod":
                    force = body.get("force") is not False
                    kind = "rewind" if force and body.get("sha") == self.start[k] else "forward"
                    out.append(Write(k, i, r.at, None, body.get("sha"), force, kind=kind))
                elif r.method == "POST" and r.path == base and body.get("ref") == "refs/heads/prod":
                    out.append(Write(k, i, r.at, None, body.get("sha"), False))
        return out

    def audit_before(self, order: int) -> bool:
        """Was an audit comment stored by a request logged before position ``order``?"""
        path = f"/repos/{TRACKER_REPO}/issues/{TRACKER_ISSUE}/comments"
        for r in self.gh.requests[:order]:
            if r.method == "POST" and r.path == path and (r.status == 201 or r.fault == "drop_after"):
                return bool(self.audit_records())
        return False

    def audit_between(self, after: int, before: int) -> bool:
        """Was an audit comment stored by a request logged strictly between two positions?"""
        path = f"/repos/{TRACKER_REPO}/issues/{TRACKER_ISSUE}/comments"
        return any(
            r.method == "POST" and r.path == path and (r.status == 201 or r.fault == "drop_after")
            for r in self.gh.requests[after + 1 : before]
        )

    def audit_records(self) -> list[str]:
        try:
            return [c["body"] for c in self.gh.comments(TRACKER_REPO, TRACKER_ISSUE)]
        except KeyError:
            return []

    def lock_left(self) -> bool:
        return self.gh.branch(self.repo(0), f"lockstep-lock/{GATE}") is not None

    def leak_texts(self) -> list[tuple[str, str]]:
        """Everything lockstep sent to the forge except the Authorization headers."""
        out = []
        for r in self.gh.requests:
            out.append((f"request body {r.method} {r.path}", r.body.decode("utf-8", "replace")))
            out.append((f"request path {r.method}", r.path + json.dumps(r.query)))
            for name, value in r.headers.items():
                if name != "authorization":
                    out.append((f"request header {name}", value))
        return out

    def faulted_service(self, k: int) -> bool:
        """Did any injected fault (or token problem) hit a request about service k?"""
        prefix = f"/repos/{OWNER}/s{k}/"
        return any(r.fault and r.path.startswith(prefix) for r in self.gh.requests)

    def fired(self) -> Counter[str]:
        c: Counter[str] = Counter()
        for fp, inj in self.injections:
            if inj.fired:
                c[fp.kind] += inj.fired
        return c

    def close(self) -> None:
        self.gh.stop()


class GitWorld:
    clock = "wall"

    def __init__(self, sc: Scenario, root: Path, tokens: Tokens) -> None:
        self.sc, self.root, self.tokens = sc, root, tokens
        self.start, self.source, self.other = [], [], []  # type: ignore[var-annotated]
        self.outsider: list[str | None] = [None] * len(sc.services)
        self.hook_log = root / "pushes.log"
        self.audit_path = root / ("nodir/audit.md" if sc.audit == "no-dir" else "audit.md")
        for k, plan in enumerate(sc.services):
            bare = root / f"s{k}.git"
            shas = _template_repo(plan, bare)
            chain = [shas[i + 1] for i in range(plan.chain)]
            side = shas[100]
            src, s0 = _place(plan.start, chain, side, plan.behind_by)
            _write_ref(bare, "main", src)
            if s0 is not None:
                _write_ref(bare, "prod", s0)
            self.start.append(s0)
            self.source.append(src)
            self.other.append(s0 if s0 not in (None, src) else chain[0] if chain[0] != src else side)
            hooks = bare / "hooks"
            hooks.mkdir(exist_ok=True)
            reject = "exit 1" if plan.hook == "reject" else "exit 0"
            _hook(hooks / "pre-receive", (
                f'size=0; [ -f "{self.audit_path}" ] && size=$(wc -c < "{self.audit_path}")\n'
                'while read old new ref; do\n'
                f'  echo "$(date +%s.%N) {k} $old $new $ref $size" >> "{self.hook_log}"\n'
                'done\n'
                + ('echo "chaos: pushes to this repository are refused" >&2\n' if plan.hook == "reject" else "")
                + reject
            ))
            if plan.hook == "vanish":
                _hook(hooks / "post-receive", 'mv "$PWD" "$PWD.gone"\n')
            if plan.missing_repo:
                shutil.move(str(bare), str(root / f"s{k}.missing"))

    def env(self) -> dict[str, str]:
        env = {}
        for k in range(len(self.sc.services)):
            env[f"CHAOS_PUSH_{k}"] = self.tokens.push[k]
        return env

    def repo(self, k: int) -> str:
        return f"s{k}.git"

    def tracker(self) -> str:
        return str(self.audit_path.relative_to(self.root))

    def first_request_seen(self) -> bool:
        return True

    def settle(self) -> None:
        pass

    def _bare(self, k: int) -> Path:
        bare = self.root / f"s{k}.git"
        gone = self.root / f"s{k}.git.gone"
        missing = self.root / f"s{k}.missing"
        if not bare.exists() and gone.exists():
            gone.rename(bare)
        if not bare.exists() and missing.exists():
            missing.rename(bare)
        return bare

    def final(self) -> list[str | None]:
        return [_read_ref(self._bare(k), "prod") for k in range(len(self.sc.services))]

    def final_seen(self, truth: list[str | None]) -> list[str | None]:
        return list(truth)

    def outsider_before(self) -> list[str | None]:
        return [None] * len(self.sc.services)

    def writes(self) -> list[Write]:
        out = []
        if not self.hook_log.exists():
            return out
        for i, line in enumerate(self.hook_log.read_text().splitlines()):
            wall, k, _old, new, ref, size = line.split()
            if ref == "refs/heads/prod":
                kind = "rewind" if new == self.start[int(k)] else "forward"
                out.append(Write(int(k), i, None, float(wall), new, False, int(size), kind=kind))
        return out

    def audit_before(self, order: int) -> bool:
        writes = [w for w in self.writes() if w.order <= order]
        return bool(writes) and writes[-1].audit_size > 0 and bool(self.audit_records())

    def audit_between(self, after: int, before: int) -> bool:
        writes = {w.order: w for w in self.writes()}
        return before in writes and after in writes and writes[before].audit_size > writes[after].audit_size

    def audit_records(self) -> list[str]:
        jsonl = self.audit_path.with_name(self.audit_path.name + ".jsonl")
        if not jsonl.exists():
            return []
        return jsonl.read_text().splitlines()

    def lock_left(self) -> bool:
        return False

    def leak_texts(self) -> list[tuple[str, str]]:
        out = []
        for path in (self.audit_path, self.audit_path.with_name(self.audit_path.name + ".jsonl")):
            if path.exists():
                out.append((f"audit file {path.name}", path.read_text(errors="replace")))
        return out

    def faulted_service(self, k: int) -> bool:
        plan = self.sc.services[k]
        return plan.hook != "none" or plan.missing_repo

    def fired(self) -> Counter[str]:
        return Counter()

    def close(self) -> None:
        pass


def _git(*args: str, input: str | None = None) -> str:
    env = {**os.environ, "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull}
    res = subprocess.run(["git", *args], input=input, capture_output=True, text=True, env=env, check=False)
    if res.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)}: {res.stderr.strip()}")
    return res.stdout


_TEMPLATES: dict[tuple[str, int], tuple[Path, dict[int, str]]] = {}


def _template_repo(plan: ServicePlan, dest: Path) -> dict[int, str]:
    """Copy a bare repository holding the plan's commits into ``dest``; return mark -> sha.

    Each worker builds one template per (service name, chain length) with
    ``git fast-import`` and copies it afterwards: no git process per scenario.
    """
    key = (plan.name, plan.chain)
    if key not in _TEMPLATES:
        base = Path(tempfile.mkdtemp(prefix="chaos-template-"))
        bare = base / "t.git"
        _git("init", "--quiet", "--bare", str(bare))
        marks = base / "marks"
        _git("--git-dir", str(bare), "fast-import", "--quiet", f"--export-marks={marks}",
             input=_fast_import_stream(plan))
        shas = {}
        for line in marks.read_text().splitlines():
            mark, sha = line.split()
            shas[int(mark[1:])] = sha
        for sample in (bare / "hooks").glob("*.sample"):
            sample.unlink()
        _TEMPLATES[key] = (bare, shas)
    template, shas = _TEMPLATES[key]
    shutil.copytree(template, dest, symlinks=True)
    return shas


def _write_ref(bare: Path, branch: str, sha: str) -> None:
    path = bare / "refs" / "heads" / branch
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(sha + "\n")


def _read_ref(bare: Path, branch: str) -> str | None:
    """A branch head straight from the repository files (loose ref, else packed-refs)."""
    loose = bare / "refs" / "heads" / branch
    if loose.exists():
        return loose.read_text().strip() or None
    packed = bare / "packed-refs"
    if packed.exists():
        for line in packed.read_text().splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[1] == f"refs/heads/{branch}":
                return parts[0]
    return None


def _hook(path: Path, body: str) -> None:
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(0o755)


def _fast_import_stream(plan: ServicePlan) -> str:
    """Commits ``:1..:chain`` in a line and ``:100`` off ``:1``, named after the service."""
    out: list[str] = []

    def commit(ref: str, mark: int, parent: int | None, text: str) -> None:
        content = f"{plan.name}: {text}\n"
        out.extend([f"commit {ref}", f"mark :{mark}", f"committer Chaos <c@chaos.invalid> {1700000000 + mark} +0000",
                    f"data {len(text.encode())}", text])
        if parent is not None:
            out.append(f"from :{parent}")
        out.extend(["M 644 inline f", f"data {len(content.encode())}", content])

    for i in range(plan.chain):
        commit("refs/chaos/chain", i + 1, i if i else None, f"{plan.name} {i}")
    commit("refs/chaos/side", 100, 1, f"{plan.name} side")
    return "\n".join(out) + "\n"


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
    saved_ssl = httpx_default.create_ssl_context
    start = time.monotonic()
    with _patched_environ(env):
        github_module.RetryPolicy = _fast_retry_class()  # type: ignore[misc]
        httpx_default.create_ssl_context = _cached_ssl_context(saved_ssl)
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
            httpx_default.create_ssl_context = saved_ssl
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


@dataclass
class Observation:
    """Everything known after one run, for the invariant checks."""

    sc: Scenario
    run: RunOutput
    start: list[str | None]
    source: list[str]
    final: list[str | None]  # after every in-flight request was handled
    final_at_exit: list[str | None]  # when lockstep exited
    final_seen: list[str | None]  # what lockstep could have seen (outside moves after its last read hidden)
    outsider: list[str | None]
    outsider_before: list[str | None]  # the position another writer moved the target away from
    writes: list[Write]
    report: dict[str, Any] | None
    report_text: str
    summary: str
    outputs: str
    staging: list[list[tuple[float, float, str, int]]]
    markers: dict[str, list[dict[str, Any]]]
    audit_records: list[str]
    audit_before_first: bool
    audit_before_rewind: bool
    lock_left: bool
    leak_texts: list[tuple[str, str]]
    faulted: list[bool]
    tokens: list[str]
    clock: str


@dataclass
class ScenarioResult:
    seed: int
    forge: str
    runner: str
    signal: str | None
    code: int | None
    outcome: str
    faults: list[str]
    fired: dict[str, int]
    violations: list[str]
    seconds: float
    detail: str = ""
    variants: list[str] = field(default_factory=list)


def _toml(value: Any) -> str:
    """A TOML value (json.dumps is not a TOML encoder: it leaves DEL raw, which tomllib rejects)."""
    if isinstance(value, str):
        return toml_string(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + " }"
    return json.dumps(value)


def write_config(sc: Scenario, root: Path, world: Any, markers: Path) -> Path:
    lines = [
        "[gate]",
        f'name = "{GATE}"',
        f'forge = "{sc.forge}"',
        'runbook_url = "https://example.org/runbook#split"',
        f'health_timeout = "{int(HEALTH_TIMEOUT * 1000)}ms"',
        f'health_interval = "{int(HEALTH_INTERVAL * 1000)}ms"',
        f'request_timeout = "{int(REQUEST_TIMEOUT * 1000)}ms"',
        f'lock = "{sc.lock}"',
        'lock_timeout = "5s"',
        "",
        "[bypass]",
        f"tracker = {_toml(world.tracker())}",
    ]
    if sc.allowed_actors:
        lines.append(f"allowed_actors = {_toml(list(sc.allowed_actors))}")
    if sc.rollback:
        lines += ["", "[recovery]", "allow_rollback = true", 'on_split = "rollback"']
    for k, plan in enumerate(sc.services):
        field_name = "build.commit" if plan.version == "nested" else "sha"
        lines += [
            "",
            "[[services]]",
            f"name = {_toml(plan.name)}",
            f"repo = {_toml(world.repo(k))}",
            f'token_env = "CHAOS_PUSH_{k}"',
            f'health_url = "${{CHAOS_HEALTH_{k}}}{plan.health_path}"',
            f'version_url = "${{CHAOS_STAGING_{k}}}/version"',
            f'version_field = "{field_name}"',
        ]
    for i, check in enumerate(sc.checks):
        marker = markers / f"{check.name}.jsonl"
        argv = ["/nonexistent/chaos-check"] if check.kind == "missing" else [
            sys.executable, "-I", "-S", "-c", CHECK_CODE, str(marker), check.kind]
        env = {"CHAOS_BASE": "${CHAOS_STAGING_0}"}
        if sc.setup_error == "secret-in-check" and i == 0:
            env["LEAK"] = "${CHAOS_PUSH_0}"
        timeout = f"{int(CHECK_TIMEOUT_HANG * 1000)}ms" if check.kind == "hang" else "10s"
        lines += ["", "[[checks]]", f"name = {_toml(check.name)}", f"run = {_toml(argv)}",
                  f"env = {_toml(env)}", f'timeout = "{timeout}"']
    path = root / "lockstep.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _base_env(root: Path) -> dict[str, str]:
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "SYSTEMROOT", "USER", "LOGNAME", "VIRTUAL_ENV")
    env = {k: v for k, v in os.environ.items() if k in keep}
    env["XDG_STATE_HOME"] = str(root / "state")
    env["GIT_CONFIG_NOSYSTEM"] = "1"
    env["GIT_CONFIG_GLOBAL"] = os.devnull
    return env


def _hostile_payload(rng: random.Random) -> Any:
    deep: Any = "bottom"
    for _ in range(rng.choice([3, 50, 500])):
        deep = [deep]
    return {
        "sha": "0" * 40,
        "main_sha": "f" * 40,
        "note": "```\n::add-mask::x\n\u202eevil @everyone",
        "deep": deep,
        "big": "x" * rng.choice([10, 70_000]),
    }


def run_scenario(sc: Scenario, keep: Path | None = None) -> tuple[ScenarioResult, Observation | None]:
    """Build the world, run lockstep once, check the invariants; never raises for a lockstep failure."""
    t0 = time.monotonic()
    root = Path(tempfile.mkdtemp(prefix=f"chaos-{sc.seed}-", dir=keep))
    rng = random.Random(sc.seed * 7919 + 1)
    tokens = Tokens(rng, len(sc.services))
    world: Any = None
    stagings: list[LoggedStaging] = []
    sockets: list[socket.socket] = []
    try:
        world = GitHubWorld(sc, root, tokens) if sc.forge == "github" else GitWorld(sc, root, tokens)
        markers = root / "markers"
        markers.mkdir()
        env = _base_env(root) | world.env()
        _start_stagings(sc, world, env, stagings, sockets)
        config = write_config(sc, root, world, markers)
        args = _run_args(sc, config, root / "report.json")
        if sc.actions:
            env |= _actions_env(sc, root, rng)
        if sc.runner == "inproc":
            run = run_inprocess(args, env)
        else:
            run = run_subprocess(args, env, root, sc.signal, world.first_request_seen)
        obs = _observe(sc, run, world, root, stagings, tokens)
        violations = check_invariants(obs)
        result = ScenarioResult(
            seed=sc.seed, forge=sc.forge, runner=sc.runner,
            signal=sc.signal.name if sc.signal else None, code=run.code, outcome=outcome_label(obs),
            faults=[f.kind for f in sc.faults] + sc.world_faults(), fired=dict(world.fired()),
            violations=violations, variants=sc.variants(), seconds=time.monotonic() - t0,
        )
        if violations:
            result.detail = _failure_detail(obs)
        return result, obs
    except Exception:
        return ScenarioResult(
            seed=sc.seed, forge=sc.forge, runner=sc.runner, signal=None, code=None, outcome="harness error",
            faults=[], fired={}, violations=[f"harness-error: {traceback.format_exc()}"],
            seconds=time.monotonic() - t0,
        ), None
    finally:
        for sock in sockets:
            sock.close()
        _teardown(world, stagings, None if keep is not None else root)


def _start_stagings(
    sc: Scenario, world: Any, env: dict[str, str], stagings: list[LoggedStaging], sockets: list[socket.socket]
) -> None:
    """Start one staging server per service (and a refusing socket for "refused" health), adding
    each to ``stagings``/``sockets`` as soon as it exists (for teardown) and its URLs to ``env``."""
    for k, plan in enumerate(sc.services):
        kw, _ = _version_setup(plan, world.source[k], world.other[k])
        staging = LoggedStaging(
            health_status=plan.health_status,
            health_ready_after=plan.ready_after,
            health_headers={"Location": "http://127.0.0.1:9/"} if plan.health_status == 301 else None,
            delay=2.0 if plan.health == "hang" else 0.0,
            **kw,
        )
        stagings.append(staging)
        staging.__enter__()
        env[f"CHAOS_STAGING_{k}"] = staging.url
        env[f"CHAOS_HEALTH_{k}"] = staging.url
        if plan.health == "refused":
            # Bound but not listening: connections are refused, and no other scenario running
            # in parallel can be given this port while we hold it.
            refuser = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            refuser.bind(("127.0.0.1", 0))
            sockets.append(refuser)
            env[f"CHAOS_HEALTH_{k}"] = f"http://127.0.0.1:{refuser.getsockname()[1]}"


def _run_args(sc: Scenario, config: Path, report_path: Path) -> list[str]:
    """The ``lockstep run`` command line for the scenario (report, --json, actor, bypass flags)."""
    args = ["run", "--config", str(config), "--report", str(report_path)]
    if sc.json_out:
        args.append("--json")
    if sc.actor is not None:
        args += ["--actor", sc.actor]
    if sc.bypass == "no-skip":
        args += ["--justification", sc.justification or "x"]
    elif sc.bypass != "none" and not sc.bypass_via_event:
        args += ["--skip-gate", "--justification", sc.justification or ""]
    return args


def _actions_env(sc: Scenario, root: Path, rng: random.Random) -> dict[str, str]:
    """The GitHub Actions environment of the run, after writing its event file (a workflow_dispatch,
    bypassing when the scenario says so, or a repository_dispatch with a hostile client_payload)."""
    event_path = root / "event.json"
    env = {
        "GITHUB_ACTIONS": "true",
        # under Actions a different --actor is refused: the flag, when given, names the same account
        "GITHUB_ACTOR": sc.actor if sc.actor is not None else "chaos-bot",
        "GITHUB_SERVER_URL": "https://github.example",
        "GITHUB_REPOSITORY": "o/gates",
        "GITHUB_RUN_ID": str(1000 + sc.seed % 1000),
        "GITHUB_OUTPUT": str(root / "outputs.txt"),
        "GITHUB_STEP_SUMMARY": str(root / "summary.md"),
        "GITHUB_EVENT_PATH": str(event_path),
    }
    if sc.dispatch_payload:
        env["GITHUB_EVENT_NAME"] = "repository_dispatch"
        event: dict[str, Any] = {"action": "promote", "client_payload": _hostile_payload(rng)}
    else:
        env["GITHUB_EVENT_NAME"] = "workflow_dispatch"
        inputs: dict[str, Any] = {"skip_gate": "false", "justification": ""}
        if sc.bypass_via_event:
            inputs = {"skip_gate": rng.choice(["true", True]), "justification": sc.justification}
        event = {"inputs": inputs}
    event_path.write_text(json.dumps(event), encoding="utf-8")
    return env


def _read_report(path: Path) -> tuple[str, dict[str, Any] | None]:
    """The --report file's text and its JSON (None when missing or not JSON)."""
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    try:
        return text, json.loads(text) if text else None
    except ValueError:
        return text, None


def _read_markers(sc: Scenario, markers: Path) -> dict[str, list[dict[str, Any]]]:
    """What each check process recorded (one JSON line per run of it)."""
    data: dict[str, list[dict[str, Any]]] = {}
    for check in sc.checks:
        path = markers / f"{check.name}.jsonl"
        data[check.name] = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
    return data


def _read_optional(path: Path) -> str:
    return path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""


def _observe(
    sc: Scenario, run: RunOutput, world: Any, root: Path, stagings: list[LoggedStaging], tokens: Tokens
) -> Observation:
    """Everything the run said and the world's true state, right after lockstep exited."""
    at_exit = world.final()
    world.settle()
    report_text, report = _read_report(root / "report.json")
    writes = world.writes()
    first = writes[0].order if writes else None
    return Observation(
        sc=sc,
        run=run,
        start=list(world.start),
        source=list(world.source),
        final=world.final(),
        final_at_exit=at_exit,
        final_seen=world.final_seen(at_exit),
        outsider=list(world.outsider),
        outsider_before=world.outsider_before(),
        writes=writes,
        report=report,
        report_text=report_text,
        summary=_read_optional(root / "summary.md"),
        outputs=_read_optional(root / "outputs.txt"),
        staging=[list(s.log) for s in stagings],
        markers=_read_markers(sc, root / "markers"),
        audit_records=world.audit_records(),
        audit_before_first=world.audit_before(first) if first is not None else False,
        audit_before_rewind=_audit_before_rewind(world, writes),
        lock_left=world.lock_left(),
        leak_texts=world.leak_texts(),
        faulted=[world.faulted_service(k) for k in range(len(sc.services))],
        tokens=tokens.all,
        clock=world.clock,
    )


def _audit_before_rewind(world: Any, writes: list[Write]) -> bool:
    forward = [w for w in writes if w.kind == "forward"]
    rewinds = [w for w in writes if w.kind == "rewind"]
    if not rewinds:
        return True
    if not forward:
        return False
    return bool(world.audit_between(forward[-1].order, rewinds[0].order))


def _teardown(world: Any, stagings: list[LoggedStaging], root: Path | None) -> None:
    """Stop every server at once (each shutdown waits for a poll tick) and delete the files."""
    closers = [lambda s=s: s.__exit__(None, None, None) for s in stagings]
    if world is not None:
        closers.append(world.close)
    threads = [threading.Thread(target=c) for c in closers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    if root is not None:
        shutil.rmtree(root, ignore_errors=True)


def _failure_detail(obs: Observation) -> str:
    run = obs.run
    lines = [
        f"exit code: {run.code}  ({run.seconds:.2f}s)",
        f"start:  {obs.start}",
        f"source: {obs.source}",
        f"at exit: {obs.final_at_exit}",
        f"final:  {obs.final}",
        f"outsider: {obs.outsider}",
        "writes: " + ", ".join(f"s{w.service}@{w.order}->{(w.sha or '')[:7]}" for w in obs.writes),
        "--- stdout (tail)", run.stdout[-3000:],
        "--- stderr (tail)", run.stderr[-4000:],
    ]
    if run.exception:
        lines += ["--- exception", run.exception]
    return "\n".join(lines)


def outcome_label(obs: Observation) -> str:
    run = obs.run
    if run.hung:
        return "hung"
    if run.exception:
        return "exception"
    if run.code is not None and run.code < 0:
        when = "after the report was written" if obs.report is not None else "before handlers"
        return f"killed by {signal.Signals(-run.code).name} ({when})"
    if _interpreter_startup_interrupt(run, run.stderr):
        return "interrupted in Python's own start-up"
    if run.signal_sent is not None and obs.report is None and run.code == 1:
        return "interrupted before the gate (exit 1)"
    if run.code == 2:
        return "usage error (exit 2)"
    if obs.report is not None:
        label = str(obs.report.get("result"))
        if obs.sc.signal is not None and "cancelled" in obs.report_text:
            label += " (cancelled)"
        return label
    errors = [ln for ln in run.stderr.splitlines() if ln.startswith("lockstep: ")]
    if run.code == 1 and errors:
        return "refused before the gate: lock" if "lock" in errors[-1] else "refused before the gate"
    return f"exit {run.code}, no report"


# ------------------------------------------------------------------------------------ invariants

_TRACEBACK_RE = re.compile(r"Traceback \(most recent call last\)|^\s+File \".*\", line \d+", re.M)


def _outputs_of(obs: Observation) -> list[tuple[str, str]]:
    stderr = "\n".join(
        line for line in obs.run.stderr.splitlines() if not line.startswith("::add-mask::")
    ) if obs.sc.actions else obs.run.stderr
    texts = [("stdout", obs.run.stdout), ("stderr", stderr), ("report", obs.report_text),
             ("step summary", obs.summary), ("GITHUB_OUTPUT", obs.outputs)]
    return texts


@dataclass(frozen=True)
class Facts:
    """What the invariants derive from one observation, computed once by :meth:`of`.

    Positions are those lockstep could know at exit (``obs.final_seen``): a move by another
    writer after lockstep's last read of a target is not held against it.
    """

    n: int
    names: tuple[str, ...]
    start: tuple[str | None, ...]
    source: tuple[str, ...]
    outsider: tuple[str | None, ...]  # where another writer moved each target (None: nobody)
    final: tuple[str | None, ...]  # what lockstep could know at exit; obs.final adds writes that landed later
    ff: tuple[bool, ...]  # the target may move to its source: missing, equal or behind
    pending: tuple[int, ...]  # targets not at their source at the start
    ours: tuple[int, ...]  # pending targets moved by this run, and still there
    advanced: frozenset[int]  # ... or moved there by this run before another writer (or the rollback) moved them on
    code: int | None
    report: dict[str, Any] | None
    killed: bool  # by a signal (negative exit code)
    # A signal that lands before lockstep installs its handlers ends the process early
    # (killed by it, or click's "Aborted!"): fine as long as nothing was written.
    interrupted_early: bool
    rollback_report: dict[str, Any] | None
    rolled_back: frozenset[int]  # services the report's rollback says it rolled back
    forward: tuple[Write, ...]  # writes to the source sha
    rewinds: tuple[Write, ...]  # writes back to the start sha (the rollback)
    truly_split: bool  # this run moved some target and left another pending one off its source
    any_unknown: bool  # the report calls some (not rolled back) service unknown

    @classmethod
    def of(cls, obs: Observation) -> Facts:
        sc, run, report = obs.sc, obs.run, obs.report
        n = len(sc.services)
        names = tuple(s.name for s in sc.services)
        start, source, final = tuple(obs.start), tuple(obs.source), tuple(obs.final_seen)
        pending = tuple(k for k in range(n) if start[k] != source[k])
        ours = tuple(k for k in pending if final[k] == source[k])
        rollback_report = report.get("rollback") if report else None
        rolled_back = frozenset(
            k for k in range(n) if _reported(rollback_report, names[k]).get("outcome") == "rolled back"
        )
        return cls(
            n=n,
            names=names,
            start=start,
            source=source,
            outsider=tuple(obs.outsider),
            final=final,
            ff=tuple(start[k] is None or sc.services[k].start in ("equal", "behind") for k in range(n)),
            pending=pending,
            ours=ours,
            advanced=frozenset(ours) | {k for k in pending if obs.outsider_before[k] == source[k]},
            code=run.code,
            report=report,
            killed=run.code is not None and run.code < 0,
            interrupted_early=run.signal_sent is not None and report is None and run.code in (1, 130, -2, -15),
            rollback_report=rollback_report,
            rolled_back=rolled_back,
            forward=tuple(w for w in obs.writes if w.kind == "forward"),
            rewinds=tuple(w for w in obs.writes if w.kind == "rewind"),
            truly_split=bool(ours) and any(final[k] != source[k] for k in pending),
            any_unknown=report is not None and any(
                k not in rolled_back and _reported(report, names[k]).get("outcome") == "unknown" for k in range(n)
            ),
        )


# Each invariant takes the observation and its facts and returns its violations, one line each.


def no_crash_or_hang(obs: Observation, f: Facts) -> list[str]:
    """The run finishes in time, no exception escapes the CLI, and no output holds a traceback
    (except Python's own start-up interrupted by a SIGINT) or an "internal error" line."""
    sc, run = obs.sc, obs.run
    v = []
    if run.hung:
        v.append(f"hang: the run did not finish within {INPROC_LIMIT if sc.runner == 'inproc' else SUBPROC_LIMIT}s")
    if run.exception:
        v.append("exception escaped the CLI: " + run.exception.strip().splitlines()[-1][:300])
    for where, text in _outputs_of(obs):
        if _TRACEBACK_RE.search(text):
            if _interpreter_startup_interrupt(run, text):
                continue  # Python's own start-up, before any lockstep code: nothing lockstep can catch
            kind = " (KeyboardInterrupt)" if "KeyboardInterrupt" in text else ""
            v.append(f"traceback in {where}{kind}")
        if "internal error" in text and where in ("stdout", "stderr"):
            line = next(ln for ln in text.splitlines() if "internal error" in ln)
            v.append(f"internal error in {where}: {line[:300]}")
    return v


def no_token_leaks(obs: Observation, f: Facts) -> list[str]:
    """No planted token appears in any output, in anything sent to the forge but the Authorization
    header, in the audit record, or in a check's environment or argv."""
    leaks = list(_outputs_of(obs)) + obs.leak_texts
    for check_name, entries in obs.markers.items():
        for entry in entries:
            leaks.append((f"check {check_name} environment/argv", json.dumps([entry["env"], entry["argv"]])))
    return [f"token leak: a planted token appears in {where}"
            for where, text in leaks if any(token in text for token in obs.tokens)]


def late_writes_reported_unknown(obs: Observation, f: Facts) -> list[str]:
    """A write still in flight when lockstep exited (a timed-out request the forge applied later)
    only moves a target the report calls "unknown"."""
    v = []
    for k in range(f.n):
        if obs.final[k] != obs.final_at_exit[k] and obs.final[k] != f.outsider[k]:
            said = _reported(f.report, f.names[k]).get("outcome")
            if said != "unknown":
                v.append(f"late write: {f.names[k]}'s target moved {_s(f.final[k])} -> {_s(obs.final[k])} after the "
                         f"run ended (a timed-out write landed), yet it was reported {said!r} with exit {f.code}")
    return v


def targets_only_reach_their_source(obs: Observation, f: Facts) -> list[str]:
    """A target is only ever at its start, its source sha resolved in this run, or where another
    writer put it; and it reaches its source only by a fast-forward (from missing, equal or behind)."""
    names, start, source, outsider = f.names, f.start, f.source, f.outsider
    v = []
    for k in range(f.n):
        for truth in {obs.final_at_exit[k], obs.final[k]}:
            if truth in (start[k], source[k]) or (outsider[k] is not None and truth == outsider[k]):
                continue
            v.append(f"moved elsewhere: {names[k]} {_s(start[k])} -> {_s(truth)} (source {_s(source[k])})")
        if obs.final[k] == source[k] != start[k] and not f.ff[k]:
            v.append(f"not a fast-forward: {names[k]} moved from its {obs.sc.services[k].start} start {_s(start[k])}")
    return v


def writes_carry_the_source_sha(obs: Observation, f: Facts) -> list[str]:
    """Every forward write carries the source sha resolved in this run, is not forced, and goes to
    a target that was not already at its source."""
    v = []
    for w in f.forward:
        name = f.names[w.service]
        if w.sha != f.source[w.service]:
            v.append(f"write of a sha not resolved in this run: {name} -> {w.sha}")
        if w.force:
            v.append(f"forced write to {name}")
        if f.start[w.service] == f.source[w.service]:
            v.append(f"write to a target already at its source: {name}")
    return v


def rollback_only_rewinds_own_advances(obs: Observation, f: Facts) -> list[str]:
    """A target moves back to its start only with ``on_split = "rollback"`` configured, after the
    forward writes ended, only if this run advanced it, and only once its audit record is stored;
    a report holds a rollback only when rollback is configured."""
    sc, rewinds, forward = obs.sc, f.rewinds, f.forward
    v = []
    if rewinds:
        if not sc.rollback:
            v.append("a target was moved back to its start although rollback is not configured")
        if forward and rewinds[0].order < forward[-1].order:
            v.append("a rewind was sent before the forward writes had ended")
        for w in rewinds:
            if not any(fw.service == w.service for fw in forward):
                v.append(f"rewind of {f.names[w.service]}, which this run never advanced")
        if not obs.audit_before_rewind:
            v.append("rollback rewrote a target without storing its audit record first")
    if f.rollback_report is not None and not sc.rollback:
        v.append("the report holds a rollback although rollback is not configured")
    return v


def writes_follow_gate_or_audit(obs: Observation, f: Facts) -> list[str]:
    """No write in a run with a usage error; a bypassing run writes only after its audit record was
    stored; any other run writes only with a valid (no) bypass, a gate that could pass, and the
    gate's evidence (health 200, /version answered, checks passed) before the first write."""
    sc = obs.sc
    if not f.forward:
        return []
    if sc.usage_error:
        return [f"write despite a usage error ({sc.usage_error})"]
    if sc.bypassing:
        return [] if obs.audit_before_first else ["write without an audit record stored first"]
    v = []
    if sc.bypass != "none":
        v.append("write in a run whose bypass was invalid")
    if sc.gate_expectation() == "fail":
        v.append("write although a gate step had to fail")
    missing = _gate_evidence_missing(obs, f.forward[0])
    if missing:
        v.append("write without gate evidence: " + "; ".join(missing))
    return v


def bypass_skips_the_gate(obs: Observation, f: Facts) -> list[str]:
    """A bypassing run neither probes staging nor runs checks."""
    v = []
    if obs.sc.bypassing and any(obs.staging):
        v.append("bypass run probed staging")
    if obs.sc.bypassing and any(obs.markers.values()):
        v.append("bypass run ran checks")
    return v


def audit_record_only_for_bypass(obs: Observation, f: Facts) -> list[str]:
    """An audit record is stored only by a valid bypass with something to promote (or by a
    rollback), and a bypass's record names every service's new sha."""
    sc = obs.sc
    v = []
    if obs.audit_records and (not sc.bypassing or not f.pending) and not f.rewinds and f.rollback_report is None:
        v.append("audit record stored although no (needed) bypass was requested")
    if obs.audit_records and sc.bypassing:
        record = obs.audit_records[0]
        for k in range(f.n):
            if f.source[k] not in record:
                v.append(f"audit record does not name {f.names[k]}'s new sha")
    return v


def writes_follow_config_order(obs: Observation, f: Facts) -> list[str]:
    """A service is written only after every earlier pending service landed (or was rewound) and
    that service's last write had finished (request-log order)."""
    names, advanced = f.names, f.advanced
    rewound = {w.service for w in f.rewinds}
    first_of: dict[int, int] = {}
    last_of: dict[int, int] = {}
    for w in f.forward:
        first_of.setdefault(w.service, w.order)
        last_of[w.service] = w.order
    v = []
    for j in first_of:
        for i in f.pending:
            if i >= j:
                continue
            if i not in advanced and i not in rewound:
                v.append(f"{names[j]} written although earlier {names[i]} did not land")
            elif i in last_of and last_of[i] > first_of[j]:
                v.append(f"{names[j]} written before {names[i]}'s write finished")
    return v


def report_exit_code_matches_process(obs: Observation, f: Facts) -> list[str]:
    """The report's ``exit_code`` is the process's exit code (unless killed by a signal)."""
    report, code = f.report, f.code
    if report is not None and code is not None and not f.killed and report.get("exit_code") != code:
        return [f"report exit_code {report.get('exit_code')} but the process exited {code}"]
    return []


def report_services_match_truth(obs: Observation, f: Facts) -> list[str]:
    """The report has an entry per service whose outcome, ``did_push``, ``source_sha``,
    ``old_target_sha`` and ``final_target_sha`` equal the truth; "unknown" only for a service a
    fault touched; "rolled back" only for a target back at its start."""
    if f.report is None:
        return []
    v = []
    for k in range(f.n):
        rs = _reported(f.report, f.names[k])
        if not rs:
            v.append(f"report has no entry for {f.names[k]}")
        elif k in f.rolled_back:
            v += _rolled_back_entry_problems(f, k, rs)
        elif rs.get("outcome") == "unknown":
            if not obs.faulted[k]:
                v.append(f"{f.names[k]} reported unknown although no fault touched it")
        else:
            v += _entry_sha_problems(obs, f, k, rs) + _entry_outcome_problems(f, k, rs)
    return v


def _rolled_back_entry_problems(f: Facts, k: int, rs: dict[str, Any]) -> list[str]:
    """A service reported rolled back is at its start, and its final_target_sha (if any) says so."""
    name, final, start = f.names[k], f.final, f.start
    v = []
    if final[k] != start[k]:
        v.append(f"{name}: reported rolled back but its target is at {_s(final[k])}, "
                 f"not its start {_s(start[k])}")
    if rs.get("final_target_sha") not in (None, final[k]):
        v.append(f"{name}: report final_target_sha {_s(rs.get('final_target_sha'))} but the "
                 f"target is at {_s(final[k])}")
    return v


def _entry_sha_problems(obs: Observation, f: Facts, k: int, rs: dict[str, Any]) -> list[str]:
    """A service entry's shas: its source, its old target and (when readable) its final target."""
    name, source, start, final = f.names[k], f.source, f.start, f.final
    v = []
    if rs.get("source_sha") not in (None, source[k]):
        v.append(f"{name}: report source_sha {rs.get('source_sha')} != {source[k]}")
    if rs.get("source_sha") is not None and rs.get("old_target_sha") != start[k]:
        v.append(f"{name}: report old_target_sha {rs.get('old_target_sha')} != {start[k]}")
    reported_final = rs.get("final_target_sha")
    if f.rollback_report is not None and final[k] is None and reported_final is not None:
        v.append(f"rollback reports a missing target at a sha: {name}'s prod does not exist, "
                 f"the report says {_s(reported_final)}")
    elif reported_final is not None and reported_final != final[k]:
        v.append(f"{name}: report final_target_sha {_s(reported_final)} but the target is at {_s(final[k])}")
    readable = final[k] is not None and not obs.faulted[k]
    if reported_final is None and readable and rs.get("source_sha") is not None:
        if f.rollback_report is not None:
            v.append(f"rollback erased a verified position: {name}'s final_target_sha is null, "
                     f"the target is at {_s(final[k])}")
        else:
            v.append(f"{name}: report final_target_sha missing although the target is readable")
    return v


def _entry_outcome_problems(f: Facts, k: int, rs: dict[str, Any]) -> list[str]:
    """A service entry's did_push and outcome agree with whether this run moved it."""
    name, outcome, by_us = f.names[k], rs.get("outcome"), k in f.advanced
    v = []
    if bool(rs.get("did_push")) != by_us:
        v.append(f"{name}: report did_push={rs.get('did_push')} but this run moved it: {by_us}")
    if outcome == "advanced" and not by_us:
        v.append(f"{name}: reported advanced but this run did not move it to its source")
    if outcome and outcome.startswith("unchanged") and f.start[k] != f.source[k]:
        v.append(f"{name}: reported '{outcome}' but the target was not at its source")
    if outcome in ("failed", "skipped (earlier step failed)", "cancelled") and by_us:
        v.append(f"{name}: reported '{outcome}' but this run moved it")
    return v


def report_result_matches_truth(obs: Observation, f: Facts) -> list[str]:
    """The report's ``result`` matches the positions: promoted ⇒ every target at its source (a
    move by another writer is not a promotion); noop ⇒ nothing was pending; blocked ⇒ this run
    moved nothing; split ⇔ truly split (unless rolled back); unknown ⇒ some service is unknown;
    a rollback reported complete leaves none of this run's advances in place."""
    if f.report is None:
        return []
    names, final, source, outsider, ours = f.names, f.final, f.source, f.outsider, f.ours
    result = f.report.get("result")
    off = [k for k in range(f.n) if final[k] != source[k]]
    v = []
    if result == "promoted" and off and all(outsider[k] is not None and final[k] == outsider[k] for k in off):
        v.append("outside move reported as promoted: " + ", ".join(names[k] for k in off)
                 + " moved by another writer during the run, yet the result is promoted (exit 0)")
    elif result == "promoted" and off:
        v.append("result promoted but not every target is at its source")
    if result == "noop" and f.pending:
        v.append("result noop but some target was not at its source")
    if result == "blocked" and ours:
        v.append("result blocked but this run moved " + ", ".join(names[k] for k in ours))
    if result == "split" and not f.truly_split and f.rollback_report is None:
        v.append("result split but the targets are not split")
    if f.rollback_report is not None and f.rollback_report.get("result") == "promoted" and ours:
        seeded = all(f.start[k] is None for k in ours)
        v.append(("rollback left a seeded target in place, yet reported complete: " if seeded else
                  "rollback reported complete but this run's advances remain: ")
                 + ", ".join(names[k] for k in ours))
    if result == "unknown" and not f.any_unknown:
        v.append("result unknown but no service is reported unknown")
    if f.truly_split and result not in ("split", "unknown"):
        v.append(f"targets are split but the result is {result}")
    return v


def json_output_equals_report(obs: Observation, f: Facts) -> list[str]:
    """With ``--json``, stdout is JSON equal to the ``--report`` file (not for exit 2 or a kill)."""
    if f.report is None or not obs.sc.json_out or f.code in (None, 2) or f.killed:
        return []
    try:
        if json.loads(obs.run.stdout) != f.report:
            return ["--json stdout differs from the --report file"]
    except ValueError:
        return ["--json stdout is not JSON"]
    return []


def summary_matches_truth(obs: Observation, f: Facts) -> list[str]:
    """The printed summary (stderr with ``--json``) has the split headline exactly when the result
    is split, and its table shows every target's true position."""
    if f.report is None or f.killed:
        return []
    summary = obs.run.stderr if obs.sc.json_out else obs.run.stdout
    v = []
    if ("🚨 split" in summary) != (f.report.get("result") == "split"):
        v.append("summary split headline does not match the result")
    for problem in _summary_table_problems(summary, f.names, f.final):
        if f.rollback_report is not None and problem.endswith("but it is at (missing)"):
            continue  # reported by report_services_match_truth: "rollback reports a missing target at a sha"
        if f.rollback_report is not None and problem.startswith("summary says"):
            problem = "rollback erased a verified position: " + problem
        v.append(problem)
    return v


def github_output_matches_report(obs: Observation, f: Facts) -> list[str]:
    """Under Actions, ``$GITHUB_OUTPUT``'s ``result`` is the report's (exit 0, 1 or 3)."""
    if f.report is None or not (obs.sc.actions and obs.outputs and f.code in (0, 1, 3)):
        return []
    result = f.report.get("result")
    try:
        outs = parse_output_file(obs.outputs, unique=True)  # as the runner reads it, strictly
    except AssertionError as exc:
        return [f"GITHUB_OUTPUT cannot be read as the runner reads it: {exc}"]
    if outs.get("result") != result:
        return [f"GITHUB_OUTPUT result={outs.get('result')} but the report says {result}"]
    return []


def report_is_written(obs: Observation, f: Facts) -> list[str]:
    """Exit 0 or 3, or any write, comes with a report (a signal before the handlers excepted only
    when nothing was written)."""
    run, code = obs.run, f.code
    v = []
    if f.report is None and code in (0, 3) and not run.hung and not run.exception:
        v.append(f"exit {code} without a report")
    elif f.report is None and code == 1 and obs.writes:
        v.append("exit 1 without a report after writes")
    if f.interrupted_early and obs.writes:
        v.append(f"interrupted without a report (exit {code}) after writes")
    return v


def exit_code_matches_truth(obs: Observation, f: Facts) -> list[str]:
    """0 ⇒ every target at its source (or where another writer put it); 1 ⇒ nothing this run moved
    remains (a seeded target a rollback could not remove excepted); 3 ⇒ really split or a service
    reported unknown."""
    code, final, source, outsider, ours = f.code, f.final, f.source, f.outsider, f.ours
    v = []
    if code == 0 and not all(final[k] == source[k] or (outsider[k] is not None and final[k] == outsider[k])
                             for k in range(f.n)):
        v.append("exit 0 but some target is not at its source")
    if code == 1 and ours and not (f.rollback_report is not None and all(f.start[k] is None for k in ours)):
        v.append("exit 1 (blocked, every target unchanged) but this run moved " + ", ".join(f.names[k] for k in ours))
    if code == 3 and not f.truly_split and not f.any_unknown:
        v.append("exit 3 but the targets are neither split nor reported unknown")
    return v


def usage_error_exits_2(obs: Observation, f: Facts) -> list[str]:
    """Exit 2 ⇔ a usage error the scenario planted (unless interrupted early or hung), and exit 2
    leaves no side effect: no write, no audit record."""
    sc, run, code = obs.sc, obs.run, f.code
    v = []
    if code == 2:
        if obs.writes or obs.audit_records:
            v.append("exit 2 after a side effect")
        if not sc.usage_error:
            v.append("exit 2 without a usage error in the scenario: " + _last_line(run.stderr))
    elif sc.usage_error and not f.interrupted_early and not run.hung:
        v.append(f"usage error {sc.usage_error} not reported with exit 2 (exit {code})")
    return v


def exit_is_explained(obs: Observation, f: Facts) -> list[str]:
    """The exit code is 0–3, or a kill by the signal the scenario sent (with a report if it came
    after writes); exit 1 without a report says why on a ``lockstep:`` line."""
    sc, run, code, killed, report = obs.sc, obs.run, f.code, f.killed, f.report
    v = []
    if killed and obs.writes and report is None:
        v.append(f"killed by signal {-code} after writes, without a report")  # type: ignore[operator]
    if code == 1 and report is None and not f.interrupted_early and sc.usage_error is None \
            and "lockstep: " not in run.stderr:
        v.append("exit 1 without a report or a 'lockstep:' error line")
    if code is not None and not killed and code not in (0, 1, 2, 3):
        v.append(f"unexpected exit code {code}")
    if killed and sc.signal is None:
        v.append(f"killed by signal {-code} without one being sent")  # type: ignore[operator]
    return v


def noop_touches_nothing(obs: Observation, f: Facts) -> list[str]:
    """A run with nothing to promote that exits 0 probes no staging, runs no check, writes nothing
    and stores no audit record."""
    if not f.pending and f.code == 0 and (any(obs.staging) or any(obs.markers.values()) or obs.writes
                                          or obs.audit_records):
        return ["noop run probed staging, ran checks, wrote or stored an audit record"]
    return []


def cancellation_is_prompt(obs: Observation, f: Facts) -> list[str]:
    """A signalled run exits within CANCEL_LIMIT seconds of the signal."""
    run, sc = obs.run, obs.sc
    if run.signal_sent is not None and run.exited is not None and run.exited - run.signal_sent > CANCEL_LIMIT:
        return [f"exited {run.exited - run.signal_sent:.1f}s after {sc.signal.name if sc.signal else 'signal'}"]
    return []


def lock_released_or_explained(obs: Observation, f: Facts) -> list[str]:
    """The ref lock is released, or stderr names it (``lockstep-lock/``) to say why not."""
    if obs.lock_left and "lockstep-lock/" not in obs.run.stderr:
        return ["the ref lock was left behind without a word"]
    return []


def liveness(obs: Observation, f: Facts) -> list[str]:
    """A fault-free run whose targets can fast-forward and whose gate must pass (or that bypasses)
    exits 0 with every target at its source."""
    sc, code = obs.sc, f.code
    fault_free = _clean(sc) and all(f.ff) and (sc.bypassing or sc.gate_expectation() == "pass")
    if fault_free and (code != 0 or any(f.final[k] != f.source[k] for k in range(f.n))):
        return [f"liveness: a fault-free run did not promote (exit {code}): "
                + _last_line(obs.run.stdout + obs.run.stderr)]
    return []


Invariant = Callable[[Observation, Facts], list[str]]

INVARIANTS: tuple[Invariant, ...] = (
    no_crash_or_hang,
    no_token_leaks,
    late_writes_reported_unknown,
    targets_only_reach_their_source,
    writes_carry_the_source_sha,
    rollback_only_rewinds_own_advances,
    writes_follow_gate_or_audit,
    bypass_skips_the_gate,
    audit_record_only_for_bypass,
    writes_follow_config_order,
    report_exit_code_matches_process,
    report_services_match_truth,
    report_result_matches_truth,
    json_output_equals_report,
    summary_matches_truth,
    github_output_matches_report,
    report_is_written,
    exit_code_matches_truth,
    usage_error_exits_2,
    exit_is_explained,
    noop_touches_nothing,
    cancellation_is_prompt,
    lock_released_or_explained,
    liveness,
)
"""Every invariant, in the order :func:`check_invariants` runs them (docs/reliability.md lists them)."""


def check_invariants(obs: Observation) -> list[str]:
    """Every violated rule, as one line each; empty when the run told the truth and broke nothing."""
    facts = Facts.of(obs)
    return [violation for invariant in INVARIANTS for violation in invariant(obs, facts)]


def _interpreter_startup_interrupt(run: RunOutput, text: str) -> bool:
    """A SIGINT that hit the interpreter while it was importing runpy/site, before ``lockstep``."""
    return (
        run.signal_sent is not None
        and "KeyboardInterrupt" in text
        and "lockstep" not in text
        and ("Could not import runpy module" in text or "<frozen site>" in text)
    )


def _s(sha: str | None) -> str:
    return sha[:7] if sha else "(missing)"


def _reported(report: dict[str, Any] | None, name: str) -> dict[str, Any]:
    if report is None:
        return {}
    return next((s for s in report.get("services", []) if s.get("name") == name), {})


def _summary_table_problems(summary: str, names: Sequence[str], final: Sequence[str | None]) -> list[str]:
    """The summary's "new target" column must show each target's true position (or "unknown")."""
    out = []
    for k, name in enumerate(names):
        row = next((ln for ln in summary.splitlines() if ln.startswith(f"| `{name}` (")), None)
        if row is None:
            out.append(f"summary has no row for {name}")
            continue
        cells = [c.strip() for c in row.strip().strip("|").split("|")]
        if len(cells) < 4:
            continue
        shown = cells[2].strip("`")
        if shown == "(missing)" and final[k] is not None:
            out.append(f"summary says {name}'s target is missing, but it is at {_s(final[k])}")
        elif re.fullmatch(r"[0-9a-f]{7}", shown) and shown != _s(final[k]):
            out.append(f"summary shows {name}'s target at {shown}, but it is at {_s(final[k])}")
    return out


def _last_line(text: str) -> str:
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1][:300] if lines else ""


def _clean(sc: Scenario) -> bool:
    """No fault of any kind: the run has every reason to promote."""
    if sc.faults or sc.signal or sc.usage_error or not sc.read_token_ok:
        return False
    if any(s.push_token != "ok" or not s.readable or s.protected or s.hook != "none" or s.missing_repo
           or s.outsider != "none" for s in sc.services):
        return False
    return not (sc.bypassing and sc.audit != "ok")


def _gate_evidence_missing(obs: Observation, first: Write) -> list[str]:
    """What a passed gate would have produced before the first write but did not."""
    sc = obs.sc
    at = first.mono if obs.clock == "mono" else first.wall
    idx = 0 if obs.clock == "mono" else 1
    missing = []
    assert at is not None
    for k, plan in enumerate(sc.services):
        log = obs.staging[k]
        if not any(e[idx] < at and e[2] == plan.health_path and e[3] == 200 for e in log):
            missing.append(f"{plan.name} health never answered 200 before the write")
        if not any(e[idx] < at and e[2] == "/version" and e[3] == 200 for e in log):
            missing.append(f"{plan.name} /version never answered before the write")
    key = "mono" if obs.clock == "mono" else "wall"
    for check in sc.checks:
        if not any(m["ok"] and m[key] < at for m in obs.markers.get(check.name, [])):
            missing.append(f"check {check.name} did not pass before the write")
    return missing


# ------------------------------------------------------------------------------------ many scenarios


KNOWN_BUGS: dict[str, str] = {
    # violation pattern -> the strict-xfail regression test that pins the bug down.
    # Delete an entry once the bug is fixed (the CI chaos test then fails on any recurrence);
    # tests/chaos/test_regressions.py checks that every entry names a test that is still xfail.
}


def known_bug(violation: str) -> str | None:
    """The regression test of the known bug this violation is an instance of, if any."""
    for pattern, test in KNOWN_BUGS.items():
        if re.search(pattern, violation):
            return test
    return None


def scenario_seeds(seed: int, runs: int) -> list[int]:
    """The scenario seeds of a run: distinct across base seeds, each replayable on its own."""
    return [seed * 1_000_000 + i for i in range(runs)]


def run_seed(seed: int) -> ScenarioResult:
    return run_scenario(generate(seed))[0]


def run_many(
    seed: int, runs: int, jobs: int, progress: Any = None
) -> tuple[Tally, float, list[ScenarioResult]]:
    """Run ``runs`` scenarios of base ``seed`` on ``jobs`` spawned worker processes.

    Each worker runs one scenario at a time in its main thread (in-process runs need it for the
    runner's signal handlers).  ``progress(done, result)`` is called as results arrive.
    Returns the tally, the wall time and the results in seed order.
    """
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    tally = Tally()
    start = time.monotonic()
    results: dict[int, ScenarioResult] = {}
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:
        futures = [pool.submit(run_seed, s) for s in scenario_seeds(seed, runs)]
        for done, future in enumerate(as_completed(futures), 1):
            result = future.result()
            results[result.seed] = result
            tally.add(result)
            if progress is not None:
                progress(done, result)
    return tally, time.monotonic() - start, [results[s] for s in sorted(results)]


@dataclass
class Tally:
    scenarios: int = 0
    seconds: float = 0.0
    runners: Counter[str] = field(default_factory=Counter)
    faults: Counter[str] = field(default_factory=Counter)
    fired: Counter[str] = field(default_factory=Counter)
    variants: Counter[str] = field(default_factory=Counter)
    outcomes: Counter[str] = field(default_factory=Counter)
    violations: list[tuple[int, str]] = field(default_factory=list)
    known: Counter[str] = field(default_factory=Counter)
    known_seeds: dict[str, int] = field(default_factory=dict)
    slowest: list[tuple[float, int]] = field(default_factory=list)

    def add(self, r: ScenarioResult) -> None:
        self.scenarios += 1
        self.seconds += r.seconds
        self.runners[f"{r.forge}/{r.runner}" + (f"+{r.signal}" if r.signal else "")] += 1
        self.faults.update(r.faults)
        self.fired.update(r.fired)
        self.variants.update(r.variants)
        self.outcomes[r.outcome] += 1
        for item in r.violations:
            test = known_bug(item)
            if test is None:
                self.violations.append((r.seed, item))
            else:
                self.known[test] += 1
                self.known_seeds.setdefault(test, r.seed)
        self.slowest = sorted([*self.slowest, (r.seconds, r.seed)], reverse=True)[:5]

    def table(self, wall: float | None = None) -> str:
        lines = [f"scenarios: {self.scenarios}"]
        if wall is not None:
            lines[0] += f"   wall time: {wall:.1f}s   scenario time: {self.seconds:.1f}s"
        lines.append("  by forge/runner: " + ", ".join(f"{k} {v}" for k, v in sorted(self.runners.items())))
        lines.append("")
        lines.append(f"{'faults injected by kind':<34} {'scenarios':>9} {'fired':>7}")
        for kind, count in sorted(self.faults.items(), key=lambda kv: (-kv[1], kv[0])):
            fired = self.fired.get(kind)
            lines.append(f"  {kind:<32} {count:>9} {fired if fired is not None else '':>7}")
        lines.append("")
        lines.append(f"{'configurations (not faults)':<34} {'scenarios':>9}")
        for kind, count in sorted(self.variants.items(), key=lambda kv: (-kv[1], kv[0])):
            lines.append(f"  {kind:<32} {count:>9}")
        lines.append("")
        lines.append(f"{'outcomes by kind':<34} {'scenarios':>9}")
        for kind, count in sorted(self.outcomes.items(), key=lambda kv: (-kv[1], kv[0])):
            lines.append(f"  {kind:<32} {count:>9}")
        lines.append("")
        lines.append(f"invariant violations: {len(self.violations)}")
        for seed, item in self.violations[:40]:
            lines.append(f"  seed {seed}: {item.splitlines()[0][:240]}")
        if self.known:
            lines.append(f"known bugs (strict-xfail regression tests in tests/chaos/test_regressions.py), "
                         f"{sum(self.known.values())} violations:")
            for test, count in sorted(self.known.items()):
                lines.append(f"  {test}: {count} (e.g. seed {self.known_seeds[test]})")
        if self.slowest:
            lines.append("slowest scenarios: " + ", ".join(f"{s:.1f}s (seed {seed})" for s, seed in self.slowest))
        return "\n".join(lines)

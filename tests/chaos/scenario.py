"""Chaos scenarios: one integer seed draws a whole scenario (services, start states, staging
behaviour, checks, bypass, audit, forge faults, signals) from ``random.Random(seed)``."""

from __future__ import annotations

import dataclasses
import json
import random
from dataclasses import dataclass
from pathlib import Path

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
    # every service's heads are one GraphQL query per phase (resolve, preflight, re-reads, verify);
    # REST reads are the fallback when it fails, so they are hit only after a fault on it
    ("heads-query", "POST", r"/graphql", 24, 3),
    ("source-read", "GET", r"/repos/o/s{k}/branches/main", 5, 1),
    ("target-read", "GET", r"/repos/o/s{k}/branches/prod", 9, 3),
    ("compare", "GET", r"/repos/o/s{k}/compare/.+", 5, 1),
    ("patch-target", "PATCH", r"/repos/o/s{k}/git/refs/heads/prod", 22, 2),
    ("create-ref", "POST", r"/repos/o/s{k}/git/refs", 8, 2),
    ("any-request", None, None, 14, 12),
)


def _gen_fault(
    rng: random.Random, n: int, subprocess_run: bool, bypass: bool, endpoint: str | None = None
) -> FaultPlan:
    method: str | None
    path: str | None
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



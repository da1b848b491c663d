"""Chaos runs: one scenario end to end (:func:`run_scenario`) and many in parallel (:func:`run_many`).

One scenario is one integer seed: :func:`tests.chaos.scenario.generate` draws
everything from ``random.Random(seed)`` (services, start states, staging
behaviour, checks, bypass, audit, forge faults, signals); :func:`run_scenario`
builds its world (:mod:`tests.chaos.worlds`: the fake GitHub or bare git
repositories with hooks, real staging servers on loopback) and its
``lockstep.toml``, runs ``lockstep run`` once (:mod:`tests.chaos.runners`) and
then :func:`tests.chaos.invariants.check_invariants` compares everything the run
said with the true state: the fake's refs and request log, the bare repositories
and their hook log, the staging servers' logs, the check processes' markers and
the audit record.

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

import json
import os
import random
import re
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
import traceback
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lockstep.scaffold import toml_string
from tests.chaos.invariants import Observation, check_invariants, interpreter_startup_interrupt
from tests.chaos.runners import RunOutput, run_inprocess, run_subprocess
from tests.chaos.scenario import (
    CHECK_CODE,
    CHECK_TIMEOUT_HANG,
    GATE,
    HEALTH_INTERVAL,
    HEALTH_TIMEOUT,
    REQUEST_TIMEOUT,
    Scenario,
    generate,
)
from tests.chaos.worlds import GitHubWorld, GitWorld, LoggedStaging, Tokens, Write, version_setup

# ------------------------------------------------------------------------------------ one scenario


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


def toml_value(value: Any) -> str:
    """A TOML value (json.dumps is not a TOML encoder: it leaves DEL raw, which tomllib rejects)."""
    if isinstance(value, str):
        return toml_string(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + " }"
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
        f"tracker = {toml_value(world.tracker())}",
    ]
    if sc.allowed_actors:
        lines.append(f"allowed_actors = {toml_value(list(sc.allowed_actors))}")
    if sc.rollback:
        lines += ["", "[recovery]", "allow_rollback = true", 'on_split = "rollback"']
    for k, plan in enumerate(sc.services):
        field_name = "build.commit" if plan.version == "nested" else "sha"
        lines += [
            "",
            "[[services]]",
            f"name = {toml_value(plan.name)}",
            f"repo = {toml_value(world.repo(k))}",
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
        lines += ["", "[[checks]]", f"name = {toml_value(check.name)}", f"run = {toml_value(argv)}",
                  f"env = {toml_value(env)}", f'timeout = "{timeout}"']
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
        kw, _ = version_setup(plan, world.source[k], world.other[k])
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
    if interpreter_startup_interrupt(run, run.stderr):
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

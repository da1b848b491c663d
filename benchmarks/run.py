"""lockstep benchmarks (issue 5): one command, prints tables.

    uv run python -m benchmarks.run            # N = 2, 10, 50 at 25 ms and 100 ms (~6 min)
    uv run python -m benchmarks.run --quick    # N = 2, 10 at 25 ms, 3 repetitions (~1 min)
    uv run python -m benchmarks.run --markdown out.md --json out.json

What is measured, and how (details in docs/performance.md):

* **gate run**: ``python -m lockstep run`` as a child process against the fake
  GitHub (``tests/support/fakegithub``, forge = github) whose every request waits
  ``latency`` seconds, and against one staging server (``benchmarks/staging.py``)
  with the same latency, ready at once, plus one ``true`` check.  Wall time,
  CPU time (user + sys) and peak RSS come from the child's own rusage.
* **baseline**: ``python -m benchmarks.baseline`` (the seed's sequential way,
  one new connection per request) in the same world, interleaved with the
  lockstep runs, so every ratio compares runs made side by side.
* **split window / requests**: from the fake's request log (arrival times).
* **cold start**: ``lockstep --version``, ``--help`` and ``plan``.
* **health polling**: when a poller first sees a service that turns ready.

Every run starts from the same state (each prod on c1, each main on c2), so
each one really promotes N services; a run that does not is an error, never
a number.  Figures are medians over the repetitions.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import math
import os
import platform
import re
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.quiet import wait_for_quiet
from benchmarks.tables import Table, join, ms, ratio, rts, secs, yes
from benchmarks.world import (
    ROOT,
    BenchWorld,
    ChildRun,
    ForgeMetrics,
    median,
    run_child,
    service_name,
)

STEPS = ("resolve", "health", "version", "checks", "preflight", "promote", "verify")
CPU_BUDGET = 0.3
RATE_LIMIT_PER_HOUR = 5000  # a user or app token on github.com


# ------------------------------------------------------------------------------------ settings


@dataclass
class Settings:
    sizes: list[int]
    latencies: list[float]  # seconds
    reps: int
    baseline_budget: float  # seconds of baseline wall time allowed per (N, latency) cell
    cold_reps: int
    health: bool
    check: bool = True
    warmup: bool = True
    quiet_wait: float = 20.0  # seconds to wait for a quiet machine before each measurement block
    whatif_sizes: list[int] = field(default_factory=lambda: [10, 50])
    whatif_reps: int = 3

    @classmethod
    def full(cls) -> Settings:
        return cls(
            sizes=[2, 10, 50],
            latencies=[0.025, 0.100],
            reps=5,
            baseline_budget=60.0,
            cold_reps=10,
            health=True,
        )

    @classmethod
    def quick(cls) -> Settings:
        return cls(
            sizes=[2, 10],
            latencies=[0.025],
            reps=3,
            baseline_budget=30.0,
            cold_reps=5,
            health=True,
            whatif_sizes=[10],
            whatif_reps=2,
        )

    @classmethod
    def smoke(cls) -> Settings:
        """What tests/test_benchmarks_smoke.py runs: N = 2, latency 0, one repetition."""
        return cls(
            sizes=[2],
            latencies=[0.0],
            reps=1,
            baseline_budget=10.0,
            cold_reps=1,
            health=False,
            warmup=False,
            quiet_wait=0.0,
            whatif_sizes=[],
        )


# ------------------------------------------------------------------------------------ samples


@dataclass
class Sample:
    wall: float
    cpu: float
    maxrss_mib: float
    forge: ForgeMetrics
    steps: dict[str, float] = field(default_factory=dict)
    started: float = 0.0
    ended: float = 0.0


@dataclass
class Cell:
    """Everything measured for one (N, latency)."""

    n: int
    latency: float
    lockstep: list[Sample] = field(default_factory=list)
    baseline: list[Sample] = field(default_factory=list)
    noop_lockstep: ForgeMetrics | None = None
    noop_baseline: ForgeMetrics | None = None
    busy_before: float = math.nan  # fraction of all CPUs busy (other work) just before the cell

    def med(self, who: str, attr: str) -> float:
        samples: list[Sample] = getattr(self, who)
        return median([float(getattr(s, attr)) for s in samples])

    def med_forge(self, who: str, attr: str) -> float:
        samples: list[Sample] = getattr(self, who)
        return median([float(getattr(s.forge, attr)) for s in samples])

    def med_step(self, step: str) -> float:
        return median([s.steps.get(step, 0.0) for s in self.lockstep])


class BenchError(RuntimeError):
    """A run that did not do what the benchmark needs: never turned into a number."""


def _check(run: ChildRun, world: BenchWorld, who: str, *, expect_promoted: bool = True) -> None:
    if run.code != 0 or (expect_promoted and not world.all_promoted()):
        tail = (run.stderr or run.stdout)[-1500:]
        raise BenchError(
            f"{who} run (N={world.n}, latency={world.latency}) failed with exit {run.code}:\n{tail}"
        )


def _steps(report: Path) -> dict[str, float]:
    data = json.loads(report.read_text(encoding="utf-8"))
    steps: dict[str, float] = {}
    for step in data.get("steps", []):
        name = "checks" if str(step["name"]).startswith("check ") else str(step["name"])
        steps[name] = steps.get(name, 0.0) + float(step.get("seconds") or 0.0)
    return steps


def _sample(run: ChildRun, world: BenchWorld, steps: dict[str, float] | None = None) -> Sample:
    return Sample(run.wall, run.cpu, run.maxrss_mib, world.metrics(), steps or {}, run.started, run.ended)


def measure_cell(n: int, latency: float, settings: Settings, progress: bool = True) -> Cell:
    cell = Cell(n, latency)
    if settings.quiet_wait > 0:
        cell.busy_before = wait_for_quiet(max_wait=settings.quiet_wait)
    with BenchWorld(n, latency, check=settings.check) as world:
        # one unmeasured run first: it creates the records branch (3 writes, once per records
        # repository in a team's life), so the measured runs are the steady state
        world.reset()
        _check(world.run_lockstep(), world, "lockstep (warm-up)")
        baseline_reps = settings.reps
        for i in range(settings.reps):
            world.reset()
            run = world.run_lockstep()
            _check(run, world, "lockstep")
            cell.lockstep.append(_sample(run, world, _steps(world.report)))
            if i < baseline_reps:
                world.reset()
                run = world.run_baseline()
                _check(run, world, "baseline")
                cell.baseline.append(_sample(run, world))
                # Cap the baseline's repetitions by wall time (N = 50 at 100 ms is slow), keep ≥ 1.
                baseline_reps = max(
                    1, min(settings.reps, int(settings.baseline_budget // max(run.wall, 1e-3)))
                )
            if progress:
                print(
                    f"  N={n:<3} latency={latency * 1000:>4.0f} ms  rep {i + 1}/{settings.reps}"
                    f"  lockstep {cell.lockstep[-1].wall:6.2f}s"
                    + (f"  baseline {cell.baseline[-1].wall:6.2f}s" if i < len(cell.baseline) else ""),
                    file=sys.stderr,
                    flush=True,
                )
        # No-op runs: everything already promoted; count what a run costs when there is nothing to do.
        world.reset()
        _check(world.run_lockstep(), world, "lockstep")
        world.gh.clear_requests()
        _check(world.run_lockstep(), world, "lockstep (no-op)")
        cell.noop_lockstep = world.metrics()
        world.gh.clear_requests()
        _check(world.run_baseline(), world, "baseline (no-op)")
        cell.noop_baseline = world.metrics()
    return cell


# ------------------------------------------------------------------------------------ cold start


@dataclass
class ColdResult:
    name: str
    runs: list[ChildRun]
    target: float | None

    @property
    def wall(self) -> float:
        return median([r.wall for r in self.runs])


def lockstep_command() -> list[str]:
    """The installed console script when there is one (what people type), else ``python -m``."""
    script = Path(sys.executable).with_name("lockstep")
    return [str(script)] if script.exists() else [sys.executable, "-m", "lockstep"]


def measure_cold(settings: Settings) -> list[ColdResult]:
    results: list[ColdResult] = []
    with BenchWorld(2, 0.0, check=settings.check) as world:
        env, cwd = world.env(), world.dir
        cases: list[tuple[str, list[str], float | None]] = [
            ("python -c pass (interpreter floor)", [sys.executable, "-c", "pass"], None),
            ("lockstep --version", [*lockstep_command(), "--version"], 0.2),
            ("lockstep --help", [*lockstep_command(), "--help"], 0.3),
            (
                "lockstep plan (N=2, latency 0)",
                [*lockstep_command(), "plan", "--config", str(world.config)],
                None,
            ),
        ]
        for name, argv, target in cases:
            if settings.warmup:
                run_child(argv, env, cwd)  # warm the page cache
            runs = []
            for _ in range(settings.cold_reps):
                run = run_child(argv, env, cwd)
                if run.code != 0:
                    raise BenchError(f"{name} failed with exit {run.code}: {run.stderr[-500:]}")
                runs.append(run)
            results.append(ColdResult(name, runs, target))
    return results


def import_costs() -> dict[str, dict[str, float]]:
    """Self import time (ms) summed by top-level package, for --version and for the run path."""
    probes = {
        "--version": ["-m", "lockstep", "--version"],
        "run path": ["-c", "import lockstep.cli, lockstep.engine.run, lockstep.forges.github.forge"],
    }
    out: dict[str, dict[str, float]] = {}
    for label, args in probes.items():
        proc = subprocess.run(
            [sys.executable, "-X", "importtime", *args], capture_output=True, text=True, check=False, cwd=ROOT
        )
        totals: dict[str, float] = {}
        for line in proc.stderr.splitlines():
            m = re.match(r"import time:\s+(\d+) \|\s+\d+ \|(\s*)(\S+)", line)
            if m:
                top = m.group(3).split(".")[0]
                totals[top] = totals.get(top, 0.0) + int(m.group(1)) / 1000
        out[label] = totals
    return out


# ------------------------------------------------------------------------------------ health


@dataclass
class HealthCase:
    ready_after: float  # seconds after the service's first health poll
    found: bool
    delay: float  # first 200 seen minus the moment it turned ready (nan if never seen)
    polls: int
    max_gap: float  # largest gap between two consecutive polls of this service


@dataclass
class TimeoutCase:
    label: str
    ready_after: float | None  # None: never ready
    timeout: float
    interval: float
    exit: int
    health_seconds: float  # the health step's duration in lockstep's report
    last_poll: float  # last poll's arrival, seconds after the first poll
    found: bool


@dataclass
class HealthResult:
    interval: float
    cases: list[HealthCase]
    timeouts: list[TimeoutCase]


DETECTION_TOLERANCE = 0.025  # scheduling jitter allowed on top of one interval (2 busy cores)


def _health_run(world: BenchWorld, ready_after: Sequence[float | None]) -> tuple[ChildRun, list[HealthCase]]:
    world.reset()
    names = [service_name(i) for i in range(world.n)]
    for name, after in zip(names, ready_after, strict=True):
        world.staging.set(name, world.c2[name], 1e9 if after is None else after, after_first_poll=True)
    run = world.run_lockstep()
    hits = world.staging.hits()
    cases = []
    for name, after in zip(names, ready_after, strict=True):
        mine = [h for h in hits if h.service == name]
        ready_at = world.staging.ready_at(name)
        ok = next((h for h in mine if h.status == 200), None)
        gaps = [b.at - a.at for a, b in itertools.pairwise(mine)]
        cases.append(
            HealthCase(
                ready_after=math.inf if after is None else after,
                found=ok is not None,
                delay=(ok.at - ready_at) if ok is not None and ready_at is not None else math.nan,
                polls=len(mine),
                max_gap=max(gaps, default=math.nan),
            )
        )
    return run, cases


def measure_health(settings: Settings) -> HealthResult:
    interval = 0.5
    # "ready" placed early, mid and just after a poll (the worst case: almost one interval to wait).
    schedule = [(0.3, 0.62), (0.95, 1.24), (0.51, 1.01)]
    cases: list[HealthCase] = []
    with BenchWorld(2, 0.0, check=False, health_interval=interval, health_timeout=30) as world:
        for after in schedule:
            run, found = _health_run(world, after)
            _check(run, world, "lockstep (health)")
            cases += found
    timeouts: list[TimeoutCase] = []
    timeout, t_interval = 1.5, 0.4
    with BenchWorld(2, 0.0, check=False, health_interval=t_interval, health_timeout=timeout) as world:
        near: list[tuple[str, float | None]] = [
            ("never ready", None),
            ("ready 1.3 s after the first poll", 1.3),
        ]
        for label, ready in near:
            run, found = _health_run(world, (0.0, ready))
            hits = [h for h in world.staging.hits() if h.service == service_name(1)]
            timeouts.append(
                TimeoutCase(
                    label=label,
                    ready_after=ready,
                    timeout=timeout,
                    interval=t_interval,
                    exit=run.code,
                    health_seconds=_steps(world.report).get("health", math.nan),
                    last_poll=hits[-1].at - hits[0].at if hits else math.nan,
                    found=found[1].found,
                )
            )
    return HealthResult(interval, cases, timeouts)


# ------------------------------------------------------------------------------------ what-if

WHATIF_VARIANTS: list[tuple[str, list[str]]] = [
    ("as is", []),
    ("+ sniffio installed", ["sniffio"]),
    ("+ httpx CLI not imported", ["httpx-cli"]),
    ("+ one shared TLS context", ["ssl-once"]),
    ("+ no interpreter teardown", ["fast-exit"]),
    ("all four", ["sniffio", "httpx-cli", "ssl-once", "fast-exit"]),
]


@dataclass
class WhatIf:
    n: int
    runs: dict[str, list[ChildRun]] = field(default_factory=dict)


def measure_whatif(settings: Settings) -> list[WhatIf]:
    """lockstep run (latency 0) with each patch of benchmarks/whatif.py; variants interleaved per rep."""
    results = []
    for n in settings.whatif_sizes:
        if settings.quiet_wait > 0:
            wait_for_quiet(max_wait=settings.quiet_wait)
        result = WhatIf(n)
        with BenchWorld(n, 0.0, check=settings.check) as world:
            env = world.env() | {"PYTHONPATH": str(ROOT)}
            for _ in range(settings.whatif_reps):
                for label, patches in WHATIF_VARIANTS:
                    world.reset()
                    argv = [sys.executable, "-m", "benchmarks.whatif"]
                    for patch in patches:
                        argv += ["--patch", patch]
                    argv += ["--", "run", "--config", str(world.config), "--report", str(world.report)]
                    run = run_child(argv, env, world.dir)
                    _check(run, world, f"lockstep ({label})")
                    result.runs.setdefault(label, []).append(run)
        results.append(result)
    return results


# ------------------------------------------------------------------------------------ tables


def _lat(latency: float) -> str:
    return f"{latency * 1000:.0f} ms"


def gate_table(cells: Sequence[Cell]) -> Table:
    t = Table(
        "Gate run: wall time, CPU, peak memory (medians; lockstep vs baseline)",
        [
            "latency",
            "N",
            "reps ls/bl",
            "lockstep wall s",
            "ls RT",
            "ls CPU s",
            "ls peak MiB",
            "budget s",
            "met",
            "baseline wall s",
            "bl RT",
            "bl CPU s",
            "bl peak MiB",
            "wall ratio",
            "CPU ratio",
            "busy before",
        ],
    )
    for c in cells:
        wall, cpu = c.med("lockstep", "wall"), c.med("lockstep", "cpu")
        bwall, bcpu = c.med("baseline", "wall"), c.med("baseline", "cpu")
        budget = (c.n + 4) * c.latency + CPU_BUDGET
        t.add(
            _lat(c.latency),
            c.n,
            f"{len(c.lockstep)}/{len(c.baseline)}",
            secs(wall),
            rts(wall, c.latency),
            secs(cpu),
            f"{c.med('lockstep', 'maxrss_mib'):.0f}",
            secs(budget, 2),
            yes(wall <= budget),
            secs(bwall),
            rts(bwall, c.latency),
            secs(bcpu),
            f"{c.med('baseline', 'maxrss_mib'):.0f}",
            ratio(wall, bwall),
            ratio(cpu, bcpu),
            "–" if math.isnan(c.busy_before) else f"{c.busy_before:.0%}",
        )
    t.notes = [
        "RT = wall / injected latency (round trips); budget = (N + 4) RT + 0.3 s (issue 5 target).",
        "CPU = user + sys of the child process (rusage).",
        "busy before = share of the machine's CPUs used by other work just before the cell started.",
        "ratio = lockstep / baseline, measured in the same world with the runs interleaved.",
    ]
    return t


def scale_table(cells: Sequence[Cell]) -> Table:
    t = Table(
        "Scale: largest N vs smallest N (target: 50 services within 2x of 2 services)",
        ["latency", "N small → large", "wall ratio", "wall − N·RT ratio", "CPU ratio", "met (wall − N·RT)"],
    )
    for latency in sorted({c.latency for c in cells}):
        row = sorted((c for c in cells if c.latency == latency), key=lambda c: c.n)
        if len(row) < 2:
            continue
        small, large = row[0], row[-1]
        w_s, w_l = small.med("lockstep", "wall"), large.med("lockstep", "wall")
        o_s, o_l = w_s - small.n * latency, w_l - large.n * latency
        c_s, c_l = small.med("lockstep", "cpu"), large.med("lockstep", "cpu")
        t.add(
            _lat(latency),
            f"{small.n} → {large.n}",
            ratio(w_l, w_s),
            ratio(o_l, o_s),
            ratio(c_l, c_s),
            yes(o_l <= 2 * o_s),
        )
    t.notes = [
        "N sequential writes are the physical floor (invariant 4: push k+1 only after push k landed).",
        "So the target is judged on wall time minus N round trips; the plain wall ratio is shown too.",
    ]
    return t


def split_table(cells: Sequence[Cell]) -> Table:
    t = Table(
        "Split window: first to last target write, as the fake GitHub's clock sees them (medians)",
        [
            "latency",
            "N",
            "lockstep ms",
            "ls RT",
            "ls RT / extra service",
            "target ≤ 1.2",
            "baseline ms",
            "bl RT",
            "bl RT / extra service",
            "ratio",
        ],
    )
    for c in cells:
        split, bsplit = c.med_forge("lockstep", "split_window"), c.med_forge("baseline", "split_window")
        per = per_b = math.nan
        if c.n > 1 and c.latency > 0:
            per, per_b = split / c.latency / (c.n - 1), bsplit / c.latency / (c.n - 1)
        t.add(
            _lat(c.latency),
            c.n,
            ms(split),
            rts(split, c.latency),
            secs(per, 2),
            yes(None if math.isnan(per) else per <= 1.2),
            ms(bsplit),
            rts(bsplit, c.latency),
            secs(per_b, 2),
            ratio(split, bsplit),
        )
    return t


def requests_table(cells: Sequence[Cell]) -> Table:
    t = Table(
        "Requests to the forge per run (reads: GET and GraphQL queries; writes: PATCH/POST/PUT/DELETE)",
        [
            "N",
            "ls reads",
            "ls writes",
            "writes ≤ N+2",
            "ls total",
            "≤ N+4",
            "ls no-op",
            "≤ 2",
            "ls connections",
            "bl reads",
            "bl writes",
            "bl total",
            "bl no-op",
            "bl connections",
            "total ratio",
            "runs/h @5000",
            "lockstep by endpoint",
        ],
    )
    seen: set[int] = set()
    for c in sorted(cells, key=lambda c: (c.n, c.latency)):
        if c.n in seen:
            continue
        seen.add(c.n)
        last = c.lockstep[-1].forge  # steady state: the first run of a world also creates the records branch
        reads, writes = c.med_forge("lockstep", "reads"), c.med_forge("lockstep", "writes")
        breads, bwrites = c.med_forge("baseline", "reads"), c.med_forge("baseline", "writes")
        total, btotal = reads + writes, breads + bwrites
        noop = (c.noop_lockstep.reads + c.noop_lockstep.writes) if c.noop_lockstep else math.nan
        bnoop = (c.noop_baseline.reads + c.noop_baseline.writes) if c.noop_baseline else math.nan
        t.add(
            c.n,
            f"{reads:.0f}",
            f"{writes:.0f}",
            yes(writes <= c.n + 2),
            f"{total:.0f}",
            yes(total <= c.n + 4),
            f"{noop:.0f}",
            yes(noop <= 2),
            f"{c.med_forge('lockstep', 'connections'):.0f}",
            f"{breads:.0f}",
            f"{bwrites:.0f}",
            f"{btotal:.0f}",
            f"{bnoop:.0f}",
            f"{c.med_forge('baseline', 'connections'):.0f}",
            ratio(total, btotal),
            f"{RATE_LIMIT_PER_HOUR / total:.0f}",
            join([f"{v} {k}" for k, v in sorted(last.by_endpoint.items())]),
        )
    t.notes = [
        "Counts do not depend on latency (taken at the lowest latency measured); medians over the "
        "repetitions, by endpoint from the last one. Measured after one unmeasured run, which also "
        "creates the records branch (3 writes, once per records repository).",
        "connections = distinct TCP connections the fake accepted during the run.",
        "runs/h = gate runs that fit in a 5000 requests/hour token budget.",
    ]
    return t


def steps_table(cells: Sequence[Cell]) -> Table:
    t = Table(
        "Where lockstep's wall time goes: median seconds (round trips)",
        ["latency", "N", "start-up", *STEPS, "other forge", "exit"],
    )
    for c in cells:
        cols = []
        total = 0.0
        for step in STEPS:
            value = c.med_step(step)
            total += value
            cols.append(f"{value:.3f} ({rts(value, c.latency)})")
        startup = median([s.forge.first_at - s.started for s in c.lockstep])
        span = median([s.forge.last_at + c.latency - s.forge.first_at for s in c.lockstep])
        tail = median([s.ended - (s.forge.last_at + c.latency) for s in c.lockstep])
        other = span - total
        t.add(
            _lat(c.latency),
            c.n,
            secs(startup),
            *cols,
            f"{other:.3f} ({rts(other, c.latency)})",
            secs(tail),
        )
    t.notes = [
        "start-up = process spawn → first request to the forge (interpreter, imports, config, clients).",
        "steps = durations from lockstep's JSON report; other forge = first request → last answer − steps",
        "(promotion records and anything else outside the named steps).",
        "exit = last answer from the forge → process reaped (summary, report, interpreter teardown).",
    ]
    return t


def cold_table(results: Sequence[ColdResult]) -> Table:
    t = Table(
        "Cold start (child process wall time)",
        ["command", "runs", "median s", "min s", "CPU s", "peak MiB", "target s", "met"],
    )
    for r in results:
        t.add(
            r.name,
            len(r.runs),
            secs(r.wall),
            secs(min(x.wall for x in r.runs)),
            secs(median([x.cpu for x in r.runs])),
            f"{median([x.maxrss_mib for x in r.runs]):.0f}",
            "–" if r.target is None else f"< {r.target}",
            yes(None if r.target is None else r.wall < r.target),
        )
    return t


def imports_table(costs: dict[str, dict[str, float]]) -> Table:
    labels = list(costs)
    t = Table(
        "Import time by top-level package (python -X importtime, self ms summed)",
        ["package", *[f"{label} ms" for label in labels]],
    )
    packages = sorted(
        {p for c in costs.values() for p in c}, key=lambda p: -max(c.get(p, 0) for c in costs.values())
    )
    for p in packages[:12]:
        t.add(p, *[f"{costs[label].get(p, 0.0):.1f}" for label in labels])
    t.add("total", *[f"{sum(costs[label].values()):.1f}" for label in labels])
    t.notes = [
        "-X importtime inflates times (~1.5x); use it for proportions, the cold-start table for wall time."
    ]
    return t


def health_tables(h: HealthResult) -> list[Table]:
    t = Table(
        f"Health polling: detection delay of a service that turns ready (interval {h.interval:g} s)",
        ["ready after first poll s", "polls", "max gap between polls ms", "delay ms", "≤ interval"],
    )
    for case in h.cases:
        t.add(
            f"{case.ready_after:g}",
            case.polls,
            ms(case.max_gap),
            ms(case.delay),
            yes(case.found and case.delay <= h.interval + DETECTION_TOLERANCE),
        )
    t.notes = [
        "delay = arrival of the first health request answered 200 − the moment the service turned ready.",
        f"Judged against the interval plus {DETECTION_TOLERANCE * 1000:.0f} ms of scheduling jitter.",
    ]
    t2 = Table(
        "Health polling near the overall timeout",
        [
            "case",
            "health_timeout s",
            "interval s",
            "last poll at s",
            "health step s",
            "found",
            "exit",
            "never past timeout",
        ],
    )
    for c in h.timeouts:
        t2.add(
            c.label,
            f"{c.timeout:g}",
            f"{c.interval:g}",
            secs(c.last_poll),
            secs(c.health_seconds),
            "– (never ready)" if c.ready_after is None else yes(c.found),
            c.exit,
            yes(c.health_seconds <= c.timeout + 0.05),
        )
    t2.notes = [
        "last poll at = the last health request's arrival, counted from the first one.",
        "health step s = the step's duration in lockstep's report (50 ms tolerance for the last answer).",
    ]
    return [t, t2]


def whatif_table(results: Sequence[WhatIf]) -> Table:
    t = Table(
        "What-if: lockstep run (latency 0) with upstream/start-up fixes imitated (medians)",
        ["N", "variant", "runs", "wall s", "CPU s", "CPU saved s", "CPU saved"],
    )
    for r in results:
        base = median([x.cpu for x in r.runs["as is"]])
        for label, _ in WHATIF_VARIANTS:
            runs = r.runs[label]
            cpu = median([x.cpu for x in runs])
            t.add(
                r.n,
                label,
                len(runs),
                secs(median([x.wall for x in runs])),
                secs(cpu),
                secs(base - cpu),
                f"{(base - cpu) / base:.0%}" if base else "–",
            )
    t.notes = [
        "Each variant runs the real CLI through benchmarks/whatif.py, which patches in-process first.",
        "sniffio: httpcore 1.0.9 retries a failed `import sniffio` per lock set-up (encode/httpcore#1103).",
    ]
    return t


# ------------------------------------------------------------------------------------ machine and main


def machine() -> dict[str, str]:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = os.getloadavg() if hasattr(os, "getloadavg") else (math.nan,) * 3
    revision = "unknown"
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "src"],
            capture_output=True,
            text=True,
            cwd=ROOT,
            check=True,
        ).stdout.strip()
        revision = head + (" + uncommitted changes in src/" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        pass
    return {
        "nproc": str(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()),
        "cpu": model,
        "python": platform.python_version() + f" ({platform.python_implementation()})",
        "platform": platform.platform(),
        "load average at start": " ".join(f"{x:.2f}" for x in load),
        "lockstep revision": revision,
    }


@dataclass
class Results:
    settings: Settings
    machine: dict[str, str]
    cells: list[Cell]
    cold: list[ColdResult]
    imports: dict[str, dict[str, float]]
    health: HealthResult | None
    seconds: float
    tables: list[Table]


def run_all(settings: Settings, progress: bool = True) -> Results:
    start = time.monotonic()
    info = machine()
    if settings.warmup:  # page cache and bytecode; discarded
        with BenchWorld(2, 0.0, check=settings.check) as world:
            world.run_lockstep()
            world.reset()
            world.run_baseline()
    cells = []
    for latency in settings.latencies:
        for n in settings.sizes:
            cells.append(measure_cell(n, latency, settings, progress))
    if progress:
        print("  cold start ...", file=sys.stderr, flush=True)
    if settings.quiet_wait > 0:
        wait_for_quiet(max_wait=settings.quiet_wait)
    cold = measure_cold(settings)
    imports = import_costs()
    whatif: list[WhatIf] = []
    if settings.whatif_sizes:
        if progress:
            print("  what-if variants ...", file=sys.stderr, flush=True)
        whatif = measure_whatif(settings)
    health = None
    if settings.health:
        if progress:
            print("  health polling ...", file=sys.stderr, flush=True)
        health = measure_health(settings)
    tables = [
        gate_table(cells),
        scale_table(cells),
        split_table(cells),
        requests_table(cells),
        steps_table(cells),
        cold_table(cold),
        imports_table(imports),
    ]
    if whatif:
        tables.append(whatif_table(whatif))
    if health is not None:
        tables += health_tables(health)
    return Results(settings, info, cells, cold, imports, health, time.monotonic() - start, tables)


def render_markdown(results: Results) -> str:
    out = ["## Machine", ""]
    out += [f"- {k}: {v}" for k, v in results.machine.items()]
    s = results.settings
    out += [
        f"- settings: N = {s.sizes}, latency = {[f'{x * 1000:g} ms' for x in s.latencies]}, "
        f"reps = {s.reps}, cold-start reps = {s.cold_reps}; whole run {results.seconds:.0f} s",
        "",
    ]
    for table in results.tables:
        out.append(table.markdown())
    return "\n".join(out)


def _to_json(results: Results) -> str:
    def default(obj: object) -> object:
        if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
            return dataclasses.asdict(obj)
        return str(obj)

    payload = {
        "machine": results.machine,
        "settings": dataclasses.asdict(results.settings),
        "cells": [dataclasses.asdict(c) for c in results.cells],
        "cold": [
            {"name": c.name, "walls": [r.wall for r in c.runs], "cpus": [r.cpu for r in c.runs]}
            for c in results.cold
        ],
        "imports": results.imports,
        "health": dataclasses.asdict(results.health) if results.health else None,
        "seconds": results.seconds,
    }
    return json.dumps(payload, indent=1, default=default)


def main(argv: Sequence[str] | None = None) -> Results:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.run", description="lockstep benchmarks (issue 5)"
    )
    parser.add_argument("--quick", action="store_true", help="N = 2, 10 at 25 ms, 3 repetitions")
    parser.add_argument(
        "--smoke", action="store_true", help="N = 2, latency 0, 1 repetition (the CI smoke test)"
    )
    parser.add_argument("--sizes", type=int, nargs="+", help="override the N values")
    parser.add_argument("--latencies-ms", type=float, nargs="+", help="override the latencies (ms)")
    parser.add_argument("--reps", type=int, help="override the repetitions")
    parser.add_argument("--no-health", action="store_true", help="skip the health polling check")
    parser.add_argument("--markdown", type=Path, help="also write the tables as markdown here")
    parser.add_argument("--json", type=Path, help="also write the raw results as JSON here")
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    args = parser.parse_args(argv)
    settings = Settings.smoke() if args.smoke else Settings.quick() if args.quick else Settings.full()
    if args.sizes:
        settings.sizes = args.sizes
    if args.latencies_ms:
        settings.latencies = [x / 1000 for x in args.latencies_ms]
    if args.reps:
        settings.reps = args.reps
    if args.no_health:
        settings.health = False
    results = run_all(settings, progress=not args.quiet)

    from rich.console import Console

    console = Console(width=None if sys.stdout.isatty() else 220)
    console.print("lockstep benchmarks — " + ", ".join(f"{k}: {v}" for k, v in results.machine.items()))
    for table in results.tables:
        console.print(table.rich())
    console.print(f"whole benchmark: {results.seconds:.0f} s")
    if args.markdown:
        args.markdown.write_text(render_markdown(results), encoding="utf-8")
    if args.json:
        args.json.write_text(_to_json(results), encoding="utf-8")
    return results


if __name__ == "__main__":
    main()

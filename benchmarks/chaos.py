"""Chaos runs of lockstep: thousands of seeded faulty scenarios, every invariant checked after each.

    python -m benchmarks.chaos --runs 10000 --seed 1 --jobs 4     # the long run (see docs/reliability.md)
    python -m benchmarks.chaos --runs 300 --seed 7                  # the CI-sized run
    python -m benchmarks.chaos --replay 1000042                     # one scenario, with its outputs

Prints a table: scenarios, faults injected by kind (in how many scenarios, and
how often the fake GitHub fired them), outcomes by kind and every invariant
violation with the scenario seed that reproduces it.  Exit status 1 when any
invariant was violated.

Scenario seeds are ``SEED * 1_000_000 + i``; ``--replay`` takes one of them.
Each worker runs its scenarios in its own main thread (the in-process runs need
it for ``loop.add_signal_handler``).  Scenarios mostly wait on timeouts, so
more workers than cores pays: on 2 cores ``--jobs 4`` is the fastest setting.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from tests.chaos.harness import ScenarioResult, known_bug, run_many, run_scenario
from tests.chaos.scenario import describe, generate


def _printer(runs: int) -> object:
    start = time.monotonic()
    step = max(1, runs // 20)

    def progress(done: int, result: ScenarioResult) -> None:
        for item in result.violations:
            known = known_bug(item)
            label = f"known bug, see {known}" if known else "violation"
            print(f"{label} (seed {result.seed}): {item.splitlines()[0][:300]}", file=sys.stderr, flush=True)
        if done % step == 0 or done == runs:
            elapsed = time.monotonic() - start
            print(f"  {done}/{runs} scenarios in {elapsed:.0f}s ({elapsed / done * runs:.0f}s projected)",
                  file=sys.stderr, flush=True)

    return progress


def replay(seed: int, keep: bool) -> int:
    """Run one scenario and show everything about it."""
    scenario = generate(seed)
    print(describe(scenario))
    keep_dir = Path(tempfile.mkdtemp(prefix="chaos-replay-")) if keep else None
    result, obs = run_scenario(scenario, keep=keep_dir)
    print(f"\noutcome: {result.outcome}   exit code: {result.code}   {result.seconds:.2f}s")
    print(f"faults: {result.faults}   fired: {result.fired}")
    if obs is not None:
        for label, value in (("start", obs.start), ("source", obs.source), ("at exit", obs.final_at_exit),
                             ("settled", obs.final), ("outsider", obs.outsider)):
            print(f"{label + ':':<9} {value}")
        print("writes: " + ", ".join(f"s{w.service}@{w.order}->{(w.sha or '')[:7]}" for w in obs.writes))
        print("\n--- stdout\n" + obs.run.stdout + "\n--- stderr\n" + obs.run.stderr)
        if obs.run.exception:
            print("--- exception\n" + obs.run.exception)
    if keep_dir is not None:
        print(f"files kept in {keep_dir}")
    print(f"\ninvariant violations: {len(result.violations)}")
    for item in result.violations:
        known = known_bug(item)
        print(f"  {item}" + (f"\n    (known bug: {known})" if known else ""))
    return 1 if any(known_bug(item) is None for item in result.violations) else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.chaos", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=300, help="number of scenarios (default 300)")
    parser.add_argument("--seed", type=int, default=1, help="base seed (default 1)")
    parser.add_argument("--jobs", type=int, default=min(4, 2 * (os.cpu_count() or 1)),
                        help="worker processes (default: twice the cores, at most 4)")
    parser.add_argument("--replay", type=int, metavar="SEED", help="run one scenario seed and show it")
    parser.add_argument("--keep", action="store_true", help="with --replay: keep the scenario's files")
    parser.add_argument("--json", metavar="PATH", help="also write the tally as JSON")
    args = parser.parse_args(argv)
    if args.replay is not None:
        return replay(args.replay, args.keep)
    print(f"lockstep chaos: {args.runs} scenarios, seed {args.seed}, {args.jobs} jobs", file=sys.stderr)
    tally, wall, _ = run_many(args.seed, args.runs, args.jobs, progress=_printer(args.runs))
    print(tally.table(wall))
    if args.json:
        Path(args.json).write_text(json.dumps({
            "runs": args.runs, "seed": args.seed, "jobs": args.jobs, "wall_seconds": round(wall, 1),
            "faults": dict(tally.faults), "fired": dict(tally.fired), "outcomes": dict(tally.outcomes),
            "runners": dict(tally.runners), "violations": [[s, v] for s, v in tally.violations],
        }, indent=1, ensure_ascii=False))
    return 1 if tally.violations else 0


if __name__ == "__main__":
    sys.exit(main())

"""The CI-sized chaos run, and proof that the invariant checker can fail.

``test_chaos_run`` drives a few hundred seeded scenarios (fake GitHub and git
forges, staging faults, forge faults, bypasses, audits, signals) through the
real CLI and asserts that no invariant of ``docs/design.md`` ("Invariants") was violated.
On failure the assertion message is the whole table, with the seed of every
violation: ``python -m benchmarks.chaos --replay SEED`` reproduces one.

The long run (10,000 scenarios) is ``python -m benchmarks.chaos --runs 10000
--seed 1``; see ``docs/reliability.md``.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import tomllib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.chaos.harness import known_bug, run_many, run_scenario, scenario_seeds, toml_value
from tests.chaos.invariants import INVARIANTS, Observation, check_invariants
from tests.chaos.scenario import generate

CI_SEED = int(os.environ.get("LOCKSTEP_CHAOS_SEED", "7"))
CI_RUNS = int(os.environ.get("LOCKSTEP_CHAOS_RUNS", "400"))
CI_JOBS = int(os.environ.get("LOCKSTEP_CHAOS_JOBS", "4"))


@pytest.mark.timeout(600)
def test_chaos_run() -> None:
    tally, wall, results = run_many(CI_SEED, CI_RUNS, CI_JOBS)
    table = tally.table(wall)
    details = "\n\n".join(
        f"seed {r.seed}:\n  " + "\n  ".join(v for v in r.violations if known_bug(v) is None) + "\n" + r.detail
        for r in results
        if any(known_bug(v) is None for v in r.violations)
    )
    assert not tally.violations, f"\n{table}\n\n{details[:20000]}"
    # The run must actually exercise what it claims to.
    assert tally.scenarios == CI_RUNS
    for outcome in ("promoted", "blocked", "noop", "usage error (exit 2)"):
        assert tally.outcomes[outcome] > 0, table
    assert tally.outcomes["split"] + tally.outcomes["unknown"] > 0, table
    assert sum(tally.fired.values()) > CI_RUNS // 4, table
    assert any(k.startswith("github/subprocess+") for k in tally.runners), table
    assert any(k.startswith("git/") for k in tally.runners), table


def test_scenarios_are_reproducible_from_their_seed() -> None:
    for seed in scenario_seeds(CI_SEED, 50):
        assert generate(seed) == generate(seed)
    assert generate(1) != generate(2)


# --------------------------------------------------------------------------------------------
# The checker is only worth its zero if it fires on a broken run: break real observations.


def _clean_promotion() -> Observation:
    """A real observation of a fault-free scenario that promoted at least one target."""
    for seed in scenario_seeds(99, 400):
        scenario = generate(seed)
        if scenario.forge != "github" or scenario.runner != "inproc" or scenario.faults:
            continue
        if scenario.usage_error or not scenario.read_token_ok or scenario.signal is not None:
            continue
        if any(s.start not in ("behind", "equal") or s.push_token != "ok" or s.protected or not s.readable
               or s.outsider != "none" for s in scenario.services):
            continue
        if scenario.bypass != "none" or scenario.gate_expectation() != "pass":
            continue
        if sum(s.start == "behind" for s in scenario.services) < 2:
            continue
        result, obs = run_scenario(scenario)
        if obs is not None and obs.run.code == 0 and len(obs.writes) >= 2:
            assert result.violations == []
            return obs
    raise AssertionError("no clean scenario promoting two targets found")


@pytest.fixture(scope="module")
def clean() -> Observation:
    return _clean_promotion()


def _broken(obs: Observation, **changes: Any) -> list[str]:
    return check_invariants(dataclasses.replace(copy.deepcopy(obs), **changes))


def test_every_invariant_states_its_rule_and_is_documented() -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "reliability.md").read_text(encoding="utf-8")
    for invariant in INVARIANTS:
        assert (invariant.__doc__ or "").strip(), f"{invariant.__name__} has no docstring stating its rule"
        assert f"`{invariant.__name__}`" in doc, f"docs/reliability.md does not name {invariant.__name__}"


def test_checker_accepts_the_clean_run(clean: Observation) -> None:
    assert check_invariants(clean) == []


def test_checker_catches_a_report_that_lies_about_positions(clean: Observation) -> None:
    k = clean.writes[0].service
    final = list(clean.final_at_exit)
    final[k] = clean.start[k]  # the target did not really move...
    found = _broken(clean, final=final, final_at_exit=final, final_seen=final)
    assert any("did_push" in v or "advanced" in v for v in found), found
    assert any(v.startswith("exit 0 but") for v in found), found


def test_checker_catches_a_write_of_a_foreign_sha(clean: Observation) -> None:
    writes = copy.deepcopy(clean.writes)
    writes[0].sha = "f" * 40
    assert any("not resolved in this run" in v for v in _broken(clean, writes=writes))


def test_checker_catches_a_forced_write(clean: Observation) -> None:
    writes = copy.deepcopy(clean.writes)
    writes[0].force = True
    assert any("forced write" in v for v in _broken(clean, writes=writes))


def test_checker_catches_a_leaked_token(clean: Observation) -> None:
    run = dataclasses.replace(clean.run, stderr=clean.run.stderr + f"\ndebug: {clean.tokens[1]}\n")
    assert any(v.startswith("token leak") for v in _broken(clean, run=run))


def test_checker_catches_a_traceback(clean: Observation) -> None:
    run = dataclasses.replace(clean.run, stderr="Traceback (most recent call last):\n  File \"x.py\", line 1\n")
    assert any(v.startswith("traceback") for v in _broken(clean, run=run))


def test_checker_catches_a_wrong_exit_code(clean: Observation) -> None:
    run = dataclasses.replace(clean.run, code=1)
    found = _broken(clean, run=run)
    assert any(v.startswith("exit 1 (blocked") for v in found), found


def test_checker_catches_a_write_without_the_gate(clean: Observation) -> None:
    found = _broken(clean, staging=[[] for _ in clean.staging])
    assert any(v.startswith("write without gate evidence") for v in found), found


def test_checker_catches_a_write_after_a_failed_one(clean: Observation) -> None:
    first = clean.writes[0].service
    final = list(clean.final_at_exit)
    final[first] = clean.start[first]
    found = _broken(clean, final_seen=final)
    assert any("did not land" in v for v in found), found


@given(st.text())
def test_the_harness_writes_toml_strings_tomllib_reads_back(value: str) -> None:
    """``json.dumps`` is not a TOML encoder (it leaves DEL raw, which tomllib rejects)."""
    assert tomllib.loads("a = " + toml_value(value))["a"] == value

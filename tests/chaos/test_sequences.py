"""The CI-sized run of chaos sequences (see :mod:`tests.chaos.sequences`), and proof it can fail."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.chaos.sequences import Sequence, Step, generate, run_sequence

SEQ_SEED = int(os.environ.get("LOCKSTEP_SEQUENCE_SEED", "11"))
SEQ_RUNS = int(os.environ.get("LOCKSTEP_SEQUENCE_RUNS", "24"))


@pytest.mark.timeout(600)
def test_chaos_sequences(tmp_path: Path) -> None:
    failures = []
    kinds: set[str] = set()
    for i in range(SEQ_RUNS):
        seq = generate(SEQ_SEED * 100_003 + i)
        kinds.update(f"{seq.forge}/{s.command}" for s in seq.steps)
        result = run_sequence(seq, tmp_path / str(i))
        if result.violations:
            failures.append(seq.describe() + "\n  " + "\n  ".join(result.violations + result.log))
    assert not failures, "\n\n".join(failures)
    # the run must exercise re-runs and both repairs on both forges
    for forge in ("git", "github"):
        for command in ("run", "forward", "rollback"):
            assert f"{forge}/{command}" in kinds, sorted(kinds)


def test_sequences_are_reproducible_from_their_seed() -> None:
    assert generate(5) == generate(5)
    assert generate(5) != generate(6)


def test_the_oracle_catches_the_rerun_that_hid_a_split(tmp_path: Path) -> None:
    """Run, re-run, and nothing else: the re-run must exit 3 and status must say split."""
    seq = Sequence(0, "git", True, (Step("run", refuse=1), Step("run")))
    result = run_sequence(seq, tmp_path)
    assert result.violations == [], result.log

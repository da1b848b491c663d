"""The benchmark (issue 5) at smoke size, so it cannot rot: N = 2, one repetition, latency 0.

It asserts only that the whole benchmark runs (lockstep and the baseline each
really promote, cold start and no-op runs included) and that it prints the
tables with the expected columns; the figures themselves are not judged here.
"""

from __future__ import annotations

import time

import pytest
from benchmarks.run import main

EXPECTED = {
    "Gate run": [
        "latency",
        "N",
        "lockstep wall s",
        "ls CPU s",
        "ls peak MiB",
        "budget s",
        "met",
        "baseline wall s",
        "wall ratio",
        "CPU ratio",
    ],
    "Split window": ["lockstep ms", "ls RT / extra service", "baseline ms", "ratio"],
    "Requests": ["ls reads", "ls writes", "writes ≤ N+2", "ls total", "≤ N+4", "ls no-op", "≤ 2", "bl total",
                 "total ratio"],
    "Where lockstep's wall time goes": [
        "start-up",
        "resolve",
        "health",
        "version",
        "checks",
        "preflight",
        "promote",
        "verify",
        "other forge",
        "exit",
    ],
    "Cold start": ["command", "median s", "target s", "met"],
}


@pytest.mark.timeout(60)
def test_benchmark_smoke_run_prints_tables(capsys: pytest.CaptureFixture[str]) -> None:
    start = time.monotonic()
    results = main(["--smoke", "--quiet"])
    elapsed = time.monotonic() - start
    out = capsys.readouterr().out

    by_title = {table.title: table for table in results.tables}
    for prefix, columns in EXPECTED.items():
        table = next((t for title, t in by_title.items() if title.startswith(prefix)), None)
        assert table is not None, f"no table titled {prefix!r}: {list(by_title)}"
        missing = [c for c in columns if c not in table.columns]
        assert not missing, f"{table.title}: missing columns {missing}"
        assert table.rows, f"{table.title}: no rows"
        assert table.title in out
        assert all(len(row) == len(table.columns) for row in table.rows)

    gate = by_title[next(t for t in by_title if t.startswith("Gate run"))]
    assert gate.rows[0][:2] == ["0 ms", "2"]
    commands = [row[0] for row in by_title[next(t for t in by_title if t.startswith("Cold start"))].rows]
    assert any("--version" in c for c in commands) and any("--help" in c for c in commands)
    assert elapsed < 30, f"smoke benchmark took {elapsed:.1f}s"

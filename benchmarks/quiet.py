"""How busy the machine is, so a benchmark can wait for a quiet moment and say how quiet it was.

Other work on a 2-core machine (test suites run in parallel) inflates wall
times; CPU times from rusage are far less sensitive.  ``busy()`` samples
``/proc/stat`` (all CPUs); ``wait_for_quiet`` waits, bounded, until the
machine's CPU use falls under a threshold.
"""

from __future__ import annotations

import math
import time
from pathlib import Path


def _cpu_times() -> tuple[int, int] | None:
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except (OSError, IndexError):
        return None
    values = [int(v) for v in fields]
    idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
    return idle, sum(values)


def busy(sample: float = 0.5) -> float:
    """Fraction (0..1) of all CPUs busy over ``sample`` seconds; nan where /proc/stat is missing."""
    first = _cpu_times()
    time.sleep(sample)
    second = _cpu_times()
    if first is None or second is None or second[1] == first[1]:
        return math.nan
    return 1.0 - (second[0] - first[0]) / (second[1] - first[1])


def wait_for_quiet(threshold: float = 0.3, max_wait: float = 60.0) -> float:
    """Wait until less than ``threshold`` of the CPUs are busy (at most ``max_wait`` s); the last reading."""
    deadline = time.monotonic() + max_wait
    while True:
        level = busy()
        if math.isnan(level) or level < threshold or time.monotonic() >= deadline:
            return level

"""Running the real CLI as a subprocess, the way a user does, and reading back what it wrote."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class CliResult:
    code: int
    out: str
    err: str
    report: dict[str, Any] | None

    @property
    def all_output(self) -> str:
        return self.out + self.err + (json.dumps(self.report) if self.report else "")


def lockstep_argv(root: Path, args: tuple[str, ...], report: Path) -> list[str]:
    """``python -m lockstep ARGS``; ``run`` also gets ``root``'s config and ``--report``."""
    cmd = [sys.executable, "-m", "lockstep", *args]
    if args and args[0] == "run":
        cmd += ["--config", str(root / "lockstep.toml"), "--report", str(report)]
    return cmd


def run_cli(root: Path, args: tuple[str, ...], env: Mapping[str, str], timeout: float = 60) -> CliResult:
    """One command in ``root``: exit code, stdout, stderr and the JSON report ``run`` wrote (if any)."""
    report = root / "report.json"
    report.unlink(missing_ok=True)
    proc = subprocess.run(lockstep_argv(root, args, report), cwd=root, env=dict(env), capture_output=True,
                          text=True, timeout=timeout, check=False)
    data = json.loads(report.read_text()) if report.exists() else None
    return CliResult(proc.returncode, proc.stdout, proc.stderr, data)

"""``lockstep demo`` as a new user meets it: installed by the Quick start, ``lockstep`` not on PATH."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _quick_start_env() -> dict[str, str]:
    """The environment after ``uv sync`` without activating .venv: no ``lockstep`` on PATH."""
    venv_bin = str(Path(sys.executable).parent)
    path = [d for d in os.environ.get("PATH", "").split(os.pathsep)
            if d and d != venv_bin and not (Path(d) / "lockstep").exists()]
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("GITHUB_", "LOCKSTEP_", "PYTHON", "VIRTUAL_ENV"))}
    env["PATH"] = os.pathsep.join(path)
    return env


def test_the_demo_prints_rerun_commands_that_work_as_printed(tmp_path: Path) -> None:
    """Issue 10 item 11: the hints said `python -m lockstep.staging_stub` and `lockstep run`,
    neither of which works after the Quick start (`uv run lockstep demo`)."""
    env = _quick_start_env()
    sandbox = tmp_path / "sandbox"
    # `uv run lockstep demo` is the venv's interpreter running lockstep; the version-mismatch
    # story blocks (exit 1) because its staging serves an old sha for metadata.
    demo = subprocess.run([sys.executable, "-m", "lockstep", "demo", "--dir", str(sandbox),
                           "--scenario", "version-mismatch"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert demo.returncode == 1, demo.stderr
    hint = demo.stderr.split("To run the gate there again", 1)[1].splitlines()[1:]
    commands = [line[2:] for line in hint if line.startswith("  ")]
    assert len(commands) == 2 and commands[0].endswith(" &"), demo.stderr
    # Exactly as printed, in a shell started in the repository: the stubs it starts serve
    # each repository's main, so this time the gate promotes.
    script = "\n".join([*commands, "code=$?", 'kill "$!"', 'exit "$code"'])
    rerun = subprocess.Popen(["bash", "-c", script], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = rerun.communicate(timeout=120)
    finally:
        with contextlib.suppress(ProcessLookupError):  # the stubs too, if the script did not stop them
            os.killpg(rerun.pid, signal.SIGKILL)
    assert rerun.returncode == 0, out + err
    assert "✅ promoted" in out and "command not found" not in err and "No module named" not in err


@pytest.mark.parametrize("existing", [False, True])
def test_a_dir_the_demo_cannot_use_is_one_line_exit_2(tmp_path: Path, existing: bool) -> None:
    """--dir under a regular file (cannot be created) or holding a sandbox: one line naming --dir."""
    if existing:
        target = tmp_path / "sandbox"
        target.mkdir()
        (target / "lockstep.toml").write_text("")
    else:
        (tmp_path / "a-file").write_text("")
        target = tmp_path / "a-file" / "sandbox"
    proc = subprocess.run([sys.executable, "-m", "lockstep", "demo", "--dir", str(target)],
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 2, proc.stderr
    [line] = proc.stderr.strip().splitlines()
    assert line.startswith(f"lockstep: --dir {target}") and "internal error" not in line

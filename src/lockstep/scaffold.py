"""``lockstep init``: turn answers into ``lockstep.toml`` and a gate workflow, and write them safely.

Everything here is pure text generation plus one writer:

* :func:`parse_service`, :func:`parse_check`, ... turn flag values into an
  :class:`InitSpec`, raising :class:`UsageError` naming the flag at fault.
* :func:`render_config` writes TOML by hand (no TOML writer is a dependency)
  with every string escaped by :func:`toml_string`; :func:`check_rendered`
  proves the result loads with :func:`lockstep.config.parse_config`.
* :func:`render_workflow` adapts ``examples/github/lockstep.yml``: no user text
  reaches it except names that already matched strict patterns (the gate
  name, environment variable names) and the install spec, which is checked
  against a conservative character set.  No ``${{ }}`` appears in a ``run:``.
* :func:`write_files` refuses to replace anything without ``force`` and checks
  every path before writing the first, so a refusal writes nothing.
"""

from __future__ import annotations

import os
import re
import shlex
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from lockstep.errors import UsageError
from lockstep.redact import READ_TOKEN_VARS

__all__ = [
    "CONFIG_NAME",
    "DEFAULT_LOCKSTEP_SPEC",
    "EVENT_TYPE",
    "WORKFLOW_PATH",
    "CheckSpec",
    "InitSpec",
    "ServiceSpec",
    "check_rendered",
    "config_variables",
    "parse_check",
    "parse_service",
    "parse_staging_url",
    "render_config",
    "render_dispatch_job",
    "render_next_steps",
    "render_workflow",
    "toml_string",
    "write_files",
]

CONFIG_NAME = "lockstep.toml"
WORKFLOW_PATH = Path(".github") / "workflows" / "lockstep.yml"
EVENT_TYPE = "staging-deployed"
DEFAULT_LOCKSTEP_SPEC = (
    "lockstep @ git+https://github.com/OWNER/lockstep@0123456789abcdef0123456789abcdef01234567"
)
DEFAULT_TRACKER_FILE = "lockstep-audit.md"
CHECK_TIMEOUT_MINUTES = 20
HEALTH_TIMEOUT_MINUTES = 5

# What each token needs for the config init writes (github forge, promotion records on the
# tracker repository's lockstep/records branch): pushes move refs; reads see branches and
# compares, and on the tracker's repository write the records file and the audit comment.
# Every text init prints or writes says exactly this, in the words of GitHub's token settings;
# tests/test_permissions.py derives it from the requests of real runs.
PUSH_PERMISSIONS = "Contents: read and write"
READ_PERMISSIONS = (
    "Contents: read on every service repository, "
    "Contents: read and write and Issues: read and write on the tracker's repository"
)

NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
_VAR_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_REPO_RE = re.compile(r"[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+")
_SPEC_RE = re.compile(r"[A-Za-z0-9 @:/._+=~<>!,\[\]-]+")
_SECRET_WORDS = frozenset(
    {"TOKEN", "SECRET", "PASSWORD", "PASSWD", "KEY", "CREDENTIAL", "CREDENTIALS", "PAT"}
)
_RUNNER_PREFIXES = ("GITHUB_", "RUNNER_", "ACTIONS_")


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    repo: str
    staging_url: str | None = None  # None: "${<SLUG>_STAGING_URL}"

    @property
    def slug(self) -> str:
        """``Backend-Service`` → ``BACKEND_SERVICE``; a leading digit gets ``SVC_``."""
        slug = re.sub(r"[^A-Z0-9]+", "_", self.name.upper()).strip("_")
        return f"SVC_{slug}" if slug[:1].isdigit() else slug

    @property
    def token_env(self) -> str:
        return f"PROD_PUSH_TOKEN_{self.slug}"

    @property
    def staging_base(self) -> str:
        return self.staging_url if self.staging_url is not None else f"${{{self.slug}_STAGING_URL}}"


@dataclass(frozen=True)
class CheckSpec:
    name: str
    argv: tuple[str, ...]


@dataclass(frozen=True)
class InitSpec:
    name: str
    forge: str  # "git" | "github"
    services: tuple[ServiceSpec, ...]
    source: str = "main"
    target: str = "prod"
    checks: tuple[CheckSpec, ...] = ()
    tracker: str | None = None
    health_path: str = "/health"
    version_path: str = "/version"
    runbook_url: str | None = None
    lockstep_spec: str = DEFAULT_LOCKSTEP_SPEC


# --------------------------------------------------------------------------- parsing flag values


def check_name(value: str, where: str) -> str:
    """A gate, service or check name as the config accepts it."""
    if not NAME_RE.fullmatch(value):
        raise UsageError(
            f"{where}: {value!r:.80} is not a valid name (letters, digits, '.', '_' or '-', "
            "starting with a letter or digit, at most 100)"
        )
    return value


def _split_pair(value: str, flag: str, what: str) -> tuple[str, str]:
    name, sep, rest = value.partition("=")
    name, rest = name.strip(), rest.strip()
    if not sep or not name or not rest:
        raise UsageError(f"{flag}: expected NAME={what}, got {value!r:.80}")
    return name, rest


def is_remote_url(repo: str) -> bool:
    """A git URL (``scheme://``) or scp-like ``user@host:path``, as the git forge tells them apart."""
    return bool(re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", repo) or re.match(r"^[^/]+@[^:/]+:", repo))


def parse_service(value: str, forge: str, *, cwd: Path, config_dir: Path) -> ServiceSpec:
    """``NAME=REPO``; github repos must be ``OWNER/NAME``; local git paths are rebased onto the config."""
    name, repo = _split_pair(value, "--service", "REPO")
    check_name(name, f"--service {name}")
    if forge == "github":
        if not _REPO_RE.fullmatch(repo) or any(p in (".", "..") for p in repo.split("/")):
            raise UsageError(
                f"--service {name}: expected a GitHub repository as OWNER/NAME, got {repo!r:.80} "
                "(use --forge git for a path or git URL)"
            )
    else:
        repo = rebase_path(repo, cwd=cwd, config_dir=config_dir)
    return ServiceSpec(name, repo)


def rebase_path(path: str, *, cwd: Path, config_dir: Path) -> str:
    """A local path typed relative to ``cwd``, rewritten relative to the config's directory."""
    if is_remote_url(path) or "${" in path or os.path.isabs(path):
        return path
    absolute = (cwd / path).resolve()
    try:
        return os.path.relpath(absolute, config_dir.resolve())
    except ValueError:  # another drive (Windows)
        return str(absolute)


def parse_staging_url(value: str, services: Sequence[ServiceSpec]) -> tuple[str, str]:
    """``NAME=URL`` for a known service; the URL is a base (``/health`` is appended)."""
    name, url = _split_pair(value, "--staging-url", "URL")
    if name not in {s.name for s in services}:
        known = ", ".join(s.name for s in services)
        raise UsageError(f"--staging-url {name}: no such service (services: {known})")
    return name, check_staging_url(url, f"--staging-url {name}")


def check_staging_url(url: str, where: str) -> str:
    url = url.strip().rstrip("/")
    if '"' in url or "\\" in url or any(ord(c) < 0x21 or ord(c) == 0x7F for c in url):
        raise UsageError(f"{where}: {url!r:.80} is not a URL")
    if not url.startswith("${"):
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise UsageError(f"{where}: must be an http:// or https:// URL, got {url!r:.80}")
        if parts.query or parts.fragment:
            raise UsageError(f"{where}: give the base URL without ?query or #fragment, got {url!r:.80}")
    return url


def parse_check(value: str) -> CheckSpec:
    """``NAME=ARGV``: ARGV is split like a shell would (shlex) but is never run by one."""
    name, command = _split_pair(value, "--check", "COMMAND")
    check_name(name, f"--check {name}")
    try:
        argv = shlex.split(command)
    except ValueError as exc:
        raise UsageError(f"--check {name}: cannot split {command!r:.80}: {exc}") from None
    if not argv:
        raise UsageError(f"--check {name}: the command is empty")
    return CheckSpec(name, tuple(argv))


def check_branch_name(value: str, flag: str) -> str:
    from lockstep.forges.github.forge import check_branch

    return check_branch(value, flag)


def check_path_suffix(value: str, flag: str) -> str:
    if not value.startswith("/") or any(ord(c) <= 0x20 or c in '"\\#?' for c in value):
        raise UsageError(f"{flag}: expected a URL path such as /health, got {value!r:.80}")
    return value


def check_tracker(value: str, forge: str, *, cwd: Path, config_dir: Path) -> str:
    value = value.strip()
    if forge == "github":
        if "${" not in value:
            from lockstep.forges.github.forge import parse_tracker

            try:
                parse_tracker(value)
            except UsageError as exc:
                raise UsageError(f"--tracker: {str(exc).removeprefix('bypass.tracker: ')}") from None
        return value
    if not value:
        raise UsageError("--tracker: give a file path for the git forge's audit log")
    return rebase_path(value, cwd=cwd, config_dir=config_dir)


def check_lockstep_spec(value: str) -> str:
    if not _SPEC_RE.fullmatch(value):
        raise UsageError(
            f"--lockstep-spec: {value!r:.100} contains characters not allowed in the workflow "
            "(use a pip requirement such as 'lockstep @ git+https://github.com/OWNER/lockstep@SHA')"
        )
    return value


# --------------------------------------------------------------------------- TOML


def toml_string(value: str) -> str:
    """A TOML basic string: quote, backslash and every control character escaped."""
    out = ['"']
    for ch in value:
        code = ord(ch)
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\r":
            out.append("\\r")
        elif code < 0x20 or code == 0x7F:
            out.append(f"\\u{code:04X}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def _line(key: str, value: str, comment: str = "") -> str:
    text = f"{key} = {value}"
    if comment:
        text = f"{text:<36} # {comment}"
    return text


def render_config(spec: InitSpec) -> str:
    """``lockstep.toml`` text for ``spec`` (commented, in the example's style)."""
    github = spec.forge == "github"
    lines = [
        "# lockstep.toml, written by `lockstep init`. Reference: docs/setup.md and the README.",
        "# ${VAR} is filled by lockstep from its environment (never by a shell); run",
        "# `lockstep validate` to see that every variable and token it needs is set.",
        "",
        "[gate]",
        _line("name", toml_string(spec.name),
              "names the lock and the summary" + (" (and the concurrency group)" if github else "")),
        _line("forge", toml_string(spec.forge),
              "github: REST API; git: any git remote (path, file://, ssh, https)"),
    ]
    if spec.runbook_url:
        lines.append(_line("runbook_url", toml_string(spec.runbook_url), "linked from split warnings"))
    lines += [
        _line("health_timeout", toml_string(f"{HEALTH_TIMEOUT_MINUTES}m"),
              "wait this long for every health URL"),
        _line("health_interval", toml_string("5s")),
        "",
        "[bypass]",
    ]
    if spec.tracker:
        lines.append(_line(
            "tracker", toml_string(spec.tracker),
            "issue: one audit comment per bypass, before any push" if github
            else "file (relative to this one): one audit record per bypass, before any push",
        ))
    else:
        lines.append("# tracker = ...                    # needed before `lockstep run --skip-gate` can work")
    lines.append(_line("allowed_actors", "[]", "empty: anyone who can start a run"))
    for i, svc in enumerate(spec.services):
        lines += [
            "",
            "[[services]]" + (" " * 25 + "# promoted in this order" if i == 0 else ""),
            _line("name", toml_string(svc.name)),
            _line("repo", toml_string(svc.repo),
                  "OWNER/NAME" if github else "path (relative to this file) or git URL"),
            _line("source", toml_string(spec.source), "promoted from"),
            _line("target", toml_string(spec.target), "promoted to (fast-forward only)"),
        ]
        if github:
            lines.append(_line("token_env", toml_string(svc.token_env),
                               f"secret, this repo only: {PUSH_PERMISSIONS}"))
        lines += [
            _line("health_url", toml_string(svc.staging_base + spec.health_path), "polled until HTTP 200"),
            _line("version_url", toml_string(svc.staging_base + spec.version_path),
                  "must report the exact source sha"),
            _line("version_field", toml_string("sha"), 'dotted path into the JSON, e.g. "build.commit"'),
        ]
    for i, check in enumerate(spec.checks):
        lines += [
            "",
            "[[checks]]" + (" " * 27 + "# run in order after health + version pass" if i == 0 else ""),
            _line("name", toml_string(check.name)),
            _line("run", "[" + ", ".join(toml_string(a) for a in check.argv) + "]", "argv, never a shell"),
            _line("timeout", toml_string(f"{CHECK_TIMEOUT_MINUTES}m")),
        ]
    if not spec.checks:
        lines += [
            "",
            "# [[checks]]                         # run in order after health + version pass",
            '# name = "e2e"',
            '# run = ["npm", "run", "test:e2e"]   # argv, never a shell',
            '# timeout = "20m"',
        ]
    return "\n".join(lines) + "\n"


def config_variables(config_text: str) -> list[str]:
    """Every ``${VAR}`` the config references, in order of first use (comments ignored)."""
    import tomllib

    raw = tomllib.loads(config_text)
    seen: dict[str, None] = {}

    def walk(value: object) -> None:
        if isinstance(value, str):
            for name in _VAR_RE.findall(value):
                seen.setdefault(name, None)
        elif isinstance(value, list):
            for item in value:
                walk(item)
        elif isinstance(value, dict):
            for item in value.values():
                walk(item)

    walk(raw)
    return list(seen)


def check_rendered(config_text: str, config_dir: Path) -> None:
    """The written config must load once its variables are set; UsageError otherwise."""
    from lockstep.config import parse_config
    from lockstep.errors import ConfigError

    placeholder = dict.fromkeys(config_variables(config_text), "https://staging.invalid")
    try:
        parse_config(config_text, env=placeholder, source=CONFIG_NAME, base_dir=config_dir)
    except ConfigError as exc:
        raise UsageError(f"the answers do not make a valid config:\n{exc}") from None


# --------------------------------------------------------------------------- the workflow


def _is_secret(name: str, token_vars: set[str]) -> bool:
    """Push tokens, and names with a part such as ``TOKEN`` or ``KEY`` (``E2E_API_KEY``)."""
    return name in token_vars or any(part in _SECRET_WORDS for part in name.upper().split("_"))


def workflow_env(spec: InitSpec, config_text: str) -> list[tuple[str, str]]:
    """The gate step's ``env:``: the read token, every push token (secrets) and every ``${VAR}``."""
    token_vars = {s.token_env for s in spec.services}
    env = [("GITHUB_TOKEN", "${{ secrets.LOCKSTEP_READ_TOKEN || github.token }}")]
    env += [(s.token_env, f"${{{{ secrets.{s.token_env} }}}}") for s in spec.services]
    for name in config_variables(config_text):
        if name in token_vars or name.startswith(_RUNNER_PREFIXES) or name in READ_TOKEN_VARS:
            continue
        kind = "secrets" if _is_secret(name, token_vars) else "vars"
        env.append((name, f"${{{{ {kind}.{name} }}}}"))
    return env


def render_workflow(spec: InitSpec, config_text: str) -> str:
    """``.github/workflows/lockstep.yml`` for ``spec`` (adapted from ``examples/github/lockstep.yml``)."""
    timeout = HEALTH_TIMEOUT_MINUTES + CHECK_TIMEOUT_MINUTES * len(spec.checks) + 20
    env_lines = "\n".join(f"          {k}: {v}" for k, v in workflow_env(spec, config_text))
    spec_value = spec.lockstep_spec.replace("\\", "\\\\").replace('"', '\\"')
    return f"""\
# The lockstep gate, written by `lockstep init` (see docs/setup.md).
#
# Each service's staging deploy sends a `{EVENT_TYPE}` repository_dispatch (the
# job `lockstep init` printed); a person can also start a run by hand, optionally
# as an audited bypass. lockstep re-resolves every head itself: the dispatch
# payload is only logged, so a stale dispatch can never regress prod.
name: lockstep gate {spec.name}

on:
  repository_dispatch:
    types: [{EVENT_TYPE}]
  workflow_dispatch:
    inputs:
      skip_gate:
        description: Bypass health, version and checks (audited before any push)
        type: boolean
        default: false
      justification:
        description: Required when skip_gate=true; ignored otherwise
        type: string
        required: false

# One gate run at a time. Never cancel a running gate: a cancel between two
# pushes is exactly what splits prod. A newer dispatch replaces the *pending*
# run, which is fine because every run re-reads the newest heads when it starts.
concurrency:
  group: lockstep-{spec.name}
  cancel-in-progress: false

# Least privilege for the workflow's own GITHUB_TOKEN. It can only see this
# repository, so reading the service repositories needs the secret
# LOCKSTEP_READ_TOKEN (a fine-grained PAT: Contents: read on each service
# repository, Contents: read and write and Issues: read and write on the bypass
# tracker's repository). Without that secret the workflow token stands in, which
# works only when the services and the tracker live in this repository, so it
# gets the same: `contents: write` for the promotion records (the file on the
# lockstep/records branch), `issues: write` for the bypass audit comment.
# Prod pushes never use either: each service has its own PROD_PUSH_TOKEN_*.
permissions:
  contents: write
  issues: write

jobs:
  promote:
    runs-on: ubuntu-latest
    # health ({HEALTH_TIMEOUT_MINUTES}m) + checks ({CHECK_TIMEOUT_MINUTES}m each) + pushes, with margin.
    # On timeout the runner cancels like a person would: lockstep writes its report within seconds.
    timeout-minutes: {timeout}
    steps:
      - name: Check out lockstep.toml and the check suites
        uses: actions/checkout@v4
        with:
          persist-credentials: false

      # Add the steps your checks need here (actions/setup-node, npm ci, ...).

      - name: Set up Python
        uses: actions/setup-python@v5
        with:
          python-version: "3.12"

      # Pin lockstep to a commit. Do not `pip install lockstep`: that name on
      # PyPI is an unrelated project.
      - name: Install lockstep
        env:
          LOCKSTEP_SPEC: "{spec_value}"
        run: python -m pip install --disable-pip-version-check -- "$LOCKSTEP_SPEC"

      # Secrets and variables reach lockstep through env: only; lockstep reads
      # skip_gate/justification from the event, masks every token before
      # printing anything, and writes the summary and the step outputs.
      - name: Run the gate
        id: lockstep
        env:
{env_lines}
        # exec: on cancellation the runner signals this shell; it must be lockstep.
        run: exec lockstep run --config {CONFIG_NAME} --report "$RUNNER_TEMP/lockstep-report.json"

      - name: Keep the JSON report
        if: always()
        uses: actions/upload-artifact@v4
        with:
          name: lockstep-report
          path: ${{{{ runner.temp }}}}/lockstep-report.json
          if-no-files-found: warn
"""


def render_dispatch_job(event_type: str = EVENT_TYPE) -> str:
    """The ``notify-gate`` job to paste into each service's staging deploy workflow."""
    return f"""\
  # After a successful staging deploy, tell the gate. Needs, in this service's
  # repository: the secret LOCKSTEP_DISPATCH_TOKEN (fine-grained PAT on the gate
  # repository only, "Contents: read and write") and the variable
  # LOCKSTEP_GATE_REPO (the gate repository, OWNER/NAME).
  notify-gate:
    needs: deploy-staging   # your staging deploy job
    runs-on: ubuntu-latest
    timeout-minutes: 5
    steps:
      - name: Send {event_type} to the gate
        env:
          GH_TOKEN: ${{{{ secrets.LOCKSTEP_DISPATCH_TOKEN }}}}
          LOCKSTEP_GATE_REPO: ${{{{ vars.LOCKSTEP_GATE_REPO }}}}
        # -f sends each value as a literal string (never -F: it converts types and reads @files).
        run: |
          set -euo pipefail
          if [[ ! "$LOCKSTEP_GATE_REPO" =~ ^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$ ]]; then
            echo "::error title=lockstep::set the repository variable LOCKSTEP_GATE_REPO to OWNER/REPO" >&2
            exit 1
          fi
          gh api --method POST "repos/$LOCKSTEP_GATE_REPO/dispatches" \\
            -f event_type={event_type} \\
            -f "client_payload[repo]=$GITHUB_REPOSITORY" \\
            -f "client_payload[sha]=$GITHUB_SHA" \\
            -f "client_payload[run_url]=$GITHUB_SERVER_URL/$GITHUB_REPOSITORY/actions/runs/$GITHUB_RUN_ID"
"""


def render_next_steps(spec: InitSpec, config_text: str) -> str:
    """What to set up after ``init``: secrets, variables, the tracker, then validate and plan."""
    variables = config_variables(config_text)
    lines = ["", "Next steps:"]
    if spec.forge == "github":
        token_vars = {s.token_env for s in spec.services}
        secrets = [
            f"  secret {s.token_env}: fine-grained PAT on {s.repo} only, {PUSH_PERMISSIONS}"
            for s in spec.services
        ]
        secrets.append(f"  secret LOCKSTEP_READ_TOKEN: fine-grained PAT, {READ_PERMISSIONS}")
        env = dict(workflow_env(spec, config_text))
        plain = [n for n in variables if n not in token_vars and n in env]
        lines += [
            "1. In this (the gate) repository's settings, create:",
            *secrets,
            *(f"  {'secret' if 'secrets.' in env[n] else 'variable'} {n}" for n in plain),
            f"2. Protect each {spec.target!r} branch with a ruleset only the push tokens' owner may bypass.",
        ]
        if not spec.tracker:
            lines.append("3. Create a bypass tracker issue and set [bypass] tracker = \"OWNER/REPO#N\".")
        else:
            lines.append(f"3. Make sure the tracker issue {spec.tracker} exists.")
        lines += [
            "4. Replace LOCKSTEP_SPEC in the workflow with a pinned lockstep commit (--lockstep-spec)."
            if spec.lockstep_spec == DEFAULT_LOCKSTEP_SPEC else "4. The workflow installs "
            + spec.lockstep_spec,
            "5. Paste the job below into each service's staging deploy workflow.",
            "6. Locally, with the same variables exported: lockstep validate && lockstep plan",
        ]
    else:
        if variables:
            lines.append("1. Export: " + ", ".join(variables))
        lines.append(f"{2 if variables else 1}. Check it: lockstep validate && lockstep plan")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- writing


def write_files(directory: Path, files: Mapping[Path, str], *, force: bool) -> list[Path]:
    """Write ``files`` (relative paths) under ``directory``; refuse to replace anything unless ``force``.

    Every path is checked before the first is written, so a refusal writes
    nothing.  Each file is written to a temporary name and renamed into place.
    """
    targets = [directory / rel for rel in files]
    for path in targets:
        if os.path.lexists(path):
            if path.is_dir():
                raise UsageError(f"{path}: is a directory")
            if not force:
                raise UsageError(f"{path} already exists (pass --force to overwrite it)")
    for path in targets:  # every directory first: a --dir that cannot exist stops before any file
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            problem = exc.strerror or exc
            raise UsageError(f"cannot create {path.parent}: {problem}; nothing was written") from None
    written: list[Path] = []
    for path, text in zip(targets, files.values(), strict=True):
        try:
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        except OSError as exc:
            done = ", ".join(str(p) for p in written) or "nothing"
            raise UsageError(f"cannot write {path}: {exc.strerror or exc} (written: {done})") from None
        try:
            with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as handle:
                handle.write(text)
            os.chmod(tmp, 0o644)
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        written.append(path)
    return written

"""``lockstep validate``: the config and the environment it needs, checked without contacting anything.

What is checked (each problem is one line naming the key or variable to fix):

* the config itself (:func:`lockstep.config.load_config`): TOML, keys, types,
  and every ``${VAR}``; when only variables are missing, the rest of the
  checks still run (with a placeholder) so one pass lists everything;
* github forge: ``GITHUB_TOKEN``/``GH_TOKEN``, every service's ``token_env``,
  repository and branch names, ``GITHUB_API_URL``, and the tracker as
  ``OWNER/REPO#N``; finally :meth:`GitHubForge.from_env` itself is built over a
  transport that refuses every request, then closed;
* git forge: ``git`` on ``PATH``, each local repository exists and is a git
  repository (remote URLs are not contacted), the tracker file's directory,
  and that the tracker and its ``.jsonl`` twin are regular files if they exist
  (never symbolic links: :func:`lockstep.audit.tracker_problem`);
* checks: ``argv[0]`` on ``PATH`` (or, with a ``/``, an executable file
  relative to the config), and no token value spelled into a check or a URL.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

from lockstep.audit import tracker_problem
from lockstep.config import Config, load_config
from lockstep.errors import ConfigError, UsageError
from lockstep.redact import READ_TOKEN_VARS, token_vars

__all__ = ["Validation", "validate"]

_PLACEHOLDER = "https://lockstep-unset.invalid"
_MISSING_RE = re.compile(r"environment variable ([A-Za-z_][A-Za-z0-9_]*) is not set$")


@dataclass
class Validation:
    """What ``validate`` found: problems fail it (exit 2), warnings do not."""

    source: str
    config: Config | None = None
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def problem(self, text: str) -> None:
        line = f"{self.source}: {text}"
        if line not in self.problems:
            self.problems.append(line)

    def warning(self, text: str) -> None:
        self.warnings.append(f"{self.source}: {text}")

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        config = self.config
        if config is None:
            return f"{self.source}: not loaded"
        n_services, n_checks = len(config.services), len(config.checks)
        return (
            f"{self.source}: gate {config.gate.name!r}, {config.gate.forge} forge, "
            f"{n_services} service{'s' if n_services != 1 else ''}, "
            f"{n_checks} check{'s' if n_checks != 1 else ''}; every variable, token and command "
            "it needs is present (nothing was contacted)"
        )


def validate(path: Path, env: Mapping[str, str]) -> Validation:
    """Check ``path`` and ``env``; never opens a connection or runs a check."""
    result = Validation(str(path))
    config = _load(path, env, result)
    if config is None:
        return result
    result.config = config
    if config.gate.forge == "github":
        _github(config, env, result)
    else:
        _git(config, env, result)
    _checks(config, env, result)
    _misplaced_secrets(config, env, result)
    return result


def _load(path: Path, env: Mapping[str, str], result: Validation) -> Config | None:
    try:
        return load_config(path, env)
    except ConfigError as exc:
        lines = str(exc).splitlines()
    missing: list[str] = []
    for line in lines:
        match = _MISSING_RE.search(line)
        if match is None:
            result.problems.extend(lines)  # structural problems: report exactly load_config's lines
            return None
        missing.append(match.group(1))
    result.problems.extend(lines)
    try:  # only variables are missing: check the rest with placeholders, to list everything at once
        return load_config(path, {**env, **dict.fromkeys(missing, _PLACEHOLDER)})
    except ConfigError:
        return None


def _unset(value: str) -> bool:
    return _PLACEHOLDER in value


# --------------------------------------------------------------------------- github


def _github(config: Config, env: Mapping[str, str], result: Validation) -> None:
    from lockstep.forges.github.forge import check_branch, parse_repo, parse_tracker

    before = len(result.problems)
    if not any(env.get(var, "").strip() for var in READ_TOKEN_VARS):
        result.problem(
            "environment variable GITHUB_TOKEN (or GH_TOKEN) is not set: the github forge reads "
            "branches and posts the bypass audit comment with it"
        )
    for var in token_vars(config):
        value = env.get(var, "").strip()
        if value and not re.fullmatch(r"[\x21-\x7e]+", value):
            result.problem(f"environment variable {var} holds characters a token cannot contain")
    for i, service in enumerate(config.services):
        where = f"services[{i}] ({service.name})"
        try:
            parse_repo(service.repo, f"{where}.repo")
        except UsageError as exc:
            result.problem(str(exc))
        for role, branch in (("source", service.source), ("target", service.target)):
            try:
                check_branch(branch, f"{where}.{role}")
            except UsageError as exc:
                result.problem(str(exc))
        if not service.token_env:
            result.problem(f"{where}.token_env: required for the github forge (the environment variable "
                           f"holding a token that may push {service.repo})")
        elif not env.get(service.token_env, "").strip():
            result.problem(f"environment variable {service.token_env} is not set "
                           f"({where}.token_env: the token that pushes {service.repo})")
    tracker = config.bypass.tracker
    if not tracker:
        result.warning("bypass.tracker is not set: `lockstep run --skip-gate` will be refused")
    elif not _unset(tracker):
        try:
            parse_tracker(tracker)
        except UsageError as exc:
            result.problem(str(exc))
    if len(result.problems) == before:
        _build_forge_offline(config, env, result)


def _build_forge_offline(config: Config, env: Mapping[str, str], result: Validation) -> None:
    """What ``run`` would do first: build the forge from the environment, over a transport that
    refuses every request (so a check that slipped through could never reach the network)."""
    import asyncio

    import httpx

    from lockstep.forges.github.forge import GitHubForge

    class NoNetwork(httpx.AsyncBaseTransport):
        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            raise httpx.ConnectError("lockstep validate never contacts anything", request=request)

    try:
        forge = GitHubForge.from_env(config, env, transport=NoNetwork())
    except UsageError as exc:
        result.problem(str(exc))
        return
    asyncio.run(forge.aclose())


# --------------------------------------------------------------------------- git


def _git(config: Config, env: Mapping[str, str], result: Validation) -> None:
    from lockstep.scaffold import is_remote_url

    if shutil.which("git", path=env.get("PATH")) is None:
        result.problem("git is not on PATH: the git forge runs the git command")
    for i, service in enumerate(config.services):
        where = f"services[{i}] ({service.name}).repo"
        repo = service.repo
        if _unset(repo):
            continue
        if repo.startswith("file://"):
            local = Path(unquote(urlsplit(repo).path))
        elif is_remote_url(repo):
            continue  # a remote: `lockstep plan` reads it
        else:
            local = (config.base_dir / repo).resolve()
        if not local.exists():
            result.problem(f"{where}: {local} does not exist")
        elif not _is_git_repo(local):
            result.problem(f"{where}: {local} is not a git repository")
    tracker = config.tracker_path()
    if tracker is None:
        result.warning("bypass.tracker is not set: `lockstep run --skip-gate` will be refused")
    elif not _unset(str(config.bypass.tracker)):
        problem = tracker_problem(tracker)
        if problem:
            result.problem(f"bypass.tracker: {problem}")
        elif not tracker.parent.is_dir():
            result.problem(f"bypass.tracker: directory {tracker.parent} does not exist")


def _is_git_repo(path: Path) -> bool:
    if (path / ".git").exists():
        return True
    return (path / "HEAD").is_file() and (path / "objects").is_dir() and (path / "refs").is_dir()


# --------------------------------------------------------------------------- checks


def _checks(config: Config, env: Mapping[str, str], result: Validation) -> None:
    for i, check in enumerate(config.checks):
        if check.external is not None:
            continue  # a GitHub status or check run: nothing to find on this machine
        where = f"checks[{i}] ({check.name}).run"
        program = check.run[0]
        if _unset(program):
            continue
        if "/" in program:  # relative to the config's directory, where checks run
            path = config.base_dir / program
            if not path.is_file():
                result.problem(f"{where}: {program} not found (relative to {config.base_dir})")
            elif not os.access(path, os.X_OK):
                result.problem(f"{where}: {program} is not executable")
        elif shutil.which(program, path=env.get("PATH")) is None:
            result.problem(f"{where}: {program} not found on PATH")


def _misplaced_secrets(config: Config, env: Mapping[str, str], result: Validation) -> None:
    """What ``run`` refuses before anything else: a token in a URL, or in a check."""
    from lockstep.engine.prepare import refuse_secrets_in_checks, refuse_secrets_in_urls
    from lockstep.redact import check_secret_vars

    try:
        refuse_secrets_in_urls(config, env)
    except UsageError as exc:
        result.problem(str(exc))
    try:
        refuse_secrets_in_checks(config, check_secret_vars(config), env)
    except UsageError as exc:
        result.problem(str(exc))

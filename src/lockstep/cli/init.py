"""``lockstep init``: write lockstep.toml (and the GitHub workflow) from a few answers.

Only click (and :mod:`lockstep.errors`, which imports nothing) is imported
here; each command imports what it needs when it runs, so ``lockstep --help``
stays fast.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from lockstep.cli.common import errors, usage
from lockstep.errors import LockstepError

INIT_EPILOG = """\b
Examples:
  lockstep init
  lockstep init --non-interactive --name bs-lml --forge github \\
      --service Backend-Service=OWNER/Backend-Service \\
      --service library-metadata-lookup=OWNER/library-metadata-lookup \\
      --check "e2e=npm run test:e2e" --tracker "OWNER/gate-repo#42"
  lockstep init --forge git --name demo --service api=../repos/api.git \\
      --staging-url api=http://127.0.0.1:8001 --dir gate

\b
Exit codes: 0 written; 2 a missing or bad answer, or a file that already
exists (nothing is written); 130 Ctrl-C or Ctrl-D at a prompt (nothing is
written).
"""

def stdin_is_tty() -> bool:
    """Whether ``init`` may ask questions (tests replace this)."""
    try:
        return sys.stdin.isatty()
    except (AttributeError, ValueError):
        return False


class PromptCancelled(LockstepError):
    """Ctrl-C or Ctrl-D at a prompt: the person chose to stop, so no traceback and no 'internal error'."""

    exit_code = 130  # 128 + SIGINT, what a shell reports for an interrupted command


def _prompt(text: str, **kwargs: Any) -> str:
    """``click.prompt``, where Ctrl-C or Ctrl-D (click's Abort) ends init with one line and exit 130."""
    try:
        return str(click.prompt(text, **kwargs))
    except click.Abort:
        click.echo(err=True)  # the prompt left the cursor at the end of its line
        raise PromptCancelled("init cancelled at a prompt: nothing was written") from None


class _Asker:
    """Prompts when interactive (re-asking after a bad answer); otherwise names the missing flag (exit 2)."""

    def __init__(self, interactive: bool) -> None:
        self.interactive = interactive

    def ask(self, flag: str, text: str, default: str | None = None,
            check: Callable[[str], object] | None = None, **kwargs: Any) -> str:
        from lockstep.errors import UsageError

        if not self.interactive:
            if default is not None:
                return default
            raise UsageError(f"missing {flag} (no terminal to ask on; pass it, or run init in a terminal)")
        if check is not None:
            kwargs["value_proc"] = _checked(check)
        return _prompt(text, default=default, **kwargs).strip()

    def ask_optional(self, text: str, check: Callable[[str], object] | None = None) -> str:
        if not self.interactive:
            return ""
        proc = _checked(check, allow_empty=True) if check is not None else None
        return _prompt(text, default="", show_default=False, value_proc=proc).strip()


def _checked(check: Callable[[str], object], allow_empty: bool = False) -> Callable[[str], str]:
    """A click ``value_proc``: a lockstep UsageError becomes click's "Error: ..." and a new prompt."""

    def proc(value: str) -> str:
        from lockstep.errors import UsageError

        value = value.strip()
        if allow_empty and not value:
            return value
        try:
            check(value)
        except UsageError as exc:
            raise click.BadParameter(str(exc)) from None
        return value

    return proc



@click.command(epilog=INIT_EPILOG)
@click.option("--dir", "directory", type=click.Path(file_okay=False, path_type=Path), default=Path("."),
              show_default=True, help="Write the files under this directory (the gate repository).")
@click.option("--name", help="Gate name: the lock, the summary and the workflow's concurrency group.")
@click.option("--forge", type=click.Choice(["github", "git"]),
              help="github (REST API, OWNER/NAME repos) or git (any git remote). [default: github]")
@click.option("--service", "services", multiple=True, metavar="NAME=REPO",
              help="A service, promoted in the order given. Repeat for each.")
@click.option("--staging-url", "staging_urls", multiple=True, metavar="NAME=URL",
              help="A service's staging base URL (default: ${<NAME>_STAGING_URL} from the environment).")
@click.option("--source", help="Branch promoted from. [default: main]")
@click.option("--target", help="Branch promoted to. [default: prod]")
@click.option("--check", "checks", multiple=True, metavar="NAME=COMMAND",
              help="A check run after health and version pass; COMMAND is split into argv like a "
              "shell would, never run by one. Repeat for each.")
@click.option("--tracker",
              help="Bypass audit: OWNER/REPO#N (github) or a file (git). "
              "[git default: lockstep-audit.md]")
@click.option("--health-path", default="/health", show_default=True,
              help="Appended to each staging URL.")
@click.option("--version-path", default="/version", show_default=True,
              help="Appended to each staging URL.")
@click.option("--runbook-url", help="Linked from split warnings.")
@click.option("--lockstep-spec", metavar="REQUIREMENT",
              help="What the workflow pip-installs (pin a commit), e.g. "
              "'lockstep @ git+https://github.com/OWNER/lockstep@SHA'.")
@click.option("--force", is_flag=True, help="Overwrite files that already exist.")
@click.option("--non-interactive", is_flag=True,
              help="Never prompt: a missing answer is an error naming its flag "
              "(also without a terminal).")
@errors(internal_code=1)
def init(directory: Path, name: str | None, forge: str | None, services: tuple[str, ...],
         staging_urls: tuple[str, ...], source: str | None, target: str | None, checks: tuple[str, ...],
         tracker: str | None, health_path: str, version_path: str, runbook_url: str | None,
         lockstep_spec: str | None, force: bool, non_interactive: bool) -> int:
    """Write lockstep.toml (and, for GitHub, the gate workflow) from a few answers.

    Asks for what the flags do not give: the gate name, the forge, the
    services (name and repository, optionally a staging URL), the branches,
    the checks and the bypass tracker. Writes lockstep.toml and, for the
    github forge, .github/workflows/lockstep.yml (one run at a time,
    least-privilege permissions, secrets through env:, `exec lockstep
    run`), then prints the secrets and variables to create and the job to
    paste into each service's staging deploy workflow. Refuses to replace
    an existing file without --force.
    """
    from lockstep.redact import scrub
    from lockstep.scaffold import (
        CONFIG_NAME,
        DEFAULT_LOCKSTEP_SPEC,
        WORKFLOW_PATH,
        InitSpec,
        ServiceSpec,
        check_branch_name,
        check_lockstep_spec,
        check_name,
        check_path_suffix,
        check_rendered,
        check_staging_url,
        check_tracker,
        parse_check,
        parse_service,
        parse_staging_url,
        render_config,
        render_dispatch_job,
        render_next_steps,
        render_workflow,
        write_files,
    )

    asker = _Asker(interactive=not non_interactive and stdin_is_tty())
    cwd = Path.cwd()
    config_dir = directory if directory.is_absolute() else cwd / directory

    gate = check_name(name if name is not None else asker.ask(
        "--name", "Gate name", check=lambda v: check_name(v, "gate name")), "--name")
    chosen = forge or asker.ask("--forge", "Forge", default="github",
                                type=click.Choice(["github", "git"]))
    specs = [parse_service(s, chosen, cwd=cwd, config_dir=config_dir) for s in services]
    urls = dict(parse_staging_url(u, specs) for u in staging_urls)
    if not specs:
        if not asker.interactive:
            raise usage("missing --service NAME=REPO (at least one)")
        _ask_services(asker, _Where(chosen, cwd, config_dir), specs, urls)
    specs = [ServiceSpec(s.name, s.repo, urls.get(s.name)) for s in specs]
    src = check_branch_name(source or asker.ask(
        "--source", "Source branch", default="main", check=lambda v: check_branch_name(v, "source")),
        "--source")
    tgt = check_branch_name(target or asker.ask(
        "--target", "Target branch", default="prod", check=lambda v: check_branch_name(v, "target")),
        "--target")
    if src == tgt:
        raise usage(f"--source and --target are both {src!r}")
    check_specs = [parse_check(c) for c in checks]
    if not checks and asker.interactive:
        _ask_checks(asker, check_specs)
    if tracker is None:
        tracker = _ask_tracker(asker, _Where(chosen, cwd, config_dir))
    spec = InitSpec(
        name=gate,
        forge=chosen,
        services=tuple(specs),
        source=src,
        target=tgt,
        checks=tuple(check_specs),
        tracker=check_tracker(tracker, chosen, cwd=cwd, config_dir=config_dir),
        health_path=check_path_suffix(health_path, "--health-path"),
        version_path=check_path_suffix(version_path, "--version-path"),
        runbook_url=check_staging_url(runbook_url, "--runbook-url") if runbook_url else None,
        lockstep_spec=check_lockstep_spec(lockstep_spec or DEFAULT_LOCKSTEP_SPEC),
    )
    config_text = render_config(spec)
    check_rendered(config_text, config_dir)
    files = {Path(CONFIG_NAME): config_text}
    if chosen == "github":
        files[WORKFLOW_PATH] = render_workflow(spec, config_text)
    for path in write_files(config_dir, files, force=force):
        click.echo(f"wrote {_show(path, cwd)}")
    click.echo(scrub(render_next_steps(spec, config_text)), nl=False)  # a repo URL may hold a password
    if chosen == "github":
        click.echo("\n# Paste into each service's staging deploy workflow, under `jobs:`:")
        click.echo(render_dispatch_job(), nl=False)
    return 0


@dataclass(frozen=True)
class _Where:
    """What the answers are checked against: the forge, and the directories paths are relative to."""

    forge: str
    cwd: Path
    config_dir: Path


def _ask_services(asker: _Asker, where: _Where, specs: list[Any], urls: dict[str, str]) -> None:
    """Ask for services (name, repository, optional staging URL) until an empty name, at least one."""
    from lockstep.scaffold import check_name, check_staging_url, parse_service

    repo_hint = "OWNER/NAME" if where.forge == "github" else "path or git URL"

    def parse(svc: str, repo: str) -> Any:
        return parse_service(f"{svc}={repo}", where.forge, cwd=where.cwd, config_dir=where.config_dir)

    def new_service_name(value: str) -> None:
        check_name(value, "service name")
        if value in {s.name for s in specs}:
            raise usage(f"service {value!r} is already listed")

    while True:
        svc = asker.ask_optional(
            f"Service {len(specs) + 1} name" + (" (empty to finish)" if specs else ""),
            check=new_service_name,
        )
        if not svc:
            if specs:
                return
            continue
        repo = asker.ask("--service", f"  {svc} repository ({repo_hint})",
                         check=functools.partial(parse, svc))
        specs.append(parse(svc, repo))
        url = asker.ask_optional(
            f"  {svc} staging base URL (empty: ${{{specs[-1].slug}_STAGING_URL}})",
            check=lambda v: check_staging_url(v, "staging URL"),
        )
        if url:
            urls[svc] = check_staging_url(url, f"staging URL for {svc}")


def _ask_checks(asker: _Asker, check_specs: list[Any]) -> None:
    """Ask for checks (name, command) until an empty name; none is fine."""
    from lockstep.scaffold import check_name, parse_check

    def new_check_name(value: str) -> None:
        check_name(value, "check name")
        if value in {c.name for c in check_specs}:
            raise usage(f"check {value!r} is already listed")

    while True:
        check = asker.ask_optional(f"Check {len(check_specs) + 1} name (empty to finish)",
                                   check=new_check_name)
        if not check:
            return
        command = asker.ask(
            "--check", f"  {check} command (argv, split like a shell, never run by one)",
            check=_command_of(check),
        )
        check_specs.append(parse_check(f"{check}={command}"))


def _command_of(check: str) -> Callable[[str], object]:
    from lockstep.scaffold import parse_check

    return lambda value: parse_check(f"{check}={value}")


def _ask_tracker(asker: _Asker, where: _Where) -> str:
    """The bypass tracker: an issue on GitHub, a file (default next to the config) on git."""
    from lockstep.scaffold import DEFAULT_TRACKER_FILE, check_tracker

    def tracker_ok(value: str) -> None:
        check_tracker(value, where.forge, cwd=where.cwd, config_dir=where.config_dir)

    if where.forge == "github":
        return asker.ask("--tracker", "Bypass tracker issue (OWNER/REPO#N)", check=tracker_ok)
    # the default sits next to the config; typed paths are relative to here
    default_file = os.path.relpath(where.config_dir / DEFAULT_TRACKER_FILE, where.cwd)
    return asker.ask("--tracker", "Bypass audit file", default=default_file, check=tracker_ok)


def _show(path: Path, cwd: Path) -> str:
    try:
        return str(path.resolve().relative_to(cwd.resolve()))
    except ValueError:
        return str(path)

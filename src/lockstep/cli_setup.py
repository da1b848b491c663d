"""Setup commands (``init``, ``validate``, ``dispatch``), registered onto the main group.

Only click (and :mod:`lockstep.errors`, which imports nothing) is imported
here; each command imports what it needs when it runs, so ``lockstep --help``
stays fast.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

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

VALIDATE_EPILOG = """\b
Examples:
  lockstep validate
  lockstep validate --config gates/bs-lml.toml && lockstep plan --config gates/bs-lml.toml

\b
Exit codes: 0 everything needed is present; 2 one line per problem on stderr.
"""

DISPATCH_EPILOG = """\b
Examples:
  GITHUB_TOKEN=... lockstep dispatch --repo OWNER/gate-repo --event staging-deployed \\
      --field repo=OWNER/Backend-Service --field sha="$GITHUB_SHA"

\b
Exit codes: 0 sent (HTTP 204); 1 GitHub refused it (404, 422, 401, 403, ...)
or could not be reached; 2 a bad argument or missing token (nothing sent).
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


def register(group: click.Group) -> None:
    """Add the setup commands to ``group``."""
    from lockstep.cli import _errors

    @group.command(epilog=INIT_EPILOG)
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
    @_errors(internal_code=1)
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
            DEFAULT_TRACKER_FILE,
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
        repo_hint = "OWNER/NAME" if chosen == "github" else "path or git URL"
        specs = [parse_service(s, chosen, cwd=cwd, config_dir=config_dir) for s in services]
        urls = dict(parse_staging_url(u, specs) for u in staging_urls)
        if not specs:
            if not asker.interactive:
                raise _usage("missing --service NAME=REPO (at least one)")

            def new_service_name(value: str) -> None:
                check_name(value, "service name")
                if value in {s.name for s in specs}:
                    raise _usage(f"service {value!r} is already listed")

            def repo_check(svc: str) -> Callable[[str], object]:
                return lambda v: parse_service(f"{svc}={v}", chosen, cwd=cwd, config_dir=config_dir)

            while True:
                svc = asker.ask_optional(
                    f"Service {len(specs) + 1} name" + (" (empty to finish)" if specs else ""),
                    check=new_service_name,
                )
                if not svc:
                    if specs:
                        break
                    continue
                repo = asker.ask("--service", f"  {svc} repository ({repo_hint})", check=repo_check(svc))
                specs.append(parse_service(f"{svc}={repo}", chosen, cwd=cwd, config_dir=config_dir))
                url = asker.ask_optional(
                    f"  {svc} staging base URL (empty: ${{{specs[-1].slug}_STAGING_URL}})",
                    check=lambda v: check_staging_url(v, "staging URL"),
                )
                if url:
                    urls[svc] = check_staging_url(url, f"staging URL for {svc}")
        specs = [ServiceSpec(s.name, s.repo, urls.get(s.name)) for s in specs]
        src = check_branch_name(source or asker.ask(
            "--source", "Source branch", default="main", check=lambda v: check_branch_name(v, "source")),
            "--source")
        tgt = check_branch_name(target or asker.ask(
            "--target", "Target branch", default="prod", check=lambda v: check_branch_name(v, "target")),
            "--target")
        if src == tgt:
            raise _usage(f"--source and --target are both {src!r}")
        check_specs = [parse_check(c) for c in checks]
        if not checks and asker.interactive:

            def new_check_name(value: str) -> None:
                check_name(value, "check name")
                if value in {c.name for c in check_specs}:
                    raise _usage(f"check {value!r} is already listed")

            def command_check(check: str) -> Callable[[str], object]:
                return lambda v: parse_check(f"{check}={v}")

            while True:
                check = asker.ask_optional(f"Check {len(check_specs) + 1} name (empty to finish)",
                                           check=new_check_name)
                if not check:
                    break
                command = asker.ask(
                    "--check", f"  {check} command (argv, split like a shell, never run by one)",
                    check=command_check(check),
                )
                check_specs.append(parse_check(f"{check}={command}"))
        if tracker is None:
            def tracker_ok(value: str) -> None:
                check_tracker(value, chosen, cwd=cwd, config_dir=config_dir)

            if chosen == "github":
                tracker = asker.ask("--tracker", "Bypass tracker issue (OWNER/REPO#N)", check=tracker_ok)
            else:
                # the default sits next to the config; typed paths are relative to here
                default_file = os.path.relpath(config_dir / DEFAULT_TRACKER_FILE, cwd)
                tracker = asker.ask("--tracker", "Bypass audit file", default=default_file,
                                    check=tracker_ok)
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

    @group.command(epilog=VALIDATE_EPILOG)
    @click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
                  help="Config file (default: $LOCKSTEP_CONFIG, else ./lockstep.toml).")
    @_errors(internal_code=2)
    def validate(config_path: Path | None) -> int:
        """Check the config and the environment it needs, without contacting anything.

        Loads the config and checks every ${VAR}, every token variable
        (GITHUB_TOKEN or GH_TOKEN and each service's token_env for the github
        forge), the bypass tracker (OWNER/REPO#N, or a file in an existing
        directory for the git forge), that each check's program is found, and
        that local git repositories exist. Makes no network request and runs
        nothing; `lockstep plan` then shows, with the forge, what `run` would do.
        """
        from lockstep.config import config_path as resolve_path
        from lockstep.errors import UsageError
        from lockstep.redact import scrub
        from lockstep.validate import validate as run_validate

        path = resolve_path(str(config_path) if config_path else None, os.environ)
        result = run_validate(path, os.environ)
        for line in result.warnings:
            click.echo(scrub(f"lockstep: warning: {line}"), err=True)
        if not result.ok:
            raise UsageError("\n".join(result.problems))
        click.echo(scrub(result.summary()))
        click.echo("ok")
        return 0

    @group.command(epilog=DISPATCH_EPILOG)
    @click.option("--repo", required=True, metavar="OWNER/REPO",
                  help="The repository that receives the event.")
    @click.option("--event", "event_type", required=True, metavar="TYPE",
                  help="event_type (1 to 100 characters), e.g. staging-deployed.")
    @click.option("--field", "fields", multiple=True, metavar="KEY=VALUE",
                  help="A client_payload field, sent as a string (at most 10).")
    @click.option("--timeout", default=30.0, show_default=True, type=click.FloatRange(min=0.1),
                  help="Seconds to wait for GitHub.")
    @_errors(internal_code=1)
    def dispatch(repo: str, event_type: str, fields: tuple[str, ...], timeout: float) -> int:
        """Send a repository_dispatch event to a repository (what staging deploy jobs call).

        POSTs /repos/OWNER/REPO/dispatches with {"event_type": TYPE,
        "client_payload": {KEY: VALUE, ...}} using the token in $GITHUB_TOKEN
        (or $GH_TOKEN), which needs Contents: read and write on that
        repository. The API root is $GITHUB_API_URL (default
        https://api.github.com). Sent once, never retried.
        """
        from lockstep.forges.github.dispatch import build_request, send_dispatch
        from lockstep.redact import scrub

        request = build_request(repo, event_type, fields)
        click.echo(scrub(send_dispatch(request, os.environ, timeout=timeout)))
        return 0


def _usage(message: str) -> Exception:
    from lockstep.errors import UsageError

    return UsageError(message)


def _show(path: Path, cwd: Path) -> str:
    try:
        return str(path.resolve().relative_to(cwd.resolve()))
    except ValueError:
        return str(path)

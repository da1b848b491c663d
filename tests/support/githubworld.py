"""A world for CLI integration tests of the GitHub forge: the fake GitHub, staging stubs, tokens.

Two repositories, ``acme/backend`` and ``acme/metadata``, each with ``main`` two
commits ahead of ``prod``; a tracker issue ``acme/ops#7``; one read token
(``GITHUB_TOKEN``: read on both repos, write on ``acme/ops`` because the fake, like
GitHub, wants write access to post an issue comment) and one push token per
service (``PROD_PUSH_TOKEN_<SVC>``: write on its own repo only).  Tests drive
``python -m lockstep run`` as a subprocess and read the true refs, the stored
comments and the request log straight from the fake.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
from collections.abc import Iterator, Mapping
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support.cli import CliResult, lockstep_argv, run_cli
from tests.support.fakegithub import FakeGitHub, RecordedRequest
from tests.support.outputs import parse_output_file
from tests.support.staging import Staging

SRC = Path(__file__).resolve().parents[2] / "src"

GATE = "bs-lml"
TRACKER_REPO = "acme/ops"
TRACKER_ISSUE = 7
TRACKER = f"{TRACKER_REPO}#{TRACKER_ISSUE}"
READ_LOGIN = "lockstep-reader"
# Service name -> repository; promoted in this order.
REPOS: dict[str, str] = {"backend": "acme/backend", "metadata": "acme/metadata"}


def token_var(name: str) -> str:
    return f"PROD_PUSH_TOKEN_{name.upper()}"


@dataclass
class GitHubWorld:
    root: Path
    gh: FakeGitHub
    names: tuple[str, ...] = tuple(REPOS)
    staging: dict[str, Staging] = field(default_factory=dict)
    mains: dict[str, str] = field(default_factory=dict)
    prods: dict[str, str] = field(default_factory=dict)
    read_token: str = ""
    push_tokens: dict[str, str] = field(default_factory=dict)
    gate_defaults: dict[str, str] = field(default_factory=dict)  # [gate] keys every config() writes
    stack: ExitStack = field(default_factory=ExitStack)

    # ---- setup ----------------------------------------------------------------------

    def populate(self) -> None:
        """Repos with prod -> c1 -> main, the tracker issue, tokens, one staging stub per service."""
        gh = self.gh
        # Distinctive, unguessable values so a leak scan cannot match by accident.
        self.read_token = f"ghs_READ{secrets.token_hex(16)}"
        for name, repo in REPOS.items():
            gh.add_repo(repo)
            root = gh.commit(repo, message=f"{name}: root")
            mid = gh.commit(repo, parents=(root,), message=f"{name}: feature")
            head = gh.commit(repo, parents=(mid,), message=f"{name}: fix")
            gh.set_branch(repo, "prod", root)
            gh.set_branch(repo, "main", head)
            self.prods[name], self.mains[name] = root, head
            token = f"github_pat_PUSH{name.upper()}{secrets.token_hex(16)}"
            self.push_tokens[name] = token
            gh.add_token(token, read=[repo], write=[repo], login=f"promoter-{name}")
            self.staging[name] = self.stack.enter_context(Staging(sha=head))
        gh.add_issue(TRACKER_REPO, TRACKER_ISSUE)
        gh.set_branch(TRACKER_REPO, "main", gh.commit(TRACKER_REPO, message="ops: the gate's workflow"))
        gh.add_token(self.read_token, read=list(REPOS.values()), write=[TRACKER_REPO], login=READ_LOGIN)

    @property
    def tokens(self) -> list[str]:
        return [self.read_token, *self.push_tokens.values()]

    def config(
        self,
        *,
        gate: Mapping[str, str] | None = None,
        services: Mapping[str, str] | None = None,
        checks: str = "",
        tracker: str | None = TRACKER,
    ) -> Path:
        """Write lockstep.toml; ``gate`` overrides [gate] keys (TOML values), ``services`` adds lines."""
        services = services or {}
        settings = {
            "name": f'"{GATE}"',
            "forge": '"github"',
            "runbook_url": '"https://example.org/runbook#split"',
            "health_timeout": '"3s"',
            "health_interval": '"50ms"',
            "request_timeout": '"3s"',
            **self.gate_defaults,
            **(gate or {}),
        }
        text = "[gate]\n" + "".join(f"{k} = {v}\n" for k, v in settings.items())
        if tracker is not None:
            text += f'\n[bypass]\ntracker = "{tracker}"\n'
        for name, repo in REPOS.items():
            url = self.staging[name].url
            text += (
                f'\n[[services]]\nname = "{name}"\nrepo = "{repo}"\ntoken_env = "{token_var(name)}"\n'
                f'health_url = "{url}/health"\nversion_url = "{url}/version"\n{services.get(name, "")}\n'
            )
        text += checks
        path = self.root / "lockstep.toml"
        path.write_text(text)
        return path

    def env(self, **extra: str) -> dict[str, str]:
        """A clean environment: no inherited GitHub/lockstep variables, this world's tokens and URL."""
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("GITHUB_", "LOCKSTEP_", "PROD_PUSH_TOKEN_", "RUNNER_")) and k != "GH_TOKEN"
        }
        env["XDG_STATE_HOME"] = str(self.root / ".state")
        env["PYTHONPATH"] = str(SRC)
        env["GITHUB_TOKEN"] = self.read_token
        env["GITHUB_API_URL"] = self.gh.url
        for name, token in self.push_tokens.items():
            env[token_var(name)] = token
        env.update(extra)
        return env

    @property
    def output_file(self) -> Path:
        return self.root / "gh_output.txt"

    @property
    def summary_file(self) -> Path:
        return self.root / "step_summary.md"

    def actions_env(
        self, event_name: str = "workflow_dispatch", event: Mapping[str, Any] | None = None, **extra: str
    ) -> dict[str, str]:
        """``env()`` plus what the Actions runner provides to a step (fresh output/summary files)."""
        event_path = self.root / "event.json"
        event_path.write_text(json.dumps(dict(event or {})), encoding="utf-8")
        self.output_file.write_text("")
        self.summary_file.write_text("")
        return self.env(
            GITHUB_ACTIONS="true",
            GITHUB_EVENT_NAME=event_name,
            GITHUB_EVENT_PATH=str(event_path),
            GITHUB_ACTOR="octocat",
            GITHUB_SERVER_URL="https://github.com",
            GITHUB_REPOSITORY="acme/ops",
            GITHUB_RUN_ID="4242",
            GITHUB_OUTPUT=str(self.output_file),
            GITHUB_STEP_SUMMARY=str(self.summary_file),
            **extra,
        )

    def outputs(self) -> dict[str, str]:
        return parse_output_file(self.output_file.read_text(encoding="utf-8"), unique=True)

    # ---- running --------------------------------------------------------------------

    @property
    def report_path(self) -> Path:
        return self.root / "report.json"

    def run(self, *args: str, env: Mapping[str, str] | None = None, timeout: float = 60) -> CliResult:
        return run_cli(self.root, args, env or self.env(), timeout)

    def start(self, *args: str, env: Mapping[str, str] | None = None) -> subprocess.Popen[str]:
        self.report_path.unlink(missing_ok=True)
        return subprocess.Popen(
            lockstep_argv(self.root, args, self.report_path), cwd=self.root, env=dict(env or self.env()), stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True,
        )

    # ---- reading the fake -----------------------------------------------------------

    def prod(self, name: str) -> str | None:
        return self.gh.branch(REPOS[name], "prod")

    def prods_now(self) -> dict[str, str | None]:
        return {name: self.prod(name) for name in self.names}

    def matching(self, method: str, path: str) -> list[RecordedRequest]:
        """Recorded requests with this method whose path fullmatches the regex."""
        return [r for r in self.gh.requests if r.method == method and re.fullmatch(path, r.path)]

    def ref_writes(self) -> list[RecordedRequest]:
        """Writes that create, move or delete a ref (promotion records and comments excluded)."""
        return [
            w for w in self.gh.writes()
            if re.fullmatch(r"/repos/[^/]+/[^/]+/git/refs(/.*)?", w.path)
            and not w.path.startswith(f"/repos/{TRACKER_REPO}/")  # where the records branch lives
        ]

    def patches(self, name: str) -> list[RecordedRequest]:
        return self.matching("PATCH", rf"/repos/{REPOS[name]}/git/refs/heads/prod")

    def ref_posts(self) -> list[RecordedRequest]:
        """Ref creations in the service repositories (the records branch lives in the tracker's)."""
        return [r for r in self.matching("POST", r"/repos/[^/]+/[^/]+/git/refs")
                if not r.path.startswith(f"/repos/{TRACKER_REPO}/")]

    def comment_posts(self) -> list[RecordedRequest]:
        return self.matching("POST", rf"/repos/{TRACKER_REPO}/issues/{TRACKER_ISSUE}/comments")

    def comments(self) -> list[dict[str, Any]]:
        return self.gh.comments(TRACKER_REPO, TRACKER_ISSUE)

    def service(self, report: Mapping[str, Any], name: str) -> dict[str, Any]:
        found: dict[str, Any] = next(s for s in report["services"] if s["name"] == name)
        return found


def build_world(root: Path) -> Iterator[GitHubWorld]:
    """A started fake GitHub and staging stubs, torn down after the test."""
    with ExitStack() as outer:
        gh = outer.enter_context(FakeGitHub())
        world = GitHubWorld(root=root, gh=gh)
        with world.stack:
            world.populate()
            yield world

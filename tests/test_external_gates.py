"""External gates: ``[[checks]]`` that require a GitHub commit status or check run.

Three layers, all over real HTTP against the fake GitHub:

* the fake's statuses / check-runs endpoints behave like GitHub's (so the rest
  proves something);
* :func:`lockstep.external.run_external_check` for every outcome (success,
  pending → timeout, failure at once, missing, stale, unreadable, services
  subset, re-runs), with a scripted clock so waits cost no wall time;
* the config rules, and two CLI runs with ``forge = "github"``: a status that
  goes pending → success while the gate polls (promotion happens), and one that
  fails (nothing is pushed).
"""

from __future__ import annotations

import asyncio
import io
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest

from lockstep.checks import CheckResult
from lockstep.config import Config, parse_config
from lockstep.errors import ConfigError
from lockstep.forges.github.external import STALE_DEPTH, run_external_check
from lockstep.forges.github.forge import GitHubForge, RetryPolicy
from lockstep.model import Sha
from tests.support.fakegithub import FakeGitHub, Fault
from tests.support.githubworld import REPOS, SRC, GitHubWorld, build_world

pytestmark = pytest.mark.timeout(60)

READ = "ghp_EXTREAD" + "r" * 29
APP = "ghs_EXTAPP" + "a" * 30  # a GitHub App installation token: may create check runs
PAT = "github_pat_EXTPAT" + "p" * 30  # write access, but a PAT: may not create check runs
FAST = RetryPolicy(tries=3, budget=2.0, max_wait=0.5, base_delay=0.01, jitter=0.0, secondary_wait=0.05)
SERVICES = {"backend": "o/backend", "metadata": "o/metadata"}


# ---- a small world ------------------------------------------------------------------------


class Clock:
    """A scripted clock: ``sleep`` advances time instantly and runs what is due at each poll."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []
        self.on_sleep: list[Callable[[int], None]] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        for hook in self.on_sleep:
            hook(len(self.sleeps))
        await asyncio.sleep(0)


class World:
    """Two repos, each ``root -> mid -> head`` with main at head; a read token for both."""

    def __init__(self, gh: FakeGitHub) -> None:
        self.gh = gh
        self.commits: dict[str, list[Sha]] = {}
        for name, repo in SERVICES.items():
            gh.add_repo(repo)
            root = gh.commit(repo)
            mid = gh.commit(repo, parents=(root,))
            head = gh.commit(repo, parents=(mid,))
            gh.set_branch(repo, "main", head)
            gh.set_branch(repo, "prod", root)
            self.commits[name] = [Sha(root), Sha(mid), Sha(head)]
        gh.add_token(READ, read=list(SERVICES.values()))
        gh.add_token(APP, write=list(SERVICES.values()), kind="integration", login="ci[bot]")
        gh.add_token(PAT, write=list(SERVICES.values()))
        self.clock = Clock()

    def head(self, name: str) -> Sha:
        return self.commits[name][-1]

    def config(self, check: str, forge: str = "github") -> Config:
        text = f'[gate]\nname = "g"\nforge = "{forge}"\nrequest_timeout = "2s"\nrecords = false\n'
        for name, repo in SERVICES.items():
            text += (
                f'[[services]]\nname = "{name}"\nrepo = "{repo}"\ntoken_env = "PUSH"\n'
                'health_url = "http://127.0.0.1:9/h"\nversion_url = "http://127.0.0.1:9/v"\n'
            )
        text += '[[checks]]\nname = "gate-check"\n' + check
        return parse_config(text, env={}, source="lockstep.toml", base_dir=Path("."))

    def run(self, check: str, shas: dict[str, Sha] | None = None) -> CheckResult:
        config = self.config(check)

        async def main() -> CheckResult:
            env = {"GITHUB_TOKEN": READ, "PUSH": PAT, "GITHUB_API_URL": self.gh.url}
            forge = GitHubForge.from_env(config, env, retry=FAST, sleep=self.clock.sleep)
            try:
                return await run_external_check(
                    config.checks[0],
                    forge,
                    config.services,
                    shas or {n: self.head(n) for n in SERVICES},
                    clock=self.clock,
                    sleep=self.clock.sleep,
                )
            finally:
                await forge.aclose()

        return asyncio.run(main())

    def at_poll(self, n: int, action: Callable[[], object]) -> None:
        """Run ``action`` just before the (n+1)th round of reads (after the nth sleep of any service),
        and never before the fake has answered every service's first reads: on a loaded machine one
        service's read can lag behind the other's polls, and would then miss the state it was meant to see."""
        done = False
        rounds = max(1, n // len(SERVICES))

        def answered(repo: str) -> int:
            return sum(1 for r in self.gh.requests
                       if r.method == "GET" and r.path.startswith(f"/repos/{repo}/") and r.status is not None)

        def hook(count: int) -> None:
            nonlocal done
            if count >= n and not done and all(answered(repo) >= rounds for repo in SERVICES.values()):
                done = True
                action()

        self.clock.on_sleep.append(hook)

    def reads(self, pattern: str) -> list[Any]:
        return [r for r in self.gh.requests if r.method == "GET" and pattern in r.path]


@pytest.fixture
def w(logs: io.StringIO) -> Iterator[World]:
    with FakeGitHub() as gh:
        yield World(gh)


STATUS = 'commit_status = "e2e"\ntimeout = "10m"\ninterval = "10s"\n'
CHECK_RUN = 'check_run = "canary"\ntimeout = "10m"\ninterval = "10s"\n'


def line(result: CheckResult, service: str) -> str:
    return next(x for x in result.output_tail.splitlines() if x.startswith(f"{service}: "))


# ---- the fake's endpoints --------------------------------------------------------------------


def api(w: World, token: str = APP) -> httpx.Client:
    return httpx.Client(base_url=w.gh.url, headers={"Authorization": f"Bearer {token}"}, timeout=5)


def test_fake_status_create_defaults_validation_and_unknown_sha(w: World) -> None:
    sha = w.head("backend")
    with api(w) as c:
        made = c.post(f"/repos/o/backend/statuses/{sha}", json={"state": "pending"})
        assert made.status_code == 201
        assert made.json()["context"] == "default" and made.json()["state"] == "pending"
        bad = c.post(f"/repos/o/backend/statuses/{sha}", json={"state": "done", "context": "e2e"})
        assert bad.status_code == 422 and bad.json()["message"] == "Validation Failed"
        unknown = "0" * 40
        missing = c.post(f"/repos/o/backend/statuses/{unknown}", json={"state": "success"})
        assert missing.status_code == 422
        assert missing.json()["message"] == f"No commit found for SHA: {unknown}"
        long = c.post(f"/repos/o/backend/statuses/{sha}", json={"state": "success", "description": "x" * 141})
        assert long.status_code == 422
    with api(w, READ) as c:
        denied = c.post(f"/repos/o/backend/statuses/{sha}", json={"state": "success"})
        assert denied.status_code == 403
        listed = c.get(f"/repos/o/backend/statuses/{sha}").json()
        assert [s["state"] for s in listed] == ["pending"]
        assert c.get(f"/repos/o/backend/commits/{'0' * 40}/status").status_code == 422


def test_fake_combined_status_is_latest_per_context_with_githubs_state_rule(w: World) -> None:
    sha = w.head("backend")
    with api(w, READ) as c:
        def combined() -> dict[str, Any]:
            body: dict[str, Any] = c.get(f"/repos/o/backend/commits/{sha}/status").json()
            return body

        empty = combined()
        assert empty["state"] == "pending" and empty["statuses"] == [] and empty["total_count"] == 0
        assert empty["sha"] == sha
        w.gh.set_status("o/backend", sha, "e2e", "failure")
        w.gh.set_status("o/backend", sha, "lint", "success")
        assert combined()["state"] == "failure"
        w.gh.set_status("o/backend", sha, "e2e", "success")
        body = combined()
        assert body["state"] == "success" and body["total_count"] == 2
        assert [(s["context"], s["state"]) for s in body["statuses"]] == [("e2e", "success"), ("lint", "success")]
        w.gh.set_status("o/backend", sha, "deploy", "pending")
        assert combined()["state"] == "pending"
        by_branch = c.get("/repos/o/backend/commits/main/status").json()
        assert by_branch["sha"] == sha and by_branch["total_count"] == 3
        assert len(c.get(f"/repos/o/backend/commits/{sha}/statuses").json()) == 4


def test_fake_check_runs_need_an_app_and_follow_the_completion_rules(w: World) -> None:
    sha = w.head("backend")
    with api(w, PAT) as c:
        assert c.post("/repos/o/backend/check-runs", json={"name": "canary", "head_sha": sha}).status_code == 403
    with api(w) as c:
        made = c.post("/repos/o/backend/check-runs", json={"name": "canary", "head_sha": sha})
        assert made.status_code == 201
        run = made.json()
        assert (run["status"], run["conclusion"], run["head_sha"]) == ("queued", None, sha)
        incomplete = c.post(
            "/repos/o/backend/check-runs", json={"name": "canary", "head_sha": sha, "status": "completed"}
        )
        assert incomplete.status_code == 422
        unknown = c.post("/repos/o/backend/check-runs", json={"name": "canary", "head_sha": "1" * 40})
        assert unknown.status_code == 422
        done = c.patch(f"/repos/o/backend/check-runs/{run['id']}", json={"conclusion": "failure"}).json()
        assert (done["status"], done["conclusion"]) == ("completed", "failure")
        assert done["completed_at"] is not None
        rerun = c.post(
            "/repos/o/backend/check-runs", json={"name": "canary", "head_sha": sha, "status": "in_progress"}
        ).json()
        c.post("/repos/o/backend/check-runs", json={"name": "other", "head_sha": sha, "conclusion": "success"})
    with api(w, READ) as c:
        path = f"/repos/o/backend/commits/{sha}/check-runs"
        latest = c.get(path, params={"check_name": "canary"}).json()
        assert latest["total_count"] == 1 and latest["check_runs"][0]["id"] == rerun["id"]
        every = c.get(path, params={"check_name": "canary", "filter": "all"}).json()
        assert [r["id"] for r in every["check_runs"]] == [rerun["id"], run["id"]]
        completed = c.get(path, params={"status": "completed"}).json()
        assert [r["name"] for r in completed["check_runs"]] == ["other"]


def test_fake_lists_commits_newest_first(w: World) -> None:
    root, mid, head = w.commits["backend"]
    with api(w, READ) as c:
        listed = c.get("/repos/o/backend/commits", params={"sha": head, "per_page": "2"}).json()
        assert [x["sha"] for x in listed] == [head, mid]
        assert [x["sha"] for x in c.get("/repos/o/backend/commits").json()] == [head, mid, root]


# ---- commit statuses ---------------------------------------------------------------------------


def test_success_on_every_service_passes_with_one_read_each(w: World) -> None:
    for name, repo in SERVICES.items():
        w.gh.set_status(repo, w.head(name), "e2e", "success", description="42 passed")
    result = w.run(STATUS)
    assert result.ok and not result.timed_out and result.exit_code is None
    assert result.detail == "check gate-check passed: `e2e` status success on 2 services in 0.0s"
    assert line(result, "backend") == f"backend: `e2e` status is success on {w.head('backend').short}: 42 passed"
    reads = w.reads("/status")
    assert sorted(r.path for r in reads) == sorted(
        f"/repos/{repo}/commits/{w.head(name)}/status" for name, repo in SERVICES.items()
    )
    assert all(r.headers["authorization"] == f"Bearer {READ}" for r in w.gh.requests)
    assert w.gh.writes() == []


def test_pending_then_success_keeps_polling_then_passes(w: World, logs: io.StringIO) -> None:
    for name, repo in SERVICES.items():
        w.gh.set_status(repo, w.head(name), "e2e", "pending")
    w.at_poll(2, lambda: w.gh.set_status("o/backend", w.head("backend"), "e2e", "success"))
    w.at_poll(4, lambda: w.gh.set_status("o/metadata", w.head("metadata"), "e2e", "success"))
    result = w.run(STATUS)
    assert result.ok, result.detail
    assert all(s == 10.0 for s in w.clock.sleeps)
    assert "backend: `e2e` status is pending on" in logs.getvalue()


def test_pending_until_the_timeout_says_still_pending(w: World) -> None:
    w.gh.set_status("o/backend", w.head("backend"), "e2e", "success")
    w.gh.set_status("o/metadata", w.head("metadata"), "e2e", "pending")
    result = w.run(STATUS)
    assert not result.ok and result.timed_out
    short = w.head("metadata").short
    assert result.detail == f"check gate-check failed: metadata: `e2e` status still pending on {short} after 10m"
    assert line(result, "backend").startswith("backend: `e2e` status is success")
    assert w.clock.now - 1000.0 == pytest.approx(600.0)


@pytest.mark.parametrize("state", ["failure", "error"])
def test_failure_fails_at_once_and_stops_polling_the_others(w: World, state: str) -> None:
    w.gh.set_status(
        "o/metadata", w.head("metadata"), "e2e", state, description="3 tests failed", target_url="https://ci/7"
    )
    w.gh.set_status("o/backend", w.head("backend"), "e2e", "pending")
    result = w.run(STATUS)
    assert not result.ok and not result.timed_out
    short = w.head("metadata").short
    assert result.detail == f"check gate-check failed: metadata: `e2e` status is {state} on {short}: 3 tests failed"
    assert line(result, "metadata").endswith("<https://ci/7>")
    assert "stopped waiting because metadata failed" in line(result, "backend")
    # far from the 10 m timeout (the other service's polls advance the scripted clock meanwhile)
    assert w.clock.now - 1000.0 <= 120.0


def test_newest_status_of_the_context_wins(w: World) -> None:
    for name, repo in SERVICES.items():
        w.gh.set_status(repo, w.head(name), "e2e", "failure")
        w.gh.set_status(repo, w.head(name), "e2e", "success")  # re-run passed
    assert w.run(STATUS).ok
    w.gh.set_status("o/backend", w.head("backend"), "e2e", "failure")  # and then failed again
    assert not w.run(STATUS).ok


def test_other_contexts_do_not_count_and_missing_waits_then_says_so(w: World) -> None:
    for name, repo in SERVICES.items():
        w.gh.set_status(repo, w.head(name), "e2e-nightly", "success")
        w.gh.set_status(repo, w.head(name), "E2E", "success")
    w.gh.set_status("o/metadata", w.head("metadata"), "e2e", "success")
    result = w.run(STATUS)
    assert not result.ok and result.timed_out
    short = w.head("backend").short
    assert result.detail == f"check gate-check failed: backend: no `e2e` status on {short} after 10m"
    assert len(w.reads("/repos/o/backend/commits/")) > 50  # polled every 10s for 10m


def test_a_status_that_appears_while_polling_is_found(w: World) -> None:
    w.gh.set_status("o/metadata", w.head("metadata"), "e2e", "success")
    w.at_poll(3, lambda: w.gh.set_status("o/backend", w.head("backend"), "e2e", "success"))
    assert w.run(STATUS).ok


def test_stale_status_on_an_earlier_commit_is_named(w: World) -> None:
    _root, mid, head = w.commits["backend"]
    w.gh.set_status("o/backend", mid, "e2e", "success")
    w.gh.set_status("o/metadata", w.head("metadata"), "e2e", "success")
    result = w.run(STATUS)
    assert not result.ok and result.timed_out
    assert result.detail == (
        f"check gate-check failed: backend: `e2e` status reported on {mid.short} (1 commit earlier, success) "
        f"but not on {head.short} after 10m: did the suite run for this commit?"
    )


def test_stale_search_is_bounded(w: World) -> None:
    repo = "o/backend"
    shas = [w.head("backend")]
    for _ in range(STALE_DEPTH + 1):
        shas.append(Sha(w.gh.commit(repo, parents=(shas[-1],))))
    w.gh.set_status(repo, shas[0], "e2e", "success")  # STALE_DEPTH + 1 commits back: too far
    w.gh.set_status("o/metadata", w.head("metadata"), "e2e", "success")
    result = w.run(STATUS, {"backend": shas[-1], "metadata": w.head("metadata")})
    assert f"backend: no `e2e` status on {shas[-1].short} after 10m" in result.detail


def test_services_restricts_who_must_report(w: World) -> None:
    w.gh.set_status("o/backend", w.head("backend"), "e2e", "success")
    result = w.run(STATUS + 'services = ["backend"]\n')
    assert result.ok, result.detail
    assert result.output_tail.count("\n") == 0
    assert w.reads("/repos/o/metadata/") == []


def test_status_found_beyond_the_first_page_of_contexts(w: World) -> None:
    sha = w.head("backend")
    w.gh.set_status("o/backend", sha, "e2e", "success")  # the oldest: last in the newest-first list
    for i in range(120):
        w.gh.set_status("o/backend", sha, f"ctx-{i}", "success")
    w.gh.set_status("o/metadata", w.head("metadata"), "e2e", "success")
    assert w.run(STATUS).ok
    assert {r.query.get("page") for r in w.reads("/repos/o/backend/commits/")} == {"1", "2"}


def test_forbidden_read_fails_at_once_naming_the_permission(w: World) -> None:
    w.gh.inject(
        Fault.status(403, "Resource not accessible by personal access token"),
        method="GET",
        path=r"/repos/o/backend/commits/[0-9a-f]+/status",
        times=None,
    )
    w.gh.set_status("o/metadata", w.head("metadata"), "e2e", "pending")
    result = w.run(STATUS)
    assert not result.ok and not result.timed_out
    assert "backend: cannot read `e2e` status on" in result.detail
    assert "HTTP 403: Resource not accessible by personal access token" in result.detail
    assert "(the read token needs Commit statuses: read on o/backend)" in result.detail
    assert w.clock.now - 1000.0 <= 120.0  # far from the 10 m timeout


def test_transient_read_failures_keep_polling(w: World, logs: io.StringIO) -> None:
    w.gh.inject(Fault.status(503), method="GET", path=r"/repos/o/backend/commits/[0-9a-f]+/status", times=6)
    for name, repo in SERVICES.items():
        w.gh.set_status(repo, w.head(name), "e2e", "success")
    result = w.run(STATUS)
    assert result.ok, result.detail
    assert "still polling" in logs.getvalue()


def test_unreadable_until_the_timeout_says_so(w: World) -> None:
    w.gh.inject(Fault.status(502), method="GET", path=r"/repos/o/backend/commits/[0-9a-f]+/status", times=None)
    w.gh.set_status("o/metadata", w.head("metadata"), "e2e", "success")
    result = w.run(STATUS.replace('"10m"', '"30s"'))
    assert not result.ok
    assert "backend: cannot read `e2e` status on" in result.detail and "HTTP 502" in result.detail
    assert "(until the 30.0s timeout)" in result.detail


def test_untrusted_description_is_one_clean_line_and_tokens_are_redacted(w: World) -> None:
    w.gh.set_status(
        "o/backend", w.head("backend"), "e2e", "failure", description=f"boom\n::error::x {READ} \x1b[31m"
    )
    w.gh.set_status("o/metadata", w.head("metadata"), "e2e", "success")
    result = w.run(STATUS)
    assert "\n" not in result.detail and READ not in result.detail + result.output_tail
    assert "\x1b" not in result.detail and "***" in result.detail


# ---- check runs --------------------------------------------------------------------------------


def test_check_run_success_and_the_query(w: World) -> None:
    for name, repo in SERVICES.items():
        w.gh.add_check_run(repo, w.head(name), "canary", "completed", "success", details_url="https://ci/1")
    result = w.run(CHECK_RUN)
    assert result.ok, result.detail
    assert result.detail == "check gate-check passed: `canary` check run success on 2 services in 0.0s"
    reads = w.reads("/check-runs")
    assert len(reads) == 2 and all(r.query["check_name"] == "canary" for r in reads)
    assert line(result, "backend").endswith("<https://ci/1>")


def test_check_run_queued_in_progress_completed(w: World) -> None:
    ids = {n: w.gh.add_check_run(repo, w.head(n), "canary", "queued") for n, repo in SERVICES.items()}
    for name, repo in SERVICES.items():
        w.at_poll(2, partial(w.gh.update_check_run, repo, ids[name], "in_progress"))
        w.at_poll(5, partial(w.gh.update_check_run, repo, ids[name], "completed", "success"))
    result = w.run(CHECK_RUN)
    assert result.ok, result.detail


def test_check_run_still_in_progress_at_the_timeout(w: World) -> None:
    w.gh.add_check_run("o/backend", w.head("backend"), "canary", "in_progress")
    w.gh.add_check_run("o/metadata", w.head("metadata"), "canary", "completed", "success")
    result = w.run(CHECK_RUN)
    assert not result.ok and result.timed_out
    short = w.head("backend").short
    assert result.detail == f"check gate-check failed: backend: `canary` check run still in_progress on {short} after 10m"


@pytest.mark.parametrize(
    "conclusion", ["failure", "cancelled", "timed_out", "action_required", "neutral", "skipped", "stale"]
)
def test_check_run_any_conclusion_but_success_fails_at_once(w: World, conclusion: str) -> None:
    w.gh.add_check_run("o/backend", w.head("backend"), "canary", "completed", conclusion, title="smoke: 2 failed")
    w.gh.add_check_run("o/metadata", w.head("metadata"), "canary", "queued")
    result = w.run(CHECK_RUN)
    assert not result.ok and not result.timed_out
    short = w.head("backend").short
    assert f"backend: `canary` check run is {conclusion} on {short}" in result.detail
    assert "smoke: 2 failed" in result.detail
    assert ("lockstep requires success" in result.detail) == (conclusion in ("neutral", "skipped"))
    assert w.clock.now - 1000.0 <= 120.0  # far from the 10 m timeout


def test_check_run_rerun_supersedes_an_earlier_failure(w: World) -> None:
    for name, repo in SERVICES.items():
        w.gh.add_check_run(repo, w.head(name), "canary", "completed", "failure")
        rerun = w.gh.add_check_run(repo, w.head(name), "canary", "in_progress")
        w.at_poll(2, partial(w.gh.update_check_run, repo, rerun, "completed", "success"))
    assert w.run(CHECK_RUN).ok


def test_check_run_missing_and_stale(w: World) -> None:
    root, _mid, head = w.commits["backend"]
    w.gh.add_check_run("o/backend", root, "canary", "completed", "failure")
    result = w.run(CHECK_RUN)
    assert not result.ok and result.timed_out
    assert (
        f"backend: `canary` check run reported on {root.short} (2 commits earlier, failure) but not on {head.short}"
        in result.detail
    )
    assert f"metadata: no `canary` check run on {w.head('metadata').short} after 10m" in result.detail


def test_forbidden_check_runs_name_the_checks_permission(w: World) -> None:
    w.gh.inject(Fault.status(403, "Resource not accessible by integration"), path=r".*/check-runs", times=None)
    result = w.run(CHECK_RUN)
    # whichever service is answered first fails the check; its message names the permission and repo
    assert re.search(r"\(the read token needs Checks: read on o/(backend|metadata)\)", result.detail)


# ---- configuration -----------------------------------------------------------------------------


def config_error(w: World, check: str, forge: str = "github") -> str:
    with pytest.raises(ConfigError) as info:
        w.config(check, forge)
    return str(info.value)


def test_config_accepts_both_kinds_with_defaults(w: World) -> None:
    status = w.config('commit_status = "ci/e2e: staging"\n').checks[0]
    assert (status.external, status.external_name, status.run) == ("commit_status", "ci/e2e: staging", ())
    assert (status.interval, status.timeout, status.services) == (10.0, 1200.0, None)
    run = w.config('check_run = "canary"\nservices = ["metadata"]\ninterval = "2s"\n').checks[0]
    assert (run.external, run.services, run.interval) == ("check_run", ("metadata",), 2.0)
    assert w.config('run = ["true"]\n').checks[0].external is None


@pytest.mark.parametrize(
    ("check", "message"),
    [
        ('commit_status = "e2e"\ncheck_run = "e2e"\n', "checks[0]: needs exactly one of run, commit_status or check_run"),
        ('run = ["x"]\ncommit_status = "e2e"\n', "(got run and commit_status)"),
        ('timeout = "1m"\n', "checks[0]: needs exactly one of run, commit_status or check_run (got none)"),
        ('commit_status = ""\n', "checks[0].commit_status: must not be empty"),
        ('check_run = "a\\u0007b"\n', "checks[0].check_run: must not contain control characters"),
        ('commit_status = "e2e"\nservices = ["nope"]\n', "checks[0] (gate-check).services: unknown service 'nope'"),
        ('commit_status = "e2e"\nservices = []\n', "checks[0].services"),
        ('commit_status = "e2e"\nenv = { A = "b" }\n', "checks[0]: env applies only to run checks"),
        ('run = ["x"]\nservices = ["backend"]\n', "checks[0]: services applies only to commit_status"),
        ('commit_status = "e2e"\ninterval = "0s"\n', "checks[0]: interval must be more than 0s"),
    ],
)
def test_config_errors_name_the_check(w: World, check: str, message: str) -> None:
    assert message in config_error(w, check)


def test_config_external_needs_the_github_forge(w: World) -> None:
    text = config_error(w, 'check_run = "canary"\n', forge="git")
    assert text.count("\n") == 0
    assert 'checks[0] (gate-check).check_run: needs forge = "github"' in text


# ---- end to end through the CLI ----------------------------------------------------------------

E2E_CHECK = '\n[[checks]]\nname = "e2e"\ncommit_status = "e2e"\ntimeout = "15s"\ninterval = "50ms"\n'


@pytest.fixture
def ghw(tmp_path: Path) -> Iterator[GitHubWorld]:
    yield from build_world(tmp_path)


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.02)


def status_reads(ghw: GitHubWorld) -> list[Any]:
    return [r for r in ghw.gh.requests if r.method == "GET" and r.path.endswith("/status")]


def test_cli_gate_waits_for_pending_e2e_then_promotes(ghw: GitHubWorld) -> None:
    ghw.config(checks=E2E_CHECK)
    proc = ghw.start("run")
    try:
        # The gate is polling (nothing reported yet): report pending, then success.
        wait_for(lambda: len(status_reads(ghw)) >= 4)
        for name, repo in REPOS.items():
            ghw.gh.set_status(repo, ghw.mains[name], "e2e", "pending", description="running")
        wait_for(lambda: len(status_reads(ghw)) >= 8)
        assert ghw.ref_writes() == []  # still waiting: nothing pushed
        for name, repo in REPOS.items():
            ghw.gh.set_status(repo, ghw.mains[name], "e2e", "success", description="all green")
        _out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert ghw.prods_now() == ghw.mains
    last_read = max(r.at for r in status_reads(ghw))
    assert all(w.at > last_read for w in ghw.ref_writes())
    assert "[e2e] backend: `e2e` status is pending on" in err
    assert "check e2e passed" in err
    report = ghw.report_path.read_text()
    assert "`e2e` status is success on" in report and "all green" in report


def test_cli_failed_e2e_blocks_and_pushes_nothing(ghw: GitHubWorld) -> None:
    ghw.config(checks=E2E_CHECK)
    ghw.gh.set_status(REPOS["backend"], ghw.mains["backend"], "e2e", "success")
    ghw.gh.set_status(REPOS["metadata"], ghw.mains["metadata"], "e2e", "failure", description="2 specs failed")
    started = time.monotonic()
    res = ghw.run("run")
    assert res.code == 1, res.err
    assert time.monotonic() - started < 10  # failed at once, not after the 15s timeout
    assert ghw.ref_writes() == []
    assert ghw.prods_now() == ghw.prods
    assert res.report is not None and res.report["result"] == "blocked"
    short = ghw.mains["metadata"][:7]
    expected = f"metadata: `e2e` status is failure on {short}: 2 specs failed"
    assert any(expected in m for m in res.report["messages"])
    step = next(s for s in res.report["steps"] if s["name"] == "check e2e")
    assert step["status"] == "failed" and expected in step["output_tail"]


def test_cli_git_forge_refuses_an_external_check_before_anything(tmp_path: Path) -> None:
    config = tmp_path / "lockstep.toml"
    config.write_text(
        '[gate]\nname = "g"\n[[services]]\nname = "a"\nrepo = "a.git"\n'
        'health_url = "http://127.0.0.1:9/h"\nversion_url = "http://127.0.0.1:9/v"\n'
        '[[checks]]\nname = "e2e"\ncommit_status = "e2e"\n'
    )
    proc = subprocess.run(
        [sys.executable, "-m", "lockstep", "run", "--config", str(config)],
        cwd=tmp_path, env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(SRC)}, capture_output=True, text=True,
        timeout=30, check=False,
    )
    assert proc.returncode == 2
    assert 'checks[0] (e2e).commit_status: needs forge = "github"' in proc.stderr

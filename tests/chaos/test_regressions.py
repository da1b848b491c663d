"""Regression tests for the bugs the chaos runs and the fuzzing found.

Each test is the smallest deterministic reproduction of one finding, written
against the real CLI (a subprocess, as in production) and the fake GitHub or
real git repositories.  A test marked ``xfail(strict=True)`` pins a bug that is
not fixed yet: fix ``src/``, remove the marker, and delete the matching entry
of ``tests.chaos.harness.KNOWN_BUGS`` so the chaos runs fail on any recurrence.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lockstep.config import Config
from lockstep.model import Sha
from lockstep.probes import verify_versions
from tests.chaos.harness import KNOWN_BUGS
from tests.support.fakegithub import Fault
from tests.support.fakegithub.graphql import repositories_read
from tests.support.githubworld import REPOS, GitHubWorld
from tests.support.githubworld import build_world as build_github_world
from tests.support.gitworld import GitWorld
from tests.support.gitworld import build_world as build_git_world
from tests.support.staging import Staging


@pytest.fixture
def gh_world(tmp_path: Path) -> Iterator[GitHubWorld]:
    yield from build_github_world(tmp_path)


def _settle(world: GitHubWorld, limit: float = 10.0) -> None:
    """Wait until every delayed request the fake received has been handled (applied or refused)."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if all(r.status is not None for r in world.gh.requests if r.fault == "delay"):
            return
        time.sleep(0.02)


def _row(summary: str, name: str) -> list[str]:
    line = next(ln for ln in summary.splitlines() if ln.startswith(f"| `{name}` ("))
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def _still_open(test: object) -> bool:
    return any(mark.name == "xfail" for mark in getattr(test, "pytestmark", []))


def test_known_bugs_of_the_chaos_runs_are_exactly_the_open_ones_here() -> None:
    """harness.KNOWN_BUGS excuses a chaos violation only while its regression test is still xfail.

    Fixing a bug means removing the test's xfail marker *and* the KNOWN_BUGS entry, so that the
    chaos runs fail again on any recurrence.
    """
    tests = {name: obj for name, obj in globals().items() if name.startswith("test_")}
    for pattern, name in KNOWN_BUGS.items():
        assert name in tests, f"KNOWN_BUGS[{pattern!r}] names no test here: {name}"
        assert _still_open(tests[name]), f"{name} is fixed: delete KNOWN_BUGS[{pattern!r}] in harness.py"


# ---------------------------------------------------------------------------------------------
# 1. A write that timed out is still in flight: a re-read at the old sha proves nothing.


def test_timed_out_write_that_lands_later_is_not_reported_unchanged(gh_world: GitHubWorld) -> None:
    """A PATCH that timed out may still land: an immediate re-read at the old sha proved nothing, and the
    run used to exit 1 'blocked: nothing was pushed' while the PATCH landed moments later."""
    world = gh_world
    world.config(gate={"request_timeout": '"500ms"'})
    # GitHub answers both attempts after the client gave up, and applies them anyway.
    world.gh.inject(Fault.delay(1.5), method="PATCH", path=rf"/repos/{REPOS['backend']}/git/refs/heads/prod",
                    times=2)
    res = world.run("run")
    _settle(world)
    assert world.prod("backend") == world.mains["backend"], "setup: the delayed PATCH should have landed"
    assert res.report is not None
    outcome = world.service(res.report, "backend")["outcome"]
    # Whatever the fix (report the position unknown, or wait and re-read), the run must not claim that
    # nothing was pushed when the target did move.
    assert res.code != 1, res.out
    assert outcome in ("advanced", "unknown"), outcome


@pytest.mark.parametrize("second", [500, 401])
def test_timed_out_first_attempt_is_still_in_flight_when_the_retry_fails(
    gh_world: GitHubWorld, second: int
) -> None:
    world = gh_world
    world.config(gate={"request_timeout": '"500ms"'})
    patch = rf"/repos/{REPOS['backend']}/git/refs/heads/prod"
    world.gh.inject(Fault.delay(1.5), method="PATCH", path=patch, nth=1)  # answered after the client gave up
    world.gh.inject(Fault.status(second), method="PATCH", path=patch, nth=2)  # the retry fails at once
    res = world.run("run")
    _settle(world)
    assert world.prod("backend") == world.mains["backend"], "setup: the first PATCH should have landed"
    assert res.report is not None
    outcome = world.service(res.report, "backend")["outcome"]
    assert res.code != 1, res.out
    assert outcome in ("advanced", "unknown"), outcome


# ---------------------------------------------------------------------------------------------
# 2. SIGTERM after the gate finished but before the report was written.

_PUBLISH_SIGTERM = """\
import os, runpy, signal, sys
import lockstep.engine.run as runner
_publish = runner.publish
def publish(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGTERM)  # e.g. `timeout`, systemd or Kubernetes stopping the job now
    return _publish(*args, **kwargs)
runner.publish = publish
sys.argv = ["lockstep", *sys.argv[1:]]
runpy.run_module("lockstep", run_name="__main__")
"""


def test_sigterm_while_publishing_still_writes_the_report(world: GitWorld) -> None:
    """The signal handlers used to be removed before publish(): a SIGTERM then killed the process after
    the pushes (exit -15) with no report and no summary."""
    world.config()
    report = world.root / "report.json"
    proc = subprocess.run(
        [sys.executable, "-c", _PUBLISH_SIGTERM, "run", "--config", str(world.root / "lockstep.toml"),
         "--report", str(report)],
        cwd=world.root, env=world.env(), capture_output=True, text=True, timeout=60, check=False,
    )
    assert all(world.sha(n, "prod") == world.sha(n, "main") for n in world.names), "setup: both pushed"
    assert report.exists(), f"no report after the pushes (exit {proc.returncode})"
    assert json.loads(report.read_text())["result"] == "promoted"
    assert "| advanced |" in proc.stdout


# ---------------------------------------------------------------------------------------------
# 3. SIGINT (the Actions runner's cancel) while lockstep is still importing.

_STARTUP_SIGINT = """\
import builtins, os, runpy, signal, sys
_import = builtins.__import__
def hooked(name, *args, **kwargs):
    if name == "click":  # lockstep.cli is being imported: the job is cancelled right now
        builtins.__import__ = _import
        os.kill(os.getpid(), signal.SIGINT)
    return _import(name, *args, **kwargs)
builtins.__import__ = hooked
sys.argv = ["lockstep", *sys.argv[1:]]
runpy.run_module("lockstep", run_name="__main__")
"""


def test_sigint_during_startup_prints_no_traceback(tmp_path: Path) -> None:
    """A SIGINT (the Actions runner's cancel) while lockstep was still importing used to escape as a
    KeyboardInterrupt traceback."""
    proc = subprocess.run(
        [sys.executable, "-c", _STARTUP_SIGINT, "run", "--config", str(tmp_path / "none.toml")],
        cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src")},
    )
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]


# ---------------------------------------------------------------------------------------------
# 4. A target that could not be re-read is shown "(missing)" in the summary.


def test_unreadable_target_is_not_shown_missing(gh_world: GitHubWorld) -> None:
    """A target that was not pushed and whose verify re-read failed used to be shown '(missing)' although
    its branch exists."""
    world = gh_world
    world.config()
    world.gh.protect(REPOS["backend"], "prod")  # the first push is refused: the run verifies every target
    # Heads are read to resolve and before pushing; every later read (the verify re-read) is refused,
    # the heads query and its REST fallback alike.
    world.gh.inject(Fault.status(401, "Bad credentials"), method="POST", path="/graphql", nth=3, times=None)
    world.gh.inject(Fault.status(401, "Bad credentials"), method="GET",
                    path=rf"/repos/{REPOS['metadata']}/branches/prod", times=None)
    res = world.run("run")
    assert world.prod("metadata") == world.prods["metadata"]
    cells = _row(res.out, "metadata")
    assert cells[2] != "(missing)", res.out


# ---------------------------------------------------------------------------------------------
# 5. Another writer moves an up-to-date target during the run.


def _move_after_read(world: GitHubWorld, name: str, sha: str, nth: int = 1) -> None:
    """Move ``name``'s prod to ``sha`` right after lockstep's nth read of it has been answered: a heads
    query naming its repository, or a REST branch read or compare (the fallback)."""
    gh, original = world.gh, world.gh._dispatch
    rest = re.compile(rf"/repos/{REPOS[name]}/(branches/prod|compare/.+)")
    seen: list[bool] = []

    def dispatch(method: str, target: str, headers: Any, body: bytes, connection: int) -> Any:
        reply = original(method, target, headers, body, connection)
        path = target.split("?", 1)[0]
        queried = method == "POST" and path == "/graphql" and REPOS[name] in repositories_read(body)
        if queried or (method == "GET" and rest.fullmatch(path)):
            seen.append(True)
            if len(seen) == nth:
                gh.set_branch(REPOS[name], "prod", sha)
        return reply

    gh._dispatch = dispatch  # type: ignore[method-assign]


def test_noop_target_moved_by_another_writer_is_not_reported_promoted(gh_world: GitHubWorld) -> None:
    """An up-to-date target moved by another writer during the run used to give a 'failed' row under a
    'promoted' result and exit 0.  Since every target is re-read right before the first push, such a
    move blocks the run before anything is written."""
    world = gh_world
    world.config()
    repo = REPOS["metadata"]
    world.gh.set_branch(repo, "prod", world.mains["metadata"])  # metadata: nothing to do
    hotfix = world.gh.commit(repo, parents=(world.mains["metadata"],), message="hotfix pushed by hand")
    _move_after_read(world, "metadata", hotfix)  # after the resolve read, before anything is pushed
    res = world.run("run")
    assert world.prod("metadata") == hotfix
    assert res.report is not None, res.err
    outcomes = {s["name"]: s["outcome"] for s in res.report["services"]}
    assert not (res.report["result"] == "promoted" and "failed" in outcomes.values()), outcomes
    assert res.code != 0, (res.code, res.report["result"])


# ---------------------------------------------------------------------------------------------
# 6. /version values with invisible characters.


def _config(url: str) -> Config:
    return Config.model_validate({
        "gate": {"name": "g"},
        "services": [{"name": "svc", "repo": "r.git", "health_url": f"{url}/health",
                      "version_url": f"{url}/version"}],
    })


@pytest.mark.parametrize("junk", ["\u202e", "\u200b", "\u2066"])
def test_version_with_invisible_characters_is_not_shown_as_the_same_sha(junk: str) -> None:
    """A /version value with a bidi or zero-width character used to be reported as 'staging runs <sha> but
    main is <sha>': the character that made them differ was stripped, not shown."""
    sha = Sha("ab" * 20)
    with Staging(version_body={"sha": sha[:20] + junk + sha[20:]}) as staging:
        config = _config(staging.url)
        [result] = asyncio.run(verify_versions(config.services, {"svc": sha}, request_timeout=5))
    assert not result.ok
    assert f"staging runs {sha} but" not in result.detail, result.detail



# ---------------------------------------------------------------------------------------------
# 7. A token substituted into the config through ${VAR} is echoed back.


def test_token_in_a_staging_url_never_reaches_the_output(world: GitWorld) -> None:
    """A token substituted into a staging URL (basic auth) used to be printed in health/version failures."""
    token = "github_pat_CHAOS" + "k" * 30
    port = world.staging["alpha"].url.rsplit(":", 1)[1]
    world.config(services={"alpha": 'token_env = "PUSH_TOKEN_ALPHA"'}, gate={"health_timeout": '"300ms"'})
    path = world.root / "lockstep.toml"
    text = path.read_text().replace(f"http://127.0.0.1:{port}/health", "http://ci:${PUSH_TOKEN_ALPHA}@127.0.0.1:9/health")
    path.write_text(text)
    res = world.run("run", env=world.env(PUSH_TOKEN_ALPHA=token))
    assert res.code == 2, res.err  # refused before any probe: a token is never sent to staging
    assert "services[0] (alpha).health_url contains the value of PUSH_TOKEN_ALPHA" in res.err
    assert token not in res.all_output


def test_config_errors_do_not_quote_secret_values(gh_world: GitHubWorld) -> None:
    """Config errors used to quote values after ${VAR} substitution, printing a secret used in the wrong field."""
    world = gh_world
    world.config()
    path = world.root / "lockstep.toml"
    url = world.staging["backend"].url
    path.write_text(path.read_text().replace(f'health_url = "{url}/health"', 'health_url = "${GITHUB_TOKEN}/health"', 1))
    res = world.run("run")
    assert res.code == 2
    assert world.read_token not in res.all_output, res.err


# ---------------------------------------------------------------------------------------------
# 8. The automatic rollback reports a target that was never created as being at the new sha.


def test_rollback_does_not_report_a_missing_target_at_the_new_sha(world: GitWorld) -> None:
    """The automatic rollback used to report a target that was never created at the new sha."""
    world.delete_branch("beta", "prod")  # beta's target is seeded by this run...
    world.hook("beta", "pre-receive", "echo refused >&2; exit 1")  # ...but the push is refused: split
    world.config(extra='\n[recovery]\nallow_rollback = true\non_split = "rollback"\n')
    old_alpha = world.sha("alpha", "prod")
    res = world.run("run")
    assert world.sha("alpha", "prod") == old_alpha, "setup: alpha should have been rolled back"
    assert world.sha("beta", "prod") is None
    assert res.report is not None, res.err
    assert world.service(res.report, "beta")["final_target_sha"] is None, world.service(res.report, "beta")
    assert _row(res.out, "beta")[2] in ("(missing)", "–", "unknown"), res.out


# ---------------------------------------------------------------------------------------------
# 9. A blocked automatic rollback erases the positions the run had verified.


def test_blocked_rollback_keeps_the_verified_positions(gh_world: GitHubWorld) -> None:
    """A blocked automatic rollback used to overwrite the positions the run had verified with null
    (the summary then said the target was '(missing)')."""
    world = gh_world
    world.config(checks='\n[recovery]\nallow_rollback = true\non_split = "rollback"\n')
    repo = REPOS["metadata"]
    hotfix = world.gh.commit(repo, parents=(world.mains["metadata"],), message="hotfix pushed by hand")
    # After the pre-push check of every target (the second heads query: the first is resolve's, whose
    # compare also answered the fast-forward check): backend is pushed, then metadata's push meets
    # another writer.
    _move_after_read(world, "metadata", hotfix, nth=2)
    res = world.run("run")
    assert world.prod("backend") == world.mains["backend"] and world.prod("metadata") == hotfix
    assert res.report is not None and res.report["rollback"] is not None, res.err
    assert world.service(res.report, "metadata")["final_target_sha"] == hotfix
    assert _row(res.out, "metadata")[2] != "(missing)", res.out


# ---------------------------------------------------------------------------------------------
# 10. The automatic rollback cannot remove a target this run created, yet calls itself complete.


def test_rollback_that_cannot_remove_a_seeded_target_is_not_reported_complete(tmp_path: Path) -> None:
    """A rollback that could not remove a target this run created used to say 'the advanced targets were
    rolled back' and exit 1 while the created branch remained (a split)."""
    for world in build_git_world(tmp_path, ("alpha", "beta", "gamma")):
        world.delete_branch("alpha", "prod")  # alpha's target is created by this run, beta is advanced...
        world.hook("gamma", "pre-receive", "echo refused >&2; exit 1")  # ...and gamma's push is refused
        world.config(extra='\n[recovery]\nallow_rollback = true\non_split = "rollback"\n')
        old_beta = world.sha("beta", "prod")
        res = world.run("run")
        assert world.sha("alpha", "prod") == world.sha("alpha", "main"), "setup: alpha's prod was created"
        assert world.sha("beta", "prod") == old_beta, "setup: beta was rolled back"
        assert world.sha("gamma", "prod") != world.sha("gamma", "main")
        assert res.code == 3, (res.code, res.out)
        assert "advanced targets were rolled back" not in res.out

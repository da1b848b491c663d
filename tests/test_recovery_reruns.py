"""Re-running ``lockstep run`` while prod is split (what Actions' "Re-run" does) never hides the split.

Both forges, real CLI in subprocesses.  The split is made by a refusal that stays in place for
every re-run (a pre-receive hook on git, branch protection on the fake GitHub), so each re-run
fails the same way.  After any number of re-runs: each re-run exits 3 and says split, ``status``
says split, and the printed ``reconcile`` commands repair it (``--forward`` once the refusal is
lifted, ``--rollback`` at once).  The truth is read back from the repositories themselves.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.cli import CliResult
from tests.support.githubworld import REPOS, GitHubWorld
from tests.support.githubworld import build_world as build_github_world
from tests.support.gitworld import GitWorld

ROLLBACK = "\n[recovery]\nallow_rollback = true\n"


def _config(world: GitWorld | GitHubWorld) -> str:
    return str(world.root / "lockstep.toml")


def _verdict(text: str) -> str:
    return next(ln for ln in text.splitlines() if ln.startswith("verdict:"))


def _assert_split_rerun(res: CliResult) -> None:
    assert res.code == 3, res.out + res.err
    assert res.report is not None and res.report["result"] == "split"
    assert "split" in res.out.lower()
    assert "lockstep reconcile --forward" in res.out + res.err


def _git_split(world: GitWorld) -> tuple[dict[str, str | None], dict[str, str | None]]:
    """Split by a hook that refuses beta's prod push, and leave the hook in place."""
    olds = {n: world.sha(n, "prod") for n in world.names}
    news = {n: world.sha(n, "main") for n in world.names}
    world.hook("beta", "pre-receive",
               'while read o n r; do [ "$r" = refs/heads/prod ] && { echo protected >&2; exit 1; }; done; exit 0')
    res = world.run("run")
    assert res.code == 3, res.out + res.err
    return olds, news


def _git_prods(world: GitWorld) -> dict[str, str | None]:
    return {n: world.sha(n, "prod") for n in world.names}


@pytest.mark.parametrize("reruns", [1, 3])
def test_git_reruns_while_split_keep_saying_split_and_forward_still_repairs(
    world: GitWorld, reruns: int
) -> None:
    world.config(extra=ROLLBACK)
    olds, news = _git_split(world)
    split = {"alpha": news["alpha"], "beta": olds["beta"]}
    for _ in range(reruns):
        res = world.run("run")
        _assert_split_rerun(res)
        assert _git_prods(world) == split
    st = world.run("status", "--config", _config(world))
    assert st.code == 3, st.out + st.err
    assert _verdict(st.out).startswith("verdict: split"), st.out
    (world.repos["beta"] / "hooks" / "pre-receive").unlink()
    fix = world.run("reconcile", "--forward", "--config", _config(world), "--justification", "hook lifted")
    assert fix.code == 0, fix.out + fix.err
    assert _git_prods(world) == news
    st = world.run("status", "--config", _config(world))
    assert st.code == 0 and _verdict(st.out).startswith("verdict: consistent"), st.out


def test_git_rollback_after_reruns_rewinds_to_the_last_consistent_set(world: GitWorld) -> None:
    world.config(extra=ROLLBACK)
    olds, _news = _git_split(world)
    for _ in range(2):
        _assert_split_rerun(world.run("run"))
    back = world.run("reconcile", "--rollback", "--config", _config(world), "--justification", "not today")
    assert back.code == 0, back.out + back.err
    assert _git_prods(world) == olds
    st = world.run("status", "--config", _config(world))
    assert st.code == 0 and _verdict(st.out).startswith("verdict: consistent"), st.out


def test_git_rerun_blocked_by_the_gate_still_says_split(world: GitWorld) -> None:
    """A re-run stopped before any push (staging now unhealthy) leaves the split: exit 3, not 1."""
    world.config()
    _git_split(world)
    world.staging["alpha"].health_status = 503
    res = world.run("run")
    _assert_split_rerun(res)
    assert "still split" in res.out


def test_git_rerun_that_finishes_the_promotion_is_promoted_and_consistent(world: GitWorld) -> None:
    world.config()
    _olds, news = _git_split(world)
    (world.repos["beta"] / "hooks" / "pre-receive").unlink()
    res = world.run("run")
    assert res.code == 0, res.out + res.err
    assert res.report is not None and res.report["result"] == "promoted"
    assert _git_prods(world) == news
    st = world.run("status", "--config", _config(world))
    assert st.code == 0 and _verdict(st.out).startswith("verdict: consistent"), st.out


@pytest.fixture
def ghw(tmp_path: Path) -> Iterator[GitHubWorld]:
    yield from build_github_world(tmp_path)


@pytest.mark.parametrize("reruns", [1, 2])
def test_github_reruns_while_split_keep_saying_split_then_forward_and_rollback_work(
    ghw: GitHubWorld, reruns: int
) -> None:
    ghw.config(checks=ROLLBACK)
    olds, news = dict(ghw.prods), dict(ghw.mains)
    ghw.gh.protect(REPOS["metadata"], "prod")
    assert ghw.run("run").code == 3
    split = {"backend": news["backend"], "metadata": olds["metadata"]}
    for _ in range(reruns):
        _assert_split_rerun(ghw.run("run"))
        assert ghw.prods_now() == split
    st = ghw.run("status", "--config", _config(ghw))
    assert st.code == 3 and _verdict(st.out).startswith("verdict: split"), st.out
    back = ghw.run("reconcile", "--rollback", "--config", _config(ghw), "--justification", "not today")
    assert back.code == 0, back.out + back.err
    assert ghw.prods_now() == olds
    st = ghw.run("status", "--config", _config(ghw))
    assert st.code == 0 and _verdict(st.out).startswith("verdict: consistent"), st.out


def test_github_forward_after_reruns_finishes_the_promotion(ghw: GitHubWorld) -> None:
    ghw.config()
    news = dict(ghw.mains)
    ghw.gh.protect(REPOS["metadata"], "prod")
    assert ghw.run("run").code == 3
    _assert_split_rerun(ghw.run("run"))
    ghw.gh.unprotect(REPOS["metadata"], "prod")
    fix = ghw.run("reconcile", "--forward", "--config", _config(ghw), "--justification", "rule lifted")
    assert fix.code == 0, fix.out + fix.err
    assert ghw.prods_now() == news


def test_github_run_reads_the_records_of_one_repository_only(ghw: GitHubWorld) -> None:
    """The start-state read costs 2 requests, not 2N: every run writes its record to every repository."""
    ghw.config(gate={"records_store": '"deployments"'})
    assert ghw.run("run").code == 0
    listed = [r.path for r in ghw.gh.requests if r.method == "GET" and "/deployments" in r.path]
    assert listed and all(p.startswith(f"/repos/{REPOS['backend']}/") for p in listed), listed
    assert len(listed) <= 2, listed

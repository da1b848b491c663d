"""Promotion records, ``status`` and ``reconcile`` end to end on the GitHub forge.

The fake GitHub over real HTTP, real staging stubs and the real CLI in
subprocesses.  Every test reads the truth back from the fake: the prods'
positions, the PATCH requests in its log (bodies and order), the deployments
that hold the promotion records in each service repository (environment
``<gate>/prod``) and the audit comments stored on the tracker issue.
"""

from __future__ import annotations

import json
import shlex
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.cli import CliResult
from tests.support.fakegithub import Fault
from tests.support.githubworld import GATE, REPOS, TRACKER_ISSUE, TRACKER_REPO, GitHubWorld, build_world

pytestmark = pytest.mark.timeout(60)

ROLLBACK = "\n[recovery]\nallow_rollback = true\n"
ENVIRONMENT = f"{GATE}/prod"
PATCH_PATH = r"/repos/acme/{}/git/refs/heads/prod"


@pytest.fixture
def ghw(tmp_path: Path) -> Iterator[GitHubWorld]:
    """Records as deployments, the store these tests read back (the default branch store has its
    own: tests/test_recovery_github_branch.py)."""
    for world in build_world(tmp_path):
        world.gate_defaults["records_store"] = '"deployments"'
        yield world


# -- helpers -------------------------------------------------------------------------


def config_path(ghw: GitHubWorld) -> str:
    return str(ghw.root / "lockstep.toml")


def lockstep(ghw: GitHubWorld, *args: str) -> CliResult:
    """``status`` / ``reconcile`` with this world's config (``ghw.run`` only adds it for ``run``)."""
    return ghw.run(*args, "--config", config_path(ghw))


def expected_command(ghw: GitHubWorld, direction: str) -> str:
    return f'lockstep reconcile --{direction} --config {config_path(ghw)} --justification "<why>"'


def printed_command(text: str, direction: str, why: str) -> list[str]:
    """The reconcile command printed in ``text``, as argv (without ``lockstep``), ``<why>`` filled in."""
    line = next(ln for ln in text.splitlines() if f"lockstep reconcile --{direction}" in ln)
    argv = shlex.split(line[line.index("lockstep reconcile"):].rstrip("`"))
    assert argv[0] == "lockstep"
    return [why if a == "<why>" else a for a in argv[1:]]


def verdict(text: str) -> str:
    return next(ln for ln in text.splitlines() if ln.startswith("verdict:"))


def records(ghw: GitHubWorld, name: str) -> list[dict[str, Any]]:
    """The lockstep deployments in ``name``'s repository, oldest first, with their statuses."""
    return [
        d for d in ghw.gh.deployments(REPOS[name])
        if isinstance(d.get("payload"), dict) and d["payload"].get("kind") == "lockstep-promotion"
    ]


def rec_service(payload: dict[str, Any], name: str) -> dict[str, Any]:
    return next(s for s in payload["services"] if s["name"] == name)


def index_of(ghw: GitHubWorld, method: str, path: str) -> list[int]:
    """Positions in the fake's request log of requests matching method and a path substring."""
    return [i for i, r in enumerate(ghw.gh.requests) if r.method == method and path in r.path]


def comment_before_patch(ghw: GitHubWorld, name: str) -> None:
    """The audit comment was POSTed (and stored, 201) before ``name``'s last prod PATCH."""
    comments = [i for i in index_of(ghw, "POST", f"/repos/{TRACKER_REPO}/issues/{TRACKER_ISSUE}/comments")
                if ghw.gh.requests[i].status == 201]
    patches = index_of(ghw, "PATCH", f"/repos/{REPOS[name]}/git/refs/heads/prod")
    assert comments and patches, (comments, patches)
    assert comments[-1] < patches[-1], "the audit comment must be stored before the push"


def split_run(ghw: GitHubWorld) -> CliResult:
    """A gate run whose metadata PATCH is refused by branch protection (lifted afterwards)."""
    ghw.gh.protect(REPOS["metadata"], "prod")
    res = ghw.run("run")
    assert res.code == 3, res.out + res.err
    assert ghw.prods_now() == {"backend": ghw.mains["backend"], "metadata": ghw.prods["metadata"]}
    ghw.gh.unprotect(REPOS["metadata"], "prod")
    return res


# -- splits and reconcile --forward -----------------------------------------------------


def test_protected_split_is_named_and_the_printed_forward_command_fixes_it(ghw: GitHubWorld) -> None:
    ghw.config()
    olds, news = dict(ghw.prods), dict(ghw.mains)
    res = split_run(ghw)
    fix = expected_command(ghw, "forward")
    assert res.report is not None and res.report["fix_command"] == fix
    assert fix in res.out  # the split summary
    assert fix in res.err  # the exit-3 message
    assert ghw.comments() == []  # a gate run audits nothing

    # the record: one deployment per repository, sha = the new sha, statuses say what happened
    for name, state in (("backend", "success"), ("metadata", "failure")):
        [dep] = records(ghw, name)
        assert dep["environment"] == ENVIRONMENT and dep["sha"] == news[name]
        payload = dep["payload"]
        assert (payload["gate"], payload["mode"], payload["phase"]) == (GATE, "gate", "started")
        assert payload["run_id"] == res.report["run_id"]
        assert (rec_service(payload, name)["old_sha"], rec_service(payload, name)["new_sha"]) == (
            olds[name], news[name])
        assert [s["state"] for s in dep["statuses"]] == [state]

    st = lockstep(ghw, "status")
    assert st.code == 3, st.out + st.err
    line = verdict(st.out)
    assert line.startswith("verdict: split") and "advanced backend" in line and "not metadata" in line
    assert res.report["run_id"] in line
    assert fix in st.out and expected_command(ghw, "rollback") not in st.out  # allow_rollback is false

    js = lockstep(ghw, "status", "--json")
    assert js.code == 3, js.out + js.err
    data = json.loads(js.out)
    assert data["verdict"] == "split" and data["gate"] == GATE
    assert data["record"]["run_id"] == res.report["run_id"]
    by_name = {s["name"]: s for s in data["services"]}
    assert (by_name["backend"]["position"], by_name["backend"]["target_sha"]) == ("at-record", news["backend"])
    assert (by_name["metadata"]["position"], by_name["metadata"]["target_sha"]) == (
        "before-record", olds["metadata"])

    ghw.gh.clear_requests()
    done = ghw.run(*printed_command(st.out, "forward", "finish the split: metadata rule lifted"))
    assert done.code == 0, done.out + done.err
    assert ghw.prods_now() == news
    assert ghw.patches("backend") == []  # already at its recorded sha: untouched
    [patch] = ghw.patches("metadata")
    assert patch.json == {"sha": news["metadata"], "force": False} and patch.status == 200
    [comment] = ghw.comments()
    assert "finish the split: metadata rule lifted" in comment["body"]
    assert news["metadata"] in comment["body"]
    comment_before_patch(ghw, "metadata")
    assert comment["html_url"] in done.out
    # the reconcile wrote its own record, finished successfully, in both repositories
    for name in REPOS:
        last = records(ghw, name)[-1]
        assert last["payload"]["mode"] == "reconcile-forward" and last["sha"] == news[name]
        assert [s["state"] for s in last["statuses"]] == ["success"]

    st = lockstep(ghw, "status")
    assert st.code == 0, st.out + st.err
    assert verdict(st.out).startswith("verdict: consistent")


def test_split_by_a_422_on_metadatas_patch_then_forward(ghw: GitHubWorld) -> None:
    ghw.config()
    news = dict(ghw.mains)
    injection = ghw.gh.inject(Fault.status(422, "Update is not a fast forward"), method="PATCH",
                              path=PATCH_PATH.format("metadata"), times=None)
    res = ghw.run("run")
    assert res.code == 3, res.out + res.err
    assert injection.fired >= 1
    assert ghw.prods_now() == {"backend": news["backend"], "metadata": ghw.prods["metadata"]}
    assert "Update is not a fast forward" in res.out
    assert expected_command(ghw, "forward") in res.err
    assert res.report is not None and res.report["result"] == "split"

    st = lockstep(ghw, "status")
    assert st.code == 3, st.out + st.err
    assert "advanced backend but not metadata" in verdict(st.out)

    ghw.gh.clear_faults()
    done = ghw.run(*printed_command(st.out, "forward", "GitHub glitch, retrying"))
    assert done.code == 0, done.out + done.err
    assert ghw.prods_now() == news
    assert not any(isinstance(p.json, dict) and p.json.get("force") for n in REPOS for p in ghw.patches(n))
    assert "GitHub glitch, retrying" in ghw.comments()[-1]["body"]
    comment_before_patch(ghw, "metadata")
    st = lockstep(ghw, "status")
    assert st.code == 0, st.out + st.err
    assert verdict(st.out).startswith("verdict: consistent")


def test_status_still_names_the_split_after_a_failed_forward_reconcile(ghw: GitHubWorld) -> None:
    ghw.config()
    ghw.gh.inject(Fault.status(422, "Update is not a fast forward"), method="PATCH",
                  path=PATCH_PATH.format("metadata"), times=None)
    assert ghw.run("run").code == 3
    split = {"backend": ghw.mains["backend"], "metadata": ghw.prods["metadata"]}
    refused = lockstep(ghw, "reconcile", "--forward", "--justification", "try again")
    assert refused.code == 3, refused.out + refused.err  # nothing moved and the targets are still split
    assert ghw.prods_now() == split  # the truth: still split
    st = lockstep(ghw, "status")
    assert st.code == 3, st.out + st.err
    assert verdict(st.out).startswith("verdict: split")


def test_split_by_sigkill_between_pushes_is_named_from_the_started_record(ghw: GitHubWorld) -> None:
    """metadata's PATCH is held 2 s by the fake and refused by protection when it lands; the run is
    SIGKILLed while it waits, so only the started record exists (no deployment statuses)."""
    ghw.config()
    news = dict(ghw.mains)
    ghw.gh.protect(REPOS["metadata"], "prod")
    ghw.gh.inject(Fault.delay(2.0), method="PATCH", path=PATCH_PATH.format("metadata"))
    proc = ghw.start("run")
    deadline = time.monotonic() + 30
    while not ghw.patches("metadata"):
        assert time.monotonic() < deadline and proc.poll() is None, proc.communicate()
        time.sleep(0.01)
    proc.kill()
    proc.communicate(timeout=30)
    assert proc.returncode == -9
    while ghw.patches("metadata")[0].status is None:  # the held PATCH lands (and is refused)
        assert time.monotonic() < deadline
        time.sleep(0.05)
    ghw.gh.unprotect(REPOS["metadata"], "prod")
    assert ghw.prods_now() == {"backend": news["backend"], "metadata": ghw.prods["metadata"]}
    for name in REPOS:
        [dep] = records(ghw, name)
        assert dep["payload"]["phase"] == "started" and dep["statuses"] == []

    st = lockstep(ghw, "status")
    assert st.code == 3, st.out + st.err
    assert "advanced backend but not metadata" in verdict(st.out)
    assert "started" in st.out
    assert expected_command(ghw, "forward") in st.out

    done = ghw.run(*printed_command(st.out, "forward", "finish the run killed by the OOM killer"))
    assert done.code == 0, done.out + done.err
    assert ghw.prods_now() == news
    comment_before_patch(ghw, "metadata")
    st = lockstep(ghw, "status")
    assert st.code == 0, st.out + st.err
    assert verdict(st.out).startswith("verdict: consistent")


def test_forward_refuses_when_a_target_moved_since_the_record(ghw: GitHubWorld) -> None:
    ghw.config()
    split_run(ghw)
    repo = REPOS["metadata"]
    moved = ghw.gh.commit(repo, parents=(ghw.mains["metadata"],), message="fixed by hand, differently")
    ghw.gh.set_branch(repo, "prod", moved)
    before = ghw.prods_now()
    deployments = {n: len(records(ghw, n)) for n in REPOS}
    ghw.gh.clear_requests()
    res = lockstep(ghw, "reconcile", "--forward", "--justification", "finish it")
    assert res.code == 1, res.out + res.err
    assert ghw.prods_now() == before and before["metadata"] == moved
    assert ghw.ref_writes() == []
    assert "metadata" in res.out and "moved since" in res.out
    assert ghw.comments() == []  # refused before the audit
    assert {n: len(records(ghw, n)) for n in REPOS} == deployments


def test_reconcile_without_direction_or_justification_is_a_usage_error(ghw: GitHubWorld) -> None:
    ghw.config()
    split_run(ghw)
    split = ghw.prods_now()
    for args in (("reconcile",), ("reconcile", "--forward")):
        res = lockstep(ghw, *args)
        assert res.code == 2, res.out + res.err
        assert "Traceback" not in res.err
    assert "justification" in lockstep(ghw, "reconcile", "--forward").err
    assert ghw.prods_now() == split and ghw.comments() == []
    assert len(ghw.patches("metadata")) == 1  # only the refused one from the run


# -- reconcile --rollback ---------------------------------------------------------------


def test_rollback_needs_allow_rollback_then_force_patches_backend_back(ghw: GitHubWorld) -> None:
    ghw.config()
    olds = dict(ghw.prods)
    split_run(ghw)
    split = ghw.prods_now()

    ghw.gh.clear_requests()
    res = lockstep(ghw, "reconcile", "--rollback", "--justification", "metadata cannot ship today")
    assert res.code == 2, res.out + res.err
    assert "allow_rollback" in res.err
    assert ghw.prods_now() == split and ghw.gh.writes() == [] and ghw.comments() == []

    ghw.config(checks=ROLLBACK)
    res = lockstep(ghw, "reconcile", "--rollback", "--justification", "metadata cannot ship today")
    assert res.code == 0, res.out + res.err
    assert ghw.prods_now() == olds
    assert "rolled back" in res.out
    assert ghw.patches("metadata") == []
    [patch] = ghw.patches("backend")
    assert patch.json == {"sha": olds["backend"], "force": True} and patch.status == 200
    forced = [r for r in ghw.gh.requests if isinstance(r.json, dict) and r.json.get("force") is True]
    assert forced == [patch]  # the only backwards move
    [comment] = ghw.comments()
    assert "metadata cannot ship today" in comment["body"]
    comment_before_patch(ghw, "backend")
    last = records(ghw, "backend")[-1]
    assert last["payload"]["mode"] == "reconcile-rollback" and last["sha"] == olds["backend"]
    assert rec_service(last["payload"], "backend")["new_sha"] == olds["backend"]
    assert [s["state"] for s in last["statuses"]] == ["success"]

    st = lockstep(ghw, "status")
    assert st.code == 0, st.out + st.err
    assert verdict(st.out).startswith("verdict: consistent")


def test_rollback_leaves_a_target_that_moved_again_alone(ghw: GitHubWorld) -> None:
    ghw.config(checks=ROLLBACK)
    split_run(ghw)
    repo = REPOS["backend"]
    hotfix = ghw.gh.commit(repo, parents=(ghw.mains["backend"],), message="hotfix after the split")
    ghw.gh.set_branch(repo, "prod", hotfix)
    before = ghw.prods_now()
    ghw.gh.clear_requests()
    res = lockstep(ghw, "reconcile", "--rollback", "--justification", "undo")
    assert res.code == 1, res.out + res.err
    assert ghw.prods_now() == before and before["backend"] == hotfix
    assert ghw.ref_writes() == [] and ghw.comments() == []
    assert "backend" in res.out and "moved since" in res.out


def test_on_split_rollback_rewinds_backend_at_once_audited(ghw: GitHubWorld) -> None:
    ghw.config(checks=ROLLBACK + 'on_split = "rollback"\n')
    olds = dict(ghw.prods)
    ghw.gh.protect(REPOS["metadata"], "prod")
    res = ghw.run("run")
    assert res.code == 1, res.out + res.err
    assert ghw.prods_now() == olds
    forward, back = ghw.patches("backend")
    assert forward.json == {"sha": ghw.mains["backend"], "force": False}
    assert back.json == {"sha": olds["backend"], "force": True} and back.status == 200
    [comment] = ghw.comments()
    assert "automatic rollback" in comment["body"]
    comment_before_patch(ghw, "backend")
    assert "reconcile --forward" not in res.out + res.err
    modes = [(d["payload"]["mode"], d["payload"]["phase"]) for d in records(ghw, "backend")]
    assert modes == [("gate", "started"), ("rollback", "started")]
    ghw.gh.unprotect(REPOS["metadata"], "prod")
    st = lockstep(ghw, "status")
    assert st.code == 0, st.out + st.err
    assert verdict(st.out).startswith("verdict: consistent")


# -- status verdicts --------------------------------------------------------------------


def test_never_promoted_is_consistent_and_a_manual_move_after_a_promotion_is_drifted(ghw: GitHubWorld) -> None:
    ghw.config()
    st = lockstep(ghw, "status")
    assert st.code == 0, st.out + st.err
    assert verdict(st.out).startswith("verdict: consistent: never promoted")
    assert json.loads(lockstep(ghw, "status", "--json").out)["record"] is None

    res = ghw.run("run")
    assert res.code == 0, res.out + res.err
    assert ghw.prods_now() == ghw.mains
    st = lockstep(ghw, "status")
    assert st.code == 0, st.out + st.err
    assert verdict(st.out).startswith("verdict: consistent")
    assert res.report is not None and res.report["run_id"] in st.out

    repo = REPOS["metadata"]
    hand = ghw.gh.commit(repo, parents=(ghw.prods["metadata"],), message="pushed to prod by hand")
    ghw.gh.set_branch(repo, "prod", hand)
    st = lockstep(ghw, "status")
    assert st.code == 3, st.out + st.err
    line = verdict(st.out)
    assert line.startswith("verdict: drifted") and "metadata" in line and "backend" not in line
    data = json.loads(lockstep(ghw, "status", "--json").out)
    assert data["verdict"] == "drifted"
    by_name = {s["name"]: s for s in data["services"]}
    assert (by_name["metadata"]["position"], by_name["metadata"]["target_sha"]) == ("drifted", hand)
    assert by_name["metadata"]["relation"] == "diverged"
    assert by_name["backend"]["position"] == "at-record"


def test_records_disabled_status_says_never_promoted_and_reconcile_refuses(ghw: GitHubWorld) -> None:
    ghw.config(gate={"records": "false"})
    ghw.gh.protect(REPOS["metadata"], "prod")
    res = ghw.run("run")
    assert res.code == 3, res.out + res.err
    ghw.gh.unprotect(REPOS["metadata"], "prod")
    assert ghw.gh.deployments(REPOS["backend"]) == ghw.gh.deployments(REPOS["metadata"]) == []

    st = lockstep(ghw, "status")
    assert st.code == 0, st.out + st.err
    assert verdict(st.out) == "verdict: consistent: never promoted by lockstep"

    before = ghw.prods_now()
    ghw.gh.clear_requests()
    res = lockstep(ghw, "reconcile", "--forward", "--justification", "finish it")
    assert res.code == 2, res.out + res.err
    assert "promotion records" in res.err and "records = false" in res.err
    assert "Traceback" not in res.err
    assert ghw.prods_now() == before and ghw.gh.writes() == []


def test_records_disabled_reconcile_message_names_the_setting(ghw: GitHubWorld) -> None:
    ghw.config(gate={"records": "false"})
    res = lockstep(ghw, "reconcile", "--forward", "--justification", "finish it")
    assert res.code == 2, res.out + res.err
    assert "records = false" in res.err and "yet" not in res.err


def test_records_disabled_split_prints_no_reconcile_command_that_cannot_work(ghw: GitHubWorld) -> None:
    ghw.config(gate={"records": "false"})
    ghw.gh.protect(REPOS["metadata"], "prod")
    res = ghw.run("run")
    assert res.code == 3, res.out + res.err
    assert "lockstep reconcile" not in res.out + res.err


# -- record write failures --------------------------------------------------------------


def test_record_write_failure_leaves_the_promotion_intact_and_warns(ghw: GitHubWorld) -> None:
    ghw.config()
    ghw.gh.inject(Fault.status(403, "Resource not accessible by personal access token"), method="POST",
                  path=r"/repos/[^/]+/[^/]+/deployments(/.*)?", times=None)
    res = ghw.run("run")
    assert res.code == 0, res.out + res.err
    assert ghw.prods_now() == ghw.mains
    assert ghw.gh.deployments(REPOS["backend"]) == ghw.gh.deployments(REPOS["metadata"]) == []
    assert res.report is not None and res.report["result"] == "promoted"
    assert res.report["record"] is None
    warnings = res.report["warnings"]
    assert any("could not write the started promotion record" in w for w in warnings), warnings
    assert "could not write the started promotion record" in res.out

"""Promotion records, ``status`` and ``reconcile`` end to end on the git forge.

Real bare repositories, real staging servers and the real CLI in subprocesses.
Every test reads the truth back from the repositories themselves: the targets'
positions with ``git rev-parse`` and the promotion records with
``git show refs/lockstep/test/records:records.jsonl`` on alpha.git (the first
service's repository).  Hooks on alpha filter on the ref name, because the
records ref is pushed there too.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from markdown_it import MarkdownIt

from tests.support.cli import CliResult
from tests.support.gitworld import GitWorld, build_world

RECORDS_REF = "refs/lockstep/test/records"
ROLLBACK = "[recovery]\nallow_rollback = true\n"


# -- helpers -------------------------------------------------------------------------


def lockstep(world: GitWorld, *args: str) -> CliResult:
    """``status`` / ``reconcile`` with this world's config (``world.run`` only adds it for ``run``)."""
    return world.run(*args, "--config", str(world.root / "lockstep.toml"))


def records(world: GitWorld) -> list[dict[str, Any]]:
    """The promotion records as stored on alpha.git's records ref ([] when the ref does not exist)."""
    git_dir = str(world.repos["alpha"])
    exists = subprocess.run(["git", "--git-dir", git_dir, "rev-parse", "--verify", "-q", RECORDS_REF],
                            capture_output=True, text=True, check=False)
    if exists.returncode != 0:
        return []
    text = subprocess.run(["git", "--git-dir", git_dir, "show", f"{RECORDS_REF}:records.jsonl"],
                          capture_output=True, text=True, check=True).stdout
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def prods(world: GitWorld) -> dict[str, str | None]:
    return {n: world.sha(n, "prod") for n in world.names}


def mains(world: GitWorld) -> dict[str, str | None]:
    return {n: world.sha(n, "main") for n in world.names}


def known(sha: str | None) -> str:
    assert sha is not None, "setup: the branch should exist"
    return sha


def rec_service(record: dict[str, Any], name: str) -> dict[str, Any]:
    return next(s for s in record["services"] if s["name"] == name)


def expected_command(world: GitWorld, direction: str) -> str:
    return (f"lockstep reconcile --{direction} --config {world.root / 'lockstep.toml'} "
            '--justification "<why>"')


def printed_command(text: str, direction: str, why: str) -> list[str]:
    """The reconcile command printed in ``text``, as argv with ``<why>`` filled in."""
    line = next(ln for ln in text.splitlines() if f"lockstep reconcile --{direction}" in ln)
    argv = shlex.split(line[line.index("lockstep reconcile"):])
    assert argv[0] == "lockstep"
    return [why if a == "<why>" else a for a in argv[1:]]


def split_by_rejected_push(world: GitWorld) -> CliResult:
    """A gate run whose beta push is refused by a pre-receive hook (removed afterwards): alpha moved."""
    world.hook("beta", "pre-receive", "echo 'protected branch' >&2; exit 1")
    before, want = prods(world), mains(world)
    res = world.run("run")
    assert res.code == 3, res.out + res.err
    assert prods(world) == {"alpha": want["alpha"], "beta": before["beta"]}
    (world.repos["beta"] / "hooks" / "pre-receive").unlink()
    return res


def audit_first_hook(world: GitWorld, name: str) -> None:
    """A pre-receive hook that notes, at the moment ``name``'s prod is pushed, whether the audit exists."""
    audit = world.root / "audit.md.jsonl"
    marker = world.root / f"{name}-push-saw-audit"
    world.hook(name, "pre-receive",
               f'while read o n r; do if [ "$r" = refs/heads/prod ] && [ -s {audit} ]; then '
               f"touch {marker}; fi; done; exit 0")


def audit_lines(world: GitWorld) -> list[dict[str, Any]]:
    path = world.root / "audit.md.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


# -- records ------------------------------------------------------------------------


def test_promoting_run_writes_started_then_finished_record(world: GitWorld) -> None:
    world.config()
    olds, news = prods(world), mains(world)
    res = world.run("run")
    assert res.code == 0, res.err
    assert prods(world) == news
    recs = records(world)
    assert [r["phase"] for r in recs] == ["started", "finished"]
    started, finished = recs
    assert res.report is not None
    assert started["run_id"] == finished["run_id"] == res.report["run_id"]
    assert RECORDS_REF in (res.report["record"] or "")
    for rec in recs:
        assert rec["kind"] == "lockstep-promotion" and rec["gate"] == "test" and rec["mode"] == "gate"
        assert [s["name"] for s in rec["services"]] == ["alpha", "beta"]
        for n in world.names:
            svc = rec_service(rec, n)
            assert (svc["old_sha"], svc["new_sha"]) == (olds[n], news[n])
            assert svc["repo"] == f"{n}.git" and svc["target"] == "prod"
    assert started["result"] is None
    assert {s["outcome"] for s in started["services"]} == {"pending"}
    assert finished["result"] == "promoted"
    assert {s["outcome"] for s in finished["services"]} == {"advanced"}

    st = lockstep(world, "status")
    assert st.code == 0, st.out + st.err
    assert "verdict: consistent" in st.out
    assert f"run {finished['run_id']}" in st.out


def test_never_promoted_blocked_and_noop_runs_write_no_record(world: GitWorld) -> None:
    world.config()
    st = lockstep(world, "status")
    assert st.code == 0, st.out + st.err
    assert "verdict: consistent: never promoted" in st.out

    before = prods(world)
    world.staging["beta"].version_body = {"sha": before["beta"]}  # staging runs the old commit
    res = world.run("run")
    assert res.code == 1
    assert prods(world) == before
    assert records(world) == []

    for n in world.names:
        world.set_branch(n, "prod", world.sha(n, "main") or "")
    res = world.run("run")
    assert res.code == 0, res.err
    assert res.report is not None and res.report["result"] == "noop"
    assert records(world) == []


# -- status verdicts ----------------------------------------------------------------


def test_split_by_rejected_push_status_names_it_and_printed_forward_fixes_it(world: GitWorld) -> None:
    world.config()
    olds, news = prods(world), mains(world)
    res = split_by_rejected_push(world)
    recs = records(world)
    assert [r["phase"] for r in recs] == ["started", "finished"]
    assert recs[1]["result"] == "split"
    assert rec_service(recs[1], "alpha")["outcome"] == "advanced"
    assert rec_service(recs[1], "beta")["outcome"] == "failed"
    assert res.report is not None
    assert res.report["fix_command"] == expected_command(world, "forward")
    assert expected_command(world, "forward") in res.out  # the split summary
    assert expected_command(world, "forward") in res.err  # the exit-3 message

    st = lockstep(world, "status")
    assert st.code == 3, st.out + st.err
    verdict = next(ln for ln in st.out.splitlines() if ln.startswith("verdict:"))
    assert verdict.startswith("verdict: split") and "advanced alpha" in verdict and "not beta" in verdict
    assert expected_command(world, "forward") in st.out
    assert expected_command(world, "rollback") not in st.out  # allow_rollback is false: it would fail

    js = lockstep(world, "status", "--json")
    assert js.code == 3
    data = json.loads(js.out)
    assert data["verdict"] == "split"
    assert data["record"]["run_id"] == recs[1]["run_id"]
    by_name = {s["name"]: s for s in data["services"]}
    assert by_name["alpha"]["position"] == "at-record" and by_name["alpha"]["target_sha"] == news["alpha"]
    assert by_name["beta"]["position"] == "before-record" and by_name["beta"]["target_sha"] == olds["beta"]

    audit_first_hook(world, "beta")
    fix = world.run(*printed_command(st.out, "forward", "finish the split: beta rule lifted"))
    assert fix.code == 0, fix.out + fix.err
    assert prods(world) == news
    assert (world.root / "beta-push-saw-audit").exists(), "the audit record must be stored before the push"
    [audit] = audit_lines(world)
    assert audit["justification"] == "finish the split: beta rule lifted"
    assert rec_service(audit, "beta")["new_sha"] == news["beta"]
    recs = records(world)
    assert [(r["mode"], r["phase"]) for r in recs[2:]] == [("reconcile-forward", "started"),
                                                          ("reconcile-forward", "finished")]
    assert recs[-1]["audit"] == str(world.root / "audit.md")

    st = lockstep(world, "status")
    assert st.code == 0, st.out + st.err
    assert "verdict: consistent" in st.out


def test_split_by_sigkill_between_pushes_is_named_from_the_started_record(world: GitWorld) -> None:
    marker = world.root / "alpha-pushed"
    world.hook("alpha", "post-receive",
               f'while read o n r; do if [ "$r" = refs/heads/prod ]; then touch {marker}; sleep 2; fi; done')
    world.config()
    olds, news = prods(world), mains(world)
    proc = world.start("run")
    deadline = time.monotonic() + 30
    while not marker.exists():
        assert time.monotonic() < deadline and proc.poll() is None, proc.communicate()
        time.sleep(0.01)
    proc.kill()
    proc.communicate(timeout=30)
    assert proc.returncode == -9
    assert prods(world) == {"alpha": news["alpha"], "beta": olds["beta"]}
    recs = records(world)
    assert [r["phase"] for r in recs] == ["started"]
    assert rec_service(recs[0], "beta")["new_sha"] == news["beta"]

    st = lockstep(world, "status")
    assert st.code == 3, st.out + st.err
    assert "verdict: split" in st.out and "advanced alpha but not beta" in st.out
    assert "started" in st.out
    assert expected_command(world, "forward") in st.out

    fix = world.run(*printed_command(st.out, "forward", "finish run killed by the OOM killer"))
    assert fix.code == 0, fix.out + fix.err
    assert prods(world) == news
    st = lockstep(world, "status")
    assert st.code == 0, st.out + st.err
    assert "verdict: consistent" in st.out


def test_target_moved_by_hand_after_promotion_is_drifted(world: GitWorld) -> None:
    world.config()
    assert world.run("run").code == 0
    hand = world.commit_on("beta", "prod")
    st = lockstep(world, "status")
    assert st.code == 3, st.out + st.err
    assert "verdict: drifted" in st.out and "beta" in st.out.split("verdict:")[1]
    js = lockstep(world, "status", "--json")
    assert js.code == 3
    data = json.loads(js.out)
    assert data["verdict"] == "drifted"
    by_name = {s["name"]: s for s in data["services"]}
    assert by_name["beta"]["position"] == "drifted" and by_name["beta"]["target_sha"] == hand
    assert by_name["beta"]["relation"] == "diverged"
    assert by_name["alpha"]["position"] == "at-record"


# -- reconcile --forward ------------------------------------------------------------


def test_forward_needs_justification_unless_recheck_and_recheck_really_checks(world: GitWorld) -> None:
    world.config()
    olds, news = prods(world), mains(world)
    split_by_rejected_push(world)
    split = prods(world)

    res = lockstep(world, "reconcile", "--forward")
    assert res.code == 2, res.out + res.err
    assert "justification" in res.err and "Traceback" not in res.err
    assert prods(world) == split

    world.staging["beta"].version_body = {"sha": olds["beta"]}  # beta's staging runs the wrong commit
    for s in world.staging.values():
        s.requests.clear()
    res = lockstep(world, "reconcile", "--forward", "--recheck")
    assert res.code == 3, res.out + res.err  # blocked, and the targets are still split
    assert "still split" in res.out
    assert prods(world) == split
    assert any(path.startswith("/version") for path, _ in world.staging["beta"].requests)
    assert known(olds["beta"]) in res.out and known(news["beta"]) in res.out

    world.staging["beta"].version_body = {"sha": news["beta"]}
    res = lockstep(world, "reconcile", "--forward", "--recheck")
    assert res.code == 0, res.out + res.err
    assert prods(world) == news
    assert audit_lines(world) == []  # a recheck is the gate itself, not a bypass
    assert [(r["mode"], r["phase"]) for r in records(world)[-2:]] == [
        ("reconcile-forward", "started"), ("reconcile-forward", "finished")]


def test_forward_refuses_when_a_target_moved_since_the_record(world: GitWorld) -> None:
    world.config()
    split_by_rejected_push(world)
    moved = world.commit_on("beta", "prod")  # someone fixed beta by hand, differently
    before, n_records = prods(world), len(records(world))
    res = lockstep(world, "reconcile", "--forward", "--justification", "finish it")
    assert res.code == 1, res.out + res.err
    assert prods(world) == before and before["beta"] == moved
    assert "beta" in res.out and "moved since" in res.out
    assert audit_lines(world) == []
    assert len(records(world)) == n_records


def test_reconcile_without_justification_names_the_right_command(world: GitWorld) -> None:
    world.config()
    res = lockstep(world, "reconcile", "--forward")
    assert res.code == 2
    assert "--skip-gate" not in res.err


# -- reconcile --rollback -----------------------------------------------------------


def test_rollback_needs_allow_rollback_then_rewinds_the_advanced_target(world: GitWorld) -> None:
    world.config()
    olds = prods(world)
    split_by_rejected_push(world)
    split = prods(world)

    res = lockstep(world, "reconcile", "--rollback", "--justification", "beta cannot ship today")
    assert res.code == 2, res.out + res.err
    assert "allow_rollback" in res.err
    assert prods(world) == split and audit_lines(world) == []

    world.config(extra=ROLLBACK)
    audit_first_hook(world, "alpha")
    res = lockstep(world, "reconcile", "--rollback", "--justification", "beta cannot ship today")
    assert res.code == 0, res.out + res.err
    assert prods(world) == olds
    assert "rolled back" in res.out
    assert (world.root / "alpha-push-saw-audit").exists(), "the audit record must be stored before the push"
    [audit] = audit_lines(world)
    assert audit["justification"] == "beta cannot ship today"
    assert rec_service(audit, "alpha")["new_sha"] == olds["alpha"]
    last = records(world)[-1]
    assert (last["mode"], last["phase"], last["result"]) == ("reconcile-rollback", "finished", "promoted")
    assert rec_service(last, "alpha")["new_sha"] == olds["alpha"]

    st = lockstep(world, "status")
    assert st.code == 0, st.out + st.err
    assert "verdict: consistent" in st.out


def test_rollback_leaves_a_target_that_moved_again_alone_and_refuses(world: GitWorld) -> None:
    world.config(extra=ROLLBACK)
    split_by_rejected_push(world)
    moved = world.commit_on("alpha", "prod")  # a hotfix landed on alpha after the split
    before = prods(world)
    res = lockstep(world, "reconcile", "--rollback", "--justification", "undo")
    assert res.code == 1, res.out + res.err
    assert prods(world) == before and before["alpha"] == moved
    assert "alpha" in res.out and "moved since" in res.out
    assert audit_lines(world) == []


# -- run: on_split = "rollback", record failures, the printed command ----------------


@pytest.fixture(scope="module")
def auto_rollback(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AutoRollback]:
    """One `run` with on_split = "rollback" whose beta push is refused, shared by the tests below."""
    for world in build_world(tmp_path_factory.mktemp("auto-rollback")):
        world.config(extra=ROLLBACK + 'on_split = "rollback"\n')
        olds, news = prods(world), mains(world)
        world.hook("beta", "pre-receive", "echo 'protected branch' >&2; exit 1")
        res = world.run("run")
        yield AutoRollback(world, res, olds, news, records(world))


@dataclass
class AutoRollback:
    world: GitWorld
    res: CliResult
    olds: dict[str, str | None]
    news: dict[str, str | None]
    records: list[dict[str, Any]]

    @property
    def rollback_summary(self) -> str:
        return self.res.out[self.res.out.index("**Mode:** `rollback`"):]


def test_on_split_rollback_rewinds_the_advanced_target_immediately(auto_rollback: AutoRollback) -> None:
    world, res = auto_rollback.world, auto_rollback.res
    assert res.code == 1, res.out + res.err
    assert prods(world) == auto_rollback.olds
    assert "| rolled back |" in auto_rollback.rollback_summary
    [audit] = audit_lines(world)
    assert "automatic rollback" in audit["justification"]
    assert rec_service(audit, "alpha")["new_sha"] == auto_rollback.olds["alpha"]
    recs = auto_rollback.records
    assert [(r["mode"], r["phase"]) for r in recs] == [
        ("gate", "started"), ("gate", "finished"), ("rollback", "started"), ("rollback", "finished")]
    assert recs[1]["result"] == "split" and recs[3]["result"] == "promoted"  # the rollback's own run
    assert recs[3]["audit"] == str(world.root / "audit.md")
    st = lockstep(world, "status")
    assert st.code == 0, st.out + st.err
    assert "verdict: consistent" in st.out


def test_on_split_rollback_prints_no_stale_forward_command(auto_rollback: AutoRollback) -> None:
    res = auto_rollback.res
    assert "reconcile --forward" not in res.out + res.err
    assert "targets are split" not in res.err


def test_on_split_rollback_json_report_matches_what_happened(auto_rollback: AutoRollback) -> None:
    report = auto_rollback.res.report
    assert report is not None
    assert report["exit_code"] == auto_rollback.res.code == 1


def test_on_split_rollback_record_says_rolled_back(auto_rollback: AutoRollback) -> None:
    assert rec_service(auto_rollback.records[-1], "alpha")["outcome"] == "rolled back"


def test_on_split_rollback_summary_says_rolled_back_with_the_shas(auto_rollback: AutoRollback) -> None:
    """The headline, rows and advice describe the rollback, never a split or a promotion."""
    out, olds, news = auto_rollback.res.out, auto_rollback.olds, auto_rollback.news
    tokens = MarkdownIt("commonmark").enable("table").parse(out)
    headings = [tokens[i + 1].content for i, t in enumerate(tokens) if t.type == "heading_open"]
    assert [tokens[i].tag for i, t in enumerate(tokens) if t.type == "heading_open"] == ["h2", "h3"]
    assert headings[0].endswith("rolled back: the split was undone, nothing is promoted"), headings
    assert headings[1] == "Automatic rollback: ↩️ rolled back", headings
    assert not any("promoted" in h.replace("nothing is promoted", "") or "split:" in h for h in headings)
    assert "🚨" not in out and "Re-running" not in out and "reconcile --forward" not in out
    first_table = out[:out.index("### ")]
    alpha_row = next(ln for ln in first_table.splitlines() if ln.startswith("| `alpha`"))
    assert alpha_row.endswith(f"`{known(olds['alpha'])[:7]}` | `{known(olds['alpha'])[:7]}` | rolled back |"), alpha_row
    assert f"alpha: advanced to {known(news['alpha'])[:7]}, then rolled back to {known(olds['alpha'])[:7]}" in out
    assert f"rolled back alpha to {known(olds['alpha'])[:7]}" in out
    report = auto_rollback.res.report
    assert report is not None and report["result"] == "rolled-back"
    alpha = next(s for s in report["services"] if s["name"] == "alpha")
    assert (alpha["outcome"], alpha["did_push"], alpha["final_target_sha"]) == ("rolled back", False, olds["alpha"])


def test_on_split_rollback_summary_does_not_claim_beta_is_at_main(auto_rollback: AutoRollback) -> None:
    assert auto_rollback.world.sha("beta", "prod") != auto_rollback.news["beta"]
    assert "already at main" not in auto_rollback.rollback_summary


def test_record_write_failure_leaves_the_promotion_intact_and_warns(world: GitWorld) -> None:
    world.hook("alpha", "pre-receive",
               'while read o n r; do case "$r" in refs/lockstep/*) echo "records are read-only" >&2; '
               "exit 1;; esac; done; exit 0")
    world.config()
    news = mains(world)
    res = world.run("run")
    assert res.code == 0, res.out + res.err
    assert prods(world) == news
    assert records(world) == []
    assert res.report is not None
    assert res.report["result"] == "promoted"
    assert {s["outcome"] for s in res.report["services"]} == {"advanced"}
    assert res.report["record"] is None
    warnings = res.report["warnings"]
    assert any("could not write the started promotion record" in w for w in warnings), warnings
    assert any("could not write the finished promotion record" in w for w in warnings), warnings
    assert "could not write the started promotion record" in res.out


# -- the printed repair commands run as printed ---------------------------------------


def _printed_lines(text: str) -> list[str]:
    """Every ``lockstep reconcile`` command in ``text``, from that word to the end of its line."""
    return [ln[ln.index("lockstep reconcile"):].rstrip("`") for ln in text.splitlines() if "lockstep reconcile" in ln]


@pytest.mark.parametrize("where", ["summary", "stderr", "status"])
def test_without_a_tracker_the_printed_repair_is_recheck_and_works(world: GitWorld, where: str) -> None:
    """A justification needs a tracker: without one, the printed command is --recheck, which works."""
    world.config(tracker=None)
    news = mains(world)
    res = split_by_rejected_push(world)
    text = {"summary": res.out, "stderr": res.err, "status": lockstep(world, "status").out}[where]
    [line] = _printed_lines(text)
    assert "--justification" not in line and "--recheck" in line and "--rollback" not in text
    argv = shlex.split(line)
    fix = world.run(*argv[1:])
    assert fix.code == 0, fix.out + fix.err
    assert prods(world) == news


def test_rollback_is_printed_only_when_allowed_and_then_works_as_printed(world: GitWorld) -> None:
    world.config()
    split_by_rejected_push(world)
    st = lockstep(world, "status")
    assert st.code == 3
    assert [ln.split()[2] for ln in _printed_lines(st.out)] == ["--forward"]  # allow_rollback is false

    world.config(extra=ROLLBACK)
    olds = {"alpha": records(world)[0]["services"][0]["old_sha"], "beta": prods(world)["beta"]}
    st = lockstep(world, "status")
    lines = _printed_lines(st.out)
    assert [ln.split()[2] for ln in lines] == ["--forward", "--rollback"]
    back = world.run(*printed_command(st.out, "rollback", "beta cannot ship today"))
    assert back.code == 0, back.out + back.err
    assert prods(world) == olds

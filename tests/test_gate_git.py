"""The gate end to end through the CLI, against real bare git repositories and real staging servers."""

from __future__ import annotations

import signal
import time
from pathlib import Path

from markdown_it import MarkdownIt

from tests.support.gitworld import GitWorld


def test_promotes_every_target_together(world: GitWorld) -> None:
    world.config()
    mains = {n: world.sha(n, "main") for n in world.names}
    olds = {n: world.sha(n, "prod") for n in world.names}
    res = world.run("run")
    assert res.code == 0, res.err
    for n in world.names:
        assert world.sha(n, "prod") == mains[n]
    assert res.report is not None
    assert res.report["result"] == "promoted"
    for n in world.names:
        svc = world.service(res.report, n)
        assert svc["outcome"] == "advanced"
        assert svc["did_push"] is True
        assert svc["old_target_sha"] == olds[n]
        assert svc["final_target_sha"] == mains[n]
    assert "| advanced |" in res.out
    assert [s["name"] for s in res.report["steps"]] == ["resolve", "fast-forward", "health", "version", "preflight",
                                                       "promote", "verify"]


def test_noop_runs_no_probe_and_writes_no_audit(world: GitWorld) -> None:
    world.config()
    for n in world.names:
        world.set_branch(n, "prod", world.sha(n, "main") or "")
    res = world.run("run", "--skip-gate", "--justification", "nothing to do anyway")
    assert res.code == 0, res.err
    assert res.out.count("unchanged (already at main)") == 2
    assert all(s.requests == [] for s in world.staging.values())
    assert not (world.root / "audit.md").exists()
    assert "nothing to promote, so no audit record was written" in res.out
    assert res.report is not None and res.report["result"] == "noop"


def test_version_mismatch_blocks_and_shows_both_shas(world: GitWorld) -> None:
    world.config()
    old = world.sha("beta", "prod")
    assert old is not None
    world.staging["beta"].version_body = {"sha": old}
    res = world.run("run")
    assert res.code == 1
    assert world.sha("alpha", "prod") != world.sha("alpha", "main")
    assert world.sha("beta", "prod") == old
    assert old in res.out and (world.sha("beta", "main") or "x") in res.out
    assert res.report is not None and res.report["result"] == "blocked"
    assert {s["outcome"] for s in res.report["services"]} == {"skipped (earlier step failed)"}


def test_health_never_ready_blocks_within_the_timeout(world: GitWorld) -> None:
    world.config(gate={"health_timeout": '"1s"'})
    world.staging["alpha"].health_status = 503
    start = time.monotonic()
    res = world.run("run")
    assert res.code == 1
    assert time.monotonic() - start < 10
    assert "HTTP 503" in res.out and world.staging["alpha"].url in res.out
    assert world.sha("alpha", "prod") != world.sha("alpha", "main")


def test_check_gets_shas_and_its_failure_blocks(world: GitWorld, tmp_path: Path) -> None:
    script = tmp_path / "check.py"
    script.write_text(
        "import os, sys\n"
        "print('alpha', os.environ['LOCKSTEP_ALPHA_SHA'])\n"
        "print('token', os.environ.get('PUSH_TOKEN_X', 'absent'))\n"
        "sys.exit(int(os.environ['CHECK_EXIT']))\n"
    )
    import sys

    checks = (f'[[checks]]\nname = "smoke"\nrun = ["{sys.executable}", "{script}"]\n'
              'env = { CHECK_EXIT = "${WANT_EXIT}" }\ntimeout = "20s"\n')
    world.config(checks=checks, services={"alpha": 'token_env = "PUSH_TOKEN_X"'})
    res = world.run("run", env=world.env(WANT_EXIT="3", PUSH_TOKEN_X="s3cr3t-planted"))
    assert res.code == 1
    assert world.sha("alpha", "prod") != world.sha("alpha", "main")
    step = next(s for s in (res.report or {})["steps"] if s["name"] == "check smoke")
    assert f"alpha {world.sha('alpha', 'main')}" in step["output_tail"]
    assert "token absent" in step["output_tail"]
    assert "s3cr3t-planted" not in res.all_output
    res = world.run("run", env=world.env(WANT_EXIT="0", PUSH_TOKEN_X="s3cr3t-planted"))
    assert res.code == 0, res.err


def test_bypass_stores_audit_first_then_pushes(world: GitWorld) -> None:
    world.config()
    for s in world.staging.values():
        s.health_status = 500  # staging is down: only a bypass can promote
    text = "INC-1: ```` fence\nEOF\n@team [x](http://evil) # head"
    res = world.run("run", "--skip-gate", "--justification", text, "--actor", "alice")
    assert res.code == 0, res.err
    assert all(s.requests == [] for s in world.staging.values())
    for n in world.names:
        assert world.sha(n, "prod") == world.sha(n, "main")
    audit = (world.root / "audit.md").read_text()
    fences = [t for t in MarkdownIt("commonmark").enable("table").parse(audit) if t.type == "fence"]
    assert len(fences) == 1 and fences[0].content.rstrip("\n") == text
    assert "justification was logged at" in res.out
    assert (world.root / "audit.md.jsonl").read_text().count("\n") == 1


def test_bypass_with_blank_justification_is_a_usage_error(world: GitWorld) -> None:
    world.config()
    before = {n: world.sha(n, "prod") for n in world.names}
    res = world.run("run", "--skip-gate", "--justification", " \u200b\u3000\t")
    assert res.code == 2
    assert len(res.err.strip().splitlines()) == 1 and "justification" in res.err
    assert res.report is None
    assert {n: world.sha(n, "prod") for n in world.names} == before


def test_bypass_blocked_when_audit_cannot_be_stored(world: GitWorld) -> None:
    world.config(tracker="missing-dir/audit.md")
    before = {n: world.sha(n, "prod") for n in world.names}
    res = world.run("run", "--skip-gate", "--justification", "urgent")
    assert res.code == 1
    assert {n: world.sha(n, "prod") for n in world.names} == before
    assert "Bypass blocked" in res.out
    assert res.report is not None and res.report["audit"]["stored"] is False


def test_a_diverged_target_is_refused_before_the_gate_and_moves_nothing(world: GitWorld) -> None:
    marker = world.root / "check-ran"
    world.config(checks=f'[[checks]]\nname = "slow"\nrun = ["touch", "{marker}"]\n')
    world.commit_on("beta", "prod")  # prod now has a commit main lacks
    before = {n: world.sha(n, "prod") for n in world.names}
    res = world.run("run")
    assert res.code == 1
    assert {n: world.sha(n, "prod") for n in world.names} == before
    assert "beta" in res.out and "not a fast-forward" in res.out
    # found right after resolve, as `plan` finds it: no staging probe, no check
    assert res.report is not None
    assert [(s["name"], s["status"]) for s in res.report["steps"]] == [
        ("resolve", "passed"), ("fast-forward", "failed")]
    assert all(s.health_hits == 0 for s in world.staging.values()) and not marker.exists()


def test_second_push_rejected_is_a_real_split(world: GitWorld) -> None:
    world.config(gate={"runbook_url": '"https://example.org/runbook"'})
    world.hook("beta", "pre-receive", "echo 'protected' >&2; exit 1")
    beta_old = world.sha("beta", "prod")
    res = world.run("run")
    assert res.code == 3
    assert world.sha("alpha", "prod") == world.sha("alpha", "main")
    assert world.sha("beta", "prod") == beta_old
    assert res.report is not None and res.report["result"] == "split"
    assert world.service(res.report, "alpha")["outcome"] == "advanced"
    assert world.service(res.report, "beta")["outcome"] == "failed"
    assert world.service(res.report, "beta")["did_push"] is False
    assert "Split promotion" in res.out and "https://example.org/runbook" in res.out


def test_first_push_rejected_never_pushes_the_second(world: GitWorld) -> None:
    world.config()
    world.hook("alpha", "pre-receive", "exit 1")
    before = {n: world.sha(n, "prod") for n in world.names}
    res = world.run("run")
    assert res.code == 1
    assert {n: world.sha(n, "prod") for n in world.names} == before
    assert res.report is not None
    assert world.service(res.report, "beta")["outcome"] == "skipped (earlier step failed)"


def test_missing_target_is_seeded(world: GitWorld) -> None:
    world.config()
    world.delete_branch("beta", "prod")
    res = world.run("run")
    assert res.code == 0, res.err
    assert world.sha("beta", "prod") == world.sha("beta", "main")


def test_missing_source_names_repo_and_branch(world: GitWorld) -> None:
    world.config(services={"beta": 'source = "nope"'})
    res = world.run("run")
    assert res.code == 1
    assert "beta.git: source branch 'nope' not found" in res.out
    assert world.sha("alpha", "prod") != world.sha("alpha", "main")


def test_concurrent_writer_between_resolve_and_push_is_caught(world: GitWorld, tmp_path: Path) -> None:
    """A check moves beta's prod behind lockstep's back: the pre-push re-read blocks before any write."""
    import sys

    from lockstep.demo import git

    moved = git("--git-dir", str(world.repos["beta"]), "rev-parse", "main^")  # between prod and main
    script = tmp_path / "move.py"
    script.write_text(
        "import subprocess, sys\n"
        f"subprocess.run(['git', '--git-dir', {str(world.repos['beta'])!r}, 'update-ref', "
        f"'refs/heads/prod', {moved!r}], check=True)\n"
    )
    world.config(checks=f'[[checks]]\nname = "mover"\nrun = ["{sys.executable}", "{script}"]\n')
    alpha_old = world.sha("alpha", "prod")
    res = world.run("run")
    assert res.code == 1
    assert world.sha("alpha", "prod") == alpha_old  # nothing pushed at all
    assert world.sha("beta", "prod") == moved  # lockstep did not overwrite the other writer
    assert "beta" in res.out and "moved from" in res.out and "another writer" in res.out


def test_concurrent_writer_during_the_pushes_is_never_overwritten(world: GitWorld) -> None:
    """beta's prod moves after the pre-push re-read (a hook on alpha's push): the lease refuses it."""
    from lockstep.demo import git

    moved = git("--git-dir", str(world.repos["beta"]), "rev-parse", "main^")
    world.hook("alpha", "post-receive",
               'while read o n r; do if [ "$r" = refs/heads/prod ]; then '
               f'git --git-dir {world.repos["beta"]} update-ref refs/heads/prod {moved}; fi; done')
    world.config()
    res = world.run("run")
    assert res.code == 3
    assert world.sha("alpha", "prod") == world.sha("alpha", "main")
    assert world.sha("beta", "prod") == moved
    assert res.report is not None and res.report["result"] == "split"
    beta = world.service(res.report, "beta")
    assert (beta["outcome"], beta["did_push"], beta["final_target_sha"]) == ("failed", False, moved)


def test_sigterm_between_pushes_reports_real_positions(world: GitWorld) -> None:
    marker = world.root / "alpha-pushed"
    world.hook("alpha", "post-receive",
               f'while read o n r; do if [ "$r" = refs/heads/prod ]; then touch {marker}; sleep 1.5; fi; done')
    world.config()
    proc = world.start("run")
    deadline = time.monotonic() + 30
    while not marker.exists():
        assert time.monotonic() < deadline, proc.communicate()
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 3, err
    assert world.sha("alpha", "prod") == world.sha("alpha", "main")
    assert world.sha("beta", "prod") != world.sha("beta", "main")
    assert "cancelled" in out and "Split promotion" in out


def test_sigterm_during_a_check_moves_nothing(world: GitWorld, tmp_path: Path) -> None:
    import sys

    started = tmp_path / "started"
    script = tmp_path / "hang.py"
    script.write_text(f"import pathlib, time\npathlib.Path({str(started)!r}).touch()\ntime.sleep(60)\n")
    world.config(checks=f'[[checks]]\nname = "hang"\nrun = ["{sys.executable}", "{script}"]\n')
    before = {n: world.sha(n, "prod") for n in world.names}
    proc = world.start("run")
    deadline = time.monotonic() + 30
    while not started.exists():
        assert time.monotonic() < deadline
        time.sleep(0.02)
    t0 = time.monotonic()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert time.monotonic() - t0 < 7, "the report must be written within 7 s of SIGINT"
    assert proc.returncode == 1, err
    assert {n: world.sha(n, "prod") for n in world.names} == before
    assert "cancelled" in out


def test_second_run_waits_for_the_lock_then_resolves_fresh(world: GitWorld, tmp_path: Path) -> None:
    import sys

    script = tmp_path / "slow.py"
    started = tmp_path / "check-started"
    script.write_text(f"import pathlib, time; pathlib.Path({str(started)!r}).touch(); time.sleep(1.5)\n")
    world.config(checks=f'[[checks]]\nname = "slow"\nrun = ["{sys.executable}", "{script}"]\n')
    first = world.start("run")
    deadline = time.monotonic() + 20
    while not started.exists():  # the first run is inside the lock (its check runs): not a guess
        assert time.monotonic() < deadline and first.poll() is None, "the first run never reached its check"
        time.sleep(0.02)
    second = world.run("run")
    _out, err = first.communicate(timeout=30)
    assert first.returncode == 0, err
    assert second.code == 0, second.err
    assert "waiting for the lock" in second.err
    assert second.report is not None and second.report["result"] == "noop"


def test_config_error_is_one_line_exit_2(world: GitWorld) -> None:
    world.config(extra='[surprise]\nkey = 1\n')
    res = world.run("run")
    assert res.code == 2
    assert res.err.strip() == f"lockstep: {world.root / 'lockstep.toml'}: surprise: unknown key"
    assert "Traceback" not in res.err

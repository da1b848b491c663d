"""The gate end to end through the CLI with ``forge = "github"``, against the fake GitHub over real HTTP.

Each test runs ``python -m lockstep run`` as a subprocess and then asserts what
is true, not what lockstep says: ref positions read from the fake, the fake's
request log (methods, bodies, Authorization headers, order), stored comments,
and the files the Actions runner would read.
"""

from __future__ import annotations

import json
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from markdown_it import MarkdownIt

from tests.support.fakegithub import Fault
from tests.support.githubworld import (
    GATE,
    READ_LOGIN,
    REPOS,
    TRACKER_ISSUE,
    TRACKER_REPO,
    GitHubWorld,
    build_world,
    token_var,
)

pytestmark = pytest.mark.timeout(60)

LOCK_REF = f"refs/heads/lockstep-lock/{GATE}"
RUN_URL = "https://github.com/acme/ops/actions/runs/4242"


@pytest.fixture
def ghw(tmp_path: Path) -> Iterator[GitHubWorld]:
    yield from build_world(tmp_path)


def bearer(token: str) -> str:
    return f"Bearer {token}"


def fences(markdown: str) -> list[str]:
    """The contents of every fenced code block, as a CommonMark renderer sees them."""
    tokens = MarkdownIt("commonmark").enable("table").parse(markdown)
    return [t.content for t in tokens if t.type == "fence"]


def no_staging_requests(ghw: GitHubWorld) -> bool:
    return all(s.requests == [] for s in ghw.staging.values())


# ---- happy path -----------------------------------------------------------------------


def test_promotes_both_with_each_services_push_token_and_reads_with_github_token(ghw: GitHubWorld) -> None:
    ghw.config()
    res = ghw.run("run")
    assert res.code == 0, res.err
    assert ghw.prods_now() == ghw.mains
    for name, repo in REPOS.items():
        (patch,) = ghw.patches(name)
        assert patch.json == {"sha": ghw.mains[name], "force": False}
        assert patch.status == 200
        assert patch.headers["authorization"] == bearer(ghw.push_tokens[name])
        assert patch.path == f"/repos/{repo}/git/refs/heads/prod"
    writes = ghw.ref_writes()
    assert [w.method for w in writes] == ["PATCH", "PATCH"]
    assert [w.path for w in writes] == [f"/repos/{r}/git/refs/heads/prod" for r in REPOS.values()]
    reads = [r for r in ghw.gh.requests if r.method == "GET" or r.path == "/graphql"]
    assert reads and {r.headers["authorization"] for r in reads} == {bearer(ghw.read_token)}
    # heads in one query for resolve and one for the pre-push re-read, the records in the second
    assert [r.path for r in reads] == ["/graphql", "/graphql"]
    assert not any(isinstance(r.json, dict) and r.json.get("force") is True for r in ghw.gh.requests)
    assert all(s.health_hits >= 1 for s in ghw.staging.values())
    assert res.report is not None and res.report["result"] == "promoted"
    for name in REPOS:
        svc = ghw.service(res.report, name)
        assert (svc["outcome"], svc["did_push"]) == ("advanced", True)
        assert (svc["old_target_sha"], svc["final_target_sha"]) == (ghw.prods[name], ghw.mains[name])
    assert res.out.count("| advanced |") == 2


def test_one_target_already_promoted_is_left_alone(ghw: GitHubWorld) -> None:
    ghw.config()
    ghw.gh.set_branch(REPOS["backend"], "prod", ghw.mains["backend"])
    res = ghw.run("run", env=ghw.actions_env("push"))
    assert res.code == 0, res.err
    assert ghw.prods_now() == ghw.mains
    assert ghw.patches("backend") == [] and len(ghw.patches("metadata")) == 1
    outputs = ghw.outputs()
    assert (outputs["backend_did_push"], outputs["metadata_did_push"]) == ("false", "true")
    assert res.report is not None and res.report["result"] == "promoted"
    assert ghw.service(res.report, "backend")["outcome"] == "unchanged (already at main)"
    assert ghw.service(res.report, "metadata")["outcome"] == "advanced"


def test_diverged_target_is_refused_right_after_resolve_and_nothing_moves(ghw: GitHubWorld) -> None:
    ghw.config()
    repo = REPOS["metadata"]
    hotfix = ghw.gh.commit(repo, parents=(ghw.prods["metadata"],), message="hotfix made on prod only")
    ghw.gh.set_branch(repo, "prod", hotfix)
    res = ghw.run("run")
    assert res.code == 1, res.err
    assert ghw.prod("backend") == ghw.prods["backend"] and ghw.prod("metadata") == hotfix
    assert ghw.ref_writes() == []
    assert "metadata" in res.out and "not a fast-forward" in res.out
    assert res.report is not None
    # found before the gate spends minutes on staging: no health, version or check step ran
    assert [(s["name"], s["status"]) for s in res.report["steps"]] == [
        ("resolve", "passed"), ("fast-forward", "failed")]
    assert all(s.health_hits == 0 for s in ghw.staging.values())
    # decided by the compare in resolve's one heads query: no REST compare; the second query is the
    # blocked run's read of the records (a split it started from would still be there)
    assert ghw.matching("GET", rf"/repos/{repo}/compare/.*") == []
    _, records = ghw.matching("POST", "/graphql")
    assert isinstance(records.json, dict) and set(records.json["variables"]) == {"fo0", "fn0", "fb0", "fe0"}


# ---- resolve --------------------------------------------------------------------------


def test_missing_target_is_seeded_with_post_git_refs(ghw: GitHubWorld) -> None:
    ghw.config()
    ghw.gh.delete_branch(REPOS["metadata"], "prod")
    res = ghw.run("run")
    assert res.code == 0, res.err
    assert ghw.prods_now() == ghw.mains
    (post,) = ghw.ref_posts()
    assert post.path == f"/repos/{REPOS['metadata']}/git/refs" and post.status == 201
    assert post.json == {"ref": "refs/heads/prod", "sha": ghw.mains["metadata"]}
    assert post.headers["authorization"] == bearer(ghw.push_tokens["metadata"])
    assert ghw.patches("metadata") == [] and len(ghw.patches("backend")) == 1
    assert res.report is not None
    assert ghw.service(res.report, "metadata")["old_target_sha"] is None


def test_missing_source_is_an_error_naming_repo_and_branch(ghw: GitHubWorld) -> None:
    ghw.config(services={"backend": 'source = "nope"'})
    res = ghw.run("run")
    assert res.code == 1, res.err
    assert "acme/backend: source branch 'nope' not found" in res.out
    assert ghw.gh.writes() == []
    assert ghw.prods_now() == ghw.prods
    assert no_staging_requests(ghw)


@pytest.mark.parametrize(
    ("fault", "status"),
    [
        # Persistent; Retry-After 0 keeps the bounded retries instant.
        (Fault.status(503, headers={"Retry-After": "0"}), 503),
        (Fault.status(401, "Bad credentials"), 401),
    ],
    ids=["503-persistent", "401"],
)
def test_target_lookup_failure_fails_fast_and_never_seeds(ghw: GitHubWorld, fault: Fault, status: int) -> None:
    ghw.config()
    path = f"/repos/{REPOS['metadata']}/branches/prod"
    # GraphQL down, so every service is read over REST, where metadata's target fails
    ghw.gh.inject(Fault.status(502, headers={"Retry-After": "0"}), method="POST", path="/graphql", times=None)
    ghw.gh.inject(fault, method="GET", path=path, times=None)
    res = ghw.run("run")
    assert res.code == 1, res.err
    assert f"acme/metadata: cannot read target branch 'prod': HTTP {status}" in res.out
    assert ghw.gh.writes() == []  # above all: no POST git/refs (seed) on an existing branch
    assert ghw.prods_now() == ghw.prods
    assert no_staging_requests(ghw)
    lookups = ghw.matching("GET", path)
    if status == 401:
        assert len(lookups) == 1  # not transient: never retried
    else:
        assert len(lookups) > 1  # retried, then gave up
        assert "gave up after" in res.out


def test_renamed_target_redirect_is_an_error_not_a_seed(ghw: GitHubWorld) -> None:
    """GitHub answers 301 for a renamed branch: following it, or reading it as 404, would be wrong."""
    ghw.config()
    ghw.gh.rename_branch(REPOS["metadata"], "prod", "production")
    res = ghw.run("run")
    assert res.code == 1, res.err
    assert "acme/metadata: target branch 'prod' answered HTTP 301" in res.out
    assert "'production'" in res.out
    assert ghw.gh.writes() == []
    assert ghw.gh.branch(REPOS["metadata"], "production") == ghw.prods["metadata"]
    assert ghw.gh.branch(REPOS["metadata"], "prod") is None


def test_transient_503_on_a_lookup_is_retried_and_promoted(ghw: GitHubWorld) -> None:
    ghw.config()
    ghw.gh.inject(Fault.status(503), method="POST", path="/graphql", times=1)
    res = ghw.run("run")
    assert res.code == 0, res.err
    assert ghw.prods_now() == ghw.mains
    assert [r.status for r in ghw.matching("POST", "/graphql")][:2] == [503, 200]
    assert ghw.matching("GET", r"/repos/.*/branches/.*") == []  # a retried query, no REST fallback
    assert "HTTP 503" in res.err and "waiting" in res.err
    assert ghw.ref_posts() == []


# ---- push -----------------------------------------------------------------------------


def test_noop_makes_no_write_and_no_staging_request_even_with_a_bypass(ghw: GitHubWorld) -> None:
    ghw.config()
    for name, repo in REPOS.items():
        ghw.gh.set_branch(repo, "prod", ghw.mains[name])
    res = ghw.run("run")
    assert res.code == 0, res.err
    assert res.report is not None and res.report["result"] == "noop"
    assert res.out.count("unchanged (already at main)") == 2
    bypass = ghw.run("run", "--skip-gate", "--justification", "INC-1 staging down")
    assert bypass.code == 0, bypass.err
    assert ghw.gh.writes() == []
    assert ghw.comment_posts() == [] and ghw.comments() == []
    assert no_staging_requests(ghw)
    assert "nothing to promote, so no audit record was written" in bypass.out
    assert bypass.report is not None and bypass.report["audit"]["stored"] is False


@pytest.mark.parametrize(
    "how", ["protected", "500-twice"],
)
def test_first_push_failing_never_patches_the_second_and_never_reports_did_push(
    ghw: GitHubWorld, how: str
) -> None:
    ghw.config()
    if how == "protected":
        ghw.gh.protect(REPOS["backend"], "prod")
    else:
        ghw.gh.inject(Fault.status(500), method="PATCH", path=r"/repos/acme/backend/.*", times=None)
    res = ghw.run("run", env=ghw.actions_env(event_name="push"))
    assert res.code == 1, res.err
    assert ghw.prods_now() == ghw.prods
    assert ghw.patches("metadata") == []
    assert ghw.ref_posts() == []
    assert len(ghw.patches("backend")) == (1 if how == "protected" else 2)  # a refusal is never retried
    outputs = ghw.outputs()
    assert outputs["result"] == "blocked"
    assert (outputs["backend_did_push"], outputs["metadata_did_push"]) == ("false", "false")
    assert outputs["backend_final_target_sha"] == ghw.prods["backend"]
    assert res.report is not None
    assert ghw.service(res.report, "metadata")["outcome"] == "skipped (earlier step failed)"
    assert "Split" not in res.out


def test_second_push_not_fast_forward_is_a_reported_split(ghw: GitHubWorld) -> None:
    ghw.config()
    ghw.gh.inject(
        Fault.status(422, "Update is not a fast forward"), method="PATCH", path=r"/repos/acme/metadata/.*"
    )
    res = ghw.run("run", env=ghw.actions_env(event_name="push"))
    assert res.code == 3, res.err
    assert ghw.prod("backend") == ghw.mains["backend"]
    assert ghw.prod("metadata") == ghw.prods["metadata"]
    assert len(ghw.patches("metadata")) == 1  # a 422 is a refusal: re-read, never retried
    assert res.report is not None and res.report["result"] == "split"
    assert ghw.service(res.report, "metadata")["outcome"] == "failed"
    outputs = ghw.outputs()
    assert (outputs["result"], outputs["backend_did_push"], outputs["metadata_did_push"]) == (
        "split", "true", "false",
    )
    summary = ghw.summary_file.read_text()
    for text in (res.out, summary):
        assert "Split promotion" in text and "https://example.org/runbook#split" in text
    assert "HTTP 422: Update is not a fast forward" in ghw.service(res.report, "metadata")["detail"]
    assert "::error" in res.err


# ---- lost responses -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "patches"),
    [
        (Fault.drop_after(), 1),
        (Fault.drop_before(), 2),
        (Fault.status(502), 2),
        # Times out (request_timeout is 1s) before the fake applies it: re-read says "not yet", one
        # retry lands, and the late original is a harmless fast-forward to the same sha.
        (Fault.delay(1.5), 2),
    ],
    ids=["drop-after", "drop-before", "502-not-applied", "timeout"],
)
def test_unclear_push_is_classified_by_re_reading_the_ref(ghw: GitHubWorld, fault: Fault, patches: int) -> None:
    ghw.config(gate={"request_timeout": '"1s"'})
    ghw.gh.inject(fault, method="PATCH", path=r"/repos/acme/backend/git/refs/heads/prod")
    res = ghw.run("run")
    assert res.code == 0, res.err
    assert ghw.prods_now() == ghw.mains
    sent = ghw.patches("backend")
    assert len(sent) == patches
    assert all(p.json == {"sha": ghw.mains["backend"], "force": False} for p in sent)
    # The unclear PATCH is followed by a re-read of the target (backend's alone) before anything else.
    first = ghw.gh.requests.index(sent[0])
    after = ghw.gh.requests[first + 1]
    assert (after.method, after.path) == ("POST", "/graphql")
    assert isinstance(after.json, dict)
    assert after.json["variables"] == {"o0": "acme", "n0": "backend", "s0": "refs/heads/main",
                                       "t0": "refs/heads/prod"}
    assert res.report is not None
    backend = ghw.service(res.report, "backend")
    assert (backend["outcome"], backend["did_push"]) == ("advanced", True)
    assert len(ghw.patches("metadata")) == 1


def test_unclear_push_that_cannot_be_re_read_is_unknown_never_advanced(ghw: GitHubWorld) -> None:
    """metadata's PATCH is lost before landing and its ref can no longer be read: exit 3, unknown."""
    ghw.config()
    path = f"/repos/{REPOS['metadata']}/branches/prod"
    ghw.gh.inject(Fault.drop_before(), method="PATCH", path=r"/repos/acme/metadata/.*", times=None)
    # Queries 1 (resolve) and 2 (preflight) answer; from the post-PATCH re-read on, GraphQL and its
    # REST fallback both answer 503.
    unavailable = Fault.status(503, headers={"Retry-After": "0"})
    ghw.gh.inject(unavailable, method="POST", path="/graphql", nth=3, times=None)
    ghw.gh.inject(unavailable, method="GET", path=path, times=None)
    res = ghw.run("run", env=ghw.actions_env("push"))
    assert res.code == 3, res.err
    assert ghw.prod("backend") == ghw.mains["backend"]
    assert ghw.prod("metadata") == ghw.prods["metadata"]  # the truth lockstep could not see
    assert len(ghw.patches("metadata")) == 1  # never re-sent without knowing where the ref is
    assert res.report is not None and res.report["result"] == "unknown"
    meta = ghw.service(res.report, "metadata")
    assert (meta["outcome"], meta["did_push"]) == ("unknown", False)
    outputs = ghw.outputs()
    assert (outputs["result"], outputs["metadata_did_push"], outputs["backend_did_push"]) == (
        "unknown", "false", "true",
    )
    assert "Possible split" in res.out and "Possible split" in ghw.summary_file.read_text()


@pytest.mark.timeout(30)
def test_sigint_during_the_first_push_finishes_it_and_starts_no_other(ghw: GitHubWorld) -> None:
    """The runner's cancel (SIGINT) lands while backend's PATCH is in flight: a real split, reported fast."""
    ghw.config()
    ghw.gh.inject(Fault.delay(1.5), method="PATCH", path=r"/repos/acme/backend/.*")
    proc = ghw.start("run", env=ghw.actions_env("push"))
    deadline = time.monotonic() + 20
    while not ghw.patches("backend"):
        assert time.monotonic() < deadline and proc.poll() is None, "backend PATCH never sent"
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    t0 = time.monotonic()
    out, err = proc.communicate(timeout=20)
    assert time.monotonic() - t0 < 7, "the report must be written within 7 s of SIGINT"
    assert proc.returncode == 3, err
    assert ghw.prod("backend") == ghw.mains["backend"]
    assert ghw.prod("metadata") == ghw.prods["metadata"]
    assert ghw.patches("metadata") == []
    report = json.loads(ghw.report_path.read_text())
    assert ghw.service(report, "backend")["outcome"] == "advanced"
    assert ghw.service(report, "metadata")["outcome"] == "cancelled"
    outputs = ghw.outputs()
    assert (outputs["backend_did_push"], outputs["metadata_did_push"]) == ("true", "false")
    assert "Split promotion" in out and "Split promotion" in ghw.summary_file.read_text()


# ---- bypass ---------------------------------------------------------------------------

NASTY = "INC-7: staging down ```` fence\nEOF\n~~~\n@acme/oncall [x](http://evil) # head\n</details>"


def test_bypass_posts_the_rendered_audit_comment_before_the_first_push(ghw: GitHubWorld) -> None:
    ghw.config()
    for s in ghw.staging.values():
        s.health_status = 500  # only a bypass can promote
    res = ghw.run("run", "--skip-gate", "--justification", NASTY, "--actor", "alice")
    assert res.code == 0, res.err
    assert ghw.prods_now() == ghw.mains
    assert no_staging_requests(ghw)
    (comment,) = ghw.comments()
    (post,) = ghw.comment_posts()
    body = comment["body"]
    assert post.json == {"body": body} and post.status == 201
    assert post.headers["authorization"] == bearer(ghw.read_token)
    assert comment["user"]["login"] == READ_LOGIN
    assert body.startswith("### lockstep bypass") and "alice" in body
    assert all(sha in body for sha in (*ghw.mains.values(), *ghw.prods.values()))
    found = fences(body)
    assert len(found) == 1 and found[0].rstrip("\n") == NASTY
    first_patch = ghw.patches("backend")[0]
    requests = ghw.gh.requests
    assert requests.index(post) < requests.index(first_patch)
    assert post.at < first_patch.at
    assert "justification was logged at" in res.out and comment["html_url"] in res.out
    assert res.report is not None and res.report["audit"]["stored"] is True


@pytest.mark.parametrize("how", ["locked-403", "500"])
def test_bypass_blocked_when_the_comment_fails(ghw: GitHubWorld, how: str) -> None:
    ghw.config()
    if how == "locked-403":
        ghw.gh.add_issue(TRACKER_REPO, TRACKER_ISSUE, locked=True)
    else:
        ghw.gh.inject(Fault.status(500), method="POST", path=r"/repos/acme/ops/issues/7/comments", times=None)
    res = ghw.run("run", "--skip-gate", "--justification", "INC-8")
    assert res.code == 1, res.err
    assert ghw.prods_now() == ghw.prods
    assert ghw.matching("PATCH", r".*") == [] and ghw.ref_posts() == []
    assert ghw.comments() == []
    assert "Bypass blocked" in res.out
    assert ("HTTP 403" if how == "locked-403" else "HTTP 500") in res.out
    assert res.report is not None and res.report["audit"]["stored"] is False


# ---- Actions mode ---------------------------------------------------------------------


def mask_prefix(stderr: str, tokens: list[str]) -> list[str]:
    """The leading ``::add-mask::`` lines of stderr, which must cover every token."""
    return [line for line in stderr.splitlines()[: len(tokens)] if line.startswith("::add-mask::")]


def test_workflow_dispatch_bypass_writes_outputs_summary_and_masks_first(ghw: GitHubWorld) -> None:
    ghw.config()
    for s in ghw.staging.values():
        s.health_status = 500
    event = {"inputs": {"skip_gate": "true", "justification": "staging broken, INC-9"}}
    res = ghw.run("run", env=ghw.actions_env("workflow_dispatch", event))
    assert res.code == 0, res.err
    assert ghw.prods_now() == ghw.mains
    # Masks come before any other line, one per token.
    head = mask_prefix(res.err, ghw.tokens)
    assert sorted(head) == sorted(f"::add-mask::{t}" for t in ghw.tokens)
    outputs = ghw.outputs()
    assert outputs["result"] == "promoted"
    services = json.loads(outputs["services"])
    for name in REPOS:
        assert outputs[f"{name}_source_sha"] == ghw.mains[name]
        assert outputs[f"{name}_old_target_sha"] == ghw.prods[name]
        assert outputs[f"{name}_final_target_sha"] == ghw.mains[name]
        assert outputs[f"{name}_did_push"] == "true"
        assert services[name]["did_push"] is True
    summary = ghw.summary_file.read_text()
    assert res.out.strip() and res.out.strip() in summary  # the same summary people see in the log
    assert "✅ promoted" in summary and summary.count("| advanced |") == 2
    assert RUN_URL in summary and "`octocat`" in summary and "justification was logged at" in summary
    (comment,) = ghw.comments()
    assert "octocat" in comment["body"] and RUN_URL in comment["body"]
    assert fences(comment["body"]) == ["staging broken, INC-9\n"]
    assert "::group::" in res.err


def test_repository_dispatch_stale_sha_never_decides_what_is_promoted(ghw: GitHubWorld) -> None:
    ghw.config()
    repo = REPOS["backend"]
    stale = ghw.mains["backend"]
    newer = ghw.gh.commit(repo, parents=(stale,), message="merged after the dispatch")
    ghw.gh.set_branch(repo, "main", newer)
    ghw.staging["backend"].version_body = {"sha": newer}
    event = {"action": "staging-deployed", "client_payload": {"sha": stale, "service": "backend"}}
    res = ghw.run("run", env=ghw.actions_env("repository_dispatch", event))
    assert res.code == 0, res.err
    assert ghw.prod("backend") == newer
    (patch,) = ghw.patches("backend")
    assert patch.json == {"sha": newer, "force": False}
    assert not any(stale.encode() in r.body for r in ghw.gh.requests)
    assert ghw.outputs()["backend_source_sha"] == newer
    assert "repository_dispatch" in res.err and "information only" in res.err


def test_unwritable_github_output_stops_before_any_push(ghw: GitHubWorld) -> None:
    ghw.config()
    directory = ghw.root / "outdir"
    directory.mkdir()
    env = ghw.actions_env("push") | {"GITHUB_OUTPUT": str(directory)}
    res = ghw.run("run", env=env)
    assert res.code == 1, res.err
    assert "GITHUB_OUTPUT" in res.err and str(directory) in res.err
    assert ghw.gh.writes() == []
    assert ghw.prods_now() == ghw.prods
    assert no_staging_requests(ghw)


def test_output_write_failing_after_the_push_is_reported_and_hides_nothing(ghw: GitHubWorld) -> None:
    """$GITHUB_OUTPUT is fine at the start and broken by the time outputs are written (after pushes)."""
    script = ghw.root / "break_output.py"
    script.write_text(
        "import os, pathlib\n"
        f"p = pathlib.Path({str(ghw.output_file)!r})\n"
        "p.unlink()\n"
        "p.mkdir()\n"
    )
    ghw.config(checks=f'[[checks]]\nname = "break"\nrun = ["{sys.executable}", "{script}"]\n')
    res = ghw.run("run", env=ghw.actions_env("push"))
    assert ghw.prods_now() == ghw.mains
    assert res.code == 0, res.err  # exit 1 would claim "every target verified unchanged": false
    assert "cannot write GitHub Actions output" in res.err and str(ghw.output_file) in res.err
    assert res.report is not None and res.report["result"] == "promoted"
    assert "✅ promoted" in ghw.summary_file.read_text()


def test_dispatch_bypass_with_a_blank_justification_is_exit_2_before_any_request(ghw: GitHubWorld) -> None:
    ghw.config()
    event = {"inputs": {"skip_gate": "true", "justification": " \n\t\u200b "}}
    res = ghw.run("run", env=ghw.actions_env("workflow_dispatch", event))
    assert res.code == 2, res.err
    assert "justification" in res.err
    assert ghw.gh.requests == []
    assert no_staging_requests(ghw)


# ---- setup errors ---------------------------------------------------------------------


@pytest.mark.parametrize("value", [None, "  "], ids=["unset", "blank"])
def test_missing_push_token_variable_is_exit_2_before_any_request(ghw: GitHubWorld, value: str | None) -> None:
    ghw.config()
    env = ghw.env()
    del env[token_var("metadata")]
    if value is not None:
        env[token_var("metadata")] = value
    res = ghw.run("run", env=env)
    assert res.code == 2, res.err
    assert "PROD_PUSH_TOKEN_METADATA" in res.err
    assert len(res.err.strip().splitlines()) == 1 and "Traceback" not in res.err
    assert ghw.gh.requests == []
    assert res.report is None


# ---- secrets --------------------------------------------------------------------------


def test_tokens_never_appear_in_any_output_or_request_body(ghw: GitHubWorld) -> None:
    """Several failures, some with GitHub echoing a token back; nothing may carry a token."""
    ghw.config()
    bogus = "github_pat_BOGUS" + "Z9" * 20
    tokens = [*ghw.tokens, bogus]
    backend, metadata = REPOS["backend"], REPOS["metadata"]
    texts: list[str] = []

    def run(expect: int, env: dict[str, str]) -> None:
        res = ghw.run("run", env=env)
        assert res.code == expect, res.out + res.err
        masked = {f"::add-mask::{t}" for t in tokens}
        texts.extend(line for line in res.err.splitlines() if line not in masked)
        texts.extend([res.out, json.dumps(res.report), ghw.summary_file.read_text(), ghw.output_file.read_text()])
        ghw.gh.clear_faults()

    # 1. a 401 on a read whose message echoes the read token
    ghw.gh.inject(Fault.status(401, f"Bad credentials: {ghw.read_token}"), method="GET", times=None)
    ghw.gh.inject(Fault.status(401, f"Bad credentials: {ghw.read_token}"), method="POST", path="/graphql",
                  times=None)
    run(1, ghw.actions_env("push"))
    # 2. a real 403: the backend push token lost its write permission
    ghw.gh.add_token(ghw.push_tokens["backend"], read=[backend])
    run(1, ghw.actions_env("push"))
    ghw.gh.add_token(ghw.push_tokens["backend"], read=[backend], write=[backend])
    # 3. a real 401: a push token GitHub does not know
    run(1, ghw.actions_env("push") | {token_var("backend"): bogus})
    # 4. a bypass: backend's answer is lost (drop), metadata refused with a 422 echoing its token
    ghw.gh.protect(metadata, "prod", message=f"rule violated by {ghw.push_tokens['metadata']}")
    ghw.gh.inject(Fault.drop_after(), method="PATCH", path=rf"/repos/{backend}/.*")
    event = {"inputs": {"skip_gate": True, "justification": "leak drill"}}
    run(3, ghw.actions_env("workflow_dispatch", event))
    assert ghw.prod("backend") == ghw.mains["backend"] and ghw.prod("metadata") == ghw.prods["metadata"]

    texts.extend(r.body.decode("utf-8", "replace") for r in ghw.gh.requests)
    texts.extend(c["body"] for c in ghw.comments())
    assert ghw.comments(), "the bypass comment was posted"
    for text in texts:
        for token in tokens:
            assert token not in text
            assert token[8:] not in text  # not even a recognisable part of it


# ---- the ref lock ---------------------------------------------------------------------


def wait_for(path: Path, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.02)


def test_ref_lock_exists_during_the_run_and_is_gone_after(ghw: GitHubWorld) -> None:
    started, go = ghw.root / "started", ghw.root / "go"
    script = ghw.root / "hold.py"
    script.write_text(
        "import pathlib, time\n"
        f"pathlib.Path({str(started)!r}).touch()\n"
        f"end = time.monotonic() + 30\n"
        f"while not pathlib.Path({str(go)!r}).exists() and time.monotonic() < end:\n"
        "    time.sleep(0.02)\n"
    )
    checks = f'[[checks]]\nname = "hold"\nrun = ["{sys.executable}", "{script}"]\ntimeout = "40s"\n'
    ghw.config(gate={"lock": '"ref"'}, checks=checks)
    proc = ghw.start("run")
    try:
        wait_for(started)
        assert ghw.gh.ref(REPOS["backend"], LOCK_REF) == ghw.mains["backend"]
    finally:
        go.touch()
        _out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert ghw.prods_now() == ghw.mains
    assert ghw.gh.ref(REPOS["backend"], LOCK_REF) is None
    writes = ghw.ref_writes()
    assert (writes[0].method, writes[0].status) == ("POST", 201)
    assert writes[0].json == {"ref": LOCK_REF, "sha": ghw.mains["backend"]}
    assert (writes[-1].method, writes[-1].status) == ("DELETE", 204)
    assert writes[-1].path == f"/repos/{REPOS['backend']}/git/{LOCK_REF}"
    assert [w.method for w in writes[1:-1]] == ["PATCH", "PATCH"]
    assert ghw.gh.writes()[0] == writes[0] and ghw.gh.writes()[-1] == writes[-1]  # the lock spans every write
    assert writes[0].headers["authorization"] == bearer(ghw.push_tokens["backend"])
    assert "lock taken" in err and "lock released" in err


def test_ref_lock_is_released_after_a_failed_run(ghw: GitHubWorld) -> None:
    ghw.config(gate={"lock": '"ref"'})
    ghw.gh.protect(REPOS["backend"], "prod")
    res = ghw.run("run")
    assert res.code == 1, res.err
    assert ghw.prods_now() == ghw.prods
    assert [(w.method, w.status) for w in ghw.ref_writes()] == [("POST", 201), ("PATCH", 422), ("DELETE", 204)]
    assert ghw.gh.writes()[-1] == ghw.ref_writes()[-1]  # released last, after every other write
    assert ghw.gh.ref(REPOS["backend"], LOCK_REF) is None


def test_ref_lock_held_by_another_run_waits_then_fails_clearly(ghw: GitHubWorld) -> None:
    holder = ghw.prods["backend"]
    ghw.gh.set_ref(REPOS["backend"], LOCK_REF, holder)
    ghw.config(gate={"lock": '"ref"', "lock_timeout": '"1s"'})
    res = ghw.run("run")
    assert res.code == 1, res.err
    assert f"lock held: {LOCK_REF} in acme/backend exists" in res.err
    assert "lock_timeout" in res.err and "delete it if no lockstep run is active" in res.err
    attempts = ghw.matching("POST", r"/repos/acme/backend/git/refs")
    assert len(attempts) >= 2 and {a.status for a in attempts} == {422}  # it waited and tried again
    # The wait as the server saw it (immune to interpreter start-up time): about lock_timeout,
    # not lock_timeout rounded up to the 5 s poll interval.
    waited = ghw.gh.requests[-1].at - ghw.gh.requests[0].at
    assert 0.8 <= waited < 3.5, f"lock_timeout is 1s but lockstep waited {waited:.1f}s"
    assert ghw.matching("PATCH", r".*") == []
    assert ghw.prods_now() == ghw.prods
    assert ghw.gh.ref(REPOS["backend"], LOCK_REF) == holder  # never broken by lockstep
    assert no_staging_requests(ghw)


def test_rate_limited_patch_waits_and_lands_instead_of_splitting(ghw: GitHubWorld) -> None:
    """A 403 rate limit on a write was not applied: lockstep waits (bounded) and sends it once more."""
    ghw.config()
    ghw.gh.inject(Fault.rate_limit(kind="secondary", status=403, retry_after=1), method="PATCH",
                  path=r"/repos/acme/metadata/git/refs/heads/prod", nth=1)
    res = ghw.run("run")
    assert res.code == 0, res.err
    assert ghw.prods_now() == ghw.mains
    assert [p.status for p in ghw.patches("metadata")] == [403, 200]
    assert "rate limited" in res.err

"""The default GitHub records (one file on the tracker repository's ``lockstep/records`` branch)
end to end: the real CLI in subprocesses against the fake GitHub, the truth read back from it.

A promoting run costs two record writes in one repository whatever N is and none in any service
repository; a split is named by ``status`` from the file alone, the printed forward command fixes
it, and a re-run that starts from the split keeps ``status`` saying split until it is repaired.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.cli import CliResult
from tests.support.githubworld import GATE, REPOS, TRACKER_REPO, GitHubWorld, build_world

BRANCH = "lockstep/records"
FILE = f"{GATE}.json"


@pytest.fixture
def ghw(tmp_path: Path) -> Iterator[GitHubWorld]:
    yield from build_world(tmp_path)


def lockstep(ghw: GitHubWorld, *args: str) -> CliResult:
    return ghw.run(*args, "--config", str(ghw.root / "lockstep.toml"))


def stored(ghw: GitHubWorld) -> dict[str, Any]:
    data = ghw.gh.file(TRACKER_REPO, BRANCH, FILE)
    assert data is not None, "no records file"
    return dict(json.loads(data))


def record_writes(ghw: GitHubWorld) -> list[tuple[str, str]]:
    return [(w.method, w.path) for w in ghw.gh.writes() if w.path.startswith(f"/repos/{TRACKER_REPO}/")
            and "/issues/" not in w.path]


def test_a_promoting_run_writes_two_records_in_one_repository_and_nothing_in_the_services(
    ghw: GitHubWorld,
) -> None:
    ghw.config()
    assert ghw.run("run").code == 0  # the first run creates the branch
    for name, repo in REPOS.items():
        ghw.gh.set_branch(repo, "prod", ghw.prods[name])
    ghw.gh.clear_requests()
    res = ghw.run("run")
    assert res.code == 0, res.err
    assert res.report is not None
    assert record_writes(ghw) == [("PUT", f"/repos/{TRACKER_REPO}/contents/{FILE}")] * 2
    service_writes = [(w.method, w.path) for w in ghw.gh.writes() if not w.path.startswith(f"/repos/{TRACKER_REPO}/")]
    assert service_writes == [("PATCH", f"/repos/{repo}/git/refs/heads/prod") for repo in REPOS.values()]
    assert all(ghw.gh.deployments(repo) == [] for repo in REPOS.values())
    record = stored(ghw)
    assert (record["run_id"], record["phase"], record["result"]) == (res.report["run_id"], "finished", "promoted")
    assert {s["name"]: s["outcome"] for s in record["services"]} == {n: "advanced" for n in REPOS}
    assert ghw.gh.branch(TRACKER_REPO, "main") is not None  # the branch is its own: main untouched
    assert ghw.gh.file(TRACKER_REPO, "main", FILE) is None
    # the only events in a service repository are its prod push; the records push only their branch
    for repo in REPOS.values():
        assert [(e.name, e.ref) for e in ghw.gh.events(repo)] == [("push", "refs/heads/prod")]
    assert {(e.name, e.ref) for e in ghw.gh.events(TRACKER_REPO)} == {("push", f"refs/heads/{BRANCH}")}


def test_records_as_deployments_send_deployment_events_in_every_service_repository(ghw: GitHubWorld) -> None:
    """The opt-in store's documented side effect (docs/configuration.md, records_store)."""
    ghw.config(gate={"records_store": '"deployments"'})
    assert ghw.run("run").code == 0
    for repo in REPOS.values():
        sent = [e.name for e in ghw.gh.events(repo)]
        assert sent.count("deployment") == 1 and sent.count("deployment_status") == 1 and "push" in sent


def test_a_split_is_named_from_the_file_and_the_printed_forward_command_fixes_it(ghw: GitHubWorld) -> None:
    ghw.config()
    ghw.gh.protect(REPOS["metadata"], "prod")
    res = ghw.run("run")
    assert res.code == 3, res.out + res.err
    ghw.gh.unprotect(REPOS["metadata"], "prod")
    assert res.report is not None and stored(ghw)["run_id"] == res.report["run_id"]

    st = lockstep(ghw, "status")
    assert st.code == 3, st.out + st.err
    line = next(ln for ln in st.out.splitlines() if ln.startswith("verdict:"))
    assert line.startswith("verdict: split") and res.report["run_id"] in line

    rerun = ghw.run("run")  # a re-run before anyone repairs it: it finishes the promotion
    assert rerun.code == 0, rerun.out + rerun.err
    assert ghw.prods_now() == ghw.mains
    st = lockstep(ghw, "status")
    assert st.code == 0, st.out + st.err


def test_reconcile_forward_finishes_a_split_from_the_file(ghw: GitHubWorld) -> None:
    ghw.config()
    ghw.gh.protect(REPOS["metadata"], "prod")
    assert ghw.run("run").code == 3
    ghw.gh.unprotect(REPOS["metadata"], "prod")
    done = lockstep(ghw, "reconcile", "--forward", "--justification", "metadata rule lifted")
    assert done.code == 0, done.out + done.err
    assert ghw.prods_now() == ghw.mains
    assert stored(ghw)["mode"] == "reconcile-forward"
    assert lockstep(ghw, "status").code == 0


def test_a_read_token_that_cannot_write_the_records_warns_and_promotes(ghw: GitHubWorld) -> None:
    ghw.config()
    ghw.gh.add_token(ghw.read_token, read=[*REPOS.values(), TRACKER_REPO], login="reader-no-write")
    res = ghw.run("run")
    assert res.code == 0, res.out + res.err
    assert ghw.prods_now() == ghw.mains
    assert res.report is not None
    warnings = " ".join(res.report["warnings"])
    assert "could not write the started promotion record" in warnings and "HTTP 403" in warnings
    assert "$GITHUB_TOKEN" in warnings and ghw.read_token not in res.all_output


def test_no_place_for_the_records_is_one_config_error(ghw: GitHubWorld) -> None:
    ghw.config(tracker=None)
    res = ghw.run("run")
    assert res.code == 2
    lines = [ln for ln in res.err.splitlines() if ln.strip()]
    assert len(lines) == 1 and "gate.records_repo" in lines[0] and "records = false" in lines[0]
    assert ghw.gh.writes() == []

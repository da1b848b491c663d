"""Promotion records as GitHub deployments, against the fake GitHub over real loopback HTTP.

Each test pins one promise of :mod:`lockstep.forges.github.records`: a record is
one deployment per service (push token, ``ref`` = new sha, ``<gate>/<target>``,
the manifest as payload) and a finished record one status on each; reading back
needs only read access, skips what is not a lockstep record, rebuilds the
finished record from the statuses, and costs a bounded number of requests;
failures are ForgeErrors that name repo and status, never a token, and a write
is never retried blindly.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

import httpx
import pytest

from lockstep.config import Config
from lockstep.errors import ForgeError
from lockstep.forges.github.forge import GitHubForge, RetryPolicy
from lockstep.forges.github.records import GitHubDeploymentRecordStore, status_state
from lockstep.model import Outcome
from lockstep.records import PromotionRecord, RecordService, latest_run
from tests.support.fakegithub import FakeGitHub, Fault, RecordedRequest

T = TypeVar("T")

GATE = "g1"
ENV = f"{GATE}/prod"
READ = "ghp_READtoken" + "r" * 27  # read-only on both repositories
PUSH_A = "github_pat_PUSHa" + "a" * 30
PUSH_B = "github_pat_PUSHb" + "b" * 30
TOKENS = (READ, PUSH_A, PUSH_B)
REPOS = {"alpha": "o/a", "beta": "o/b"}
FAST = RetryPolicy(tries=2, budget=1.0, max_wait=0.1, base_delay=0.001, jitter=0.0, secondary_wait=0.001)
ADVANCED, UNCHANGED = Outcome.ADVANCED.value, Outcome.UNCHANGED.value


async def no_sleep(seconds: float) -> None:
    await asyncio.sleep(0)


def make_config() -> Config:
    return Config.model_validate(
        {
            "gate": {"name": GATE, "forge": "github", "request_timeout": 2, "records_store": "deployments"},
            "services": [
                {
                    "name": name,
                    "repo": repo,
                    "token_env": f"PUSH_{name.upper()}",
                    "health_url": "http://127.0.0.1/h",
                    "version_url": "http://127.0.0.1/v",
                }
                for name, repo in REPOS.items()
            ],
        }
    )


@dataclass
class World:
    """o/a and o/b, each with prod = old <- new = main; READ reads both, PUSH_x writes its own."""

    gh: FakeGitHub
    old: dict[str, str] = field(default_factory=dict)
    new: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name, repo in REPOS.items():
            self.gh.add_repo(repo)
            self.old[name] = self.gh.commit(repo)
            self.new[name] = self.gh.commit(repo, parents=(self.old[name],))
            self.gh.set_branch(repo, "prod", self.old[name])
            self.gh.set_branch(repo, "main", self.new[name])
        self.gh.add_token(READ, read=list(REPOS.values()), login="reader")
        self.gh.add_token(PUSH_A, write=["o/a"], login="pusher-a")
        self.gh.add_token(PUSH_B, write=["o/b"], login="pusher-b")

    def env(self, **extra: str) -> dict[str, str]:
        base = {
            "GITHUB_TOKEN": READ,
            "PUSH_ALPHA": PUSH_A,
            "PUSH_BETA": PUSH_B,
            "GITHUB_API_URL": self.gh.url,
        }
        return base | extra

    def record(
        self,
        run_id: str,
        phase: str = "started",
        outcomes: dict[str, Any] | None = None,
        *,
        result: str | None = None,
        moves: tuple[str, ...] = ("alpha", "beta"),
        time: str = "2026-01-01T00:00:00Z",
    ) -> PromotionRecord:
        services = tuple(
            RecordService(
                name=name,
                repo=repo,
                target="prod",
                old_sha=self.old[name],
                new_sha=self.new[name] if name in moves else self.old[name],
                outcome=(outcomes or {}).get(name, "pending"),
            )
            for name, repo in REPOS.items()
        )
        return PromotionRecord(
            gate=GATE,
            run_id=run_id,
            time=time,
            actor="alice",
            mode="gate",
            phase="finished" if phase == "finished" else "started",
            services=services,
            run_url="https://github.com/o/ops/actions/runs/1",
            result=result,
        )

    def finished(self, started: PromotionRecord, outcomes: dict[str, Any], result: str) -> PromotionRecord:
        services = tuple(replace(s, outcome=outcomes[s.name]) for s in started.services)
        return replace(started, phase="finished", services=services, result=result)

    def run(self, fn: Callable[[GitHubDeploymentRecordStore], Awaitable[T]], **env: str) -> T:
        """Run ``fn`` with a fresh forge and store (as a separate process would)."""

        async def main() -> T:
            config = make_config()
            forge = GitHubForge.from_env(config, self.env(**env), retry=FAST, sleep=no_sleep)
            try:
                return await fn(GitHubDeploymentRecordStore(forge, config))
            finally:
                await forge.aclose()

        return asyncio.run(main())

    def requests(self, method: str | None = None, path: str = r".*") -> list[RecordedRequest]:
        return [
            r
            for r in self.gh.requests
            if (method is None or r.method == method) and re.fullmatch(path, r.path)
        ]

    def deployments(self, name: str) -> list[dict[str, Any]]:
        return self.gh.deployments(REPOS[name])


@pytest.fixture
def w() -> Iterator[World]:
    with FakeGitHub() as gh:
        yield World(gh)


def read_all(w: World) -> list[PromotionRecord]:
    return w.run(lambda store: store.read_all())


def as_json(record: PromotionRecord) -> Any:
    """The payload as GitHub stores and returns it (tuples become lists)."""
    return json.loads(record.dumps())


def assert_no_token(*texts: str) -> None:
    for text in texts:
        for token in TOKENS:
            assert token not in text


# ---- writing and reading back ---------------------------------------------------------------


def test_started_then_finished_round_trip_with_exact_outcomes_and_counted_requests(w: World) -> None:
    started = w.record("run1", moves=("alpha",))
    finished = w.finished(started, {"alpha": ADVANCED, "beta": UNCHANGED}, "promoted")

    async def both(store: GitHubDeploymentRecordStore) -> tuple[str, str, int]:
        first = await store.write(started)
        after_started = len(w.gh.requests)
        second = await store.write(finished)
        return first, second, after_started

    where_started, where_finished, after_started = w.run(both)
    n = len(REPOS)
    # Budget: N deployments for ``started``, N statuses for ``finished``, nothing else.
    assert after_started == n
    assert sorted((r.method, r.path) for r in w.gh.requests[:n]) == [
        ("POST", "/repos/o/a/deployments"),
        ("POST", "/repos/o/b/deployments"),
    ]
    status_posts = w.requests("POST", r"/repos/o/[ab]/deployments/\d+/statuses")
    assert len(w.gh.requests) == 2 * n and len(status_posts) == n
    assert "o/a#" in where_started and "o/b#" in where_started and "(success)" in where_finished

    for name, token in (("alpha", PUSH_A), ("beta", PUSH_B)):
        (deployment,) = w.deployments(name)
        assert deployment["ref"] == deployment["sha"] == (w.new if name == "alpha" else w.old)[name]
        assert deployment["environment"] == ENV
        assert deployment["payload"] == as_json(started)
        assert deployment["description"] == "lockstep gate run run1"
        assert (deployment["production_environment"], deployment["transient_environment"]) == (True, False)
        assert [s["state"] for s in deployment["statuses"]] == ["success"]
        assert deployment["statuses"][0]["log_url"] == "https://github.com/o/ops/actions/runs/1"
        posts = [r for r in w.gh.writes() if r.path.startswith(f"/repos/{REPOS[name]}/")]
        assert {r.headers["authorization"] for r in posts} == {f"Bearer {token}"}  # the push token
    first_post = w.gh.writes()[0].json
    assert isinstance(first_post, dict)
    assert (first_post["auto_merge"], first_post["required_contexts"]) == (False, [])

    w.gh.clear_requests()
    records = read_all(w)
    assert [(r.run_id, r.phase) for r in records] == [("run1", "started"), ("run1", "finished")]
    assert records[0] == started
    latest = latest_run(records)
    assert latest is not None and latest.phase == "finished"
    assert {s.name: s.outcome for s in latest.services} == {"alpha": ADVANCED, "beta": UNCHANGED}
    assert latest.result == "promoted"
    assert [s.new_sha for s in latest.services] == [s.new_sha for s in started.services]
    # Reads: N lists (filtered by environment) + N status probes, all with the read token.
    lists = w.requests("GET", r"/repos/o/[ab]/deployments")
    assert len(lists) == n and all(r.query == {"environment": ENV, "per_page": "20"} for r in lists)
    probes = w.requests("GET", r"/repos/o/[ab]/deployments/\d+/statuses")
    assert len(probes) == n and all(r.query == {"per_page": "1"} for r in probes)
    assert len(w.gh.requests) == 2 * n
    assert {r.headers["authorization"] for r in w.gh.requests} == {f"Bearer {READ}"}


def test_started_only_when_the_process_was_killed(w: World) -> None:
    started = w.record("run1")
    w.run(lambda store: store.write(started))
    records = read_all(w)
    assert records == [started]
    assert latest_run(records) == started


def test_failed_outcomes_map_to_failure_and_error(w: World) -> None:
    started = w.record("run2")
    finished = w.finished(started, {"alpha": ADVANCED, "beta": Outcome.FAILED.value}, "split")

    async def both(store: GitHubDeploymentRecordStore) -> None:
        await store.write(started)
        await store.write(finished)

    w.run(both)
    assert [s["state"] for s in w.deployments("beta")[0]["statuses"]] == ["failure"]
    assert [s["state"] for s in w.deployments("alpha")[0]["statuses"]] == ["success"]
    latest = latest_run(read_all(w))
    assert latest is not None and latest.result == "split"
    assert {s.name: s.outcome for s in latest.services} == {"alpha": ADVANCED, "beta": "failed"}
    assert [status_state(o) for o in Outcome] == [
        "success",  # advanced
        "success",  # unchanged
        "failure",  # skipped
        "failure",  # failed
        "failure",  # cancelled
        "error",  # unknown
        "success",  # rolled back: the target is at the deployment's sha
    ]


def test_newest_run_wins_and_older_runs_cost_no_status_reads(w: World) -> None:
    async def two_runs(store: GitHubDeploymentRecordStore) -> None:
        for run_id, result in (("run1", "blocked"), ("run2", "promoted")):
            started = w.record(run_id)
            await store.write(started)
            await store.write(w.finished(started, {"alpha": ADVANCED, "beta": ADVANCED}, result))

    w.run(two_runs)
    w.gh.clear_requests()
    records = read_all(w)
    assert [(r.run_id, r.phase) for r in records] == [
        ("run1", "started"),
        ("run2", "started"),
        ("run2", "finished"),
    ]
    latest = latest_run(records)
    assert latest is not None and (latest.run_id, latest.result) == ("run2", "promoted")
    assert len(w.gh.requests) == 2 * len(REPOS)


# ---- failures ----------------------------------------------------------------------------------


def test_deployment_post_500_is_a_forge_error_never_retried(w: World) -> None:
    w.gh.inject(Fault.status(500, "Server Error"), method="POST", path=r"/repos/o/b/deployments")
    started = w.record("run3")
    with pytest.raises(ForgeError) as info:
        w.run(lambda store: store.write(started))
    message = str(info.value)
    assert "o/b" in message and "HTTP 500" in message and "Server Error" in message
    assert "stored: o/a#" in message
    assert info.value.status == 500
    assert_no_token(message)
    assert len(w.requests("POST", r"/repos/o/b/deployments")) == 1  # no retry
    assert len(w.deployments("alpha")) == 1 and w.deployments("beta") == []


def test_started_failure_makes_finished_create_the_deployment_with_the_finished_payload(w: World) -> None:
    w.gh.inject(Fault.status(502), method="POST", path=r"/repos/o/b/deployments")
    started = w.record("run4")
    finished = w.finished(started, {"alpha": ADVANCED, "beta": ADVANCED}, "promoted")

    async def both(store: GitHubDeploymentRecordStore) -> str:
        with pytest.raises(ForgeError):
            await store.write(started)
        return await store.write(finished)

    w.run(both)
    (beta,) = w.deployments("beta")
    assert beta["payload"] == as_json(finished)
    assert [s["state"] for s in beta["statuses"]] == ["success"]
    assert len(w.requests("POST", r"/repos/o/a/deployments")) == 1  # alpha got a status, not a 2nd deployment
    records = read_all(w)
    assert [(r.run_id, r.phase) for r in records] == [("run4", "started"), ("run4", "finished")]
    assert records[1] == finished  # the stored payload, exact


def test_lost_answer_is_not_retried_and_reads_back_deduplicated(w: World) -> None:
    w.gh.inject(Fault.drop_after(), method="POST", path=r"/repos/o/a/deployments")
    started = w.record("run5")
    finished = w.finished(started, {"alpha": ADVANCED, "beta": ADVANCED}, "promoted")

    async def both(store: GitHubDeploymentRecordStore) -> None:
        with pytest.raises(ForgeError, match=r"o/a: cannot create the started record deployment"):
            await store.write(started)
        await store.write(finished)

    w.run(both)
    assert len(w.deployments("alpha")) == 2  # the lost one landed; finished made its own
    records = read_all(w)
    assert [(r.run_id, r.phase) for r in records] == [("run5", "started"), ("run5", "finished")]
    assert records[1] == finished


def test_write_without_deployments_permission_names_repo_and_status(w: World) -> None:
    # A push token that may read o/b but not write it (no ``deployments: write``): 403.
    with pytest.raises(ForgeError) as info:
        w.run(lambda store: store.write(w.record("run6")), PUSH_BETA=READ)
    message = str(info.value)
    assert "o/b" in message and "HTTP 403" in message
    assert "Resource not accessible by personal access token" in message
    assert "(push token from $PUSH_BETA; needs deployments=write)" in message
    assert_no_token(message)


def test_read_failures_are_forge_errors_naming_repo_and_status(w: World) -> None:
    w.run(lambda store: store.write(w.record("run7")))
    w.gh.inject(Fault.status(503), method="GET", path=r"/repos/o/b/deployments", times=None)
    with pytest.raises(ForgeError) as info:
        read_all(w)
    message = str(info.value)
    assert "o/b" in message and "HTTP 503" in message and "gave up after 2 attempts" in message
    assert_no_token(message)
    w.gh.clear_faults()
    w.gh.inject(Fault.status(500), method="GET", path=r"/repos/o/a/deployments/\d+/statuses", times=None)
    with pytest.raises(ForgeError, match=r"o/a: cannot read the status of record deployment #\d+: HTTP 500"):
        read_all(w)
    w.gh.clear_faults()
    w.gh.add_token("ghp_blind" + "x" * 31, read=["o/a"])  # cannot see o/b at all: 404 like GitHub
    with pytest.raises(ForgeError, match=r"o/b: cannot read the promotion records .*HTTP 404"):
        w.run(lambda store: store.read_all(), GITHUB_TOKEN="ghp_blind" + "x" * 31)


# ---- reading what others left -------------------------------------------------------------------


def test_malformed_and_foreign_payloads_are_skipped(w: World) -> None:
    started = w.record("run8")
    finished = w.finished(started, {"alpha": ADVANCED, "beta": ADVANCED}, "promoted")

    async def both(store: GitHubDeploymentRecordStore) -> None:
        await store.write(started)
        await store.write(finished)

    w.run(both)
    other_gate = replace(started, gate="other", run_id="x").to_json()
    broken = started.to_json() | {"services": "nope"}
    for payload in ("{not json", "[1, 2]", {"kind": "someone-else"}, other_gate, broken, '{"kind": 1}'):
        w.gh.add_deployment("o/a", "main", ENV, payload=payload, states=["success"])
    records = read_all(w)
    assert [(r.run_id, r.phase) for r in records] == [("run8", "started"), ("run8", "finished")]
    latest = latest_run(records)
    assert latest is not None and latest.result == "promoted"  # the probe skipped the junk to ours


def test_a_payload_stored_as_json_text_is_read(w: World) -> None:
    record = w.record("as-text")
    w.gh.add_deployment("o/b", record.services[1].new_sha, ENV, payload=record.dumps())
    assert read_all(w) == [record]


def test_a_status_not_written_by_lockstep_falls_back_to_its_state(w: World) -> None:
    started = w.record("run9", moves=("alpha",))
    w.run(lambda store: store.write(started))
    for name, token in (("alpha", PUSH_A), ("beta", PUSH_B)):  # a person marks both deployments done
        (deployment,) = w.deployments(name)
        resp = httpx.post(
            f"{w.gh.url}/repos/{REPOS[name]}/deployments/{deployment['id']}/statuses",
            json={"state": "success", "description": "set by hand"},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert resp.status_code == 201
    latest = latest_run(read_all(w))
    assert latest is not None and latest.phase == "finished" and latest.result is None
    assert {s.name: s.outcome for s in latest.services} == {"alpha": ADVANCED, "beta": UNCHANGED}


def test_long_run_id_is_bounded_to_140_characters_and_still_reads_back(w: World) -> None:
    started = w.record("r" * 150)
    finished = w.finished(started, {"alpha": ADVANCED, "beta": Outcome.UNKNOWN.value}, "unknown")

    async def both(store: GitHubDeploymentRecordStore) -> None:
        await store.write(started)
        await store.write(finished)

    w.run(both)
    for name in REPOS:
        (deployment,) = w.deployments(name)
        assert len(deployment["description"]) <= 140
        assert len(deployment["statuses"][0]["description"]) <= 140
    latest = latest_run(read_all(w))
    assert latest is not None and latest.phase == "finished"
    # The description was truncated, so outcomes come from the states.
    assert {s.name: s.outcome for s in latest.services} == {"alpha": ADVANCED, "beta": "unknown"}


def test_location_and_repr_name_environment_and_repos_but_no_token(w: World) -> None:
    async def describe(store: GitHubDeploymentRecordStore) -> tuple[str, str]:
        return store.location, repr(store)

    location, text = w.run(describe)
    assert location == f"GitHub deployments (environment {ENV}) in o/a, o/b"
    assert location in text
    assert_no_token(location, text)

"""Promotion records as one file on one branch (the github default), against the fake over real HTTP.

Each test pins one promise of :mod:`lockstep.forges.github.branch_records`: the first record
creates the branch as an orphan commit holding only ``<gate>.json``; later records replace the
file with a compare-and-swap on its blob id, one write each whatever the number of services;
nothing is written to any service repository; a file moved by someone else is re-read, never
overwritten blind; a lost answer is not written twice; failures name the repository, branch,
status and token variable; a read is one request.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lockstep.config import Config
from lockstep.errors import ForgeError
from lockstep.forges.github.branch_records import GitHubBranchRecordStore
from lockstep.forges.github.forge import GitHubForge
from lockstep.forges.github.http import RetryPolicy
from lockstep.model import Outcome, Sha
from lockstep.records import PromotionRecord, RecordService, latest_run
from tests.support.fakegithub import FakeGitHub, Fault
from tests.support.fakegithub.graphql import BLOB_TEXT_LIMIT, repositories_read

T = TypeVar("T")

GATE = "g1"
OPS = "o/ops"
BRANCH = "lockstep/records"
FILE = f"{GATE}.json"
READ = "ghp_READtoken" + "r" * 27  # reads the services, writes o/ops
PUSH = "github_pat_PUSH" + "p" * 31
SERVICES = {f"s{i}": f"o/s{i}" for i in range(3)}
FAST = RetryPolicy(tries=2, budget=1.0, max_wait=0.1, base_delay=0.001, jitter=0.0, secondary_wait=0.001)


async def no_sleep(seconds: float) -> None:
    await asyncio.sleep(0)


def make_config(services: dict[str, str] = SERVICES, **gate: Any) -> Config:
    return Config.model_validate({
        "gate": {"name": GATE, "forge": "github", "request_timeout": 2, "records_repo": OPS, **gate},
        "services": [
            {"name": n, "repo": r, "token_env": "PUSH", "health_url": "http://127.0.0.1/h",
             "version_url": "http://127.0.0.1/v"}
            for n, r in services.items()
        ],
    })


@dataclass
class World:
    gh: FakeGitHub
    shas: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name, repo in SERVICES.items():
            self.gh.add_repo(repo)
            self.shas[name] = self.gh.commit(repo)
        self.gh.add_repo(OPS)
        self.gh.set_branch(OPS, "main", self.gh.commit(OPS, message="ops: workflows"))
        self.gh.add_token(READ, read=list(SERVICES.values()), write=[OPS], login="reader")
        self.gh.add_token(PUSH, write=list(SERVICES.values()), login="pusher")

    def record(self, run_id: str, phase: str = "started", result: str | None = None) -> PromotionRecord:
        outcome: Any = Outcome.ADVANCED if phase == "finished" else "pending"
        return PromotionRecord(
            gate=GATE, run_id=run_id, time="2026-01-01T00:00:00Z", actor="alice", mode="gate",
            phase="finished" if phase == "finished" else "started", result=result,
            services=tuple(
                RecordService(name=n, repo=r, target="prod", old_sha=None, new_sha=Sha(self.shas[n]),
                              outcome=outcome)
                for n, r in SERVICES.items()
            ),
        )

    def run(self, fn: Callable[[GitHubBranchRecordStore], Awaitable[T]], config: Config | None = None,
            read: str = READ) -> T:
        """``fn`` with a fresh forge and store (as a separate process would)."""

        async def main() -> T:
            cfg = config or make_config()
            env = {"GITHUB_TOKEN": read, "PUSH": PUSH, "GITHUB_API_URL": self.gh.url}
            forge = GitHubForge.from_env(cfg, env, retry=FAST, sleep=no_sleep)
            try:
                return await fn(GitHubBranchRecordStore(forge, cfg))
            finally:
                await forge.aclose()

        return asyncio.run(main())

    def write(self, *records: PromotionRecord) -> list[str]:
        async def go(store: GitHubBranchRecordStore) -> list[str]:
            return [await store.write(r) for r in records]

        return self.run(go)

    def read(self) -> list[PromotionRecord]:
        return self.run(lambda store: store.read_all())

    @staticmethod
    def as_stored(record: PromotionRecord) -> dict[str, Any]:
        """What the file holds for ``record`` (JSON: lists, not tuples)."""
        return dict(json.loads(json.dumps(record.to_json())))

    def stored(self) -> dict[str, Any] | None:
        data = self.gh.file(OPS, BRANCH, FILE)
        return None if data is None else dict(json.loads(data))

    def writes(self) -> list[tuple[str, str]]:
        return [(r.method, r.path) for r in self.gh.writes()]


@pytest.fixture
def w() -> Iterator[World]:
    with FakeGitHub() as gh:
        yield World(gh)


def test_the_first_record_creates_an_orphan_branch_holding_only_the_file(w: World) -> None:
    started = w.record("run1")
    assert w.write(started) == [f"{OPS} branch {BRANCH}, file {FILE}"]
    assert w.writes() == [("POST", f"/repos/{OPS}/git/trees"), ("POST", f"/repos/{OPS}/git/commits"),
                          ("POST", f"/repos/{OPS}/git/refs")]
    head = w.gh.branch(OPS, BRANCH)
    assert head is not None and w.gh.file(OPS, head, "README") is None
    assert w.stored() == w.as_stored(started)
    assert w.read() == [started]


def test_later_records_are_one_put_each_whatever_n_with_the_blob_sha(w: World) -> None:
    w.write(w.record("run0", "finished", "promoted"))
    w.gh.clear_requests()
    started, finished = w.record("run1"), w.record("run1", "finished", "promoted")
    w.write(started, finished)
    puts = [r for r in w.gh.writes()]
    assert [(r.method, r.path) for r in puts] == [("PUT", f"/repos/{OPS}/contents/{FILE}")] * 2
    assert all(isinstance(r.json, dict) and r.json["branch"] == BRANCH and "sha" in r.json for r in puts)
    assert w.stored() == w.as_stored(finished)
    assert latest_run(w.read()) == finished


def test_no_request_touches_a_service_repository(w: World) -> None:
    w.write(w.record("run1"), w.record("run1", "finished", "promoted"))
    w.read()
    assert all(r.path.startswith(f"/repos/{OPS}/") or r.path == "/graphql" for r in w.gh.requests)
    queried = {repo for r in w.gh.requests if r.path == "/graphql" for repo in repositories_read(r.body)}
    assert queried == {OPS}
    for repo in SERVICES.values():
        assert w.gh.deployments(repo) == []


def test_a_read_is_one_request_and_no_records_is_an_empty_history(w: World) -> None:
    assert w.read() == []  # no branch yet
    w.gh.clear_requests()
    w.write(w.record("run1"))
    w.gh.clear_requests()
    assert len(w.read()) == 1
    assert [(r.method, r.path) for r in w.gh.requests] == [("POST", "/graphql")]  # joins a heads query


def test_over_rest_a_read_is_one_get(w: World) -> None:
    w.write(w.record("run1"))
    w.gh.graphql.remaining = 0  # GraphQL's budget spent: the file is read over REST
    w.gh.clear_requests()
    assert [r.run_id for r in w.read()] == ["run1"]
    assert [(r.method, r.path) for r in w.gh.requests] == [("POST", "/graphql"), ("GET", f"/repos/{OPS}/contents/{FILE}")]


def test_a_file_graphql_cuts_short_is_read_over_rest(w: World) -> None:
    record = w.record("run1")
    text = json.dumps(record.to_json()) + " " * (BLOB_TEXT_LIMIT + 1)  # still one record, but long
    assert w.gh.branch(OPS, BRANCH) is None
    w.write(w.record("run0"))  # creates the branch
    _put(w, text.encode(), _blob_sha(w.gh.file(OPS, BRANCH, FILE) or b""))
    w.gh.clear_requests()
    assert [r.run_id for r in w.read()] == ["run1"]
    assert [r.path for r in w.gh.requests] == ["/graphql", f"/repos/{OPS}/contents/{FILE}"]


def test_a_file_moved_by_another_writer_is_read_again_not_overwritten_blind(w: World) -> None:
    w.write(w.record("run0", "finished", "promoted"))
    foreign = w.record("run-other")

    async def go(store: GitHubBranchRecordStore) -> None:
        await store.write(w.record("run1"))
        # another run of the gate (no lock) replaces the file between this run's two writes
        _put(w, json.dumps(foreign.to_json()).encode(), _blob_sha(w.gh.file(OPS, BRANCH, FILE) or b""))
        await store.write(w.record("run1", "finished", "promoted"))

    with pytest.raises(ForgeError, match="now holds the record of run run-other, not this run's"):
        w.run(go)
    puts = [r for r in w.gh.requests if r.method == "PUT"]
    assert [r.status for r in puts] == [200, 200, 409], "ours, the other writer's, ours refused (stale sha)"
    assert w.stored() == w.as_stored(foreign)


def test_a_started_record_replaces_the_previous_runs_after_reading_it(w: World) -> None:
    w.write(w.record("run0", "finished", "promoted"))
    _put(w, json.dumps(w.record("run-other").to_json()).encode(), _blob_sha(w.gh.file(OPS, BRANCH, FILE) or b""))
    started = w.record("run1")
    w.write(started)
    assert w.stored() == w.as_stored(started)


def test_a_lost_answer_is_not_written_twice(w: World) -> None:
    w.write(w.record("run0"))
    w.gh.inject(Fault.drop_after(), method="PUT", path=rf"/repos/{OPS}/contents/.*")
    before = len(w.gh.writes())
    finished = w.record("run0", "finished", "promoted")
    w.write(finished)
    applied = [r for r in w.gh.writes()[before:] if r.method == "PUT"]
    assert len(applied) == 1, "the re-read found the record: no second commit"
    assert w.stored() == w.as_stored(finished)


def test_a_token_that_cannot_write_names_the_variable_and_the_permission(w: World) -> None:
    w.gh.add_token("ghp_readonly" + "x" * 28, read=[*SERVICES.values(), OPS])
    with pytest.raises(ForgeError) as info:
        w.run(lambda store: store.write(w.record("run1")), read="ghp_readonly" + "x" * 28)
    message = str(info.value)
    assert f"{OPS}: cannot create the records branch for {FILE} on {BRANCH}" in message
    assert "HTTP 403" in message and "$GITHUB_TOKEN" in message and "Contents: write" in message
    assert "ghp_readonly" not in message
    assert w.gh.branch(OPS, BRANCH) is None


def test_an_empty_records_repository_is_a_clear_error(w: World) -> None:
    w.gh.add_repo("o/empty")
    w.gh.add_token(READ + "e", read=list(SERVICES.values()), write=["o/empty"])
    config = make_config(records_repo="o/empty")
    assert w.run(lambda store: store.read_all(), config=config, read=READ + "e") == []
    with pytest.raises(ForgeError, match="HTTP 409: Git Repository is empty"):
        w.run(lambda store: store.write(w.record("r")), config=config, read=READ + "e")


def test_records_repo_defaults_to_the_trackers_repository(w: World) -> None:
    config = Config.model_validate({**make_config().model_dump(exclude={"base_dir"}),
                                    "gate": {"name": GATE, "forge": "github"},
                                    "bypass": {"tracker": f"{OPS}#7"}})

    async def location(store: GitHubBranchRecordStore) -> str:
        return store.location

    assert w.run(location, config=config) == f"{OPS} branch {BRANCH}, file {FILE}"


@settings(max_examples=15, deadline=None)
@given(st.lists(st.sampled_from(["write", "foreign", "drop"]), min_size=1, max_size=6))
def test_after_any_schedule_the_file_holds_the_last_record_written(steps: list[str]) -> None:
    """Interleave our writes, foreign replacements and lost answers: the file always ends holding
    the last record this store wrote after it, and every write it reported stored is there."""
    with FakeGitHub() as gh:
        world = World(gh)
        expected: dict[str, Any] | None = None
        for i, step in enumerate(steps):
            if step == "foreign" and world.stored() is not None:
                _put(world, json.dumps(world.record(f"foreign{i}").to_json()).encode(),
                     _blob_sha(gh.file(OPS, BRANCH, FILE) or b""))
                expected = json.loads(gh.file(OPS, BRANCH, FILE) or b"{}")
                continue
            if step == "drop":
                gh.inject(Fault.drop_after(), method="PUT", path=rf"/repos/{OPS}/contents/.*")
            record = world.record(f"run{i}")
            world.write(record)
            expected = world.as_stored(record)
            gh.clear_faults()
        assert world.stored() == expected


def _blob_sha(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()


def _put(w: World, data: bytes, sha: str) -> None:
    """Replace the file through the API, as another writer would."""
    with httpx.Client(base_url=w.gh.url, headers={"Authorization": f"Bearer {READ}"}) as client:
        resp = client.put(f"/repos/{OPS}/contents/{FILE}", json={
            "message": "someone else", "content": base64.b64encode(data).decode(), "sha": sha, "branch": BRANCH})
        assert resp.status_code == 200, resp.text



def test_a_records_file_too_large_to_read_is_an_error_and_never_overwritten(w: World) -> None:
    w.write(w.record("run0"))
    big = b'{"kind": "lockstep-promotion", "pad": "' + b"x" * (1024 * 1024) + b'"}'
    _put(w, big, _blob_sha(w.gh.file(OPS, BRANCH, FILE) or b""))
    with pytest.raises(ForgeError, match="HTTP 403: This API returns blobs up to 1 MB") as info:
        w.read()
    assert "needs Contents: write" not in str(info.value)  # a size problem, not a permission one
    with pytest.raises(ForgeError, match="HTTP 403"):
        w.write(w.record("run1"))
    assert w.gh.file(OPS, BRANCH, FILE) == big

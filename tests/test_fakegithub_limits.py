"""The fake GitHub's secondary rate limits (tests/support/fakegithub/limits.py), over real HTTP.

GitHub's published numbers are the defaults; a refused request is 403 with GitHub's message and a
``retry-after``, and it is not applied; windows roll, are kept per credential and per endpoint;
concurrency is bounded.  A model in the test checks the rolling window against random schedules.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.support.apiworld import BASE, REPO, ApiWorld, api_world, error
from tests.support.fakegithub import Fault
from tests.support.fakegithub.limits import endpoint, is_mutation

SECONDARY = "You have exceeded a secondary rate limit. Please wait a few minutes before you try again."


@pytest.fixture
def w() -> Iterator[ApiWorld]:
    with api_world(ApiWorld) as world:
        yield world


def dispatch(client: httpx.Client) -> httpx.Response:
    return client.post(f"{BASE}/dispatches", json={"event_type": "x"})


def test_the_defaults_are_githubs_published_limits(w: ApiWorld) -> None:
    limits = w.gh.limits
    assert (limits.concurrent, limits.points_per_minute, limits.graphql_points_per_minute,
            limits.writes_per_minute, limits.writes_per_hour) == (100, 900, 2000, 80, 500)
    assert limits.enabled


def test_the_81st_write_in_a_minute_is_refused_unapplied_and_accepted_after_the_window(w: ApiWorld) -> None:
    for _ in range(80):
        assert dispatch(w.client).status_code == 204
    before = w.gh.branch(REPO, "prod")
    refused = w.client.patch(f"{BASE}/git/refs/heads/prod", json={"sha": w.c2})
    assert error(refused, 403) == SECONDARY
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert w.gh.branch(REPO, "prod") == before
    assert w.gh.requests[-1].fault == "secondary"
    with w.as_("tok-read") as other:  # windows are per credential: reads and other tokens go on
        assert other.get(f"{BASE}/branches/main").status_code == 200
    w.gh.limits.advance(int(refused.headers["retry-after"]))
    assert w.client.patch(f"{BASE}/git/refs/heads/prod", json={"sha": w.c2}).status_code == 200
    assert w.gh.branch(REPO, "prod") == w.c2


def test_the_hourly_write_limit(w: ApiWorld) -> None:
    w.gh.limits.writes_per_hour = 5
    for _ in range(5):
        assert dispatch(w.client).status_code == 204
        w.gh.limits.advance(61)  # past every minute window
    refused = dispatch(w.client)
    assert error(refused, 403) == SECONDARY
    assert int(refused.headers["retry-after"]) > 60
    w.gh.limits.advance(3600)
    assert dispatch(w.client).status_code == 204


def test_points_count_per_endpoint(w: ApiWorld) -> None:
    w.gh.limits.points_per_minute = 10
    for _ in range(10):
        assert w.client.get(f"{BASE}/branches/main").status_code == 200
    assert error(w.client.get(f"{BASE}/branches/prod"), 403) == SECONDARY  # same endpoint, other name
    assert w.client.get(f"{BASE}/git/ref/heads/main").status_code == 200  # another endpoint
    assert dispatch(w.client).status_code == 204  # 5 points of its own endpoint
    assert dispatch(w.client).status_code == 204
    assert error(dispatch(w.client), 403) == SECONDARY


def graphql(client: httpx.Client, query: str) -> httpx.Response:
    return client.post("/graphql", json={"query": query})


def test_a_graphql_query_is_a_read_and_a_mutation_is_a_write(w: ApiWorld) -> None:
    w.gh.limits.writes_per_minute = 1
    assert dispatch(w.client).status_code == 204  # the minute's one write
    lookalike = '{ repository(owner: "o", name: "mutation") { id } }'  # the word, not the operation
    for query in ("{ viewer { login } }", lookalike):
        answer = graphql(w.client, query)
        assert answer.status_code != 403 or SECONDARY not in answer.text
    mutation = 'mutation { addComment(input: {subjectId: "x", body: "y"}) { clientMutationId } }'
    assert error(graphql(w.client, mutation), 403) == SECONDARY


def test_is_mutation_reads_the_operation_type() -> None:
    assert is_mutation(b'{"query": "  mutation M { a }"}')
    assert not is_mutation(b'{"query": "query Q { mutation }"}')
    assert not is_mutation(b'{"query": "query Q { a } mutation M { b }", "operationName": "Q"}')
    assert is_mutation(b'{"query": "query Q { a } mutation M { b }", "operationName": "M"}')
    assert not is_mutation(b"not json") and not is_mutation(b'{"query": "mutation {"}')


def test_endpoints_are_templates() -> None:
    assert endpoint("PATCH", "/repos/o/r/git/refs/heads/prod") == "PATCH /repos/{owner}/{repo}/git/refs/{ref}"
    assert endpoint("GET", "/repos/a/b/branches/x/y") == "GET /repos/{owner}/{repo}/branches/{name}"
    assert endpoint("POST", "/repos/a/b/deployments/17/statuses") == (
        "POST /repos/{owner}/{repo}/deployments/{id}/statuses")


def test_concurrency_is_bounded(w: ApiWorld) -> None:
    w.gh.limits.concurrent = 2
    w.gh.inject(Fault.delay(0.6), method="GET", path=rf"{BASE}/branches/main", times=2)
    answers: list[int] = []

    def slow() -> None:
        with w.as_("tok-read") as client:
            answers.append(client.get(f"{BASE}/branches/main").status_code)

    threads = [threading.Thread(target=slow) for _ in range(2)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 5
    while w.gh.limits.in_flight < 2:
        assert time.monotonic() < deadline, "the two slow requests never were in flight together"
        time.sleep(0.005)
    refused = w.client.get(f"{BASE}/branches/prod")
    for t in threads:
        t.join()
    assert error(refused, 403) == SECONDARY
    assert answers == [200, 200]
    assert w.client.get(f"{BASE}/branches/prod").status_code == 200  # room again


@settings(max_examples=30, deadline=None)
@given(st.lists(st.floats(min_value=0, max_value=40), min_size=1, max_size=12))
def test_a_write_is_refused_exactly_when_the_rolling_minute_is_full(gaps: list[float]) -> None:
    """Model: with at most 3 writes per 60 s, a write at t is refused iff 3 accepted writes lie in (t-60, t]."""
    with api_world(ApiWorld) as w:
        w.gh.limits.writes_per_minute = 3
        w.gh.limits.clock = lambda: 0.0  # time moves only by advance(): the model and the fake agree exactly
        t, accepted = 0.0, list[float]()
        for gap in gaps:
            t += gap
            w.gh.limits.advance(gap)
            full = sum(1 for a in accepted if a > t - 60) >= 3
            status = dispatch(w.client).status_code
            assert status == (403 if full else 204), (t, accepted)
            if not full:
                accepted.append(t)

"""The webhook events the fake GitHub records for each applied write (tests/support/fakegithub/events.py).

An event is a side effect in a repository (it starts workflows), so the fake must send exactly
GitHub's: ``push`` (and ``create`` / ``delete``) for branches and tags and nothing for other refs,
``push`` for a Contents API write, ``deployment`` / ``deployment_status``, ``issue_comment``,
``repository_dispatch``; none for a refused write; one for a write whose answer was lost.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator

import httpx
import pytest

from tests.support.apiworld import BASE, REPO, ApiWorld, api_world
from tests.support.fakegithub import Fault


@pytest.fixture
def w() -> Iterator[ApiWorld]:
    with api_world(ApiWorld, tracker=True) as world:
        yield world


def names(w: ApiWorld, repo: str = REPO) -> list[tuple[str, str | None]]:
    return [(e.name, e.ref) for e in w.gh.events(repo)]


def test_branch_moves_creations_and_deletions_send_push_create_delete(w: ApiWorld) -> None:
    assert w.client.patch(f"{BASE}/git/refs/heads/prod", json={"sha": w.c2}).status_code == 200
    assert w.client.post(f"{BASE}/git/refs", json={"ref": "refs/heads/new", "sha": w.c1}).status_code == 201
    assert w.client.delete(f"{BASE}/git/refs/heads/new").status_code == 204
    assert names(w) == [("push", "refs/heads/prod"), ("create", "refs/heads/new"), ("push", "refs/heads/new"),
                        ("delete", "refs/heads/new"), ("push", "refs/heads/new")]
    assert {e.sender for e in w.gh.events(REPO)} == {"lockstep-bot"}


def test_refs_outside_branches_and_tags_send_nothing(w: ApiWorld) -> None:
    assert w.client.post(f"{BASE}/git/refs", json={"ref": "refs/lockstep/g/records", "sha": w.c1}).status_code == 201
    assert w.client.patch(f"{BASE}/git/refs/lockstep/g/records", json={"sha": w.c2}).status_code == 200
    assert names(w) == []


def test_a_refused_write_sends_nothing_and_a_lost_answer_still_sends(w: ApiWorld) -> None:
    refused = w.client.patch(f"{BASE}/git/refs/heads/main", json={"sha": w.side})
    assert refused.status_code == 422  # not a fast-forward
    assert names(w) == []
    w.gh.inject(Fault.drop_after(), method="PATCH", path=rf"{BASE}/git/refs/heads/prod")
    with pytest.raises(httpx.TransportError):  # the answer is lost on purpose
        w.client.patch(f"{BASE}/git/refs/heads/prod", json={"sha": w.c2})
    assert w.gh.branch(REPO, "prod") == w.c2
    assert names(w) == [("push", "refs/heads/prod")]


def test_contents_deployments_comments_and_dispatches_send_their_events(w: ApiWorld) -> None:
    content = base64.b64encode(b"x").decode()
    put = w.client.put(f"{BASE}/contents/f.json", json={"message": "m", "content": content, "branch": "side"})
    assert put.status_code == 201, put.text
    deployment = w.client.post(f"{BASE}/deployments", json={"ref": w.c3, "auto_merge": False,
                                                            "required_contexts": []})
    assert deployment.status_code == 201, deployment.text
    status = w.client.post(f"{BASE}/deployments/{deployment.json()['id']}/statuses", json={"state": "success"})
    assert status.status_code == 201, status.text
    assert w.client.post(f"{BASE}/dispatches", json={"event_type": "x"}).status_code == 204
    comment = w.client.post("/repos/o/tracker/issues/42/comments", json={"body": "audit"})
    assert comment.status_code == 201, comment.text
    assert names(w) == [("push", "refs/heads/side"), ("deployment", None), ("deployment_status", None),
                        ("repository_dispatch", None)]
    assert names(w, "o/tracker") == [("issue_comment", None)]
    assert [e.request for e in w.gh.events()] == sorted(e.request for e in w.gh.events())


def test_each_event_points_at_the_request_that_sent_it(w: ApiWorld) -> None:
    assert w.client.get(f"{BASE}/branches/main").status_code == 200
    for _ in range(2):  # two identical writes: each event names its own request
        assert w.client.post(f"{BASE}/dispatches", json={"event_type": "x"}).status_code == 204
    requests = w.gh.requests
    assert [e.request for e in w.gh.events()] == [1, 2]
    assert all(requests[e.request].path == f"{BASE}/dispatches" for e in w.gh.events())

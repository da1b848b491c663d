"""Contract of the fake GitHub's Deployments API (where the GitHub promotion records live).

Pins what ``tests/support/fakegithub/deployments.py`` promises, following GitHub's REST
docs: create (201; 422 unknown ref; 409 for auto-merge and required contexts;
403 without write), list newest first with exact filters and paging, statuses
(the seven states, 140-character descriptions, ``auto_inactive``), 404s, and
that faults and request recording apply as to every other endpoint.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.support.apiworld import BASE, REPO, ApiWorld, api_world, error
from tests.support.fakegithub import Fault

DEPLOYMENTS = f"{BASE}/deployments"


class World(ApiWorld):
    """main = c2 (the default branch), prod = c1; ``side`` forks from c1."""

    def create(self, **body: Any) -> httpx.Response:
        payload = {"ref": self.c2, "auto_merge": False, "required_contexts": [], **body}
        return self.client.post(DEPLOYMENTS, json=payload)


@pytest.fixture
def w() -> Iterator[World]:
    with api_world(World, main="c2", login="bot") as world:
        yield world


# ---- create ----------------------------------------------------------------------------


def test_create_deployment(w: World) -> None:
    payload = {"kind": "lockstep-promotion", "nested": {"a": [1, 2]}}
    resp = w.create(environment="g/prod", payload=payload, description="lockstep gate run 1")
    assert resp.status_code == 201
    body = resp.json()
    assert (body["sha"], body["ref"], body["environment"], body["payload"]) == (w.c2, w.c2, "g/prod", payload)
    assert body["description"] == "lockstep gate run 1"
    assert body["creator"]["login"] == "bot"
    assert body["task"] == "deploy"
    assert body["original_environment"] == "g/prod"
    assert (body["transient_environment"], body["production_environment"]) == (False, False)
    assert body["statuses_url"] == f"{w.gh.url}{DEPLOYMENTS}/{body['id']}/statuses"
    assert body["url"] == f"{w.gh.url}{DEPLOYMENTS}/{body['id']}"
    assert body["created_at"].endswith("Z")
    stored = w.gh.deployments(REPO)
    assert [d["id"] for d in stored] == [body["id"]]
    assert stored[0]["statuses"] == []


def test_create_defaults_and_ref_forms(w: World) -> None:
    body = w.create(ref="main").json()  # a branch resolves to its head; ``ref`` is kept as given
    assert (body["sha"], body["ref"]) == (w.c2, "main")
    assert (body["environment"], body["production_environment"], body["payload"]) == ("production", True, {})
    assert body["description"] == ""
    body = w.create(ref=w.c1[:10], environment="g/prod", production_environment=True).json()
    assert (body["sha"], body["production_environment"]) == (w.c1, True)
    body = w.create(payload='{"as": "string"}').json()
    assert body["payload"] == '{"as": "string"}'  # stored and returned as given


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"ref": "nope"}, 422, "No ref found for: nope"),
        ({"ref": "f" * 40}, 422, "No ref found for: " + "f" * 40),
        ({"ref": None}, 422, None),
        ({"ref": "C2", "payload": [1]}, 422, None),
        ({"ref": "C2", "auto_merge": "false"}, 422, None),
        ({"ref": "C2", "production_environment": 1}, 422, None),
        ({"ref": "C2", "required_contexts": "ci"}, 422, None),
        (
            {"ref": "C2", "required_contexts": ["ci/test"]},
            409,
            "Conflict: Commit status checks failed for C2.",
        ),
        # auto_merge defaults to true and the fake never merges:
        ({"ref": "side", "required_contexts": []}, 409, "Conflict merging main into side."),
    ],
)
def test_create_rejections(w: World, body: dict[str, Any], status: int, message: str | None) -> None:
    body = {k: w.c2 if v == "C2" else v for k, v in body.items()}
    resp = w.client.post(DEPLOYMENTS, json=body)
    msg = error(resp, status)
    if message is not None:
        assert msg == message.replace("C2", w.c2)
    assert w.gh.deployments(REPO) == []


def test_create_missing_ref_and_bad_json(w: World) -> None:
    error(w.client.post(DEPLOYMENTS, json={"environment": "x"}), 422)
    resp = w.client.post(DEPLOYMENTS, content=b"{not json", headers={"content-type": "application/json"})
    assert error(resp, 400) == "Problems parsing JSON"


def test_auto_merge_false_deploys_any_commit(w: World) -> None:
    assert w.create(ref="side").status_code == 201
    # Contains the default branch's head: nothing to merge, so the default auto_merge passes.
    assert w.client.post(DEPLOYMENTS, json={"ref": "main"}).status_code == 201


def test_create_in_empty_repo_is_409(w: World) -> None:
    w.gh.add_repo("o/empty")
    w.gh.add_token("tok-e", write=["o/empty"])
    with w.as_("tok-e") as other:
        resp = other.post("/repos/o/empty/deployments", json={"ref": "main"})
        assert error(resp, 409) == "Git Repository is empty."


def test_permissions(w: World) -> None:
    with w.as_("tok-read") as reader:
        resp = reader.post(DEPLOYMENTS, json={"ref": w.c2, "auto_merge": False})
        assert error(resp, 403) == "Resource not accessible by personal access token"
        assert resp.headers["x-accepted-github-permissions"] == "deployments=write"
        assert reader.get(DEPLOYMENTS).status_code == 200
    deployment_id = w.create().json()["id"]
    with w.as_("tok-read") as reader:
        resp = reader.post(f"{DEPLOYMENTS}/{deployment_id}/statuses", json={"state": "success"})
        assert error(resp, 403) == "Resource not accessible by personal access token"
        assert reader.get(f"{DEPLOYMENTS}/{deployment_id}/statuses").json() == []
    with w.as_("tok-other") as stranger:
        assert error(stranger.get(DEPLOYMENTS), 404) == "Not Found"
    with w.as_(None) as anonymous:
        assert error(anonymous.get(DEPLOYMENTS), 404) == "Not Found"
    with w.as_("bogus") as bogus:
        assert error(bogus.get(DEPLOYMENTS), 401) == "Bad credentials"


# ---- list and get ----------------------------------------------------------------------


def test_list_newest_first_with_filters_and_paging(w: World) -> None:
    a = w.create(environment="g/prod").json()["id"]
    b = w.create(environment="g/staging", ref=w.c1).json()["id"]
    c = w.create(environment="g/prod", ref="main").json()["id"]
    assert a < b < c  # ids increase

    def ids(**params: str) -> list[int]:
        resp = w.client.get(DEPLOYMENTS, params=params)
        assert resp.status_code == 200
        return [d["id"] for d in resp.json()]

    assert ids() == [c, b, a]
    assert ids(environment="g/prod") == [c, a]
    assert ids(environment="G/PROD") == []  # exact match
    assert ids(sha=w.c1) == [b]
    assert ids(ref="main") == [c]
    assert ids(task="deploy", environment="g/staging") == [b]
    assert ids(environment="g/prod", per_page="1") == [c]
    assert ids(environment="g/prod", per_page="1", page="2") == [a]
    assert ids(per_page="0") == [c]  # clamped to at least 1
    assert w.gh.requests[-1].query == {"per_page": "0"}


def test_list_default_page_is_30(w: World) -> None:
    for _ in range(31):
        w.gh.add_deployment(REPO, w.c2, "g/prod")
    assert len(w.client.get(DEPLOYMENTS).json()) == 30
    assert len(w.client.get(DEPLOYMENTS, params={"per_page": 500}).json()) == 31  # max 100


def test_get_deployment_and_unknown_id(w: World) -> None:
    created = w.create().json()
    assert w.client.get(f"{DEPLOYMENTS}/{created['id']}").json() == created
    assert error(w.client.get(f"{DEPLOYMENTS}/999"), 404) == "Not Found"
    assert error(w.client.get(f"{DEPLOYMENTS}/abc"), 404) == "Not Found"


# ---- statuses ---------------------------------------------------------------------------


def test_create_and_list_statuses(w: World) -> None:
    deployment_id = w.create(environment="g/prod").json()["id"]
    url = f"{DEPLOYMENTS}/{deployment_id}/statuses"
    first = w.client.post(url, json={"state": "in_progress"})
    assert first.status_code == 201
    resp = w.client.post(
        url,
        json={"state": "success", "description": "x" * 140, "log_url": "https://example.org/run/1"},
    )
    assert resp.status_code == 201
    body = resp.json()
    assert (body["state"], body["description"], body["environment"]) == ("success", "x" * 140, "g/prod")
    assert body["log_url"] == body["target_url"] == "https://example.org/run/1"
    assert body["creator"]["login"] == "bot"
    assert body["deployment_url"] == f"{w.gh.url}{DEPLOYMENTS}/{deployment_id}"
    listed = w.client.get(url).json()
    assert [s["state"] for s in listed] == ["success", "in_progress"]  # newest first
    assert [s["state"] for s in w.client.get(url, params={"per_page": 1}).json()] == ["success"]
    assert [s["state"] for s in w.gh.deployments(REPO)[0]["statuses"]] == ["in_progress", "success"]


@pytest.mark.parametrize(
    "state", ["error", "failure", "inactive", "in_progress", "queued", "pending", "success"]
)
def test_every_documented_state_is_accepted(w: World, state: str) -> None:
    deployment_id = w.create().json()["id"]
    assert w.client.post(f"{DEPLOYMENTS}/{deployment_id}/statuses", json={"state": state}).status_code == 201


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"state": "done"}, None),
        ({"state": "SUCCESS"}, None),
        ({}, None),
        ({"state": "success", "description": "y" * 141}, "Validation Failed"),
        ({"state": "success", "auto_inactive": "yes"}, None),
    ],
)
def test_status_rejections(w: World, body: dict[str, Any], message: str | None) -> None:
    deployment_id = w.create().json()["id"]
    msg = error(w.client.post(f"{DEPLOYMENTS}/{deployment_id}/statuses", json=body), 422)
    assert message is None or msg == message
    assert w.gh.deployments(REPO)[0]["statuses"] == []


def test_statuses_of_unknown_deployment_are_404(w: World) -> None:
    assert (
        error(w.client.post(f"{DEPLOYMENTS}/12345/statuses", json={"state": "success"}), 404) == "Not Found"
    )
    assert error(w.client.get(f"{DEPLOYMENTS}/12345/statuses"), 404) == "Not Found"


def test_auto_inactive_only_for_non_production_environments(w: World) -> None:
    def deploy(env: str, production: bool) -> int:
        deployment_id = int(w.create(environment=env, production_environment=production).json()["id"])
        w.client.post(f"{DEPLOYMENTS}/{deployment_id}/statuses", json={"state": "success"})
        return deployment_id

    old_stage, new_stage = deploy("stage", False), deploy("stage", False)
    old_prod, new_prod = deploy("g/prod", True), deploy("g/prod", True)
    states = {d["id"]: [s["state"] for s in d["statuses"]] for d in w.gh.deployments(REPO)}
    assert states[old_stage] == ["success", "inactive"]
    assert states[new_stage] == ["success"]
    assert states[old_prod] == states[new_prod] == ["success"]
    no_auto = int(w.create(environment="stage", production_environment=False).json()["id"])
    w.client.post(f"{DEPLOYMENTS}/{no_auto}/statuses", json={"state": "success", "auto_inactive": False})
    states = {d["id"]: [s["state"] for s in d["statuses"]] for d in w.gh.deployments(REPO)}
    assert states[new_stage] == ["success"] and states[no_auto] == ["success"]


def test_status_environment_moves_the_deployment(w: World) -> None:
    deployment_id = w.create(environment="a").json()["id"]
    w.client.post(f"{DEPLOYMENTS}/{deployment_id}/statuses", json={"state": "queued", "environment": "b"})
    assert [d["id"] for d in w.client.get(DEPLOYMENTS, params={"environment": "b"}).json()] == [deployment_id]
    assert w.client.get(f"{DEPLOYMENTS}/{deployment_id}").json()["original_environment"] == "a"


# ---- test helpers, faults, recording ---------------------------------------------------------


def test_add_deployment_helper_is_not_recorded(w: World) -> None:
    deployment_id = w.gh.add_deployment(
        REPO, "prod", "g/prod", payload="not json", states=["failure", "success"]
    )
    assert w.gh.requests == []
    body = w.client.get(f"{DEPLOYMENTS}/{deployment_id}").json()
    assert (body["sha"], body["payload"], body["production_environment"]) == (w.c1, "not json", False)
    statuses = w.client.get(f"{DEPLOYMENTS}/{deployment_id}/statuses").json()
    assert [s["state"] for s in statuses] == ["success", "failure"]
    with pytest.raises(ValueError):
        w.gh.add_deployment(REPO, "nope")


def test_faults_apply_and_requests_are_recorded(w: World) -> None:
    w.gh.inject(Fault.status(500), method="POST", path=rf"{DEPLOYMENTS}")
    error(w.create(), 500)
    assert w.gh.deployments(REPO) == []  # a status fault is not applied
    w.gh.inject(Fault.drop_after(), method="POST", path=rf"{DEPLOYMENTS}")
    with pytest.raises(httpx.HTTPError):
        w.create(environment="lost")
    assert [d["environment"] for d in w.gh.deployments(REPO)] == ["lost"]  # applied, answer lost
    deployment_id = w.gh.deployments(REPO)[0]["id"]
    w.gh.inject(Fault.status(502), method="POST", path=rf"{DEPLOYMENTS}/\d+/statuses")
    error(w.client.post(f"{DEPLOYMENTS}/{deployment_id}/statuses", json={"state": "success"}), 502)
    assert w.gh.deployments(REPO)[0]["statuses"] == []
    posts = [r for r in w.gh.writes() if r.path.startswith(DEPLOYMENTS)]
    assert [(r.status, r.fault) for r in posts] == [(500, "status"), (None, "drop_after"), (502, "status")]
    assert isinstance(posts[0].json, dict) and posts[0].json["ref"] == w.c2

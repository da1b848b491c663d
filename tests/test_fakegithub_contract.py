"""Contract of the fake GitHub over real HTTP: it must answer like GITHUB-API.md says.

If the fake drifts from GitHub, forge tests pass against a server that does not
exist; these tests pin every row the fake implements, each fault kind and the
permission model.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.support.apiworld import BASE, REPO, TLS, ApiWorld, api_world, error
from tests.support.fakegithub import FakeGitHub, Fault

PROD_REF = f"{BASE}/git/refs/heads/prod"


World = ApiWorld


@pytest.fixture
def w() -> Iterator[World]:
    with api_world(World, tracker=True) as world:
        yield world


# ---- branches and refs ---------------------------------------------------------------


def test_get_branch(w: World) -> None:
    resp = w.client.get(f"{BASE}/branches/main")
    assert resp.status_code == 200
    body = resp.json()
    assert (body["name"], body["commit"]["sha"], body["protected"]) == ("main", w.c3, False)
    assert error(w.client.get(f"{BASE}/branches/nope"), 404) == "Branch not found"


def test_renamed_branch_answers_301_and_is_not_followed(w: World) -> None:
    w.gh.rename_branch(REPO, "main", "trunk")
    resp = w.client.get(f"{BASE}/branches/main")
    assert resp.status_code == 301
    assert resp.headers["location"] == f"{w.gh.url}{BASE}/branches/trunk"
    assert resp.json()["message"] == "Moved Permanently"
    followed = w.client.get(f"{BASE}/branches/main", follow_redirects=True)
    assert followed.json()["name"] == "trunk"
    assert w.client.get(f"{BASE}/git/ref/heads/main").status_code == 404  # refs never redirect


def test_get_ref(w: World) -> None:
    body = w.client.get(f"{BASE}/git/ref/heads/prod").json()
    assert body["ref"] == "refs/heads/prod"
    assert body["object"] == {"sha": w.c1, "type": "commit", "url": body["object"]["url"]}
    assert {"node_id", "url"} <= body.keys()
    assert error(w.client.get(f"{BASE}/git/ref/heads/pro"), 404) == "Not Found"
    assert error(w.client.get(f"{BASE}/git/ref/{w.c1}"), 404) == "Not Found"
    w.gh.add_repo("o/empty")
    w.gh.add_token("tok-e", read=["o/empty"])
    with w.as_("tok-e") as other:
        msg = error(other.get("/repos/o/empty/git/ref/heads/main"), 409)
        assert msg == "Git Repository is empty."


def test_matching_refs_is_a_prefix_match(w: World) -> None:
    w.gh.set_branch(REPO, "prod2", w.c2)
    refs = [r["ref"] for r in w.client.get(f"{BASE}/git/matching-refs/heads/prod").json()]
    assert refs == ["refs/heads/prod", "refs/heads/prod2"]


@pytest.mark.parametrize(
    ("base", "head", "status", "ahead", "behind", "merge_base"),
    [
        ("prod", "main", "ahead", 2, 0, "c1"),
        ("main", "prod", "behind", 0, 2, "c1"),
        ("main", "main", "identical", 0, 0, "c3"),
        ("side", "main", "diverged", 2, 1, "c1"),
        ("c2", "c3", "ahead", 1, 0, "c2"),  # by sha
    ],
)
def test_compare(
    w: World, base: str, head: str, status: str, ahead: int, behind: int, merge_base: str
) -> None:
    shas = {"c1": w.c1, "c2": w.c2, "c3": w.c3}
    base, head = shas.get(base, base), shas.get(head, head)
    resp = w.client.get(f"{BASE}/compare/{base}...{head}", params={"per_page": 1})
    body = resp.json()
    assert resp.status_code == 200
    assert (body["status"], body["ahead_by"], body["behind_by"]) == (status, ahead, behind)
    assert body["total_commits"] == ahead
    assert body["merge_base_commit"]["sha"] == shas[merge_base]
    assert len(body["commits"]) == min(ahead, 1)
    assert w.gh.requests[-1].query == {"per_page": "1"}


def test_compare_unknown_ref_or_sha_is_404(w: World) -> None:
    assert error(w.client.get(f"{BASE}/compare/nope...main"), 404) == "Not Found"
    assert error(w.client.get(f"{BASE}/compare/main...{'a' * 40}"), 404) == "Not Found"
    w.gh.set_branch(REPO, "orphan", w.gh.commit(REPO))
    error(w.client.get(f"{BASE}/compare/main...orphan"), 404)  # no common ancestor


def test_create_ref(w: World) -> None:
    resp = w.client.post(f"{BASE}/git/refs", json={"ref": "refs/heads/new", "sha": w.c2})
    assert resp.status_code == 201
    assert resp.json()["object"]["sha"] == w.c2
    assert resp.headers["location"] == f"{w.gh.url}{BASE}/git/refs/heads/new"
    assert w.gh.branch(REPO, "new") == w.c2


@pytest.mark.parametrize(
    ("payload", "status", "message"),
    [
        ({"ref": "refs/heads/prod", "sha": "C2"}, 422, "Reference already exists"),
        ({"ref": "refs/heads/x", "sha": "f" * 40}, 422, "Object does not exist"),
        ({"ref": "refs/heads/x", "sha": "abc123"}, 422, None),  # malformed sha
        ({"ref": "heads/x", "sha": "C2"}, 422, None),  # not refs/...
        ({"ref": "refs/heads/a..b", "sha": "C2"}, 422, None),
        ({"ref": "refs/heads/main/sub", "sha": "C2"}, 422, "Reference update failed"),
        ({"ref": "refs/heads/x"}, 422, None),  # sha missing
    ],
)
def test_create_ref_rejections(w: World, payload: dict[str, str], status: int, message: str | None) -> None:
    payload = {k: w.c2 if v == "C2" else v for k, v in payload.items()}
    msg = error(w.client.post(f"{BASE}/git/refs", json=payload), status)
    assert message is None or msg == message
    assert w.gh.branch(REPO, "x") is None


def test_create_ref_in_empty_repo_is_409(w: World) -> None:
    w.gh.add_repo("o/empty")
    w.gh.add_token("tok-e", write=["o/empty"])
    with w.as_("tok-e") as other:
        resp = other.post("/repos/o/empty/git/refs", json={"ref": "refs/heads/x", "sha": w.c1})
        assert error(resp, 409) == "Git Repository is empty."


def test_update_ref_fast_forward_only(w: World) -> None:
    resp = w.client.patch(PROD_REF, json={"sha": w.c2, "force": False})
    assert resp.status_code == 200
    assert resp.json()["object"]["sha"] == w.c2
    assert w.client.patch(PROD_REF, json={"sha": w.c3}).status_code == 200  # force defaults false
    msg = error(w.client.patch(PROD_REF, json={"sha": w.side}), 422)
    assert msg == "Update is not a fast forward"
    assert w.gh.branch(REPO, "prod") == w.c3
    assert w.client.patch(PROD_REF, json={"sha": w.side, "force": True}).status_code == 200


@pytest.mark.parametrize(
    ("path", "payload", "message"),
    [
        (f"{BASE}/git/refs/heads/missing", {"sha": "C2"}, "Reference does not exist"),
        (PROD_REF, {"sha": "e" * 40}, "Object does not exist"),
        (PROD_REF, {"sha": "C2", "force": "false"}, None),  # wrong type is refused, not coerced
        (PROD_REF, {}, None),
    ],
)
def test_update_ref_rejections(w: World, path: str, payload: dict[str, object], message: str | None) -> None:
    payload = {k: w.c2 if v == "C2" else v for k, v in payload.items()}
    msg = error(w.client.patch(path, json=payload), 422)
    assert message is None or msg == message
    assert w.gh.branch(REPO, "prod") == w.c1


def test_protected_branch_refuses_update(w: World) -> None:
    w.gh.protect(REPO, "prod")
    msg = error(w.client.patch(PROD_REF, json={"sha": w.c2}), 422)
    assert msg.startswith("Repository rule violations found")
    assert w.client.get(f"{BASE}/branches/prod").json()["protected"] is True


def test_delete_ref(w: World) -> None:
    resp = w.client.delete(f"{BASE}/git/refs/heads/side")
    assert (resp.status_code, resp.content) == (204, b"")
    assert w.gh.branch(REPO, "side") is None
    assert error(w.client.delete(f"{BASE}/git/refs/heads/side"), 422) == "Reference does not exist"


def test_concurrent_updates_one_wins(w: World) -> None:
    results: list[int] = []

    def push(sha: str) -> None:
        with w.as_("tok-write") as client:
            results.append(client.patch(PROD_REF, json={"sha": sha}).status_code)

    threads = [threading.Thread(target=push, args=(sha,)) for sha in (w.c3, w.side)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [200, 422]
    assert w.gh.branch(REPO, "prod") in (w.c3, w.side)


# ---- issue comments and dispatches ---------------------------------------------------


def test_create_comment(w: World) -> None:
    resp = w.client.post("/repos/o/tracker/issues/42/comments", json={"body": "audit *record*"})
    assert resp.status_code == 201
    body = resp.json()
    assert body["body"] == "audit *record*"
    assert body["user"]["login"] == "lockstep-bot"
    assert body["html_url"].endswith(f"/o/tracker/issues/42#issuecomment-{body['id']}")
    assert {"id", "created_at"} <= body.keys()
    assert w.gh.comments("o/tracker", 42) == [body]


def test_comment_rejections(w: World) -> None:
    url = "/repos/o/tracker/issues/42/comments"
    form = w.client.post(url, data={"body": "@/tmp/audit.md"})
    assert error(form, 400) == "Problems parsing JSON"
    assert error(w.client.post(url, json={"body": ""}), 422) == "Validation Failed"
    error(w.client.post(url, json={}), 422)
    too_long = w.client.post(url, json={"body": "x" * 65537})
    assert too_long.json()["errors"][0]["message"] == "Body is too long (maximum is 65536 characters)"
    error(too_long, 422)
    assert w.client.post(url, json={"body": "x" * 65536}).status_code == 201
    missing = w.client.post("/repos/o/tracker/issues/7/comments", json={"body": "b"})
    assert error(missing, 404) == "Not Found"
    w.gh.add_issue("o/tracker", 42, locked=True)
    msg = error(w.client.post(url, json={"body": "b"}), 403)
    assert msg == "Unable to create comment because issue is locked."
    w.gh.disable_issues("o/tracker")
    assert error(w.client.post(url, json={"body": "b"}), 410) == "Issues are disabled for this repo"
    assert len(w.gh.comments("o/tracker", 42)) == 1


def test_dispatch(w: World) -> None:
    url = f"{BASE}/dispatches"
    ok = w.client.post(url, json={"event_type": "promote", "client_payload": {"sha": w.c1}})
    assert (ok.status_code, ok.content) == (204, b"")
    assert w.gh.dispatches(REPO) == [{"event_type": "promote", "client_payload": {"sha": w.c1}}]
    error(w.client.post(url, json={"event_type": ""}), 422)
    error(w.client.post(url, json={"event_type": "e" * 101}), 422)
    many = {f"k{i}": i for i in range(11)}
    error(w.client.post(url, json={"event_type": "e", "client_payload": many}), 422)


# ---- auth, routing, rate limit -------------------------------------------------------


def test_permissions(w: World) -> None:
    with w.as_(None) as anon:
        assert error(anon.get(f"{BASE}/branches/main"), 404) == "Not Found"
    with w.as_("wrong") as bad:
        assert error(bad.get(f"{BASE}/branches/main"), 401) == "Bad credentials"
    with w.as_("tok-other") as other:
        assert error(other.get(f"{BASE}/branches/main"), 404) == "Not Found"
        assert error(other.patch(PROD_REF, json={"sha": w.c2}), 404) == "Not Found"
    with w.as_("tok-read") as reader:
        assert reader.get(f"{BASE}/branches/main").status_code == 200
        resp = reader.patch(PROD_REF, json={"sha": w.c2})
        assert error(resp, 403) == "Resource not accessible by personal access token"
        assert resp.headers["x-accepted-github-permissions"] == "contents=write"
        comment = reader.post("/repos/o/tracker/issues/42/comments", json={"body": "b"})
        assert comment.headers["x-accepted-github-permissions"] == "issues=write"
    legacy = w.client.get(f"{BASE}/branches/main", headers={"Authorization": "token tok-read"})
    assert legacy.status_code == 200
    assert w.gh.branch(REPO, "prod") == w.c1
    assert "Bearer wrong" in [r.headers.get("authorization") for r in w.gh.requests]


def test_unknown_path_and_wrong_method_are_404(w: World) -> None:
    assert error(w.client.get("/repos/o/r/nope"), 404) == "Not Found"
    assert error(w.client.delete(f"{BASE}/branches/main"), 404) == "Not Found"
    assert error(w.client.put(PROD_REF, json={"sha": w.c2}), 404) == "Not Found"
    error(w.client.get("/", headers={"X-GitHub-Api-Version": "1999-01-01"}), 400)
    no_agent = w.client.build_request("GET", f"{BASE}/branches/main")
    del no_agent.headers["user-agent"]
    assert error(w.client.send(no_agent), 403).startswith("Request forbidden")


def test_rate_limit_headers_and_exhaustion(w: World) -> None:
    w.gh.rate_limit_remaining = 2
    first = w.client.get(f"{BASE}/branches/main")
    assert first.headers["x-ratelimit-remaining"] == "1"
    assert first.headers["x-ratelimit-limit"] == "5000"
    assert int(first.headers["x-ratelimit-reset"]) > time.time()
    assert {"x-ratelimit-used", "x-ratelimit-resource"} <= first.headers.keys()
    assert w.client.get(f"{BASE}/branches/main").headers["x-ratelimit-remaining"] == "0"
    limited = w.client.get(f"{BASE}/branches/main")
    assert error(limited, 403).startswith("API rate limit exceeded for ")
    assert limited.headers["x-ratelimit-remaining"] == "0"
    w.gh.rate_limit_reset = time.time() - 1
    assert w.client.get(f"{BASE}/branches/main").status_code == 200


# ---- faults --------------------------------------------------------------------------


def test_fault_status_is_not_applied_and_nth_times(w: World) -> None:
    inj = w.gh.inject(Fault.status(503), method="patch", path=PROD_REF, nth=2, times=2)
    assert w.client.patch(PROD_REF, json={"sha": w.c1}).status_code == 200  # 1st: no fault
    assert error(w.client.patch(PROD_REF, json={"sha": w.c2}), 503) == "Service Unavailable"
    assert w.client.get(f"{BASE}/branches/prod").json()["commit"]["sha"] == w.c1  # GET unmatched
    custom = w.client.patch(PROD_REF, json={"sha": w.c2})
    assert custom.status_code == 503 and "x-ratelimit-limit" in custom.headers
    assert w.client.patch(PROD_REF, json={"sha": w.c2}).status_code == 200  # times exhausted
    assert (inj.seen, inj.fired) == (4, 2)
    w.gh.inject(Fault.status(502, "Server Error", headers={"X-Test": "1"}))
    bad = w.client.get(f"{BASE}/branches/main")
    assert (error(bad, 502), bad.headers["x-test"]) == ("Server Error", "1")


def test_fault_drop_before_does_not_apply(w: World) -> None:
    w.gh.inject(Fault.drop_before(), method="PATCH", path=PROD_REF)
    with pytest.raises(httpx.RemoteProtocolError):
        w.client.patch(PROD_REF, json={"sha": w.c2})
    assert w.gh.branch(REPO, "prod") == w.c1
    assert (w.gh.writes()[-1].status, w.gh.writes()[-1].fault) == (None, "drop_before")


def test_fault_drop_after_applies(w: World) -> None:
    w.gh.inject(Fault.drop_after(), method="PATCH", path=PROD_REF)
    with pytest.raises(httpx.RemoteProtocolError):
        w.client.patch(PROD_REF, json={"sha": w.c2})
    assert w.gh.branch(REPO, "prod") == w.c2
    assert w.client.get(f"{BASE}/branches/prod").json()["commit"]["sha"] == w.c2  # client recovers


def test_fault_delay_and_latency(w: World) -> None:
    w.gh.inject(Fault.delay(0.3), path=f"{BASE}/branches/main")
    with pytest.raises(httpx.ReadTimeout):
        w.client.get(f"{BASE}/branches/main", timeout=0.1)
    w.gh.latency = 0.05
    start = time.monotonic()
    assert w.client.get(f"{BASE}/branches/main").status_code == 200
    assert time.monotonic() - start >= 0.05


def test_fault_rate_limits(w: World) -> None:
    w.gh.inject(Fault.rate_limit(status=429, retry_after=2, reset_in=5))
    primary = w.client.get(f"{BASE}/branches/main")
    assert error(primary, 429).startswith("API rate limit exceeded")
    assert primary.headers["x-ratelimit-remaining"] == "0"
    assert primary.headers["retry-after"] == "2"
    assert 3 <= int(primary.headers["x-ratelimit-reset"]) - time.time() <= 7
    w.gh.inject(Fault.rate_limit(kind="secondary"))
    secondary = w.client.get(f"{BASE}/branches/main")
    assert "secondary rate limit" in error(secondary, 403)
    assert secondary.headers["x-ratelimit-remaining"] != "0"
    assert "retry-after" not in secondary.headers


# ---- transport -----------------------------------------------------------------------


def test_keep_alive_and_recording(w: World) -> None:
    w.client.get(f"{BASE}/branches/main")
    w.client.patch(PROD_REF, json={"sha": w.c2})
    first, second = w.gh.requests
    assert first.connection == second.connection
    assert first.headers["authorization"] == "Bearer tok-write"
    assert second.json == {"sha": w.c2} and second.status == 200
    assert first.at <= second.at
    assert [r.method for r in w.gh.writes()] == ["PATCH"]


def test_stop_closes_server() -> None:
    gh = FakeGitHub().start()
    url = gh.url
    gh.stop()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/", timeout=1, verify=TLS)

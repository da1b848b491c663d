"""Contract of the fake GitHub's Git Data (trees, commits) and Contents APIs.

Pins what ``tests/support/fakegithub/contents.py`` promises, as GitHub documents it: an orphan
commit from an inline tree and a ref created on it; a file read back base64-wrapped with its
git blob id; PUT creates (201) and replaces (200) in one commit on the branch; a replace without
``sha`` is 422, with a stale ``sha`` 409 (the compare-and-swap the records rely on) and leaves the
branch where it was; 404s for unknown refs, branches and paths; history filtered by path.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.support.apiworld import BASE, REPO, ApiWorld, api_world, error

BRANCH = "lockstep/records"
PATH = "gate.json"


@pytest.fixture
def w() -> Iterator[ApiWorld]:
    with api_world(ApiWorld) as world:
        yield world


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def orphan_branch(w: ApiWorld, text: str, branch: str = BRANCH) -> str:
    """tree (inline content) -> commit without parents -> refs/heads/<branch>: the commit sha."""
    tree = w.client.post(f"{BASE}/git/trees", json={"tree": [
        {"path": PATH, "mode": "100644", "type": "blob", "content": text}]})
    assert tree.status_code == 201, tree.text
    commit = w.client.post(f"{BASE}/git/commits", json={"message": "records", "tree": tree.json()["sha"],
                                                        "parents": []})
    assert commit.status_code == 201, commit.text
    sha = str(commit.json()["sha"])
    ref = w.client.post(f"{BASE}/git/refs", json={"ref": f"refs/heads/{branch}", "sha": sha})
    assert ref.status_code == 201, ref.text
    return sha


def read(w: ApiWorld, ref: str = BRANCH, client: httpx.Client | None = None) -> httpx.Response:
    return (client or w.client).get(f"{BASE}/contents/{PATH}", params={"ref": ref})


def put(w: ApiWorld, text: str, sha: str | None = None, branch: str = BRANCH) -> httpx.Response:
    body = {"message": "record", "content": _b64(text), "branch": branch}
    if sha is not None:
        body["sha"] = sha
    return w.client.put(f"{BASE}/contents/{PATH}", json=body)


def test_an_orphan_commit_holds_the_file_and_reads_back_with_its_blob_id(w: ApiWorld) -> None:
    sha = orphan_branch(w, '{"run": 1}')
    resp = read(w)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["type"] == "file" and body["encoding"] == "base64" and body["path"] == PATH
    assert base64.b64decode(body["content"]) == b'{"run": 1}'
    assert all(len(line) <= 60 for line in body["content"].splitlines())
    assert body["sha"] == hashlib.sha1(b'blob 10\0{"run": 1}', usedforsecurity=False).hexdigest()
    assert w.gh.branch(REPO, BRANCH) == sha
    assert w.gh.file(REPO, BRANCH, PATH) == b'{"run": 1}'
    assert w.gh.file(REPO, "main", PATH) is None  # the orphan shares nothing with main


def test_put_replaces_with_the_current_sha_in_one_commit_on_the_branch(w: ApiWorld) -> None:
    first = orphan_branch(w, "one")
    current = read(w).json()["sha"]
    resp = put(w, "two", sha=current)
    assert resp.status_code == 200, resp.text
    commit = resp.json()["commit"]
    assert [p["sha"] for p in commit["parents"]] == [first]
    assert w.gh.branch(REPO, BRANCH) == commit["sha"]
    assert resp.json()["content"]["sha"] == read(w).json()["sha"] != current
    assert w.gh.file(REPO, BRANCH, PATH) == b"two"


def test_put_creates_a_missing_file_with_201(w: ApiWorld) -> None:
    orphan_branch(w, "x")
    resp = w.client.put(f"{BASE}/contents/other.json", json={"message": "m", "content": _b64("new"),
                                                             "branch": BRANCH})
    assert resp.status_code == 201, resp.text
    assert w.gh.file(REPO, BRANCH, "other.json") == b"new"


def test_replacing_without_sha_is_422_and_with_a_stale_sha_409_and_nothing_moves(w: ApiWorld) -> None:
    orphan_branch(w, "one")
    stale = read(w).json()["sha"]
    assert put(w, "two", sha=stale).status_code == 200
    head = w.gh.branch(REPO, BRANCH)
    assert error(put(w, "three"), 422) == 'Invalid request.\n\n"sha" wasn\'t supplied.'
    assert error(put(w, "three", sha=stale), 409) == f"{PATH} does not match {stale}"
    assert w.gh.branch(REPO, BRANCH) == head
    assert w.gh.file(REPO, BRANCH, PATH) == b"two"


def test_unknown_ref_branch_and_path_are_404(w: ApiWorld) -> None:
    assert error(read(w, ref="nope"), 404) == "No commit found for the ref nope"
    assert error(put(w, "x", branch="nope"), 404) == "Branch nope not found"
    orphan_branch(w, "x")
    assert error(w.client.get(f"{BASE}/contents/missing.json", params={"ref": BRANCH}), 404) == "Not Found"


def test_put_needs_write_and_valid_base64(w: ApiWorld) -> None:
    orphan_branch(w, "x")
    sha = read(w).json()["sha"]
    with w.as_("tok-read") as reader:
        assert read(w, client=reader).status_code == 200
        denied = reader.put(f"{BASE}/contents/{PATH}", json={"message": "m", "content": _b64("y"),
                                                             "sha": sha, "branch": BRANCH})
        assert denied.status_code == 403
    bad = w.client.put(f"{BASE}/contents/{PATH}", json={"message": "m", "content": "%%%", "sha": sha,
                                                        "branch": BRANCH})
    assert error(bad, 422).startswith("Invalid request.")
    assert w.gh.file(REPO, BRANCH, PATH) == b"x"


def test_a_protected_branch_refuses_the_put(w: ApiWorld) -> None:
    orphan_branch(w, "x")
    w.gh.protect(REPO, BRANCH)
    resp = put(w, "y", sha=read(w).json()["sha"])
    assert resp.status_code == 422
    assert w.gh.file(REPO, BRANCH, PATH) == b"x"


def test_commit_and_tree_errors(w: ApiWorld) -> None:
    no_tree = w.client.post(f"{BASE}/git/commits", json={"message": "m", "tree": "0" * 40, "parents": []})
    assert error(no_tree, 422) == "Tree SHA does not exist"
    tree = w.client.post(f"{BASE}/git/trees", json={"tree": [
        {"path": PATH, "mode": "100644", "type": "blob", "content": "x"}]}).json()["sha"]
    bad_parent = w.client.post(f"{BASE}/git/commits", json={"message": "m", "tree": tree, "parents": ["1" * 40]})
    assert error(bad_parent, 422) == "Parent SHA does not exist or is not a commit object"
    bad_mode = w.client.post(f"{BASE}/git/trees", json={"tree": [
        {"path": PATH, "mode": "644", "type": "blob", "content": "x"}]})
    assert bad_mode.status_code == 422


def test_history_of_a_path_is_newest_first(w: ApiWorld) -> None:
    orphan_branch(w, "v0")
    for i in range(1, 4):
        assert put(w, f"v{i}", sha=read(w).json()["sha"]).status_code == 200
    resp = w.client.get(f"{BASE}/commits", params={"sha": BRANCH, "path": PATH, "per_page": 2})
    assert resp.status_code == 200, resp.text
    shas = [c["sha"] for c in resp.json()]
    assert [w.gh.file(REPO, s, PATH) for s in shas] == [b"v3", b"v2"]
    assert w.client.get(f"{BASE}/commits", params={"sha": BRANCH, "path": "other"}).json() == []


@settings(max_examples=25, deadline=None)
@given(st.lists(st.tuples(st.text(max_size=30), st.booleans()), min_size=1, max_size=6))
def test_a_put_lands_exactly_when_its_sha_is_the_current_one(steps: list[tuple[str, bool]]) -> None:
    """A model: the file holds the last accepted text; a put with a stale sha changes nothing."""
    with api_world(ApiWorld) as w:
        orphan_branch(w, "start")
        truth, stale = "start", None
        for text, use_stale in steps:
            current = read(w).json()["sha"]
            resp = put(w, text, sha=stale if use_stale and stale else current)
            if use_stale and stale and stale != current:
                assert resp.status_code == 409
            else:
                assert resp.status_code == 200, resp.text
                truth = text
            stale = current
            assert w.gh.file(REPO, BRANCH, PATH) == truth.encode()


def test_a_file_over_1_mb_is_403_too_large(w: ApiWorld) -> None:
    orphan_branch(w, "x" * (1024 * 1024 + 1))
    resp = read(w)
    assert error(resp, 403).startswith("This API returns blobs up to 1 MB in size.")
    assert resp.json()["errors"][0]["code"] == "too_large"

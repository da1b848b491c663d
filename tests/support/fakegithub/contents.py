"""Files in commits for the fake GitHub: the Git Data API (trees, commits) and the Contents API.

lockstep keeps its GitHub promotion records as one JSON file on a branch of one repository
(``docs/github-api.md``, "Git data without a working tree"), so the fake must hold file
contents per commit and answer as GitHub does.  Endpoints (registered on import;
:mod:`tests.support.fakegithub.server` imports this module):

* ``POST /repos/{o}/{r}/git/trees`` ``{tree: [{path, mode, type, content | sha}], base_tree?}``
  → 201 ``{sha, url, tree, truncated}``.  ``content`` inline makes the blob; ``mode`` must
  be a git file mode and ``type`` ``blob`` (the fake holds files only); an unknown
  ``base_tree`` or blob ``sha`` → 422; an empty repository → 409 ``Git Repository is
  empty.`` (as every Git Data endpoint).  Needs write (``contents``).
* ``POST /repos/{o}/{r}/git/commits`` ``{message, tree, parents}`` → 201 with the commit;
  an unknown tree → 422 ``Tree SHA does not exist``, an unknown parent → 422 ``Parent SHA
  does not exist or is not a commit object``.  Moves no ref (``POST/PATCH git/refs`` do).
* ``GET /repos/{o}/{r}/contents/{path}`` ``?ref=`` → the file (``content`` base64 wrapped at
  60 characters as GitHub sends it, ``sha`` = the git blob id); a directory → its entries;
  missing path → 404 ``Not Found``; unknown ref → 404 ``No commit found for the ref X``; a
  file over 1 MB → 403 ``too_large`` (the JSON media type serves 1 MB at most).
* ``PUT /repos/{o}/{r}/contents/{path}`` ``{message, content, sha?, branch?}`` → 201 (created)
  or 200 (updated) ``{content, commit}``: one new commit on ``branch`` (default: the default
  branch).  Updating an existing file without ``sha`` → 422 ``"sha" wasn't supplied``; a
  ``sha`` that is not the file's current blob → 409 ``PATH does not match SHA`` (the
  compare-and-swap lockstep relies on); an unknown branch → 404 ``Branch X not found``;
  a protected branch → 422 with its rule message, like a ref update.
* ``GET /repos/{o}/{r}/commits`` ``?sha=&path=&per_page=&page=`` → the commits reachable from
  ``sha`` (a branch or commit; default branch by default), newest first, and with ``path``
  only those whose tree changed that file against their first parent.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any
from urllib.parse import quote

from tests.support.fakegithub.api import (
    Api,
    ApiError,
    Request,
    Response,
    empty_repo,
    invalid_request,
    json_object,
    not_found,
    route,
    typed_field,
)
from tests.support.fakegithub.state import SHA_RE, Repo, Token, blob_sha, tree_sha

FILE_MODES = frozenset({"100644", "100755", "120000"})
MAX_JSON_CONTENT = 1024 * 1024  # GitHub: the JSON media type returns files up to 1 MB
TOO_LARGE = (
    "This API returns blobs up to 1 MB in size. The requested blob is too large to fetch via the API, "
    "but you can use the Git Data API to request blobs up to 100 MB in size."
)
_PER_PAGE_DEFAULT, _PER_PAGE_MAX = 30, 100
RAW_URL = "https://raw.githubusercontent.com"  # where a file's download_url points


def _wrapped(data: bytes) -> str:
    """Base64 in 60-character lines with a trailing newline, the way the Contents API sends it."""
    text = base64.b64encode(data).decode()
    return "".join(text[i : i + 60] + "\n" for i in range(0, len(text), 60))


def _decode(content: str) -> bytes:
    try:
        return base64.b64decode(content.replace("\n", ""), validate=True)
    except (binascii.Error, ValueError):
        raise invalid_request("content is not valid Base64") from None


def _tree_entries(api: Api, repo: Repo, body: dict[str, Any]) -> dict[str, bytes]:
    """The files a ``POST git/trees`` body describes (on top of ``base_tree``)."""
    entries = typed_field(body, "tree", list)
    base = typed_field(body, "base_tree", str, required=False)
    files: dict[str, bytes] = {}
    if base is not None:
        if base not in repo.trees:
            raise ApiError(422, "base_tree is not a valid tree oid")
        files = dict(repo.trees[base])
    for entry in entries:
        if not isinstance(entry, dict):
            raise invalid_request("For 'items', is not an object.")
        path = typed_field(entry, "path", str)
        mode = typed_field(entry, "mode", str)
        kind = typed_field(entry, "type", str)
        if mode not in FILE_MODES or kind != "blob":
            raise ApiError(422, f"tree.mode {mode} / tree.type {kind} is not a file (the fake holds files only)")
        if not path or path.startswith("/") or path.endswith("/") or "//" in path:
            raise ApiError(422, f"tree.path {path!r} is invalid")
        if "content" in entry:
            files[path] = typed_field(entry, "content", str).encode("utf-8")
        elif entry.get("sha") is None:
            files.pop(path, None)  # GitHub: a null sha deletes the path
        else:
            sha = typed_field(entry, "sha", str)
            if sha not in repo.blobs:
                raise ApiError(422, f"tree.sha {sha} is not a valid blob")
            files[path] = repo.blobs[sha]
    return files


@route("POST", r"/git/trees", write="contents")
def create_tree(api: Api, repo: Repo, token: Token, req: Request, args: list[str]) -> Response:
    """A tree (and its inline blobs); referenced by a later ``POST git/commits``."""
    if repo.empty:
        raise empty_repo()  # the Git Data API needs a repository with a commit, as on GitHub
    files = _tree_entries(api, repo, json_object(req))
    sha = repo.add_tree(files)
    url = f"{api.world.api_url}/repos/{repo.full_name}/git/trees/{sha}"
    listing = [
        {"path": p, "mode": "100644", "type": "blob", "sha": blob_sha(d), "size": len(d),
         "url": f"{api.world.api_url}/repos/{repo.full_name}/git/blobs/{blob_sha(d)}"}
        for p, d in sorted(files.items())
    ]
    return Response(201, {"sha": sha, "url": url, "tree": listing, "truncated": False}, {"Location": url})


@route("POST", r"/git/commits", write="contents")
def create_commit(api: Api, repo: Repo, token: Token, req: Request, args: list[str]) -> Response:
    """A commit object from a tree and parents (no ref moves)."""
    if repo.empty:
        raise empty_repo()
    body = json_object(req)
    message = typed_field(body, "message", str)
    tree = typed_field(body, "tree", str)
    parents = typed_field(body, "parents", list, required=False) or []
    if tree not in repo.trees:
        raise ApiError(422, "Tree SHA does not exist")
    for parent in parents:
        if not isinstance(parent, str) or parent not in repo.commits:
            raise ApiError(422, "Parent SHA does not exist or is not a commit object")
    sha = repo.add_commit(tuple(parents), message, files=repo.trees[tree])
    created = git_commit(api, repo, sha)
    return Response(201, created, {"Location": created["url"]})


def git_commit(api: Api, repo: Repo, sha: str) -> dict[str, Any]:
    """The Git Data API's commit shape (``POST git/commits``, ``commit`` of a contents write)."""
    commit = repo.commits[sha]
    base, html = f"{api.world.api_url}/repos/{repo.full_name}", f"{api.world.html_url}/{repo.full_name}"
    person = {"name": "Fake Author", "email": "author@example.com", "date": commit.date}
    tree = tree_sha(commit.files)
    return {
        "sha": sha,
        "node_id": f"C_{sha[:16]}",
        "url": f"{base}/git/commits/{sha}",
        "html_url": f"{html}/commit/{sha}",
        "author": person,
        "committer": person,
        "tree": {"sha": tree, "url": f"{base}/git/trees/{tree}"},
        "message": commit.message,
        "parents": [
            {"sha": p, "url": f"{base}/git/commits/{p}", "html_url": f"{html}/commit/{p}"} for p in commit.parents
        ],
        "verification": {"verified": False, "reason": "unsigned", "signature": None, "payload": None,
                         "verified_at": None},
    }


def _file(api: Api, repo: Repo, path: str, data: bytes, ref: str) -> dict[str, Any]:
    """The Contents API's file shape."""
    sha = blob_sha(data)
    base, html = f"{api.world.api_url}/repos/{repo.full_name}", f"{api.world.html_url}/{repo.full_name}"
    quoted = quote(path)
    links = {
        "self": f"{base}/contents/{quoted}?ref={quote(ref)}",
        "git": f"{base}/git/blobs/{sha}",
        "html": f"{html}/blob/{quote(ref)}/{quoted}",
    }
    return {
        "type": "file", "encoding": "base64", "size": len(data), "name": path.rsplit("/", 1)[-1],
        "path": path, "content": _wrapped(data), "sha": sha, "url": links["self"], "git_url": links["git"],
        "html_url": links["html"], "download_url": f"{RAW_URL}/{repo.full_name}/{quote(ref)}/{quoted}",
        "_links": links,
    }


def _commit_for(repo: Repo, ref: str | None) -> str:
    """``?ref=``: a branch, tag or commit sha; the default branch when absent."""
    name = ref or repo.default_branch
    sha = repo.resolve(name)
    if sha is None:
        raise ApiError(404, f"No commit found for the ref {name}")
    return sha


@route("GET", r"/contents/(.*)")
def get_contents(api: Api, repo: Repo, token: Token, req: Request, args: list[str]) -> Response:
    """A file at a ref (or a directory's entries)."""
    if repo.empty:
        raise ApiError(404, "This repository is empty.")
    path = args[0].strip("/")
    ref = req.query.get("ref") or repo.default_branch
    files = repo.commits[_commit_for(repo, req.query.get("ref"))].files
    if path in files:
        if len(files[path]) > MAX_JSON_CONTENT:
            raise ApiError(403, TOO_LARGE, errors=[{"resource": "Blob", "field": "data", "code": "too_large"}])
        return Response(200, _file(api, repo, path, files[path], ref))
    prefix = path + "/" if path else ""
    names = sorted({p[len(prefix):].split("/", 1)[0] for p in files if p.startswith(prefix)})
    if not names:
        raise not_found()
    entries = []
    for name in names:
        full = prefix + name
        if full in files:
            entry = _file(api, repo, full, files[full], ref)
            del entry["content"], entry["encoding"]
            entries.append(entry)
        else:
            entries.append({"type": "dir", "name": name, "path": full, "sha": tree_sha({}), "size": 0})
    return Response(200, entries)


@route("PUT", r"/contents/(.+)", write="contents")
def put_contents(api: Api, repo: Repo, token: Token, req: Request, args: list[str]) -> Response:
    """Create or replace one file in a new commit on a branch; ``sha`` is a compare-and-swap."""
    body = json_object(req)
    message = typed_field(body, "message", str)
    data = _decode(typed_field(body, "content", str))
    expected = typed_field(body, "sha", str, required=False)
    branch = typed_field(body, "branch", str, required=False) or repo.default_branch
    path = args[0].strip("/")
    if repo.empty:
        raise empty_repo()
    ref = f"refs/heads/{branch}"
    if ref not in repo.refs:
        raise ApiError(404, f"Branch {branch} not found")
    head = repo.refs[ref]
    files = dict(repo.commits[head].files)
    if path in files and expected is None:
        raise invalid_request('"sha" wasn\'t supplied.')
    if expected is not None and (path not in files or blob_sha(files[path]) != expected):
        raise ApiError(409, f"{path} does not match {expected}")
    rule = repo.protected.get(branch)
    if rule is not None:
        raise ApiError(422, rule)
    created = path not in files
    files[path] = data
    sha = repo.add_commit((head,), message, files=files)
    repo.refs[ref] = sha
    content = _file(api, repo, path, data, branch)
    del content["content"], content["encoding"]  # a write answers with the file's metadata only
    payload = {"content": content, "commit": git_commit(api, repo, sha)}
    return Response(201 if created else 200, payload)


def _changed(repo: Repo, sha: str, path: str) -> bool:
    commit = repo.commits[sha]
    before = repo.commits[commit.parents[0]].files.get(path) if commit.parents else None
    return commit.files.get(path) != before


@route("GET", r"/commits")
def list_commits(api: Api, repo: Repo, token: Token, req: Request, args: list[str]) -> Response:
    """Reachable commits, newest first, optionally only those that changed ``path``."""
    if repo.empty:
        raise empty_repo()
    head = repo.resolve(req.query.get("sha") or repo.default_branch)
    if head is None or not SHA_RE.fullmatch(head):
        raise ApiError(404, "No commit found for SHA: " + (req.query.get("sha") or repo.default_branch))
    shas = sorted(repo.ancestors(head), key=lambda s: repo.commits[s].seq, reverse=True)
    path = req.query.get("path")
    if path:
        shas = [s for s in shas if _changed(repo, s, path.strip("/"))]
    per_page, page = _PER_PAGE_DEFAULT, 1
    if req.query.get("per_page", "").isdigit():
        per_page = min(max(int(req.query["per_page"]), 1), _PER_PAGE_MAX)
    if req.query.get("page", "").isdigit():
        page = max(int(req.query["page"]), 1)
    return Response(200, [api.commit_shape(repo, s) for s in shas[(page - 1) * per_page : page * per_page]])

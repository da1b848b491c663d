"""Commit statuses and check runs in the fake GitHub (what lockstep's external gates read).

Endpoints (registered on import; :mod:`tests.support.fakegithub.server` imports this module):

* ``POST /repos/{o}/{r}/statuses/{sha}`` ``{state, target_url, description, context}``
  → 201 with the status.  ``state`` one of :data:`STATUS_STATES` (else 422
  ``Validation Failed``); ``context`` defaults to ``"default"``; ``description``
  at most 140 characters (else 422); ``sha`` must be a full sha of a commit in
  the repository (else 422 ``No commit found for SHA: x``).  Needs write.
* ``GET /repos/{o}/{r}/statuses/{ref}`` and ``GET /repos/{o}/{r}/commits/{ref}/statuses``
  → every status of the commit, newest first (paged).  ``ref`` may be a sha,
  branch or tag; unknown → 422 ``No commit found for SHA: x``.
* ``GET /repos/{o}/{r}/commits/{ref}/status`` → the combined status: ``state``
  (``failure`` if any context's latest status is ``error``/``failure``, else
  ``pending`` if there are none or one is ``pending``, else ``success``),
  ``statuses`` = the latest status per context, newest first (paged with
  ``per_page``, default 30, at most 100), ``sha``, ``total_count`` (contexts).
* ``POST /repos/{o}/{r}/check-runs`` ``{name, head_sha, status, conclusion,
  details_url, started_at, completed_at, output}`` → 201.  As on GitHub only a
  GitHub App may create one: a personal access token gets 403.  ``status`` one
  of queued / in_progress / completed (default queued); a ``conclusion`` makes
  the run completed, and completed needs a conclusion (422).
* ``PATCH /repos/{o}/{r}/check-runs/{id}`` → the updated run (same rules).
* ``GET /repos/{o}/{r}/commits/{ref}/check-runs`` ``?check_name=&status=&filter=&per_page=&page=``
  → ``{total_count, check_runs}``, newest first.  ``filter=latest`` (the default)
  keeps only the newest run of each name (GitHub keeps the newest per check
  suite; the fake has no suites), ``filter=all`` keeps every run.
* ``GET /repos/{o}/{r}/commits`` ``?sha=&per_page=&page=`` → the commits reachable
  from ``sha`` (default: the default branch), newest first.

Ids are global and increasing, like GitHub's.
"""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime
from typing import Any

from tests.support.fakegithub.api import (
    CREATED_AT,
    Api,
    ApiError,
    Request,
    Response,
    World,
    empty_repo,
    invalid_request,
    json_object,
    minimal_repository,
    node_id,
    not_found,
    route,
    simple_user,
    typed_field,
)
from tests.support.fakegithub.state import SHA_RE, Repo, Token, iso

STATUS_STATES = ("error", "failure", "pending", "success")
CHECK_STATUSES = ("queued", "in_progress", "completed")
CHECK_CONCLUSIONS = (
    "action_required",
    "cancelled",
    "failure",
    "neutral",
    "success",
    "skipped",
    "stale",
    "timed_out",
)
MAX_DESCRIPTION = 140
_PER_PAGE_DEFAULT, _PER_PAGE_MAX = 30, 100
_status_ids = itertools.count(7_100_000_001)
_check_run_ids = itertools.count(21_000_000_001)
_check_suite_ids = itertools.count(19_000_000_001)
_APP_ID = 900_001


def _now() -> str:
    return iso(datetime.now(UTC))


def _paging(req: Request) -> tuple[int, int]:
    per_page, page = _PER_PAGE_DEFAULT, 1
    if req.query.get("per_page", "").isdigit():
        per_page = min(max(int(req.query["per_page"]), 1), _PER_PAGE_MAX)
    if req.query.get("page", "").isdigit():
        page = max(int(req.query["page"]), 1)
    return per_page, page


def _page(req: Request, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    per_page, page = _paging(req)
    return items[(page - 1) * per_page : page * per_page]


def _no_commit(ref: str) -> ApiError:
    return ApiError(422, f"No commit found for SHA: {ref}")


def _commit_sha(repo: Repo, ref: str) -> str:
    """A sha, branch or tag → the commit; 409 on an empty repo, 422 when unknown."""
    if repo.empty:
        raise empty_repo()
    sha = repo.resolve(ref)
    if sha is None:
        raise _no_commit(ref)
    return sha


def _validation(resource: str, field: str, message: str) -> ApiError:
    error = {"resource": resource, "code": "custom", "field": field, "message": message}
    return ApiError(422, "Validation Failed", errors=[error])


def _app(world: World) -> dict[str, Any]:
    """The GitHub App (``integration``) that makes every check run of the fake."""
    return {
        "id": _APP_ID,
        "slug": "fake-ci",
        "client_id": "Iv1.fakeci0000000000",
        "node_id": node_id("A", str(_APP_ID)),
        "owner": simple_user(world, "fake-ci-org", kind="Organization"),
        "name": "Fake CI",
        "description": None,
        "external_url": "https://ci.example",
        "html_url": f"{world.html_url}/apps/fake-ci",
        "created_at": CREATED_AT,
        "updated_at": CREATED_AT,
        "permissions": {"checks": "write", "metadata": "read"},
        "events": [],
    }


# ---- commit statuses ---------------------------------------------------------------------


def new_commit_status(
    world: World,
    repo: Repo,
    sha: str,
    *,
    state: str,
    context: str = "default",
    description: str | None = None,
    target_url: str | None = None,
    login: str = "ci-bot",
    user_id: int | None = None,
) -> dict[str, Any]:
    """Store a status on ``sha`` (no validation: the endpoint and the test helper validate)."""
    status_id = next(_status_ids)
    now = _now()
    status = {
        "url": f"{world.api_url}/repos/{repo.full_name}/statuses/{sha}",
        "avatar_url": None,
        "id": status_id,
        "node_id": node_id("SC", str(status_id)),
        "state": state,
        "description": description,
        "target_url": target_url,
        "context": context,
        "created_at": now,
        "updated_at": now,
        "creator": simple_user(world, login, user_id),
    }
    repo.statuses.setdefault(sha, []).append(status)
    return status


def _latest_per_context(repo: Repo, sha: str) -> list[dict[str, Any]]:
    """The newest status of each context, newest first."""
    latest: dict[str, dict[str, Any]] = {}
    for status in repo.statuses.get(sha, []):  # oldest first: later ones replace earlier ones
        latest[status["context"]] = status
    return sorted(latest.values(), key=lambda s: s["id"], reverse=True)


def combined_state(statuses: list[dict[str, Any]]) -> str:
    """GitHub's rule for the combined ``state`` over the latest status of each context."""
    states = {s["state"] for s in statuses}
    if states & {"error", "failure"}:
        return "failure"
    if not states or "pending" in states:
        return "pending"
    return "success"


@route("POST", r"/statuses/([^/]+)", write="statuses")
def create_status(api: Api, repo: Repo, token: Token, req: Request, args: list[str]) -> Response:
    body = json_object(req)
    state = typed_field(body, "state", str)
    context = typed_field(body, "context", str, required=False)
    description = body.get("description")
    target_url = body.get("target_url")
    for key, value in (("description", description), ("target_url", target_url)):
        if value is not None and not isinstance(value, str):
            raise invalid_request(f"For 'properties/{key}', {json.dumps(value)} is not a string or null.")
    if state not in STATUS_STATES:
        raise _validation("Status", "state", "state is not included in the list")
    if isinstance(description, str) and len(description) > MAX_DESCRIPTION:
        raise _validation(
            "Status", "description", f"description is too long (maximum is {MAX_DESCRIPTION} characters)"
        )
    sha = args[0]
    if repo.empty:
        raise empty_repo()
    if not SHA_RE.fullmatch(sha) or sha not in repo.commits:
        raise _no_commit(sha)
    status = new_commit_status(
        api.world,
        repo,
        sha,
        state=state,
        context=context or "default",
        description=description,
        target_url=target_url,
        login=token.login,
        user_id=token.user_id,
    )
    return Response(201, status, {"Location": status["url"]})


@route("GET", r"/statuses/([^/]+)")
@route("GET", r"/commits/(.+)/statuses")
def list_statuses(api: Api, repo: Repo, token: Token, req: Request, args: list[str]) -> Response:
    sha = _commit_sha(repo, args[0])
    return Response(200, _page(req, list(reversed(repo.statuses.get(sha, [])))))


def _without_creator(status: dict[str, Any]) -> dict[str, Any]:
    """A combined status lists each context's latest status without ``creator`` (simple-commit-status)."""
    return {k: v for k, v in status.items() if k != "creator"}


@route("GET", r"/commits/(.+)/status")
def combined_status(api: Api, repo: Repo, token: Token, req: Request, args: list[str]) -> Response:
    sha = _commit_sha(repo, args[0])
    latest = _latest_per_context(repo, sha)
    base = f"{api.world.api_url}/repos/{repo.full_name}"
    return Response(
        200,
        {
            "state": combined_state(latest),
            "statuses": [_without_creator(s) for s in _page(req, latest)],
            "sha": sha,
            "total_count": len(latest),
            "repository": minimal_repository(api.world, repo),
            "commit_url": f"{base}/commits/{sha}",
            "url": f"{base}/commits/{sha}/status",
        },
    )


# ---- check runs --------------------------------------------------------------------------


def _check_state(
    status: str | None, conclusion: str | None, *, current: str = "queued"
) -> tuple[str, str | None]:
    """GitHub's rules: a conclusion completes the run; completed needs a conclusion."""
    if status is not None and status not in CHECK_STATUSES:
        raise invalid_request(f"For 'properties/status', {json.dumps(status)} is not a member of {list(CHECK_STATUSES)}.")
    if conclusion is not None and conclusion not in CHECK_CONCLUSIONS:
        raise invalid_request(
            f"For 'properties/conclusion', {json.dumps(conclusion)} is not a member of {list(CHECK_CONCLUSIONS)}."
        )
    if conclusion is not None:
        return "completed", conclusion
    status = status or current
    if status == "completed":
        raise _validation("CheckRun", "conclusion", "Conclusion can't be blank")
    return status, None


def new_check_run(
    world: World,
    repo: Repo,
    sha: str,
    *,
    name: str,
    status: str,
    conclusion: str | None,
    details_url: str | None = None,
    title: str | None = None,
) -> dict[str, Any]:
    """Store a check run (no validation)."""
    run_id = next(_check_run_ids)
    now = _now()
    url = f"{world.api_url}/repos/{repo.full_name}/check-runs/{run_id}"
    run = {
        "id": run_id,
        "node_id": node_id("CR", str(run_id)),
        "name": name,
        "head_sha": sha,
        "external_id": "",
        "url": url,
        "html_url": f"{world.html_url}/{repo.full_name}/runs/{run_id}",
        "details_url": details_url,
        "status": status,
        "conclusion": conclusion,
        "started_at": now if status != "queued" else None,
        "completed_at": now if status == "completed" else None,
        "output": {"title": title, "summary": None, "text": None, "annotations_count": 0,
                   "annotations_url": f"{url}/annotations"},
        "check_suite": {"id": next(_check_suite_ids)},
        "app": _app(world),
        "pull_requests": [],
    }
    if status == "completed" and run["started_at"] is None:
        run["started_at"] = now
    repo.check_runs.append(run)
    return run


def update_check_run(run: dict[str, Any], status: str, conclusion: str | None) -> None:
    """Move a run to a new status (timestamps as GitHub sets them)."""
    now = _now()
    run["status"], run["conclusion"] = status, conclusion
    if status != "queued" and run["started_at"] is None:
        run["started_at"] = now
    run["completed_at"] = now if status == "completed" else None


def _output_title(body: dict[str, Any]) -> str | None:
    output = body.get("output")
    if output is None:
        return None
    if not isinstance(output, dict) or not isinstance(output.get("title", ""), str):
        raise invalid_request(f"For 'properties/output', {json.dumps(output)} is not an object with a title.")
    title = output.get("title")
    return title if isinstance(title, str) else None


def _require_app(token: Token) -> None:
    if token.kind != "integration":
        raise ApiError(403, "You must authenticate via a GitHub App.")


@route("POST", r"/check-runs", write="checks")
def create_check_run(api: Api, repo: Repo, token: Token, req: Request, args: list[str]) -> Response:
    _require_app(token)
    body = json_object(req)
    name = typed_field(body, "name", str)
    sha = typed_field(body, "head_sha", str)
    status, conclusion = _check_state(
        typed_field(body, "status", str, required=False), typed_field(body, "conclusion", str, required=False)
    )
    if not name.strip():
        raise _validation("CheckRun", "name", "Name can't be blank")
    if repo.empty:
        raise empty_repo()
    if not SHA_RE.fullmatch(sha) or sha not in repo.commits:
        raise _no_commit(sha)
    details_url = typed_field(body, "details_url", str, required=False)
    run = new_check_run(
        api.world,
        repo,
        sha,
        name=name,
        status=status,
        conclusion=conclusion,
        details_url=details_url,
        title=_output_title(body),
    )
    return Response(201, run)


@route("PATCH", r"/check-runs/(\d+)", write="checks")
def patch_check_run(api: Api, repo: Repo, token: Token, req: Request, args: list[str]) -> Response:
    _require_app(token)
    run = next((r for r in repo.check_runs if r["id"] == int(args[0])), None)
    if run is None:
        raise not_found()
    body = json_object(req)
    status, conclusion = _check_state(
        typed_field(body, "status", str, required=False),
        typed_field(body, "conclusion", str, required=False),
        current=run["status"] if run["status"] != "completed" else "in_progress",
    )
    if "status" not in body and "conclusion" not in body:
        status, conclusion = run["status"], run["conclusion"]
    update_check_run(run, status, conclusion)
    return Response(200, run)


@route("GET", r"/commits/(.+)/check-runs")
def list_check_runs(api: Api, repo: Repo, token: Token, req: Request, args: list[str]) -> Response:
    sha = _commit_sha(repo, args[0])
    runs = sorted((r for r in repo.check_runs if r["head_sha"] == sha), key=lambda r: r["id"], reverse=True)
    filter_ = req.query.get("filter", "latest")
    if filter_ not in ("latest", "all"):
        raise invalid_request(f"For 'filter', {json.dumps(filter_)} is not a member of ['latest', 'all'].")
    if filter_ == "latest":
        seen: set[str] = set()
        kept = []
        for run in runs:
            if run["name"] not in seen:
                seen.add(run["name"])
                kept.append(run)
        runs = kept
    if "check_name" in req.query:
        runs = [r for r in runs if r["name"] == req.query["check_name"]]
    if "status" in req.query:
        wanted = req.query["status"]
        if wanted not in CHECK_STATUSES:
            raise invalid_request(f"For 'status', {json.dumps(wanted)} is not a member of {list(CHECK_STATUSES)}.")
        runs = [r for r in runs if r["status"] == wanted]
    return Response(200, {"total_count": len(runs), "check_runs": _page(req, runs)})


# ---- commits -----------------------------------------------------------------------------


@route("GET", r"/commits")
def list_commits(api: Api, repo: Repo, token: Token, req: Request, args: list[str]) -> Response:
    """Commits reachable from ``sha`` (a sha, branch or tag; default branch by default), newest first."""
    if repo.empty:
        raise empty_repo()
    start = req.query.get("sha") or repo.default_branch
    head = repo.resolve(start)
    if head is None:
        raise not_found()
    shas = sorted(repo.ancestors(head), key=lambda s: repo.commits[s].seq, reverse=True)
    per_page, page = _paging(req)
    shown = shas[(page - 1) * per_page : page * per_page]
    return Response(200, [api.commit_shape(repo, s) for s in shown])

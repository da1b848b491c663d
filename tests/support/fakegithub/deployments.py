"""The Deployments API of the fake GitHub (where lockstep keeps its promotion records).

Endpoints (registered on import; :mod:`tests.support.fakegithub.server` imports this module):

* ``POST /repos/{o}/{r}/deployments`` → 201 with the deployment.  ``ref`` may be
  a sha, branch or tag; unknown → 422 ``No ref found for: X``; an empty repo → 409.
  ``auto_merge`` defaults to true, as on GitHub: the fake never merges, so a ref
  that does not contain the default branch's head answers 409 ``Conflict merging
  ...`` (GitHub would merge and answer 202, or conflict with 409: a client that
  forgets ``auto_merge: false`` fails here too).  A non-empty ``required_contexts``
  answers 409 (the fake has no commit statuses, so every required context is
  missing); omitted or ``[]`` passes.  ``payload`` is an object or a string,
  stored and returned as given.  Needs write (``deployments: write``).
* ``GET /repos/{o}/{r}/deployments`` ``?sha=&ref=&task=&environment=&per_page=&page=``
  → newest first (exact-match filters; ``per_page`` default 30, at most 100).
* ``GET /repos/{o}/{r}/deployments/{id}`` → the deployment; 404 when unknown.
* ``POST /repos/{o}/{r}/deployments/{id}/statuses`` ``{state, description,
  log_url, environment_url, target_url, environment, auto_inactive}`` → 201.
  ``state`` one of :data:`STATES` (else 422); ``description`` at most 140
  characters (else 422 ``Validation Failed``); ``auto_inactive`` (default true)
  adds an ``inactive`` status to earlier successful deployments of the same
  environment that are neither transient nor production, as GitHub documents.
* ``GET /repos/{o}/{r}/deployments/{id}/statuses`` → newest first; 404 unknown id.

Ids are global across repositories and increase, like GitHub's.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from tests.support.fakegithub.api import (
    Api,
    ApiError,
    Request,
    Response,
    World,
    empty_repo,
    invalid_request,
    json_object,
    node_id,
    not_found,
    route,
    simple_user,
    typed_field,
)
from tests.support.fakegithub.state import Deployment, Repo, Token, iso

STATES = ("error", "failure", "inactive", "in_progress", "queued", "pending", "success")
MAX_STATUS_DESCRIPTION = 140
_PER_PAGE_DEFAULT, _PER_PAGE_MAX = 30, 100


def _repo_url(world: World, repo: Repo) -> str:
    return f"{world.api_url}/repos/{repo.full_name}"


def _validation(field: str, code: str, message: str, resource: str = "DeploymentStatus") -> ApiError:
    error = {"resource": resource, "code": code, "field": field, "message": message}
    return ApiError(422, "Validation Failed", errors=[error])


def _optional_bool(body: dict[str, Any], key: str, default: bool) -> bool:
    value = typed_field(body, key, bool, required=False)
    return default if value is None else bool(value)


def _optional_text(body: dict[str, Any], key: str) -> str | None:
    """A string field that may be absent or null."""
    if body.get(key) is None:
        return None
    return str(typed_field(body, key, str))


def _page(req: Request, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    per_page, page = _PER_PAGE_DEFAULT, 1
    if req.query.get("per_page", "").isdigit():
        per_page = min(max(int(req.query["per_page"]), 1), _PER_PAGE_MAX)
    if req.query.get("page", "").isdigit():
        page = max(int(req.query["page"]), 1)
    return items[(page - 1) * per_page : page * per_page]


def new_deployment(
    world: World,
    repo: Repo,
    *,
    sha: str,
    ref: str,
    environment: str,
    payload: object,
    description: str | None,
    login: str,
    user_id: int,
    task: str = "deploy",
    transient: bool = False,
    production: bool | None = None,
) -> Deployment:
    """Store a deployment (no validation: the endpoint and test helpers validate)."""
    deployment_id, world.next_deployment_id = world.next_deployment_id, world.next_deployment_id + 1
    now = iso(datetime.now(UTC))
    url = f"{_repo_url(world, repo)}/deployments/{deployment_id}"
    body = {
        "url": url,
        "id": deployment_id,
        "node_id": node_id("DE", str(deployment_id)),
        "sha": sha,
        "ref": ref,
        "task": task,
        "payload": payload,
        "original_environment": environment,
        "environment": environment,
        "description": description,
        "creator": simple_user(world, login, user_id),
        "created_at": now,
        "updated_at": now,
        "statuses_url": f"{url}/statuses",
        "repository_url": _repo_url(world, repo),
        "transient_environment": transient,
        "production_environment": environment == "production" if production is None else production,
        "performed_via_github_app": None,
    }
    deployment = Deployment(body)
    repo.deployments[deployment_id] = deployment
    return deployment


def new_status(
    world: World,
    repo: Repo,
    deployment: Deployment,
    *,
    state: str,
    login: str,
    user_id: int,
    description: str = "",
    log_url: str = "",
    environment_url: str = "",
    environment: str | None = None,
    auto_inactive: bool = True,
) -> dict[str, Any]:
    """Append a status (and GitHub's ``auto_inactive`` side effect) without validation."""
    status_id = world.next_deployment_status_id
    world.next_deployment_status_id += 1
    now = iso(datetime.now(UTC))
    if environment:
        deployment.body["environment"] = environment
    deployment.body["updated_at"] = now
    url = deployment.body["url"]
    status = {
        "url": f"{url}/statuses/{status_id}",
        "id": status_id,
        "node_id": node_id("DES", str(status_id)),
        "state": state,
        "creator": simple_user(world, login, user_id),
        "description": description,
        "environment": deployment.body["environment"],
        "target_url": log_url,
        "log_url": log_url,
        "environment_url": environment_url,
        "created_at": now,
        "updated_at": now,
        "deployment_url": url,
        "repository_url": _repo_url(world, repo),
        "performed_via_github_app": None,
    }
    deployment.statuses.append(status)
    if state == "success" and auto_inactive:
        for other in repo.deployments.values():
            b = other.body
            if (
                other.id < deployment.id
                and b["environment"] == deployment.body["environment"]
                and not b["transient_environment"]
                and not b["production_environment"]
                and other.statuses
                and other.statuses[-1]["state"] == "success"
            ):
                new_status(
                    world, repo, other, state="inactive", login=login, user_id=user_id, auto_inactive=False
                )
    return status


def _deployment(repo: Repo, raw_id: str) -> Deployment:
    found = repo.deployments.get(int(raw_id))
    if found is None:
        raise not_found()
    return found


@route("POST", r"/deployments", write="deployments")
def create_deployment(api: Api, repo: Repo, token: Token, req: Request, args: list[str]) -> Response:
    """A deployment of ``ref`` to ``environment`` (lockstep: one per service per promotion record)."""
    body = json_object(req)
    ref = typed_field(body, "ref", str)
    task = typed_field(body, "task", str, required=False) or "deploy"
    auto_merge = _optional_bool(body, "auto_merge", True)
    required = body.get("required_contexts")
    if required is not None and (
        not isinstance(required, list) or not all(isinstance(c, str) for c in required)
    ):
        raise invalid_request(f"For 'properties/required_contexts', {json.dumps(required)} is not an array.")
    payload = body.get("payload", {})
    if not isinstance(payload, dict | str):
        raise invalid_request(f"For 'properties/payload', {json.dumps(payload)} is not an object or a string.")
    environment = typed_field(body, "environment", str, required=False)
    environment = "production" if environment is None else environment
    description = _optional_text(body, "description")
    transient = _optional_bool(body, "transient_environment", False)
    production = _optional_bool(body, "production_environment", environment == "production")
    if repo.empty:
        raise empty_repo()
    sha = repo.resolve(ref)
    if sha is None:
        raise ApiError(422, f"No ref found for: {ref}")
    if required:
        contexts = [{"context": c, "state": "missing"} for c in required]
        raise ApiError(
            409, f"Conflict: Commit status checks failed for {ref}.", errors=[{"contexts": contexts}]
        )
    default_head = repo.refs.get(f"refs/heads/{repo.default_branch}")
    if auto_merge and default_head is not None and not repo.is_ancestor(default_head, sha):
        raise ApiError(409, f"Conflict merging {repo.default_branch} into {ref}.")
    deployment = new_deployment(
        api.world,
        repo,
        sha=sha,
        ref=ref,
        environment=environment,
        payload=payload,
        description=description if description is not None else "",
        login=token.login,
        user_id=token.user_id,
        task=task,
        transient=transient,
        production=production,
    )
    return Response(201, deployment.body)


@route("GET", r"/deployments")
def list_deployments(api: Api, repo: Repo, token: Token, req: Request, args: list[str]) -> Response:
    """Newest first, filtered by exact ``sha``, ``ref``, ``task``, ``environment``."""
    filters = {k: req.query[k] for k in ("sha", "ref", "task", "environment") if k in req.query}
    items = [
        d.body
        for d in sorted(repo.deployments.values(), key=lambda d: d.id, reverse=True)
        if all(d.body[k] == v for k, v in filters.items())
    ]
    return Response(200, _page(req, items))


@route("GET", r"/deployments/(\d+)")
def get_deployment(api: Api, repo: Repo, token: Token, req: Request, args: list[str]) -> Response:
    return Response(200, _deployment(repo, args[0]).body)


@route("POST", r"/deployments/(\d+)/statuses", write="deployments")
def create_deployment_status(api: Api, repo: Repo, token: Token, req: Request, args: list[str]) -> Response:
    """A status on a deployment; the state must be one of GitHub's seven."""
    deployment = _deployment(repo, args[0])
    body = json_object(req)
    state = typed_field(body, "state", str)
    if state not in STATES:
        raise invalid_request(f"For 'properties/state', {json.dumps(state)} is not a member of {list(STATES)}.")
    description = _optional_text(body, "description") or ""
    if len(description) > MAX_STATUS_DESCRIPTION:
        raise _validation(
            "description",
            "custom",
            f"description is too long (maximum is {MAX_STATUS_DESCRIPTION} characters)",
        )
    log_url = _optional_text(body, "log_url") or _optional_text(body, "target_url") or ""
    status = new_status(
        api.world,
        repo,
        deployment,
        state=state,
        login=token.login,
        user_id=token.user_id,
        description=description,
        log_url=log_url,
        environment_url=_optional_text(body, "environment_url") or "",
        environment=_optional_text(body, "environment"),
        auto_inactive=_optional_bool(body, "auto_inactive", True),
    )
    return Response(201, status, {"Location": status["url"]})


@route("GET", r"/deployments/(\d+)/statuses")
def list_deployment_statuses(api: Api, repo: Repo, token: Token, req: Request, args: list[str]) -> Response:
    """Newest first."""
    deployment = _deployment(repo, args[0])
    return Response(200, _page(req, list(reversed(deployment.statuses))))

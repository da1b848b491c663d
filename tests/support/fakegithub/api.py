"""GitHub REST semantics for the fake: auth, rate limit, routing and the endpoints.

Pure request -> response logic over :class:`World`; the caller holds the lock, so
every request (and so every ref update) is atomic. Codes, messages and body
shapes follow ``docs/github-api.md``; where GitHub's exact text is
unconfirmed we pick one plausible form and never a more forgiving behaviour.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from tests.support.fakegithub.state import SHA_RE, Repo, Token, iso, ref_name_problem

DOCS_URL = "https://docs.github.com/rest"
_MAX_COMMENT = 65536
_WRITE_MESSAGE = {
    "pat": "Resource not accessible by personal access token",
    "integration": "Resource not accessible by integration",
}


@dataclass
class Request:
    """What the HTTP layer read: raw path (no query), lower-case header names.

    ``received`` is when the request arrived (``time.monotonic()``), before any latency or
    delay fault: GraphQL's 10-second timeout is measured from it.
    """

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    received: float = field(default_factory=time.monotonic)


@dataclass
class Response:
    """Status, JSON body (None = no body) and extra headers."""

    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


def phrase(status: int) -> str:
    """Reason phrase for a status line or a default error message."""
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def error_body(status: int, message: str, **extra: Any) -> dict[str, Any]:
    """GitHub's ordinary error shape; ``status`` is a string, as GitHub now sends it."""
    return {"message": message, **extra, "documentation_url": DOCS_URL, "status": str(status)}


class ApiError(Exception):
    """Raised by endpoint code; becomes a GitHub-shaped error response."""

    def __init__(
        self,
        status: int,
        message: str,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(f"{status} {message}")
        self.response = Response(status, error_body(status, message, **extra), headers or {})


def not_found() -> ApiError:
    """GitHub's answer for anything unknown or invisible to the caller."""
    return ApiError(404, "Not Found")


def empty_repo() -> ApiError:
    """The git database endpoints on a repository without commits."""
    return ApiError(409, "Git Repository is empty.")


@dataclass
class RateLimit:
    """A primary rate limit shared by all callers of this fake: REST's (core) or GraphQL's.

    GitHub keeps separate budgets per resource; ``resource`` names the one in the headers.
    """

    limit: int = 5000
    remaining: int = 5000
    reset: int = field(default_factory=lambda: int(time.time()) + 3600)
    resource: str = "core"

    def refresh(self) -> None:
        """Start a new window once the reset time has passed, as GitHub does."""
        now = time.time()
        if now >= self.reset:
            self.remaining = self.limit
            self.reset = int(now) + 3600

    def status(self) -> dict[str, Any]:
        """This resource's entry in ``GET /rate_limit``."""
        return {
            "limit": self.limit,
            "remaining": max(self.remaining, 0),
            "reset": self.reset,
            "used": max(self.limit - self.remaining, 0),
            "resource": self.resource,
        }

    def headers(self) -> dict[str, str]:
        """The x-ratelimit-* headers every GitHub API response carries."""
        return {f"x-ratelimit-{key}": str(value) for key, value in self.status().items()}

    def body(self) -> dict[str, int]:
        """This resource in ``GET /rate_limit``'s body (the resource's name is only a header)."""
        return {key: value for key, value in self.status().items() if key != "resource"}


@dataclass
class World:
    """All state of one fake GitHub; guarded by the server's lock."""

    api_url: str = ""
    html_url: str = "https://github.com"
    repos: dict[str, Repo] = field(default_factory=dict)
    tokens: dict[str, Token] = field(default_factory=dict)
    rate: RateLimit = field(default_factory=RateLimit)
    graphql_rate: RateLimit = field(default_factory=lambda: RateLimit(resource="graphql"))
    graphql_timeout: float = 10.0  # seconds; GitHub gives up on a GraphQL request after 10
    api_versions: frozenset[str] = frozenset({"2022-11-28"})
    next_comment_id: int = 1_900_000_001
    next_deployment_id: int = 1_200_000_001  # global on GitHub, like every id
    next_deployment_status_id: int = 3_400_000_001


Handler = Callable[["Api", Repo, Token, Request, list[str]], Response]
_ROUTES: list[tuple[frozenset[str], re.Pattern[str], Handler, str | None]] = []
TopLevelHandler = Callable[["Api", Token | None, Request], Response]
_TOP_LEVEL: dict[str, TopLevelHandler] = {}


def route(methods: str, pattern: str, write: str | None = None) -> Callable[[Handler], Handler]:
    """Register an endpoint; ``write`` names the permission a write needs (contents/issues/deployments).

    Endpoints may live in other modules (``deployments.py``): the handler itself is stored.
    """

    def register(fn: Handler) -> Handler:
        full = re.compile(r"/repos/([^/]+)/([^/]+)" + pattern)
        _ROUTES.append((frozenset(methods.split()), full, fn, write))
        return fn

    return register


def top_level_route(path: str) -> Callable[[TopLevelHandler], TopLevelHandler]:
    """Register an endpoint outside ``/repos/{o}/{r}`` (``/graphql``: graphql.py), by exact path, any method.

    It gets the request right after authentication (a bad token is already 401), with the token
    or None, and before the core rate limit: it answers anonymous callers and keeps its own budget.
    """

    def register(fn: TopLevelHandler) -> TopLevelHandler:
        _TOP_LEVEL[path] = fn
        return fn

    return register


def json_object(req: Request) -> dict[str, Any]:
    """The body as a JSON object; GitHub parses every body as JSON whatever its type."""
    if not req.body.strip():
        return {}
    try:
        value = json.loads(req.body)
    except (ValueError, UnicodeDecodeError):
        raise ApiError(400, "Problems parsing JSON") from None
    if not isinstance(value, dict):
        raise ApiError(400, "Problems parsing JSON")
    return value


def invalid_request(detail: str) -> ApiError:
    """GitHub's JSON-schema rejection (422, plain message)."""
    return ApiError(422, f"Invalid request.\n\n{detail}")


def typed_field(obj: dict[str, Any], key: str, kind: type, required: bool = True) -> Any:
    """A typed top-level field; wrong types are rejected, never coerced."""
    if key not in obj:
        if required:
            raise invalid_request(f'"{key}" wasn\'t supplied.')
        return None
    value = obj[key]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        kind_name = {str: "string", bool: "boolean", dict: "object"}.get(kind, kind.__name__)
        raise invalid_request(f"For 'properties/{key}', {json.dumps(value)} is not a {kind_name}.")
    return value


def node_id(prefix: str, text: str) -> str:
    return prefix + "_" + base64.b64encode(text.encode()).decode().rstrip("=")


CREATED_AT = "2024-01-01T00:00:00Z"  # when every fake repository, user and app was made


def user_id_for(login: str) -> int:
    """A stable id for an account no token names (a CI bot, a repository's owner)."""
    return 10_000_000 + int(hashlib.sha1(login.lower().encode(), usedforsecurity=False).hexdigest()[:6], 16)


def simple_user(world: World, login: str, user_id: int | None = None, kind: str = "User") -> dict[str, Any]:
    """GitHub's ``simple-user``: who wrote a comment, made a deployment or a status, owns a repository."""
    user_id = user_id_for(login) if user_id is None else user_id
    api = f"{world.api_url}/users/{quote(login)}"
    return {
        "login": login,
        "id": user_id,
        "node_id": node_id("U", str(user_id)),
        "avatar_url": f"https://avatars.githubusercontent.com/u/{user_id}?v=4",
        "gravatar_id": "",
        "url": api,
        "html_url": f"{world.html_url}/{quote(login)}",
        "followers_url": f"{api}/followers",
        "following_url": f"{api}/following{{/other_user}}",
        "gists_url": f"{api}/gists{{/gist_id}}",
        "starred_url": f"{api}/starred{{/owner}}{{/repo}}",
        "subscriptions_url": f"{api}/subscriptions",
        "organizations_url": f"{api}/orgs",
        "repos_url": f"{api}/repos",
        "events_url": f"{api}/events{{/privacy}}",
        "received_events_url": f"{api}/received_events",
        "type": kind,
        "user_view_type": "public",
        "site_admin": False,
    }


def minimal_repository(world: World, repo: Repo) -> dict[str, Any]:
    """GitHub's ``minimal-repository`` (a combined status's ``repository``): identity and URL templates."""
    owner, name = repo.full_name.split("/")
    api = f"{world.api_url}/repos/{repo.full_name}"
    shape: dict[str, Any] = {
        "id": repo.repo_id,
        "node_id": node_id("R", str(repo.repo_id)),
        "name": name,
        "full_name": repo.full_name,
        "private": True,
        "owner": simple_user(world, owner, kind="Organization"),
        "html_url": f"{world.html_url}/{repo.full_name}",
        "description": None,
        "fork": False,
        "url": api,
    }
    templates = {
        "archive": "{archive_format}{/ref}", "assignees": "assignees{/user}", "blobs": "git/blobs{/sha}",
        "branches": "branches{/branch}", "collaborators": "collaborators{/collaborator}",
        "comments": "comments{/number}", "commits": "commits{/sha}", "compare": "compare/{base}...{head}",
        "contents": "contents/{+path}", "contributors": "contributors", "deployments": "deployments",
        "downloads": "downloads", "events": "events", "forks": "forks", "git_commits": "git/commits{/sha}",
        "git_refs": "git/refs{/sha}", "git_tags": "git/tags{/sha}", "hooks": "hooks",
        "issue_comment": "issues/comments{/number}", "issue_events": "issues/events{/number}",
        "issues": "issues{/number}", "keys": "keys{/key_id}", "labels": "labels{/name}",
        "languages": "languages", "merges": "merges", "milestones": "milestones{/number}",
        "notifications": "notifications{?since,all,participating}", "pulls": "pulls{/number}",
        "releases": "releases{/id}", "stargazers": "stargazers", "statuses": "statuses/{sha}",
        "subscribers": "subscribers", "subscription": "subscription", "tags": "tags", "teams": "teams",
        "trees": "git/trees{/sha}",
    }
    return shape | {f"{key}_url": f"{api}/{tail}" for key, tail in templates.items()}


class Api:
    """Answers one request against the world (the caller holds the lock)."""

    def __init__(self, world: World) -> None:
        self.world = world

    # ---- entry point -------------------------------------------------------------

    def handle(self, req: Request) -> Response:
        """User-Agent and version checks, authentication, rate limit, routing, permissions, endpoint."""
        try:
            return self._handle(req)
        except ApiError as exc:
            return exc.response

    def _handle(self, req: Request) -> Response:
        if not req.headers.get("user-agent"):
            raise ApiError(
                403,
                "Request forbidden by administrative rules. "
                "Please make sure your request has a User-Agent header.",
            )
        version = req.headers.get("x-github-api-version")
        if version is not None and version not in self.world.api_versions:
            raise ApiError(400, f"Unsupported 'X-GitHub-Api-Version': '{version}'")
        token = self._authenticate(req.headers.get("authorization"))
        top_level = _TOP_LEVEL.get(req.path)
        if top_level is not None:
            return top_level(self, token, req)
        method = "GET" if req.method == "HEAD" else req.method
        rate = self.world.rate
        rate.refresh()
        if method == "GET" and req.path == "/rate_limit":
            self.world.graphql_rate.refresh()
            core = rate.body()
            search = {"limit": 30, "remaining": 30, "reset": int(time.time()) + 60, "used": 0}  # not counted
            resources = {"core": core, "search": search, "graphql": self.world.graphql_rate.body()}
            return Response(200, {"resources": resources, "rate": core})
        if rate.remaining <= 0:
            who = f"user ID {token.user_id}" if token else "127.0.0.1"
            raise ApiError(403, f"API rate limit exceeded for {who}.")
        rate.remaining -= 1
        for methods, pattern, handler, write in _ROUTES:  # noqa: B007 (used after break)
            match = pattern.fullmatch(req.path)
            if match is not None and method in methods:
                break
        else:
            raise not_found()
        groups = [unquote(g) for g in match.groups()]
        key = f"{groups[0]}/{groups[1]}".lower()
        repo = self.world.repos.get(key)
        if repo is None or token is None or not token.can_read(key):
            raise not_found()
        if write is not None and not token.can_write(key):
            raise ApiError(
                403,
                _WRITE_MESSAGE[token.kind],
                headers={"X-Accepted-GitHub-Permissions": f"{write}=write"},
            )
        return handler(self, repo, token, req, groups[2:])

    def _authenticate(self, header: str | None) -> Token | None:
        """None for anonymous; 401 for anything presented that is not a known token."""
        if header is None:
            return None
        scheme, _, credential = header.strip().partition(" ")
        credential = credential.strip()
        if scheme.lower() == "basic":
            try:
                credential = base64.b64decode(credential, validate=True).decode().partition(":")[2]
            except (binascii.Error, UnicodeDecodeError):
                credential = ""
        elif scheme.lower() not in ("bearer", "token"):
            credential = ""
        token = self.world.tokens.get(credential) if credential else None
        if token is None:
            raise ApiError(401, "Bad credentials")
        return token

    # ---- shapes ------------------------------------------------------------------

    def _repo_url(self, repo: Repo) -> str:
        return f"{self.world.api_url}/repos/{repo.full_name}"

    def commit_shape(self, repo: Repo, sha: str) -> dict[str, Any]:
        """The REST commit shape (branches, compare, ``GET commits``)."""
        commit = repo.commits[sha]
        api, html = self._repo_url(repo), f"{self.world.html_url}/{repo.full_name}"
        tree = hashlib.sha1(f"tree {sha}".encode(), usedforsecurity=False).hexdigest()
        person = {"name": "Fake Author", "email": "author@example.com", "date": commit.date}
        return {
            "sha": sha,
            "node_id": node_id("C", sha),
            "commit": {
                "author": person,
                "committer": person,
                "message": commit.message,
                "tree": {"sha": tree, "url": f"{api}/git/trees/{tree}"},
                "url": f"{api}/git/commits/{sha}",
                "comment_count": 0,
            },
            "url": f"{api}/commits/{sha}",
            "html_url": f"{html}/commit/{sha}",
            "comments_url": f"{api}/commits/{sha}/comments",
            "author": None,
            "committer": None,
            "parents": [
                {"sha": p, "url": f"{api}/commits/{p}", "html_url": f"{html}/commit/{p}"}
                for p in commit.parents
            ],
        }

    def _ref(self, repo: Repo, ref: str) -> dict[str, Any]:
        sha = repo.refs[ref]
        api = self._repo_url(repo)
        return {
            "ref": ref,
            "node_id": node_id("REF", f"{repo.repo_id}:{ref}"),
            "url": f"{api}/git/{quote(ref, safe='/')}",
            "object": {"sha": sha, "type": "commit", "url": f"{api}/git/commits/{sha}"},
        }

    def _branch_url(self, repo: Repo, branch: str) -> str:
        return f"{self._repo_url(repo)}/branches/{quote(branch, safe='/')}"

    # ---- endpoints ---------------------------------------------------------------

    @route("GET", "")
    def get_repo(self, repo: Repo, token: Token, req: Request, args: list[str]) -> Response:
        """GitHub's ``full-repository`` with the caller's permissions (for preflight checks)."""
        key = repo.full_name.lower()
        push = token.can_write(key)
        html = f"{self.world.html_url}/{repo.full_name}"
        host = urlsplit(self.world.html_url).netloc
        counts = ("forks", "forks_count", "open_issues", "open_issues_count", "size", "stargazers_count",
                  "watchers", "watchers_count", "network_count", "subscribers_count")
        return Response(
            200,
            minimal_repository(self.world, repo)
            | dict.fromkeys(counts, 0)
            | {
                "clone_url": f"{html}.git",
                "git_url": f"git://{host}/{repo.full_name}.git",
                "ssh_url": f"git@{host}:{repo.full_name}.git",
                "svn_url": html,
                "mirror_url": None,
                "homepage": None,
                "language": None,
                "license": None,
                "default_branch": repo.default_branch,
                "has_issues": repo.issues_enabled,
                "has_projects": False,
                "has_wiki": False,
                "has_pages": False,
                "has_discussions": False,
                "archived": False,
                "disabled": False,
                "visibility": "private",
                "pushed_at": CREATED_AT,
                "created_at": CREATED_AT,
                "updated_at": CREATED_AT,
                "permissions": {
                    "admin": False,
                    "maintain": False,
                    "push": push,
                    "triage": push,
                    "pull": True,
                },
            },
        )

    @route("GET", r"/branches/(.+)")
    def get_branch(self, repo: Repo, token: Token, req: Request, args: list[str]) -> Response:
        """Branch head at ``commit.sha``; 301 for a renamed branch (never to be followed blindly)."""
        name = args[0]
        ref = f"refs/heads/{name}"
        if ref in repo.refs:
            protected = name in repo.protected
            return Response(
                200,
                {
                    "name": name,
                    "commit": self.commit_shape(repo, repo.refs[ref]),
                    "_links": {
                        "self": self._branch_url(repo, name),
                        "html": f"{self.world.html_url}/{repo.full_name}/tree/{name}",
                    },
                    "protected": protected,
                    "protection": {
                        "enabled": protected,
                        "required_status_checks": {
                            "enforcement_level": "off",
                            "contexts": [],
                            "checks": [],
                        },
                    },
                    "protection_url": f"{self._branch_url(repo, name)}/protection",
                },
            )
        new = repo.renamed.get(name)
        if new is not None and f"refs/heads/{new}" in repo.refs:
            url = self._branch_url(repo, new)
            body = {"message": "Moved Permanently", "url": url, "documentation_url": DOCS_URL}
            return Response(301, body, {"Location": url})
        raise ApiError(404, "Branch not found")

    @route("GET", r"/git/ref/(.+)")
    def get_ref(self, repo: Repo, token: Token, req: Request, args: list[str]) -> Response:
        """Exact ref lookup (``heads/x``); a sha or a prefix is not a ref here."""
        if repo.empty:
            raise empty_repo()
        ref = f"refs/{args[0]}"
        if ref not in repo.refs:
            raise not_found()
        return Response(200, self._ref(repo, ref))

    @route("GET", r"/git/refs/(.+)")
    def get_refs_legacy(self, repo: Repo, token: Token, req: Request, args: list[str]) -> Response:
        """Legacy plural form: exact match gives an object, otherwise prefix matches (a trap)."""
        if repo.empty:
            raise empty_repo()
        ref = f"refs/{args[0]}"
        if ref in repo.refs:
            return Response(200, self._ref(repo, ref))
        hits = [self._ref(repo, r) for r in sorted(repo.refs) if r.startswith(ref)]
        if not hits:
            raise not_found()
        return Response(200, hits)

    @route("GET", r"/git/matching-refs/(.*)")
    def matching_refs(self, repo: Repo, token: Token, req: Request, args: list[str]) -> Response:
        """Prefix match (asking ``heads/feature`` also returns ``heads/featureA``)."""
        if repo.empty:
            raise empty_repo()
        prefix = f"refs/{args[0]}"
        return Response(200, [self._ref(repo, r) for r in sorted(repo.refs) if r.startswith(prefix)])

    @route("GET", r"/compare/(.+)")
    def compare(self, repo: Repo, token: Token, req: Request, args: list[str]) -> Response:
        """Three-dot compare computed from the real commit graph."""
        base_name, sep, head_name = args[0].partition("...")
        if not sep:
            raise not_found()
        if repo.empty:
            raise empty_repo()
        base, head = repo.resolve(base_name), repo.resolve(head_name)
        if base is None or head is None:
            raise not_found()
        comparison = repo.compare(base, head)
        if comparison is None:
            raise ApiError(404, f"No common ancestor between {base_name} and {head_name}.")
        ahead = comparison.ahead
        per_page, page = 250, 1
        if req.query.get("per_page", "").isdigit():
            per_page = min(max(int(req.query["per_page"]), 1), 100)
        if req.query.get("page", "").isdigit():
            page = max(int(req.query["page"]), 1)
        shown = ahead[(page - 1) * per_page : page * per_page]
        spec = f"{base_name}...{head_name}"
        html = f"{self.world.html_url}/{repo.full_name}/compare/{spec}"
        return Response(
            200,
            {
                "url": f"{self._repo_url(repo)}/compare/{spec}",
                "html_url": html,
                "permalink_url": html,
                "diff_url": f"{html}.diff",
                "patch_url": f"{html}.patch",
                "base_commit": self.commit_shape(repo, base),
                "merge_base_commit": self.commit_shape(repo, comparison.merge_base),
                "status": comparison.status,
                "ahead_by": len(ahead),
                "behind_by": comparison.behind_by,
                "total_commits": len(ahead),
                "commits": [self.commit_shape(repo, s) for s in shown],
                "files": [],
            },
        )

    @route("POST", r"/git/refs", write="contents")
    def create_ref(self, repo: Repo, token: Token, req: Request, args: list[str]) -> Response:
        """Create a ref; fails if it exists (an atomic "create if absent")."""
        body = json_object(req)
        ref = typed_field(body, "ref", str)
        sha = typed_field(body, "sha", str)
        problem = ref_name_problem(ref)
        if problem is not None:
            raise ApiError(422, problem)
        if repo.empty:
            raise empty_repo()
        if not SHA_RE.fullmatch(sha) or sha not in repo.commits:
            raise ApiError(422, "Object does not exist")
        if ref in repo.refs:
            raise ApiError(422, "Reference already exists")
        if repo.ref_conflict(ref):
            raise ApiError(422, "Reference update failed")
        repo.refs[ref] = sha
        created = self._ref(repo, ref)
        return Response(201, created, {"Location": created["url"]})

    @route("PATCH", r"/git/refs/(.+)", write="contents")
    def update_ref(self, repo: Repo, token: Token, req: Request, args: list[str]) -> Response:
        """Move a ref: fast-forward only unless ``force`` is true; rules can refuse."""
        body = json_object(req)
        sha = typed_field(body, "sha", str)
        force = typed_field(body, "force", bool, required=False) or False
        if repo.empty:
            raise empty_repo()
        ref = f"refs/{args[0]}"
        if ref not in repo.refs:
            raise ApiError(422, "Reference does not exist")
        if not SHA_RE.fullmatch(sha) or sha not in repo.commits:
            raise ApiError(422, "Object does not exist")
        branch = ref.removeprefix("refs/heads/") if ref.startswith("refs/heads/") else None
        rule = repo.protected.get(branch) if branch is not None else None
        if rule is not None:
            raise ApiError(422, rule)
        if not force and not repo.is_ancestor(repo.refs[ref], sha):
            raise ApiError(422, "Update is not a fast forward")
        repo.refs[ref] = sha
        return Response(200, self._ref(repo, ref))

    @route("DELETE", r"/git/refs/(.+)", write="contents")
    def delete_ref(self, repo: Repo, token: Token, req: Request, args: list[str]) -> Response:
        """Delete a ref (how a forge-side lock is released)."""
        if repo.empty:
            raise empty_repo()
        ref = f"refs/{args[0]}"
        if ref not in repo.refs:
            raise ApiError(422, "Reference does not exist")
        if ref.startswith("refs/heads/") and ref.removeprefix("refs/heads/") in repo.protected:
            raise ApiError(422, "Repository rule violations found\n\nCannot delete this branch.\n\n")
        del repo.refs[ref]
        return Response(204)

    @route("POST", r"/issues/(\d+)/comments", write="issues")
    def create_comment(self, repo: Repo, token: Token, req: Request, args: list[str]) -> Response:
        """Issue comment (the bypass audit record)."""
        body = json_object(req)
        text = typed_field(body, "body", str)
        if not repo.issues_enabled:
            raise ApiError(410, "Issues are disabled for this repo")
        issue = repo.issues.get(int(args[0]))
        if issue is None:
            raise not_found()
        if issue.locked:
            raise ApiError(403, "Unable to create comment because issue is locked.")
        if not text.strip():
            raise _validation("missing_field", "Body cannot be blank")
        if len(text) > _MAX_COMMENT:
            raise _validation("custom", f"Body is too long (maximum is {_MAX_COMMENT} characters)")
        world = self.world
        comment_id, world.next_comment_id = world.next_comment_id, world.next_comment_id + 1
        created = iso(datetime.now(UTC))
        api = self._repo_url(repo)
        comment = {
            "id": comment_id,
            "node_id": node_id("IC", str(comment_id)),
            "url": f"{api}/issues/comments/{comment_id}",
            "html_url": (
                f"{world.html_url}/{repo.full_name}/issues/{issue.number}#issuecomment-{comment_id}"
            ),
            "issue_url": f"{api}/issues/{issue.number}",
            "body": text,
            "user": simple_user(self.world, token.login, token.user_id),
            "created_at": created,
            "updated_at": created,
            "author_association": "MEMBER",
        }
        issue.comments.append(comment)
        return Response(201, comment, {"Location": comment["url"]})

    @route("POST", r"/dispatches", write="contents")
    def dispatch(self, repo: Repo, token: Token, req: Request, args: list[str]) -> Response:
        """repository_dispatch: stored for inspection, no workflow runs."""
        body = json_object(req)
        event_type = typed_field(body, "event_type", str)
        payload = typed_field(body, "client_payload", dict, required=False)
        if not event_type:
            raise invalid_request("For 'properties/event_type', \"\" is too short (minimum is 1).")
        if len(event_type) > 100:
            raise invalid_request(f"event_type is too long ({len(event_type)} > 100 characters).")
        if payload is not None:
            if len(payload) > 10:
                raise invalid_request(f"No more than 10 properties are allowed; {len(payload)} were supplied.")
            if len(json.dumps(payload).encode()) >= 65536:
                raise invalid_request("client_payload is too large (maximum is 64 KB).")
        repo.dispatches.append({"event_type": event_type, "client_payload": payload or {}})
        return Response(204)


def _validation(code: str, message: str) -> ApiError:
    """The classic 422 ``Validation Failed`` with an ``errors`` list."""
    error = {"resource": "IssueComment", "code": code, "field": "body", "message": message}
    return ApiError(422, "Validation Failed", errors=[error])

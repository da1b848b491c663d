"""``POST /graphql`` for the fake GitHub: the reads lockstep sends, answered as GitHub answers them.

lockstep reads every service in one query per phase (aliases ``s0``, ``s1`` ... over
``repository(owner:, name:)``), so the fake must really execute GraphQL: aliases, variables,
literal arguments, fragments and ``__typename`` included.  It runs graphql-core, the reference
implementation, over :data:`SDL`: a subset of GitHub's public schema in which every type, field,
argument, nullability and default is GitHub's own (``tests/test_fakegithub_graphql.py`` checks
that against the published ``@octokit/graphql-schema``).  A field outside the subset fails
validation here as an unknown field fails on GitHub, so the fake is never more forgiving; it can
only be stricter where the subset stops.  The subset::

    Query       rateLimit: RateLimit
                repository(owner: String!, name: String!, followRenames: Boolean = true): Repository
    Repository  id databaseId name nameWithOwner defaultBranchRef ref(qualifiedName: String!): Ref
                object(expression: String, oid: GitObjectID): GitObject
    Ref         id name prefix repository target: GitObject compare(headRef: String!): Comparison
    GitObject   (interface) id oid abbreviatedOid repository; Commit adds message committedDate;
                Blob adds byteSize commitResourcePath commitUrl isBinary isTruncated text
    Comparison  id status: ComparisonStatus (AHEAD BEHIND DIVERGED IDENTICAL) aheadBy behindBy
                baseTarget headTarget
    RateLimit   cost limit nodeCount remaining resetAt used
    Node        (interface) id

How the fake answers (docs/github-api.md, "GraphQL"):

* HTTP 200 ``{"data": ...}``, with ``errors`` beside it for partial results.  A repository that
  does not exist, or that the token cannot read, is ``null`` at its alias with an error
  ``{"type": "NOT_FOUND", "path": [alias], "locations": [...], "message": "Could not resolve to
  a Repository with the name 'o/r'."}``; the other aliases keep their data.  A missing ref is
  ``null`` with no error, as on GitHub.
* ``Ref.compare`` (the ref is the base, ``headRef`` the head, as in REST's ``base...head``)
  whose ``headRef`` names no ref or commit, or a commit without a common ancestor, is ``null``
  with a NOT_FOUND error.  GitHub documents only "if the comparison can be made"; the fake takes
  the form a client must handle in any case (null *and* an error entry at that path).
* A query that does not parse or validate (a ``mutation`` too: the subset has no Mutation type),
  or whose variables do not fit: HTTP 200 with ``errors`` and no ``data``; messages are
  graphql-core's (GitHub's graphql-ruby words them differently).
* No token: 401 ``This endpoint requires you to be authenticated.``; a bad one: 401 ``Bad
  credentials``, as on REST.  A body that is not a JSON object: 400 ``Problems parsing JSON``;
  one without a ``query`` string: 200 ``A query attribute must be specified and must be a string.``
* Every authenticated call costs :data:`COST` point of the GraphQL budget (``gh.graphql``, 5,000
  an hour), shown in ``x-ratelimit-*`` headers with ``x-ratelimit-resource: graphql`` and in
  ``rateLimit``; no field of the subset is a connection, so GitHub's formula gives its minimum
  and ``nodeCount`` is 0.  An exhausted budget is HTTP 200 with a ``RATE_LIMIT`` error.
* A request that took longer than ``gh.graphql.timeout`` (10 s; ``gh.latency`` and delay faults
  count) is HTTP 504 ``We couldn't respond to your request in time...`` and still costs its point.
  The answer comes when the delay ends, not at the timeout: the fake does not cut requests short.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar, Protocol

from graphql import (
    DocumentNode,
    ExecutionResult,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLAbstractType,
    GraphQLError,
    GraphQLResolveInfo,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
    build_schema,
    execute_sync,
    get_operation_ast,
    parse,
    validate,
    value_from_ast_untyped,
)

from tests.support.fakegithub.api import Api, Request, Response, World, node_id, top_level_route
from tests.support.fakegithub.state import Comparison, Repo, Token, blob_sha, iso

COST = 1  # points per call: GitHub's minimum, and what its formula gives a query without connections
DOCS_URL = "https://docs.github.com/graphql"
AUTH_DOCS_URL = "https://docs.github.com/graphql/guides/forming-calls-with-graphql#authenticating-with-graphql"
TIMEOUT_MESSAGE = (
    "We couldn't respond to your request in time. Sorry about that. "
    "Please try resubmitting your request and contact us if the problem persists."
)

SDL = '''
"""The query root of GitHub's GraphQL interface."""
type Query {
  """The client's rate limit information."""
  rateLimit: RateLimit

  """Lookup a given repository by the owner and repository name."""
  repository(
    """Follow repository renames. If disabled, a repository referenced by its old name will return an error."""
    followRenames: Boolean = true

    """The name of the repository"""
    name: String!

    """The login field of a user or organization"""
    owner: String!
  ): Repository
}

"""An object with an ID."""
interface Node {
  """ID of the object."""
  id: ID!
}

"""A repository contains the content for a project."""
type Repository implements Node {
  """Identifies the primary key from the database."""
  databaseId: Int

  """The Ref associated with the repository's default branch."""
  defaultBranchRef: Ref

  """The Node ID of the Repository object"""
  id: ID!

  """The name of the repository."""
  name: String!

  """The repository's name with owner."""
  nameWithOwner: String!

  """A Git object in the repository"""
  object(
    """A Git revision expression suitable for rev-parse"""
    expression: String

    """The Git object ID"""
    oid: GitObjectID
  ): GitObject

  """Fetch a given ref from the repository"""
  ref(
    """
    The ref to retrieve. Fully qualified matches are checked in order
    (`refs/heads/master`) before falling back onto checks for short name matches (`master`).
    """
    qualifiedName: String!
  ): Ref
}

"""Represents a Git reference."""
type Ref implements Node {
  """Compares the current ref as a base ref to another head ref, if the comparison can be made."""
  compare(
    """The head ref to compare against."""
    headRef: String!
  ): Comparison

  """The Node ID of the Ref object"""
  id: ID!

  """The ref name."""
  name: String!

  """The ref's prefix, such as `refs/heads/` or `refs/tags/`."""
  prefix: String!

  """The repository the ref belongs to."""
  repository: Repository!

  """The object the ref points to. Returns null when object does not exist."""
  target: GitObject
}

"""A Git object ID."""
scalar GitObjectID

"""An RFC 3986, RFC 3987, and RFC 6570 (level 4) compliant URI string."""
scalar URI

"""Represents a Git blob."""
type Blob implements GitObject & Node {
  """An abbreviated version of the Git object ID"""
  abbreviatedOid: String!

  """Byte size of Blob object"""
  byteSize: Int!

  """The HTTP path for this Git object"""
  commitResourcePath: URI!

  """The HTTP URL for this Git object"""
  commitUrl: URI!

  """The Node ID of the Blob object"""
  id: ID!

  """Indicates whether the Blob is binary or text. Returns null if unable to determine the encoding."""
  isBinary: Boolean

  """Indicates whether the contents is truncated"""
  isTruncated: Boolean!

  """The Git object ID"""
  oid: GitObjectID!

  """The Repository the Git object belongs to"""
  repository: Repository!

  """UTF8 text data or null if the Blob is binary"""
  text: String
}

"""An ISO-8601 encoded UTC date string."""
scalar DateTime

"""Represents a Git object."""
interface GitObject {
  """An abbreviated version of the Git object ID"""
  abbreviatedOid: String!

  """The Node ID of the GitObject object"""
  id: ID!

  """The Git object ID"""
  oid: GitObjectID!

  """The Repository the Git object belongs to"""
  repository: Repository!
}

"""Represents a Git commit."""
type Commit implements GitObject & Node {
  """An abbreviated version of the Git object ID"""
  abbreviatedOid: String!

  """The datetime when this commit was committed."""
  committedDate: DateTime!

  """The Node ID of the Commit object"""
  id: ID!

  """The Git commit message"""
  message: String!

  """The Git object ID"""
  oid: GitObjectID!

  """The Repository this commit belongs to"""
  repository: Repository!
}

"""The status of a git comparison between two refs."""
enum ComparisonStatus {
  """The head ref is both ahead and behind of the base ref, indicating git history has diverged."""
  DIVERGED

  """The head ref is ahead of the base ref."""
  AHEAD

  """The head ref is behind the base ref."""
  BEHIND

  """The head ref and base ref are identical."""
  IDENTICAL
}

"""Represents a comparison between two commit revisions."""
type Comparison implements Node {
  """The number of commits ahead of the base branch."""
  aheadBy: Int!

  """The base revision of this comparison."""
  baseTarget: GitObject!

  """The number of commits behind the base branch."""
  behindBy: Int!

  """The head revision of this comparison."""
  headTarget: GitObject!

  """The Node ID of the Comparison object"""
  id: ID!

  """The status of this comparison."""
  status: ComparisonStatus!
}

"""Represents the client's rate limit."""
type RateLimit {
  """The point cost for the current query counting against the rate limit."""
  cost: Int!

  """The maximum number of points the client is permitted to consume in a 60 minute window."""
  limit: Int!

  """The maximum number of nodes this query may return"""
  nodeCount: Int!

  """The number of points remaining in the current rate limit window."""
  remaining: Int!

  """The time at which the current rate limit window resets in UTC epoch seconds."""
  resetAt: DateTime!

  """The number of points used in the current rate limit window."""
  used: Int!
}
'''

SCHEMA = build_schema(SDL)
BLOB_TEXT_LIMIT = 512 * 1024  # unconfirmed: where GitHub truncates Blob.text (docs/github-api.md)
Info = GraphQLResolveInfo[None]  # the resolvers get no context value: their source object carries the state


class _NotFound(Exception):
    """A resolver's "no such thing": ``null`` at its path and an error entry with ``type``."""

    type = "NOT_FOUND"


# ---- the objects the resolvers return -------------------------------------------------
# graphql-core's default resolver reads each field as the attribute of the same name (and calls
# it with the arguments when it is a method), so these classes spell GitHub's camelCase fields.


@dataclass(frozen=True)
class _Repository:
    typename: ClassVar[str] = "Repository"
    repo: Repo

    @property
    def id(self) -> str:
        return node_id("R", str(self.repo.repo_id))  # the REST node_id

    @property
    def databaseId(self) -> int:
        return self.repo.repo_id

    @property
    def name(self) -> str:
        return self.repo.full_name.split("/")[1]

    @property
    def nameWithOwner(self) -> str:
        return self.repo.full_name

    @property
    def defaultBranchRef(self) -> _Ref | None:
        qualified = f"refs/heads/{self.repo.default_branch}"
        return _Ref(self.repo, qualified) if qualified in self.repo.refs else None

    def object(self, info: Info, expression: str | None = None, oid: str | None = None) -> Any:
        """``rev:path`` is that file's blob, ``rev`` (or ``oid``) a commit; anything not found is null
        without an error (the fake holds commits and files only: no trees, no tags)."""
        if oid is not None:
            if oid in self.repo.commits:
                return _Commit(self.repo, oid)
            return _Blob(self.repo, self.repo.blobs[oid]) if oid in self.repo.blobs else None
        if expression is None:
            return None
        rev, colon, path = expression.partition(":")
        commit = self.repo.resolve(rev)
        if commit is None:
            return None
        if not colon:
            return _Commit(self.repo, commit)
        data = self.repo.commits[commit].files.get(path)
        return None if data is None else _Blob(self.repo, data)

    def ref(self, info: Info, qualifiedName: str) -> _Ref | None:
        """A missing ref is null without an error, as on GitHub."""
        qualified = ref_named(self.repo, qualifiedName)
        return None if qualified is None else _Ref(self.repo, qualified)


@dataclass(frozen=True)
class _Ref:
    typename: ClassVar[str] = "Ref"
    repo: Repo
    qualified: str  # refs/heads/main

    @property
    def id(self) -> str:
        return node_id("REF", f"{self.repo.repo_id}:{self.qualified}")  # the REST node_id

    @property
    def prefix(self) -> str:
        return split_ref(self.qualified)[0]

    @property
    def name(self) -> str:
        return split_ref(self.qualified)[1]

    @property
    def repository(self) -> _Repository:
        return _Repository(self.repo)

    @property
    def target(self) -> _Commit:
        return _Commit(self.repo, self.repo.refs[self.qualified])

    def compare(self, info: Info, headRef: str) -> _Comparison:
        """This ref is the base; ``headRef`` resolves like REST compare's head (ref, tag, branch, sha)."""
        base = self.repo.refs[self.qualified]
        head = self.repo.resolve(headRef)
        if head is None:
            raise _NotFound(f"Could not resolve to a ref or commit with the name '{headRef}'.")
        comparison = self.repo.compare(base, head)
        if comparison is None:
            raise _NotFound(f"No common ancestor between {self.name} and {headRef}.")
        return _Comparison(self.repo, base, head, comparison)


@dataclass(frozen=True)
class _Commit:
    typename: ClassVar[str] = "Commit"
    repo: Repo
    oid: str

    @property
    def id(self) -> str:
        return node_id("C", self.oid)  # the REST node_id

    @property
    def abbreviatedOid(self) -> str:
        return self.oid[:7]

    @property
    def message(self) -> str:
        return self.repo.commits[self.oid].message

    @property
    def committedDate(self) -> str:
        return self.repo.commits[self.oid].date

    @property
    def repository(self) -> _Repository:
        return _Repository(self.repo)


@dataclass(frozen=True)
class _Blob:
    """A file's content.  GitHub truncates ``text`` past a size it does not document; the fake past
    :data:`BLOB_TEXT_LIMIT` bytes, so a client must look at ``isTruncated``."""

    typename: ClassVar[str] = "Blob"
    repo: Repo
    data: bytes

    @property
    def oid(self) -> str:
        return blob_sha(self.data)

    @property
    def id(self) -> str:
        return node_id("B", self.oid)

    @property
    def abbreviatedOid(self) -> str:
        return self.oid[:7]

    @property
    def byteSize(self) -> int:
        return len(self.data)

    @property
    def commitResourcePath(self) -> str:
        return f"/{self.repo.full_name}/commit/{self.oid}"

    @property
    def commitUrl(self) -> str:
        return f"https://github.com/{self.repo.full_name}/commit/{self.oid}"

    def _text(self) -> str | None:
        if b"\0" in self.data:
            return None
        try:
            return self.data.decode("utf-8")
        except UnicodeDecodeError:
            return None

    @property
    def isBinary(self) -> bool:
        return self._text() is None

    @property
    def isTruncated(self) -> bool:
        return self._text() is not None and len(self.data) > BLOB_TEXT_LIMIT

    @property
    def text(self) -> str | None:
        text = self._text()
        if text is None:
            return None
        return self.data[:BLOB_TEXT_LIMIT].decode("utf-8", "ignore") if self.isTruncated else text

    @property
    def repository(self) -> _Repository:
        return _Repository(self.repo)


@dataclass(frozen=True)
class _Comparison:
    typename: ClassVar[str] = "Comparison"
    repo: Repo
    base: str
    head: str
    result: Comparison

    @property
    def id(self) -> str:
        return node_id("CMP", f"{self.repo.repo_id}:{self.base}...{self.head}")

    @property
    def status(self) -> str:
        return self.result.status.upper()

    @property
    def aheadBy(self) -> int:
        return len(self.result.ahead)

    @property
    def behindBy(self) -> int:
        return self.result.behind_by

    @property
    def baseTarget(self) -> _Commit:
        return _Commit(self.repo, self.base)

    @property
    def headTarget(self) -> _Commit:
        return _Commit(self.repo, self.head)


@dataclass(frozen=True)
class _Root:
    world: World
    token: Token

    def repository(self, info: Info, owner: str, name: str, followRenames: bool = True) -> _Repository:
        """Case-insensitive like GitHub; a repository the token cannot read looks missing.

        ``followRenames`` is accepted and has nothing to do: the fake renames no repository.
        """
        key = f"{owner}/{name}".lower()
        repo = self.world.repos.get(key)
        if repo is None or not self.token.can_read(key):
            raise _NotFound(f"Could not resolve to a Repository with the name '{owner}/{name}'.")
        return _Repository(repo)

    @property
    def rateLimit(self) -> dict[str, Any]:
        """The budget after this call's cost, as GitHub reports it."""
        rate = self.world.graphql_rate
        return {
            "cost": COST,
            "limit": rate.limit,
            "nodeCount": 0,
            "remaining": max(rate.remaining, 0),
            "resetAt": iso(datetime.fromtimestamp(rate.reset, UTC)),
            "used": max(rate.limit - rate.remaining, 0),
        }


def ref_named(repo: Repo, name: str) -> str | None:
    """The full name ``Repository.ref(qualifiedName:)`` finds: the name itself when it is a full ref,
    else git's short-name order (``refs/X``, ``refs/tags/X``, ``refs/heads/X``; GitHub documents
    only "fully qualified matches before short name matches").  Never a sha: a Ref is a ref."""
    for candidate in (name, f"refs/{name}", f"refs/tags/{name}", f"refs/heads/{name}"):
        if candidate.startswith("refs/") and candidate in repo.refs:
            return candidate
    return None


def split_ref(qualified: str) -> tuple[str, str]:
    """``refs/heads/feature/x`` → (``refs/heads/``, ``feature/x``): the prefix is the first two parts."""
    first, _, rest = qualified.partition("/")
    second, _, name = rest.partition("/")
    return f"{first}/{second}/", name


def _type_of(value: Any, info: Info, abstract_type: GraphQLAbstractType) -> str:
    """Which object type an interface value is (a Commit or a Blob in the fake)."""
    return str(value.typename)


# ---- the endpoint ---------------------------------------------------------------------


def _errors(message: str) -> dict[str, Any]:
    return {"errors": [{"message": message}]}


def _formatted(error: GraphQLError) -> dict[str, Any]:
    """GitHub's error entry: ``type`` first when the fake knows one, then path, locations, message.

    A resolver that failed any other way is a bug in the fake: it is raised, so the server
    answers 500 instead of a plausible-looking GraphQL error.
    """
    original = error.original_error
    if original is not None and not isinstance(original, _NotFound | GraphQLError):
        raise original
    formatted = dict(error.formatted)
    entry: dict[str, Any] = {"type": original.type} if isinstance(original, _NotFound) else {}
    entry |= {key: formatted[key] for key in ("path", "locations") if key in formatted}
    entry["message"] = formatted["message"]
    if "extensions" in formatted:
        entry["extensions"] = formatted["extensions"]
    return entry


def _body(result: ExecutionResult) -> dict[str, Any]:
    """``data`` only when execution started (the spec: request errors come without it)."""
    body: dict[str, Any] = {} if result.data is None else {"data": result.data}
    if result.errors:
        body["errors"] = [_formatted(e) for e in result.errors]
    return body


def _answer(world: World, token: Token, raw: bytes) -> tuple[int, dict[str, Any]]:
    """Status and body for one request body: JSON, then the query's parse, validation, execution."""
    try:
        payload = json.loads(raw) if raw.strip() else {}
    except (ValueError, UnicodeDecodeError):
        payload = None
    if not isinstance(payload, dict):
        return 400, {"message": "Problems parsing JSON", "documentation_url": DOCS_URL}
    query, variables, operation_name = payload.get("query"), payload.get("variables"), payload.get("operationName")
    if not isinstance(query, str) or not query.strip():
        return 200, _errors("A query attribute must be specified and must be a string.")
    if variables is not None and not isinstance(variables, dict):  # GitHub's answer here is unconfirmed
        return 200, _errors("Variables are invalid JSON.")
    if operation_name is not None and not isinstance(operation_name, str):
        return 200, _errors("operationName must be a string.")
    try:
        document = parse(query)
    except GraphQLError as error:
        return 200, {"errors": [_formatted(error)]}
    problems = validate(SCHEMA, document)
    if problems:
        return 200, {"errors": [_formatted(e) for e in problems]}
    result = execute_sync(
        SCHEMA,
        document,
        root_value=_Root(world, token),
        variable_values=variables,
        operation_name=operation_name,
        type_resolver=_type_of,
    )
    return 200, _body(result)


@top_level_route("/graphql")
def graphql_endpoint(api: Api, token: Token | None, req: Request) -> Response:
    """Authentication, the GraphQL budget, the timeout, then the query (the caller holds the lock)."""
    if token is None:
        message = "This endpoint requires you to be authenticated."
        return Response(401, {"message": message, "documentation_url": AUTH_DOCS_URL})
    if req.method != "POST":
        return Response(404, {"message": "Not Found", "documentation_url": DOCS_URL})
    world = api.world
    rate = world.graphql_rate
    rate.refresh()
    if rate.remaining <= 0:
        error = {
            "type": "RATE_LIMIT",
            "code": "graphql_rate_limit",
            "message": f"API rate limit already exceeded for user ID {token.user_id}.",
        }
        return Response(200, {"errors": [error]}, rate.headers())
    rate.remaining -= COST
    if time.monotonic() - req.received > world.graphql_timeout:
        return Response(504, {"message": TIMEOUT_MESSAGE}, rate.headers())
    status, body = _answer(world, token, req.body)
    return Response(status, body, rate.headers())


# ---- what tests read --------------------------------------------------------------------


class Recorded(Protocol):
    """What :class:`GraphQLCall` needs of a recorded request (server.RecordedRequest)."""

    method: str
    path: str
    json: object | None
    status: int | None


@dataclass(frozen=True)
class GraphQLCall:
    """One ``POST /graphql`` as received: its text, variables and the parsed document.

    ``document`` is None when the body held no query that parses; ``status`` is the HTTP status
    answered (None: dropped by a fault).
    """

    query: str
    variables: dict[str, Any]
    operation_name: str | None
    document: DocumentNode | None
    status: int | None

    @property
    def operation(self) -> OperationDefinitionNode | None:
        """The operation that ran (by ``operationName``, or the only one)."""
        return None if self.document is None else get_operation_ast(self.document, self.operation_name)

    @property
    def kind(self) -> str | None:
        """``query``, ``mutation`` or ``subscription``."""
        operation = self.operation
        return None if operation is None else operation.operation.value

    def _root_fields(self) -> Iterator[FieldNode]:
        operation = self.operation
        if operation is None or self.document is None:
            return
        fragments = {d.name.value: d for d in self.document.definitions if isinstance(d, FragmentDefinitionNode)}
        yield from _fields_of(operation.selection_set, fragments)

    @property
    def root_fields(self) -> list[str]:
        """The top-level response keys, aliases as sent (``["rateLimit", "s0", "s1"]``)."""
        return [(f.alias or f.name).value for f in self._root_fields()]

    @property
    def repositories(self) -> list[str]:
        """``owner/name`` of every top-level ``repository`` field, variables filled in, in order."""
        found = []
        for field in self._root_fields():
            if field.name.value != "repository":
                continue
            args = {a.name.value: value_from_ast_untyped(a.value, self.variables) for a in field.arguments or ()}
            found.append(f"{args.get('owner')}/{args.get('name')}")
        return found


def _fields_of(
    selection_set: SelectionSetNode, fragments: dict[str, FragmentDefinitionNode]
) -> Iterator[FieldNode]:
    """The fields of one selection set, through inline fragments and fragment spreads."""
    for selection in selection_set.selections:
        if isinstance(selection, FieldNode):
            yield selection
        elif isinstance(selection, InlineFragmentNode):
            yield from _fields_of(selection.selection_set, fragments)
        elif isinstance(selection, FragmentSpreadNode) and selection.name.value in fragments:
            yield from _fields_of(fragments[selection.name.value].selection_set, fragments)


def _call(record: Recorded) -> GraphQLCall:
    return parse_call(record.json, record.status)


def repositories_read(body: bytes) -> set[str]:
    """``owner/name`` of every repository a ``POST /graphql`` body reads (for hooks on the raw request)."""
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return set()
    return set(parse_call(payload, None).repositories)


def parse_call(payload: object, status: int | None) -> GraphQLCall:
    """A request body's GraphQL call, parsed (a body that is no JSON object gives an empty call)."""
    payload = payload if isinstance(payload, dict) else {}
    query, variables, name = payload.get("query"), payload.get("variables"), payload.get("operationName")
    document: DocumentNode | None = None
    if isinstance(query, str):
        try:
            document = parse(query)
        except GraphQLError:
            document = None
    return GraphQLCall(
        query=query if isinstance(query, str) else "",
        variables=variables if isinstance(variables, dict) else {},
        operation_name=name if isinstance(name, str) else None,
        document=document,
        status=status,
    )


class GraphQLControls:
    """``gh.graphql``: one fake's GraphQL budget and timeout, and the queries it received.

    The budget is GitHub's separate ``graphql`` resource (REST calls do not spend it); setters
    change state directly and are not requests, like the rest of the fake's test helpers.
    """

    def __init__(
        self, lock: threading.RLock, world: World, requests: Callable[[], Sequence[Recorded]]
    ) -> None:
        self._lock = lock
        self._world = world
        self._requests = requests

    @property
    def remaining(self) -> int:
        """Points left in the window; at 0 every call answers a RATE_LIMIT error."""
        return self._world.graphql_rate.remaining

    @remaining.setter
    def remaining(self, value: int) -> None:
        with self._lock:
            rate = self._world.graphql_rate
            rate.remaining = value
            rate.limit = max(rate.limit, value)

    @property
    def limit(self) -> int:
        """Points per hour (5,000 for a user token; an App installation or GITHUB_TOKEN differ)."""
        return self._world.graphql_rate.limit

    @limit.setter
    def limit(self, value: int) -> None:
        with self._lock:
            rate = self._world.graphql_rate
            rate.limit = value
            rate.remaining = min(rate.remaining, value)

    @property
    def reset(self) -> int:
        """Epoch second when the window resets (remaining goes back to the limit)."""
        return self._world.graphql_rate.reset

    @reset.setter
    def reset(self, value: float) -> None:
        with self._lock:
            self._world.graphql_rate.reset = int(value)

    @property
    def timeout(self) -> float:
        """Seconds after which a call answers 504 (GitHub: 10); lower it to test timeouts quickly."""
        return self._world.graphql_timeout

    @timeout.setter
    def timeout(self, value: float) -> None:
        with self._lock:
            self._world.graphql_timeout = value

    def queries(self) -> list[GraphQLCall]:
        """Every ``POST /graphql`` received, in arrival order, parsed (faulted ones included)."""
        return [_call(r) for r in self._requests() if r.method == "POST" and r.path == "/graphql"]


__all__ = ["COST", "SCHEMA", "SDL", "GraphQLCall", "GraphQLControls", "graphql_endpoint", "parse_call",
           "repositories_read"]

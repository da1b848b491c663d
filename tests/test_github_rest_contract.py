"""REST contract: lockstep's requests and the fake GitHub's answers, held to GitHub's own description.

GitHub publishes its REST API as OpenAPI 3.0 (npm ``@octokit/openapi``, installed on first use by
``tests/support/npm.py``; ``generated/api.github.com.json``, parsed once per process).  Over real HTTP:

* **lockstep's requests.**  The real CLI runs realistic sessions against the fake: a gated run and a
  bypass with its audit comment on the default records branch, ``status`` and ``plan``; the same
  over REST when GraphQL cannot answer; records as deployments; the ref lock (held, then taken), a
  split, ``reconcile --rollback`` and ``--forward``; commit status and check run gates, one never
  reported (the stale search); ``dispatch``.  Every REST request it sent must be an operation GitHub
  describes (method and path template; a deprecated one does not count), with only query
  parameters that operation declares, every path and query value of its declared type, and a JSON
  body that the request schema accepts and whose fields it names.
* **the fake's answers.**  Each answer the fake gave those requests (captured as sent: the request
  log keeps no answer bodies) and each answer to direct requests (every route of the fake, each
  error case lockstep can meet) must validate against the operation's response schema for that
  status and media type: ``required`` is what GitHub always sends, so a client tested on the fake
  never relies on a field GitHub leaves out, and a 2xx answer holds no field the schema does not
  name, so it never relies on one GitHub does not send either.  Headers the response declares
  (``Location``) must be there.  A status the operation does not list is wrong for 2xx/3xx; a 4xx
  GitHub gives anywhere (401, 403 for a permission or a limit) must still be a ``basic-error``.

From OpenAPI 3.0 to JSON Schema 2020-12: ``nullable`` admits ``null``, ``$ref`` resolves within the
document, ``oneOf`` is read as ``anyOf`` (GitHub's alternatives overlap: a ``basic-error`` is also a
``repository-rule-violation-error``, so "exactly one" would refuse GitHub's own answers), formats
``date-time`` and ``uri`` are checked (``""`` passes as a URI: GitHub sends it for a URL never
given, such as a deployment status's ``log_url``).  ``POST /graphql`` is not in the description;
its contract is tests/test_fakegithub_graphql.py.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest
from jsonschema import Draft202012Validator, FormatChecker
from referencing import Registry
from referencing.jsonschema import DRAFT202012

from tests.support import npm
from tests.support.apiworld import BASE, REPO, ApiWorld, api_world
from tests.support.fakegithub import FakeGitHub, RecordedRequest
from tests.support.fakegithub.api import _ROUTES
from tests.support.fakegithub.state import blob_sha
from tests.support.githubworld import REPOS, TRACKER_REPO, GitHubWorld, build_world

pytestmark = pytest.mark.timeout(90)

SPEC_PACKAGE = "@octokit/openapi"
SPEC_FILE = "generated/api.github.com.json"
PURPOSE = "check lockstep's REST requests and the fake GitHub's answers against GitHub's OpenAPI description"
SPEC_URI = "urn:github:openapi:api.github.com"
_COMPOSITIONS = ("allOf", "anyOf", "oneOf")
_DATE_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)")

# ---- GitHub's description as JSON Schema -------------------------------------------------

FORMATS = FormatChecker(formats=())


@FORMATS.checks("date-time", raises=ValueError)
def _date_time(value: object) -> bool:
    """RFC 3339, as GitHub sends timestamps (``2024-01-01T00:00:00Z``)."""
    if not isinstance(value, str):
        return True
    if _DATE_TIME.fullmatch(value) is None:
        return False
    datetime.fromisoformat(value)
    return True


@FORMATS.checks("uri")
def _uri(value: object) -> bool:
    """An absolute URI, or "": what GitHub sends for a URL never given (a deployment status's log_url)."""
    if not isinstance(value, str) or value == "":
        return True
    split = urlsplit(value)
    return bool(split.scheme) and bool(split.netloc or split.path)


def json_schema(schema: Any) -> Any:
    """An OpenAPI 3.0 schema object as JSON Schema 2020-12: ``nullable: true`` admits ``null``
    (in ``type``, in ``enum``, or around a ``$ref``/composition); the rest is the same language."""
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "properties":
            out[key] = {name: json_schema(sub) for name, sub in value.items()}
        elif key in ("items", "additionalProperties", "not") and isinstance(value, dict):
            out[key] = json_schema(value)
        elif key in _COMPOSITIONS:  # oneOf as anyOf: GitHub's alternatives overlap (see the docstring)
            out["anyOf" if key == "oneOf" else key] = [json_schema(sub) for sub in value]
        elif key not in ("nullable", "example", "discriminator"):
            out[key] = value
    if schema.get("nullable") is True:
        if "enum" in out and None not in out["enum"]:
            out["enum"] = [*out["enum"], None]
        if "type" in out:
            out["type"] = [out["type"], "null"]
        elif "$ref" in out or any(k in out for k in _COMPOSITIONS):
            out = {"anyOf": [{"type": "null"}, out]}
    return out


def _convert_schemas(node: Any) -> None:
    """Convert every ``schema`` below ``node`` (parameters, media types); examples are data."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "schema" and isinstance(value, dict):
                node[key] = json_schema(value)
            elif key not in ("examples", "example"):
                _convert_schemas(value)
    elif isinstance(node, list):
        for value in node:
            _convert_schemas(value)


def pointer(*parts: str) -> str:
    """A JSON pointer (RFC 6901) to ``parts``."""
    return "".join("/" + p.replace("~", "~0").replace("/", "~1") for p in parts)


def _group(name: str) -> str:
    return "p_" + re.sub(r"\W", "_", name)


@dataclass(frozen=True)
class Param:
    """A path or query parameter: its schema (and where it is, for validation)."""

    name: str
    where: str
    schema: dict[str, Any]
    required: bool
    multi_segment: bool  # GitHub's x-multi-segment: a path value that may hold slashes (refs, paths)


@dataclass(frozen=True)
class Answer:
    """One declared response: a schema per media type (none: no body) and the headers it names."""

    media: dict[str, str]
    headers: tuple[str, ...]


@dataclass(frozen=True)
class Operation:
    """One operation of the description, with pointers to its schemas in the converted document."""

    method: str
    template: str
    operation_id: str
    deprecated: bool
    pattern: re.Pattern[str]
    specificity: int  # literal characters of the template: the most specific match wins
    path_params: dict[str, Param]
    query_params: dict[str, Param]
    body: str | None  # the application/json request schema
    body_required: bool
    responses: dict[str, Answer]  # by status code


class Spec:
    """GitHub's REST description: operations found by method and raw path, schemas validated."""

    def __init__(self, document: dict[str, Any]) -> None:
        components = document["components"]
        components["schemas"] = {name: json_schema(s) for name, s in components["schemas"].items()}
        for section in ("parameters", "responses", "headers"):
            _convert_schemas(components.get(section, {}))
        _convert_schemas(document["paths"])
        self.document = document
        self.version = str(document["info"]["version"])
        resource = DRAFT202012.create_resource(document)
        self.registry: Registry[Any] = Registry().with_resource(SPEC_URI, resource)
        self.operations = [
            self._operation(template, method, item, op)
            for template, item in document["paths"].items()
            for method, op in item.items()
            if method in ("get", "put", "post", "patch", "delete", "head")
        ]
        self._validators: dict[str, Draft202012Validator] = {}

    def resolve(self, node: dict[str, Any]) -> dict[str, Any]:
        """Follow a local ``$ref`` (parameters, responses) to what it names."""
        while "$ref" in node:
            node = self.at(node["$ref"].removeprefix("#"))
        return node

    def at(self, where: str) -> Any:
        node: Any = self.document
        for part in where.strip("/").split("/"):
            key = part.replace("~1", "/").replace("~0", "~")
            node = node[int(key)] if isinstance(node, list) else node[key]
        return node

    def _operation(self, template: str, method: str, item: dict[str, Any], op: dict[str, Any]) -> Operation:
        base = pointer("paths", template, method)
        params: dict[tuple[str, str], Param] = {}
        for owner, listed in ((pointer("paths", template), item), (base, op)):
            for index, param in enumerate(listed.get("parameters", ())):
                where = owner + pointer("parameters", str(index))
                if "$ref" in param:
                    where, param = param["$ref"].removeprefix("#"), self.resolve(param)
                params[param["in"], param["name"]] = Param(
                    param["name"],
                    where + "/schema",
                    param.get("schema", {}),
                    bool(param.get("required")),
                    bool(param.get("x-multi-segment")),
                )
        path_params = {name: p for (kind, name), p in params.items() if kind == "path"}
        regex, literal = "", 0
        for piece in re.split(r"(\{[^}]+\})", template):
            if piece.startswith("{"):
                name = piece[1:-1]
                multi = name in path_params and path_params[name].multi_segment
                regex += f"(?P<{_group(name)}>{'.+' if multi else '[^/]+'})"
            else:
                regex += re.escape(piece)
                literal += len(piece)
        body, body_required = None, False
        if "requestBody" in op:
            request = op["requestBody"]
            where = base + pointer("requestBody")
            if "$ref" in request:
                where, request = request["$ref"].removeprefix("#"), self.resolve(request)
            body_required = bool(request.get("required"))
            if "application/json" in request.get("content", {}):
                body = where + pointer("content", "application/json", "schema")
        responses: dict[str, Answer] = {}
        for status, response in op.get("responses", {}).items():
            where = base + pointer("responses", status)
            if "$ref" in response:
                where, response = response["$ref"].removeprefix("#"), self.resolve(response)
            media = {
                name: where + pointer("content", name, "schema")
                for name, content in response.get("content", {}).items()
                if "schema" in content
            }
            responses[status] = Answer(media, tuple(h.lower() for h in response.get("headers", {})))
        deprecated = bool(op.get("deprecated")) or str(op.get("description", "")).startswith("**Deprecated**")
        return Operation(
            method=method.upper(),
            template=template,
            operation_id=op["operationId"],
            deprecated=deprecated,
            pattern=re.compile(regex),
            specificity=literal,
            path_params=path_params,
            query_params={name: p for (kind, name), p in params.items() if kind == "query"},
            body=body,
            body_required=body_required,
            responses=responses,
        )

    def find(self, method: str, path: str) -> tuple[Operation, dict[str, str]] | None:
        """The operation a request is (current before deprecated, then the most specific
        template) and its path parameters, percent-decoded; None if GitHub has no such operation."""
        found: list[tuple[Operation, dict[str, str]]] = []
        for op in self.operations:
            match = op.pattern.fullmatch(path) if op.method == method else None
            if match is not None:
                values = match.groupdict()
                found.append((op, {name: unquote(values[_group(name)]) for name in op.path_params}))
        found.sort(key=lambda hit: (hit[0].deprecated, -hit[0].specificity))
        return found[0] if found else None

    def errors(self, where: str, instance: Any) -> list[str]:
        """Why ``instance`` does not validate against the schema at ``where`` (empty: it does)."""
        validator = self._validators.get(where)
        if validator is None:
            schema = {"$ref": f"{SPEC_URI}#{where}"}
            validator = Draft202012Validator(schema, registry=self.registry, format_checker=FORMATS)
            self._validators[where] = validator
        missing: dict[str, list[str]] = {}
        other: list[str] = []
        for error in sorted(validator.iter_errors(instance), key=lambda e: [str(p) for p in e.absolute_path]):
            at = "/".join(map(str, error.absolute_path)) or "(root)"
            if error.validator == "required":
                missing.setdefault(at, []).append(error.message.split("'")[1])
            else:
                other.append(f"{at}: {_short(error.message)}")
        return [f"{at}: missing {', '.join(names)}" for at, names in missing.items()] + other

    def undeclared(self, where: str, instance: Any) -> list[str]:
        """Fields of ``instance`` that no schema at ``where`` declares (an object schema that allows
        any field, such as a deployment's payload, declares them all)."""
        return sorted(set(self._undeclared([self.at(where)], instance, "")))

    def _leaves(self, schema: Any) -> Iterator[dict[str, Any]]:
        if not isinstance(schema, dict):
            return
        if "$ref" in schema:
            yield from self._leaves(self.at(schema["$ref"].removeprefix(SPEC_URI).removeprefix("#")))
        for key in _COMPOSITIONS:
            for sub in schema.get(key, ()):
                yield from self._leaves(sub)
        yield schema

    def _undeclared(self, schemas: list[Any], instance: Any, at: str) -> Iterator[str]:
        leaves = [leaf for schema in schemas for leaf in self._leaves(schema)]
        if isinstance(instance, list):
            items = [leaf["items"] for leaf in leaves if isinstance(leaf.get("items"), dict)]
            for index, item in enumerate(instance):
                yield from self._undeclared(items, item, f"{at}/{index}")
        if not isinstance(instance, dict):
            return
        objects = [
            leaf
            for leaf in leaves
            if "properties" in leaf or "additionalProperties" in leaf or "object" in _types(leaf)
        ]
        if not objects or any(
            "properties" not in leaf or leaf.get("additionalProperties") for leaf in objects
        ):
            return
        for key, value in instance.items():
            subs = [leaf["properties"][key] for leaf in objects if key in leaf["properties"]]
            if not subs:
                yield f"{at}/{key}".lstrip("/")
            else:
                yield from self._undeclared(subs, value, f"{at}/{key}")


def _types(schema: dict[str, Any]) -> list[Any]:
    kinds = schema.get("type", [])
    return kinds if isinstance(kinds, list) else [kinds]


def _short(text: str, limit: int = 300) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


@cache
def _load(path: Path) -> Spec:
    """Parsed and converted once per process (about half a second for 13 MB)."""
    return Spec(json.loads(path.read_text(encoding="utf-8")))


@pytest.fixture(scope="module")
def spec() -> Spec:
    return _load(npm.package_file(SPEC_PACKAGE, SPEC_FILE, PURPOSE))


def test_without_npm_the_rest_contract_skips_with_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(npm, "NODE_PREFIX", tmp_path / "node")
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(pytest.skip.Exception) as skipped:
        npm.package_file(SPEC_PACKAGE, SPEC_FILE, PURPOSE)
    reason = str(skipped.value)
    assert "\n" not in reason and reason.startswith("npm not found: install Node.js with npm to check")
    assert npm.spec(SPEC_PACKAGE) in reason


# ---- checking one exchange ---------------------------------------------------------------


@dataclass(frozen=True)
class Exchange:
    """A request as the fake saw it and the answer it sent (None: none was sent)."""

    request: RecordedRequest
    status: int | None
    headers: dict[str, str]
    body: Any  # the answer's JSON, None without a body


def capture(gh: FakeGitHub, monkeypatch: pytest.MonkeyPatch) -> list[Exchange]:
    """Every exchange from now on, answers included: the request log holds no answer bodies."""
    exchanges: list[Exchange] = []
    dispatch = gh._dispatch

    def recording(method: str, target: str, headers: dict[str, str], body: bytes, connection: int) -> Any:
        reply = dispatch(method, target, headers, body, connection)
        # one request at a time on a connection: its newest record is this request
        request = next(r for r in reversed(gh.requests) if r.connection == connection)
        response = reply.response
        if response is None:
            exchanges.append(Exchange(request, None, {}, None))
        else:
            sent = None if response.body is None else json.loads(json.dumps(response.body))
            headers = {k.lower(): v for k, v in response.headers.items()}
            exchanges.append(Exchange(request, response.status, headers, sent))
        return reply

    monkeypatch.setattr(gh, "_dispatch", recording)
    return exchanges


def _coerce(value: str, schema: dict[str, Any]) -> Any:
    """A query or path value as the type its schema names (what GitHub parses it as)."""
    kinds = schema.get("type")
    kinds = kinds if isinstance(kinds, list) else [kinds]
    if "integer" in kinds and re.fullmatch(r"-?\d+", value):
        return int(value)
    if "boolean" in kinds and value in ("true", "false"):
        return value == "true"
    return value


def _param_problems(spec: Spec, where: str, param: Param, value: str) -> list[str]:
    if not param.schema:
        return []
    return [
        f"{where}: {param.name}={value!r}: {e}"
        for e in spec.errors(param.where, _coerce(value, param.schema))
    ]


def request_problems(spec: Spec, request: RecordedRequest) -> tuple[Operation | None, list[str]]:
    """The operation a request is, and what about it GitHub's description does not allow."""
    where = f"{request.method} {request.path}"
    found = spec.find(request.method, request.path)
    if found is None:
        return None, [f"{where}: no such operation in GitHub's REST API"]
    op, path_values = found
    where = f"{op.operation_id} ({request.method} {op.template})"
    problems = [f"{where}: {op.operation_id} is deprecated"] if op.deprecated else []
    for name, value in path_values.items():
        problems += _param_problems(spec, where, op.path_params[name], value)
    for name, value in request.query.items():
        if name not in op.query_params:
            problems.append(f"{where}: query parameter {name!r} is not one {op.operation_id} declares")
        else:
            problems += _param_problems(spec, where, op.query_params[name], value)
    problems += [
        f"{where}: required query parameter {name!r} missing"
        for name, param in op.query_params.items()
        if param.required and name not in request.query
    ]
    if request.body.strip():
        if op.body is None:
            problems.append(f"{where}: a body, but {op.operation_id} takes no JSON body")
        elif request.json is None:
            problems.append(f"{where}: the body is not JSON")
        else:
            problems += [f"{where}: body {e}" for e in spec.errors(op.body, request.json)]
            extra = spec.undeclared(op.body, request.json)
            problems += (
                [f"{where}: body fields GitHub does not describe: {', '.join(extra)}"] if extra else []
            )
    elif op.body_required:
        problems.append(f"{where}: {op.operation_id} requires a body, none sent")
    return op, problems


BASIC_ERROR = pointer("components", "schemas", "basic-error")


def _media(request: RecordedRequest, declared: dict[str, str]) -> str | None:
    """The media type GitHub answers with: the one asked for if declared, else JSON."""
    asked = [part.split(";")[0].strip() for part in request.headers.get("accept", "").split(",")]
    for media in asked:
        if media in declared:
            return media
    return "application/json" if "application/json" in declared else None


def answer_problems(spec: Spec, op: Operation, exchange: Exchange) -> list[str]:
    """What about the fake's answer GitHub's description does not allow."""
    status, body, request = exchange.status, exchange.body, exchange.request
    if status is None:  # a fault dropped it: nothing was answered
        return []
    where = f"{op.operation_id} answered {status}"
    declared = op.responses.get(str(status))
    if declared is None:
        if status < 400:
            return [f"{where}: {op.operation_id} never answers {status} on GitHub"]
        if not isinstance(body, dict) or not isinstance(body.get("message"), str):
            return [f"{where}: an error without GitHub's basic-error shape (message): {body!r}"]
        return [f"{where}: basic-error {e}" for e in spec.errors(BASIC_ERROR, body)]
    problems = [
        f"{where}: no {name} header, which GitHub sends"
        for name in declared.headers
        if name not in exchange.headers and name != "link"
    ]
    if not declared.media:
        if body is not None and status < 400:
            problems.append(f"{where}: a body, where GitHub sends none")
        return problems
    media = _media(request, declared.media)
    if media is None:
        return problems
    if body is None:
        return [*problems, f"{where}: no body, where GitHub sends {media}"]
    problems += [f"{where}: {e}" for e in spec.errors(declared.media[media], body)]
    extra = spec.undeclared(declared.media[media], body) if status < 300 else []  # errors carry "status"
    return problems + ([f"{where}: fields GitHub does not describe: {', '.join(extra)}"] if extra else [])


# ---- the checks themselves ---------------------------------------------------------------


def test_nullable_enum_and_compositions_become_json_schema() -> None:
    def valid(schema: dict[str, Any], value: Any) -> bool:
        return Draft202012Validator(json_schema(schema), format_checker=FORMATS).is_valid(value)

    assert valid({"type": "string", "nullable": True}, None) and not valid({"type": "string"}, None)
    assert valid({"type": "string", "enum": ["a"], "nullable": True}, None)
    assert not valid({"type": "string", "enum": ["a"], "nullable": True}, "b")
    nullable_ref = {"nullable": True, "allOf": [{"type": "object", "required": ["id"]}]}
    assert valid(nullable_ref, None) and valid(nullable_ref, {"id": 1}) and not valid(nullable_ref, {})
    overlapping = {
        "oneOf": [{"type": "object"}, {"type": "object", "properties": {"message": {"type": "string"}}}]
    }
    assert valid(overlapping, {"message": "Conflict"})  # valid under both: GitHub's own 409
    assert valid({"type": "string", "format": "date-time"}, "2024-01-01T00:00:00Z")
    assert not valid({"type": "string", "format": "date-time"}, "2024-01-01 00:00:00")
    assert valid({"type": "string", "format": "uri"}, "") and not valid(
        {"type": "string", "format": "uri"}, "x y"
    )


def _recorded(
    method: str, path: str, body: Any = None, query: dict[str, str] | None = None
) -> RecordedRequest:
    raw = b"" if body is None else json.dumps(body).encode()
    headers = {"accept": "application/vnd.github+json"}
    return RecordedRequest(method, path, query or {}, headers, raw, body, 200, 0.0)


def test_the_request_check_refuses_what_github_would_not_take(spec: Spec) -> None:
    def problems(*args: Any, **kwargs: Any) -> str:
        return "\n".join(request_problems(spec, _recorded(*args, **kwargs))[1])

    prod, sha = f"{BASE}/git/refs/heads/prod", "a" * 40
    assert problems("PATCH", prod, {"sha": sha, "force": False}) == ""
    assert "body force: 'yes' is not of type 'boolean'" in problems(
        "PATCH", prod, {"sha": sha, "force": "yes"}
    )
    assert "body (root): missing sha" in problems("PATCH", prod, {"force": True})
    assert "body fields GitHub does not describe: forced" in problems(
        "PATCH", prod, {"sha": sha, "forced": True}
    )
    assert "no such operation" in problems("GET", f"{BASE}/git/refs/heads/prod")
    compare = f"{BASE}/compare/prod...main"
    assert problems("GET", compare, query={"per_page": "1"}) == ""
    assert "query parameter 'perpage' is not one" in problems("GET", compare, query={"perpage": "1"})
    assert "per_page='one'" in problems("GET", compare, query={"per_page": "one"})
    assert "issue_number='seven'" in problems("POST", "/repos/o/r/issues/seven/comments", {"body": "x"})
    assert "requires a body, none sent" in problems("POST", f"{BASE}/dispatches")


def test_the_answer_check_refuses_what_github_would_not_send(spec: Spec) -> None:
    request = _recorded("POST", f"{BASE}/git/refs", {"ref": "refs/heads/x", "sha": "a" * 40})
    found = spec.find(request.method, request.path)
    assert found is not None
    op = found[0]

    def problems(status: int, body: Any, headers: dict[str, str] | None = None) -> str:
        location = {"location": "https://api.github.com/repos/o/r/git/refs/heads/x"}
        return "\n".join(
            answer_problems(
                spec, op, Exchange(request, status, location if headers is None else headers, body)
            )
        )

    ref: dict[str, Any] = {
        "ref": "refs/heads/x",
        "node_id": "REF_x",
        "url": "https://api.github.com/repos/o/r/git/refs/heads/x",
        "object": {
            "sha": "a" * 40,
            "type": "commit",
            "url": "https://api.github.com/repos/o/r/git/commits/a",
        },
    }
    assert problems(201, ref) == ""
    assert "no location header" in problems(201, ref, {})
    assert "(root): missing node_id" in problems(201, {k: v for k, v in ref.items() if k != "node_id"})
    assert "fields GitHub does not describe: object/size" in problems(
        201, ref | {"object": ref["object"] | {"size": 1}}
    )
    assert "never answers 200" in problems(200, ref)
    error = {
        "message": "Resource not accessible by personal access token",
        "documentation_url": "https://docs.github.com/rest",
        "status": "403",
    }
    assert problems(403, error) == ""  # not listed, but GitHub's shape
    assert "basic-error shape" in problems(403, "Forbidden")
    assert "missing documentation_url" in problems(422, {"message": "Reference already exists"})


# ---- lockstep's sessions -----------------------------------------------------------------

ROLLBACK = "\n[recovery]\nallow_rollback = true\n"
LOCK_REF = "refs/heads/lockstep-lock/bs-lml"
GATES = (
    '\n[[checks]]\nname = "e2e"\ncommit_status = "e2e"\ntimeout = "15s"\ninterval = "50ms"\n'
    '\n[[checks]]\nname = "canary"\ncheck_run = "canary"\ntimeout = "15s"\ninterval = "50ms"\n'
)
MISSING_GATE = (
    '\n[[checks]]\nname = "e2e"\ncommit_status = "e2e-missing"\ntimeout = "1s"\ninterval = "100ms"\n'
)
DISPATCH_TOKEN = "github_pat_DISPATCH0123456789abcdef0123456789"


def _ok(w: GitHubWorld, *args: str, code: int = 0) -> None:
    command = (*args, "--config", str(w.root / "lockstep.toml")) if args[0] != "run" else args
    result = w.run(*command)
    assert result.code == code, f"{' '.join(args)}: exit {result.code}\n{result.out}\n{result.err}"


def _reset(w: GitHubWorld) -> None:
    for name, repo in REPOS.items():
        w.gh.set_branch(repo, "prod", w.prods[name])


def branch_records(w: GitHubWorld) -> None:
    """A gated run (it creates the records branch), a bypass with its audit comment, status, plan."""
    w.config()
    _ok(w, "run")
    _reset(w)
    _ok(w, "run", "--skip-gate", "--justification", "INC-1: staging is down", "--actor", "alice")
    assert w.comments()
    _ok(w, "status")
    _ok(w, "plan")


def over_rest(w: GitHubWorld) -> None:
    """The same when GraphQL cannot answer (its budget spent): heads, compares and records over REST."""
    w.gh.graphql.remaining = 0
    branch_records(w)


def deployment_records(w: GitHubWorld) -> None:
    w.config(gate={"records_store": '"deployments"'})
    _ok(w, "run")
    _ok(w, "status")
    _ok(w, "plan")


def splits_and_reconcile(w: GitHubWorld) -> None:
    """The ref lock (held by another run first, then taken); a split, status, reconcile --rollback;
    the split again, reconcile --forward."""
    w.gh.set_ref(REPOS["backend"], LOCK_REF, w.prods["backend"])
    w.config(gate={"lock": '"ref"', "lock_timeout": '"1s"'}, checks=ROLLBACK)
    _ok(w, "run", code=1)
    w.gh.delete_branch(REPOS["backend"], LOCK_REF.removeprefix("refs/heads/"))
    w.gh.protect(REPOS["metadata"], "prod")
    _ok(w, "run", code=3)
    _ok(w, "status", code=3)
    _ok(w, "reconcile", "--rollback", "--justification", "metadata cannot ship today")
    _ok(w, "run", code=3)
    w.gh.unprotect(REPOS["metadata"], "prod")
    _ok(w, "reconcile", "--forward", "--justification", "the rule is lifted")
    assert w.prods_now() == w.mains


def external_gates(w: GitHubWorld) -> None:
    """Commit status and check run gates that pass, then one whose status never comes (stale search)."""
    for name, repo in REPOS.items():
        w.gh.set_status(repo, w.mains[name], "e2e", "success", target_url="https://ci.example/e2e")
        w.gh.add_check_run(
            repo, w.mains[name], "canary", "completed", "success", details_url="https://ci.example/1"
        )
    w.config(checks=GATES)
    _ok(w, "run")
    _reset(w)
    w.config(checks=MISSING_GATE)
    _ok(w, "run", code=1)


def dispatch(w: GitHubWorld) -> None:
    w.gh.add_token(DISPATCH_TOKEN, write=[TRACKER_REPO], login="staging-deployer")
    result = w.run(
        "dispatch",
        "--repo",
        TRACKER_REPO,
        "--event",
        "staging-deployed",
        "--field",
        "repo=acme/backend",
        env=w.env(GITHUB_TOKEN=DISPATCH_TOKEN),
    )
    assert result.code == 0, result.err


@dataclass(frozen=True)
class Session:
    name: str
    run: Callable[[GitHubWorld], None]
    operations: frozenset[str]  # the REST operations it must exercise (GraphQL reads the rest)


RECORDS_BRANCH = frozenset(
    {"git/create-tree", "git/create-commit", "git/create-ref", "repos/create-or-update-file-contents"}
)
SESSIONS = [
    Session("branch-records", branch_records, RECORDS_BRANCH | {"git/update-ref", "issues/create-comment"}),
    Session(
        "over-rest",
        over_rest,
        RECORDS_BRANCH
        | {
            "git/update-ref",
            "issues/create-comment",
            "repos/get-branch",
            "repos/compare-commits-with-basehead",
            "repos/get-content",
        },
    ),
    Session(
        "deployment-records",
        deployment_records,
        frozenset(
            {
                "git/update-ref",
                "repos/list-deployments",
                "repos/create-deployment",
                "repos/create-deployment-status",
                "repos/list-deployment-statuses",
            }
        ),
    ),
    Session(
        "splits-and-reconcile",
        splits_and_reconcile,
        RECORDS_BRANCH | {"repos/get-branch", "git/delete-ref", "git/update-ref", "issues/create-comment"},
    ),
    Session(
        "external-gates",
        external_gates,
        RECORDS_BRANCH
        | {
            "git/update-ref",
            "repos/get-combined-status-for-ref",
            "checks/list-for-ref",
            "repos/list-commits",
        },
    ),
    Session("dispatch", dispatch, frozenset({"repos/create-dispatch-event"})),
]


@pytest.mark.parametrize("session", SESSIONS, ids=lambda s: s.name)
def test_lockstep_sends_what_github_describes_and_the_fake_answers_as_github_does(
    spec: Spec, session: Session, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for w in build_world(tmp_path):
        exchanges = capture(w.gh, monkeypatch)
        session.run(w)
    sent, answered, seen = _problems(spec, exchanges)
    assert not sent, "lockstep sent what GitHub's REST description does not allow:\n" + _listing(sent)
    assert not answered, "the fake answered what GitHub would not:\n" + _listing(answered)
    assert session.operations <= seen, f"not exercised: {sorted(session.operations - seen)}"


def _listing(problems: dict[str, int]) -> str:
    return "\n".join(f"  {text}" + (f" (x{count})" if count > 1 else "") for text, count in problems.items())


def _problems(spec: Spec, exchanges: list[Exchange]) -> tuple[dict[str, int], dict[str, int], set[str]]:
    """What the requests and the answers break, each problem counted once per kind; operations seen."""
    sent: dict[str, int] = {}
    answered: dict[str, int] = {}
    seen: set[str] = set()
    for exchange in exchanges:
        if exchange.request.path == "/graphql":
            continue
        op, problems = request_problems(spec, exchange.request)
        for problem in problems:
            sent[problem] = sent.get(problem, 0) + 1
        if op is not None:
            seen.add(op.operation_id)
            for problem in answer_problems(spec, op, exchange):
                answered[problem] = answered.get(problem, 0) + 1
    return sent, answered, seen


# ---- the fake's other answers ------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    """A direct request and the status the fake must answer (the shape is the contract's)."""

    method: str
    path: str
    status: int
    body: Any = None
    token: str = "tok-write"
    query: dict[str, str] = field(default_factory=dict)


APP_TOKEN = "ghs_APP" + "a" * 33  # a GitHub App installation: may create check runs


def _calls(w: ApiWorld, deployment: int, check_run: int) -> list[Call]:
    """Every route of the fake lockstep uses, each error case, and its other routes' successes."""
    c1, c3, side = w.c1, w.c3, w.side
    blob = blob_sha(RECORD)
    return [
        # branches, refs, compare
        Call("GET", f"{BASE}", 200),
        Call("GET", f"{BASE}/branches/main", 200),
        Call("GET", f"{BASE}/branches/nope", 404),
        Call("GET", f"{BASE}/branches/old", 301),
        Call("GET", f"{BASE}/git/ref/heads/main", 200),
        Call("GET", f"{BASE}/git/ref/heads/nope", 404),
        Call("GET", "/repos/o/empty/git/ref/heads/main", 409, token="tok-empty"),
        Call("GET", f"{BASE}/git/matching-refs/heads/", 200),
        Call("GET", f"{BASE}/compare/{c1}...{c3}", 200),
        Call("GET", f"{BASE}/compare/prod...main", 200, query={"per_page": "1"}),
        Call("GET", f"{BASE}/compare/nope...main", 404),
        Call("POST", f"{BASE}/git/refs", 201, {"ref": "refs/heads/lock", "sha": c1}),
        Call("POST", f"{BASE}/git/refs", 422, {"ref": "refs/heads/main", "sha": c1}),
        Call("POST", f"{BASE}/git/refs", 422, {"ref": "refs/heads/x", "sha": "0" * 40}),
        Call("POST", "/repos/o/empty/git/refs", 409, {"ref": "refs/heads/x", "sha": c1}, token="tok-empty"),
        Call("PATCH", f"{BASE}/git/refs/heads/prod", 200, {"sha": c3, "force": False}),
        Call("PATCH", f"{BASE}/git/refs/heads/main", 422, {"sha": side}),
        Call("PATCH", f"{BASE}/git/refs/heads/nope", 422, {"sha": c1}),
        Call("PATCH", f"{BASE}/git/refs/heads/guarded", 422, {"sha": c3}),
        Call("DELETE", f"{BASE}/git/refs/heads/lock", 204),
        Call("DELETE", f"{BASE}/git/refs/heads/nope", 422),
        # the audit comment, repository_dispatch
        Call("POST", "/repos/o/tracker/issues/42/comments", 201, {"body": "audit"}),
        Call("POST", "/repos/o/tracker/issues/42/comments", 422, {"body": " "}),
        Call("POST", "/repos/o/tracker/issues/999/comments", 404, {"body": "audit"}),
        Call("POST", "/repos/o/tracker/issues/43/comments", 403, {"body": "audit"}),
        Call("POST", "/repos/o/quiet/issues/1/comments", 410, {"body": "audit"}),
        Call("POST", f"{BASE}/dispatches", 204, {"event_type": "go", "client_payload": {"a": 1}}),
        Call("POST", f"{BASE}/dispatches", 422, {"event_type": ""}),
        # the records file on a branch
        Call("GET", f"{BASE}/contents/g.json", 200, query={"ref": "records"}),
        Call("GET", f"{BASE}/contents/", 200, query={"ref": "records"}),
        Call("GET", f"{BASE}/contents/nope.json", 404, query={"ref": "records"}),
        Call("GET", f"{BASE}/contents/g.json", 404, query={"ref": "nope"}),
        Call(
            "PUT",
            f"{BASE}/contents/g.json",
            200,
            {"message": "m", "content": "e30=", "sha": blob, "branch": "records"},
        ),
        Call("PUT", f"{BASE}/contents/h.json", 201, {"message": "m", "content": "e30=", "branch": "records"}),
        Call("PUT", f"{BASE}/contents/h.json", 422, {"message": "m", "content": "e30=", "branch": "records"}),
        Call(
            "PUT",
            f"{BASE}/contents/h.json",
            409,
            {"message": "m", "content": "e30=", "sha": blob, "branch": "records"},
        ),
        Call("PUT", f"{BASE}/contents/h.json", 404, {"message": "m", "content": "e30=", "branch": "nope"}),
        Call(
            "POST",
            f"{BASE}/git/trees",
            201,
            {"tree": [{"path": "g.json", "mode": "100644", "type": "blob", "content": "{}"}]},
        ),
        Call(
            "POST",
            f"{BASE}/git/trees",
            422,
            {"tree": [{"path": "d", "mode": "040000", "type": "tree", "sha": c1}]},
        ),
        Call("POST", f"{BASE}/git/commits", 422, {"message": "m", "tree": "0" * 40, "parents": []}),
        Call("GET", f"{BASE}/commits", 200, query={"sha": "records", "path": "g.json"}),
        Call("GET", f"{BASE}/commits", 404, query={"sha": "nope"}),
        Call("GET", "/repos/o/empty/commits", 409, token="tok-empty"),
        # deployments
        Call(
            "POST",
            f"{BASE}/deployments",
            201,
            {
                "ref": c3,
                "environment": "gate/prod",
                "auto_merge": False,
                "required_contexts": [],
                "payload": {"run": 1},
            },
        ),
        Call("POST", f"{BASE}/deployments", 422, {"ref": "nope"}),
        Call("POST", f"{BASE}/deployments", 409, {"ref": c3, "required_contexts": ["ci"]}),
        Call("GET", f"{BASE}/deployments", 200, query={"environment": "gate/prod", "per_page": "20"}),
        Call("GET", f"{BASE}/deployments/{deployment}", 200),
        Call("GET", f"{BASE}/deployments/999", 404),
        Call(
            "POST",
            f"{BASE}/deployments/{deployment}/statuses",
            201,
            {"state": "success", "description": "ok"},
        ),
        Call("POST", f"{BASE}/deployments/{deployment}/statuses", 422, {"state": "bogus"}),
        Call("POST", f"{BASE}/deployments/999/statuses", 404, {"state": "success"}),
        Call("GET", f"{BASE}/deployments/{deployment}/statuses", 200, query={"per_page": "1"}),
        Call("GET", f"{BASE}/deployments/999/statuses", 404),
        # commit statuses and check runs
        Call(
            "POST",
            f"{BASE}/statuses/{c3}",
            201,
            {"state": "success", "context": "ci", "target_url": "https://ci.example/1"},
        ),
        Call("POST", f"{BASE}/statuses/{c3}", 422, {"state": "bogus"}),
        Call("GET", f"{BASE}/commits/{c3}/statuses", 200),
        Call("GET", f"{BASE}/commits/{c3}/status", 200, query={"per_page": "100", "page": "1"}),
        Call("GET", f"{BASE}/commits/nope/status", 422),
        Call("POST", f"{BASE}/check-runs", 201, {"name": "canary", "head_sha": c3}, token=APP_TOKEN),
        Call("POST", f"{BASE}/check-runs", 403, {"name": "canary", "head_sha": c3}),
        Call(
            "PATCH",
            f"{BASE}/check-runs/{check_run}",
            200,
            {"status": "completed", "conclusion": "success"},
            token=APP_TOKEN,
        ),
        Call(
            "GET", f"{BASE}/commits/{c3}/check-runs", 200, query={"check_name": "canary", "per_page": "100"}
        ),
        Call("GET", f"{BASE}/commits/nope/check-runs", 422),
        # who may: a bad credential, a read token writing, a repository the token cannot see
        Call("GET", f"{BASE}/branches/main", 401, token="tok-bad"),
        Call("PATCH", f"{BASE}/git/refs/heads/prod", 403, {"sha": c3}, token="tok-read"),
        Call("GET", f"{BASE}/branches/main", 404, token="tok-other"),
        Call("GET", "/rate_limit", 200),
    ]


RECORD = b'{"run_id": "r1"}'
LEGACY = {
    ("GET", r"/repos/([^/]+)/([^/]+)/git/refs/(.+)"),
    ("GET", r"/repos/([^/]+)/([^/]+)/statuses/([^/]+)"),
}
LIMITED = [
    Call("GET", f"{BASE}/branches/main", 403),
    Call("PATCH", f"{BASE}/git/refs/heads/prod", 403, {"sha": "x"}),
]


def test_the_fakes_answers_to_direct_requests_are_githubs(
    spec: Spec, monkeypatch: pytest.MonkeyPatch
) -> None:
    with api_world(ApiWorld, tracker=True) as w:
        gh = w.gh
        gh.add_repo("o/empty")
        gh.add_token("tok-empty", write=["o/empty"])
        gh.add_token(APP_TOKEN, write=[REPO], login="fake-ci[bot]", kind="integration")
        gh.add_issue("o/tracker", 43, locked=True)
        gh.disable_issues("o/quiet")
        gh.add_token("tok-write", write=[REPO, "o/tracker", "o/quiet"], login="lockstep-bot")
        gh.set_branch(REPO, "records", w.c1)
        gh.put_file(REPO, "records", "g.json", RECORD)
        gh.set_branch(REPO, "old", w.c1)
        gh.rename_branch(REPO, "old", "new")
        gh.set_branch(REPO, "guarded", w.c1)
        gh.protect(REPO, "guarded")
        deployment = gh.add_deployment(
            REPO, w.c3, "gate/prod", {"run": 0}, states=["success"], login="lockstep-bot"
        )
        gh.set_status(REPO, w.c3, "e2e", "success", target_url="https://ci.example/e2e")
        check_run = gh.add_check_run(REPO, w.c3, "canary", "queued")
        exchanges = capture(gh, monkeypatch)
        wrong = []
        for call in _calls(w, deployment, check_run):
            with w.as_(call.token) as client:
                resp = client.request(
                    call.method,
                    call.path,
                    params=call.query,
                    json=call.body,
                    headers={"X-GitHub-Api-Version": "2022-11-28"},
                )
            if resp.status_code != call.status:
                wrong.append(
                    f"{call.method} {call.path}: {resp.status_code}, not {call.status}: {resp.text[:200]}"
                )
        gh.rate_limit_remaining = 0
        for call in LIMITED:
            with w.as_(call.token) as client:
                assert client.request(call.method, call.path, json=call.body).status_code == call.status
    assert not wrong, "\n".join(wrong)
    _, answered, _ = _problems(spec, exchanges)
    assert not answered, "the fake answered what GitHub would not:\n" + _listing(answered)
    untried = [
        f"{method} {pattern.pattern}"
        for methods, pattern, _, _ in _ROUTES
        for method in sorted(methods)
        if (method, pattern.pattern) not in LEGACY
        and not any(x.request.method == method and pattern.fullmatch(x.request.path) for x in exchanges)
    ]
    assert not untried, f"routes of the fake no direct request tries: {untried}"


def test_the_fakes_legacy_routes_are_not_in_githubs_description(spec: Spec) -> None:
    """Two routes the fake keeps for old clients; a request to either fails the session test above."""
    assert spec.find("GET", f"{BASE}/git/refs/heads/main") is None  # a prefix match: a trap for a head lookup
    assert spec.find("GET", f"{BASE}/statuses/{'a' * 40}") is None  # now GET commits/{ref}/statuses
    assert {(m, p.pattern) for methods, p, _, _ in _ROUTES for m in methods} >= LEGACY

"""The fake GitHub's ``POST /graphql``: GitHub's schema, GitHub's answers.

Two halves.  The contract: the fake's schema (``tests/support/fakegithub/graphql.py``) must be a
true subset of GitHub's published one (npm ``@octokit/graphql-schema``, installed on first use
by ``tests/support/npm.py``): every type, field, argument and default the fake defines is
GitHub's, any query valid on the fake is valid on GitHub, and the fake's answers are answers
GitHub's schema allows.  Otherwise forge code tested here would send queries GitHub refuses.

The behaviour, over real HTTP against a started fake: lockstep's one-query-per-phase shape
(aliases over several repositories), partial results with NOT_FOUND, null refs, every compare
status (and, for random commit graphs, the same counts as git), authentication, request errors,
the point budget and the timeout.
"""

from __future__ import annotations

import itertools
import json
import shutil
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from graphql import (
    GraphQLAbstractType,
    GraphQLArgument,
    GraphQLEnumType,
    GraphQLField,
    GraphQLInterfaceType,
    GraphQLNamedType,
    GraphQLObjectType,
    GraphQLResolveInfo,
    GraphQLSchema,
    build_ast_schema,
    build_schema,
    execute_sync,
    get_named_type,
    is_abstract_type,
    is_leaf_type,
    is_non_null_type,
    parse,
    print_ast,
    validate,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lockstep.demo import git
from tests.support import npm
from tests.support.apiworld import TLS
from tests.support.fakegithub import FakeGitHub, Fault
from tests.support.fakegithub.graphql import BLOB_TEXT_LIMIT, SCHEMA, SDL, TIMEOUT_MESSAGE
from tests.support.fakegithub.state import Repo

SCHEMA_PACKAGE = "@octokit/graphql-schema"
_BUILT_IN = frozenset({"String", "Boolean", "Int", "Float", "ID"})

# lockstep's read of one phase: every service in one query, owner and name as variables for
# some, as literals for others; the source and target heads and their comparison.
PHASE = """
query($o0: String!, $n0: String!) {
  rateLimit { cost remaining resetAt }
  s0: repository(owner: $o0, name: $n0) {
    source: ref(qualifiedName: "refs/heads/main") { target { oid } }
    target: ref(qualifiedName: "refs/heads/prod") {
      target { oid }
      compare(headRef: "refs/heads/main") { status aheadBy behindBy }
    }
  }
  s1: repository(owner: "acme", name: "api") {
    source: ref(qualifiedName: "refs/heads/main") { target { oid } }
    target: ref(qualifiedName: "refs/heads/prod") {
      target { oid }
      compare(headRef: "refs/heads/main") { status aheadBy behindBy }
    }
  }
}
"""
FRAGMENTS = """
query Heads {
  s0: repository(owner: "acme", name: "web") { ...Heads }
  s1: repository(owner: "acme", name: "db", followRenames: false) { ...Heads }
}
fragment Heads on Repository {
  __typename id databaseId nameWithOwner
  defaultBranchRef { name }
  target: ref(qualifiedName: "prod") {
    __typename id name prefix
    target { __typename ... on Commit { oid abbreviatedOid message committedDate } }
    compare(headRef: "main") {
      id status aheadBy behindBy
      baseTarget { oid } headTarget { ... on Commit { oid repository { nameWithOwner } } }
    }
  }
}
"""
BUDGET = "{ rateLimit { cost limit nodeCount remaining resetAt used } }"
# a file on a branch (lockstep's promotion records), and a commit by expression
FILES = """
query($e: String) {
  r: repository(owner: "acme", name: "web") {
    f: object(expression: $e) {
      __typename oid
      ... on Blob { abbreviatedOid byteSize commitResourcePath commitUrl id isBinary isTruncated text }
    }
    c: object(expression: "main") { __typename ... on Commit { oid } }
    none: object(expression: "main:nope.json") { oid }
  }
}
"""
EXAMPLES = {"phase": (PHASE, {"o0": "acme", "n0": "web"}), "fragments": (FRAGMENTS, {}), "budget": (BUDGET, {}),
            "files": (FILES, {"e": "records:g.json"})}


# ---- GitHub's schema -------------------------------------------------------------------


@pytest.fixture(scope="module")
def github() -> GraphQLSchema:
    """GitHub's public schema.  Built trusting the SDL: as published it defines two fields of
    EnterpriseOwnerInfo twice and deprecates some implementations of non-deprecated interface
    fields, which graphql-core would refuse; neither touches the types the fake uses."""
    path = npm.package_file(SCHEMA_PACKAGE, "schema.graphql", "check the fake GitHub's GraphQL against GitHub's schema")
    return build_ast_schema(parse(path.read_text(encoding="utf-8")), assume_valid_sdl=True, assume_valid=True)


def test_without_npm_the_schema_tests_skip_with_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(npm, "NODE_PREFIX", tmp_path / "node")
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(pytest.skip.Exception) as skipped:
        npm.package_file(SCHEMA_PACKAGE, "schema.graphql", "check the fake GitHub's GraphQL against GitHub's schema")
    reason = str(skipped.value)
    assert "\n" not in reason and reason.startswith("npm not found: install Node.js with npm to check")
    assert npm.spec(SCHEMA_PACKAGE) in reason


def _default(argument: GraphQLArgument) -> str | None:
    """An argument's default as written in the SDL (both schemas are built from SDL)."""
    node = argument.ast_node
    return None if node is None or node.default_value is None else print_ast(node.default_value)


def _field_differences(where: str, ours: GraphQLField, theirs: GraphQLField) -> Iterator[str]:
    if str(ours.type) != str(theirs.type):
        yield f"{where}: {ours.type} here, {theirs.type} on GitHub"
    for name, argument in ours.args.items():
        other = theirs.args.get(name)
        if other is None:
            yield f"{where}({name}:) is not GitHub's"
        elif (str(argument.type), _default(argument)) != (str(other.type), _default(other)):
            yield f"{where}({name}:) is {argument.type} = {_default(argument)}, on GitHub {other.type} = {_default(other)}"
    for name, other in theirs.args.items():
        if is_non_null_type(other.type) and _default(other) is None and name not in ours.args:
            yield f"{where}: GitHub requires ({name}:), which the fake lacks"


def _type_differences(ours: GraphQLNamedType, theirs: GraphQLNamedType | None) -> Iterator[str]:
    if theirs is None:
        yield f"{ours.name} is not a GitHub type"
        return
    if type(ours) is not type(theirs):
        yield f"{ours.name} is a {type(ours).__name__} here, a {type(theirs).__name__} on GitHub"
        return
    if isinstance(ours, GraphQLObjectType | GraphQLInterfaceType):
        assert isinstance(theirs, GraphQLObjectType | GraphQLInterfaceType)
        extra = {i.name for i in ours.interfaces} - {i.name for i in theirs.interfaces}
        if extra:
            yield f"{ours.name} implements {sorted(extra)}, not on GitHub"
        for name, field in ours.fields.items():
            other = theirs.fields.get(name)
            if other is None:
                yield f"{ours.name}.{name} is not GitHub's"
            else:
                yield from _field_differences(f"{ours.name}.{name}", field, other)
    elif isinstance(ours, GraphQLEnumType):
        assert isinstance(theirs, GraphQLEnumType)
        extra = set(ours.values) - set(theirs.values)
        if extra:
            yield f"{ours.name} has {sorted(extra)}, not on GitHub"


def subset_differences(ours: GraphQLSchema, theirs: GraphQLSchema) -> list[str]:
    """Every way ``ours`` is not a faithful subset of ``theirs`` (empty: it is one)."""
    found = [f"root {kind}: {a} here, {b} on GitHub" for kind, a, b in [
        ("query", ours.query_type and ours.query_type.name, theirs.query_type and theirs.query_type.name),
    ] if a != b]
    if ours.mutation_type is not None and theirs.mutation_type is not None:
        found.append("the fake defines mutations: check them here before relying on them")
    missing_directives = {d.name for d in ours.directives} - {d.name for d in theirs.directives}
    found += [f"directive @{name} is not GitHub's" for name in sorted(missing_directives)]
    for name, named in ours.type_map.items():
        if not name.startswith("__") and name not in _BUILT_IN:
            found += _type_differences(named, theirs.type_map.get(name))
    return found


def test_the_fakes_schema_is_a_subset_of_githubs(github: GraphQLSchema) -> None:
    assert subset_differences(SCHEMA, github) == []
    used = {"Query", "Repository", "Ref", "GitObject", "Commit", "Comparison", "ComparisonStatus", "RateLimit"}
    assert used <= set(SCHEMA.type_map)


def test_comparison_status_is_exactly_githubs(github: GraphQLSchema) -> None:
    """Each value may be answered, so none may be missing either (a new one on GitHub shows here)."""
    ours, theirs = SCHEMA.type_map["ComparisonStatus"], github.type_map["ComparisonStatus"]
    assert isinstance(ours, GraphQLEnumType) and isinstance(theirs, GraphQLEnumType)
    assert set(ours.values) == set(theirs.values) == {"AHEAD", "BEHIND", "DIVERGED", "IDENTICAL"}


@pytest.mark.parametrize(
    ("change", "finding"),
    [
        (("aheadBy: Int!", "aheadBy: Int"), "Comparison.aheadBy: Int here, Int! on GitHub"),
        (("followRenames: Boolean = true", "followRenames: Boolean = false"), "Query.repository(followRenames:)"),
        (("nameWithOwner: String!", "nameWithOwner: String!\n  fullName: String!"), "Repository.fullName"),
        (("qualifiedName: String!", "qualifiedName: String"), "Repository.ref(qualifiedName:)"),
        (('compare(\n    """The head ref to compare against."""\n    headRef: String!\n  ): Comparison', "compare: Comparison"),
         "GitHub requires (headRef:)"),
        (("  IDENTICAL\n", "  IDENTICAL\n  UNKNOWN\n"), "ComparisonStatus has ['UNKNOWN']"),
    ],
)
def test_the_subset_check_sees_a_drift(github: GraphQLSchema, change: tuple[str, str], finding: str) -> None:
    old, new = change
    assert old in SDL
    drifted = build_schema(SDL.replace(old, new, 1))
    assert any(finding in line for line in subset_differences(drifted, github))


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_the_example_queries_validate_against_githubs_schema(github: GraphQLSchema, name: str) -> None:
    document = parse(EXAMPLES[name][0])
    assert validate(github, document) == []
    assert validate(SCHEMA, document) == []


# Random operations over the fake's schema: every one the fake accepts, GitHub must accept too.


def _literal(name: str, argument: GraphQLArgument) -> str:
    """One value per argument: a field met twice under one response key (an interface's field and
    the same field in a fragment on its type) must not conflict, or no schema would accept it."""
    return "true" if get_named_type(argument.type).name == "Boolean" else json.dumps(f"{name}-value")


def _arguments(field: GraphQLField, draw: st.DrawFn) -> str:
    chosen = [(n, a) for n, a in field.args.items() if is_non_null_type(a.type) or draw(st.booleans())]
    return "(" + ", ".join(f"{n}: {_literal(n, a)}" for n, a in chosen) + ")" if chosen else ""


@st.composite
def selection(draw: st.DrawFn, owner: GraphQLObjectType | GraphQLInterfaceType, depth: int) -> str:
    """A selection set on ``owner``: some of its fields (aliased or not, arguments drawn), nested
    selections down to ``depth``, ``__typename`` and inline fragments on an interface's types."""
    fields = [(n, f) for n, f in owner.fields.items() if depth > 0 or is_leaf_type(get_named_type(f.type))]
    picked = draw(st.lists(st.sampled_from(fields), min_size=1, max_size=4, unique_by=lambda nf: nf[0]))
    parts = []
    for name, field in picked:
        alias = draw(st.sampled_from(["", f"{name}A: "]))
        named = get_named_type(field.type)
        inner = ""
        if isinstance(named, GraphQLObjectType | GraphQLInterfaceType):
            inner = draw(selection(named, depth - 1))
        parts.append(f"{alias}{name}{_arguments(field, draw)}{inner}")
    if draw(st.booleans()):
        parts.append("__typename")
    if isinstance(owner, GraphQLInterfaceType) and draw(st.booleans()):
        for possible in SCHEMA.get_possible_types(owner):
            parts.append(f"... on {possible.name} {draw(selection(possible, max(depth - 1, 0)))}")
    return "{ " + " ".join(parts) + " }"


QUERY = SCHEMA.query_type
assert QUERY is not None


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(query=selection(QUERY, 3))
def test_every_query_the_fake_accepts_github_accepts(github: GraphQLSchema, query: str) -> None:
    document = parse(query)
    assert validate(SCHEMA, document) == [], query  # the generator's own check
    assert validate(github, document) == [], query


# ---- behaviour over HTTP ---------------------------------------------------------------


@dataclass
class Services:
    """acme/web AHEAD (prod c1, main c2), acme/api IDENTICAL, acme/db BEHIND, acme/ops DIVERGED
    (aheadBy 2, behindBy 1); "tok" reads all four, "tok-web" only acme/web."""

    gh: FakeGitHub
    client: httpx.Client
    heads: dict[str, tuple[str, str]]  # repo -> (main, prod)

    def post(self, query: str, variables: dict[str, Any] | None = None, who: str | None = "tok",
             **extra: Any) -> httpx.Response:
        """One call as ``who`` (a token; None: no Authorization header)."""
        headers = {"Authorization": f"bearer {who}"} if who else {}
        body: dict[str, Any] = {"query": query, **extra}
        if variables is not None:
            body["variables"] = variables
        with httpx.Client(base_url=self.gh.url, headers=headers, timeout=10, verify=TLS) as client:
            return client.post("/graphql", json=body)

    def data(self, query: str, variables: dict[str, Any] | None = None, who: str = "tok") -> dict[str, Any]:
        """The ``data`` of an answer that must be HTTP 200 without errors."""
        resp = self.post(query, variables, who)
        assert resp.status_code == 200, resp.text
        body = resp.json()
        assert "errors" not in body, body
        return dict(body["data"])


def _build(gh: FakeGitHub, repo: str, shape: str) -> tuple[str, str]:
    gh.add_repo(repo)
    c1 = gh.commit(repo)
    c2 = gh.commit(repo, parents=(c1,))
    main, prod = {"ahead": (c2, c1), "identical": (c1, c1), "behind": (c1, c2)}.get(shape, (c1, c1))
    if shape == "diverged":
        prod = gh.commit(repo, parents=(c1,))
        main = gh.commit(repo, parents=(c2,))
    gh.set_branch(repo, "main", main)
    gh.set_branch(repo, "prod", prod)
    return main, prod


SHAPES = {"acme/web": "ahead", "acme/api": "identical", "acme/db": "behind", "acme/ops": "diverged"}


RECORD = b'{"gate": "g", "phase": "started"}\n'


@pytest.fixture
def svc() -> Iterator[Services]:
    with FakeGitHub() as gh:
        heads = {repo: _build(gh, repo, shape) for repo, shape in SHAPES.items()}
        records = gh.commit("acme/web", parents=(), message="records")
        gh.set_branch("acme/web", "records", records)
        gh.put_file("acme/web", "records", "g.json", RECORD)
        gh.add_token("tok", read=list(SHAPES))
        gh.add_token("tok-web", read=["acme/web"])
        with httpx.Client(base_url=gh.url, headers={"Authorization": "bearer tok"}, verify=TLS) as client:
            yield Services(gh, client, heads)


def phase_query(repos: Sequence[str]) -> tuple[str, dict[str, str]]:
    """lockstep's shape for ``repos``: one aliased repository field each, owner and name as variables."""
    declarations: list[str] = []
    fields: list[str] = []
    variables: dict[str, str] = {}
    for i, repo in enumerate(repos):
        owner, name = repo.split("/")
        declarations += [f"$o{i}: String!", f"$n{i}: String!"]
        variables |= {f"o{i}": owner, f"n{i}": name}
        fields.append(
            f"s{i}: repository(owner: $o{i}, name: $n{i}) {{"
            ' source: ref(qualifiedName: "refs/heads/main") { target { oid } }'
            ' target: ref(qualifiedName: "refs/heads/prod") { target { oid }'
            ' compare(headRef: "refs/heads/main") { status aheadBy behindBy } } }'
        )
    return f"query({', '.join(declarations)}) {{ rateLimit {{ cost }} {' '.join(fields)} }}", variables


EXPECTED = {"ahead": ("AHEAD", 1, 0), "identical": ("IDENTICAL", 0, 0), "behind": ("BEHIND", 0, 1),
            "diverged": ("DIVERGED", 2, 1)}


def test_one_query_reads_every_service(svc: Services) -> None:
    query, variables = phase_query(list(SHAPES))
    data = svc.data(query, variables)
    for i, (repo, shape) in enumerate(SHAPES.items()):
        main, prod = svc.heads[repo]
        got = data[f"s{i}"]
        assert (got["source"]["target"]["oid"], got["target"]["target"]["oid"]) == (main, prod)
        compare = got["target"]["compare"]
        assert (compare["status"], compare["aheadBy"], compare["behindBy"]) == EXPECTED[shape]
    assert data["rateLimit"] == {"cost": 1}
    (call,) = svc.gh.graphql.queries()
    assert call.repositories == list(SHAPES)
    assert call.root_fields == ["rateLimit", "s0", "s1", "s2", "s3"]
    assert (call.kind, call.variables, call.status) == ("query", variables, 200)
    (request,) = svc.gh.requests
    assert (request.method, request.path, request.status) == ("POST", "/graphql", 200)
    assert request.json == {"query": query, "variables": variables}


def test_literals_fragments_and_typename(svc: Services) -> None:
    data = svc.data(FRAGMENTS)
    web, db = data["s0"], data["s1"]
    main, prod = svc.heads["acme/web"]
    assert (web["__typename"], web["nameWithOwner"], web["defaultBranchRef"]) == ("Repository", "acme/web", {"name": "main"})
    target = web["target"]
    assert (target["__typename"], target["name"], target["prefix"]) == ("Ref", "prod", "refs/heads/")
    commit = target["target"]
    assert (commit["__typename"], commit["oid"], commit["abbreviatedOid"]) == ("Commit", prod, prod[:7])
    assert commit["message"] == "commit 0" and commit["committedDate"].endswith("Z")
    compare = target["compare"]
    assert (compare["status"], compare["baseTarget"]["oid"], compare["headTarget"]["oid"]) == ("AHEAD", prod, main)
    assert compare["headTarget"]["repository"] == {"nameWithOwner": "acme/web"}
    assert db["target"]["compare"]["status"] == "BEHIND"
    assert svc.gh.graphql.queries()[0].repositories == ["acme/web", "acme/db"]


def test_ids_are_the_rest_node_ids(svc: Services) -> None:
    query = ('{ repository(owner: "acme", name: "web") { id databaseId'
             ' ref(qualifiedName: "refs/heads/prod") { id target { id } } } }')
    repo = svc.data(query)["repository"]
    rest = svc.client.get("/repos/acme/web").json()
    assert (repo["id"], repo["databaseId"]) == (rest["node_id"], rest["id"])
    assert repo["ref"]["id"] == svc.client.get("/repos/acme/web/git/ref/heads/prod").json()["node_id"]
    assert repo["ref"]["target"]["id"] == svc.client.get("/repos/acme/web/branches/prod").json()["commit"]["node_id"]


def test_a_missing_repository_is_null_with_not_found_and_the_others_keep_their_data(svc: Services) -> None:
    query, variables = phase_query(["acme/web", "acme/gone", "acme/db"])
    resp = svc.post(query, variables)
    assert resp.status_code == 200
    body = resp.json()
    assert body["data"]["s1"] is None
    assert body["data"]["s0"]["target"]["compare"]["status"] == "AHEAD"
    assert body["data"]["s2"]["target"]["compare"]["status"] == "BEHIND"
    (error,) = body["errors"]
    assert list(error) == ["type", "path", "locations", "message"]
    assert (error["type"], error["path"]) == ("NOT_FOUND", ["s1"])
    assert error["message"] == "Could not resolve to a Repository with the name 'acme/gone'."
    (location,) = error["locations"]
    assert query.splitlines()[location["line"] - 1][location["column"] - 1:].startswith("s1: repository(")


def test_a_repository_the_token_cannot_read_looks_missing(svc: Services) -> None:
    resp = svc.post('{ a: repository(owner: "acme", name: "web") { name } b: repository(owner: "ACME", name: "API") { name } }',
                    who="tok-web")
    body = resp.json()
    assert body["data"] == {"a": {"name": "web"}, "b": None}
    assert [(e["type"], e["path"], e["message"]) for e in body["errors"]] == [
        ("NOT_FOUND", ["b"], "Could not resolve to a Repository with the name 'ACME/API'.")]
    svc.gh.add_token("tok-write", write=["acme/api"])  # write implies read
    assert svc.data('{ repository(owner: "acme", name: "api") { name } }', who="tok-write") == {"repository": {"name": "api"}}


def test_a_missing_ref_is_null_without_an_error(svc: Services) -> None:
    svc.gh.add_repo("acme/empty")
    svc.gh.add_token("tok-empty", read=["acme/empty", "acme/web"])
    query = ('{ web: repository(owner: "acme", name: "web") { ref(qualifiedName: "refs/heads/nope") { name } }'
             ' empty: repository(owner: "acme", name: "empty") { defaultBranchRef { name } ref(qualifiedName: "main") { name } } }')
    assert svc.data(query, who="tok-empty") == {"web": {"ref": None}, "empty": {"defaultBranchRef": None, "ref": None}}


def test_ref_names_short_names_and_tags(svc: Services) -> None:
    main, prod = svc.heads["acme/web"]
    svc.gh.set_ref("acme/web", "refs/tags/v1", prod)
    svc.gh.set_ref("acme/web", "refs/lockstep/runs/7", main)
    svc.gh.set_branch("acme/web", "feature/x", main)
    query = """{ repository(owner: "acme", name: "web") {
      short: ref(qualifiedName: "main") { name prefix target { oid } }
      tag: ref(qualifiedName: "v1") { name prefix target { oid } }
      custom: ref(qualifiedName: "refs/lockstep/runs/7") { name prefix }
      nested: ref(qualifiedName: "refs/heads/feature/x") { name prefix }
      sha: ref(qualifiedName: "MAIN") { name }
    } }""".replace("MAIN", main)
    repo = svc.data(query)["repository"]
    assert repo["short"] == {"name": "main", "prefix": "refs/heads/", "target": {"oid": main}}
    assert repo["tag"] == {"name": "v1", "prefix": "refs/tags/", "target": {"oid": prod}}
    assert repo["custom"] == {"name": "runs/7", "prefix": "refs/lockstep/"}
    assert repo["nested"] == {"name": "feature/x", "prefix": "refs/heads/"}
    assert repo["sha"] is None  # a Ref is a ref, never a commit


@pytest.mark.parametrize("repo", sorted(SHAPES))
def test_compare_statuses(svc: Services, repo: str) -> None:
    _, prod = svc.heads[repo]
    counts = "{ status aheadBy behindBy }"
    query = (f'{{ repository(owner: "acme", name: "{repo.split("/")[1]}") {{'
             f' ref(qualifiedName: "refs/heads/prod") {{ compare(headRef: "main") {counts} }}'
             f' back: ref(qualifiedName: "refs/heads/main") {{ compare(headRef: "{prod}") {counts} }} }} }}')
    data = svc.data(query)["repository"]
    status, ahead, behind = EXPECTED[SHAPES[repo]]
    assert data["ref"]["compare"] == {"status": status, "aheadBy": ahead, "behindBy": behind}
    flipped = {"AHEAD": "BEHIND", "BEHIND": "AHEAD"}.get(status, status)
    assert data["back"]["compare"] == {"status": flipped, "aheadBy": behind, "behindBy": ahead}


def test_compare_with_an_unknown_head_or_an_unrelated_history_is_null_with_an_error(svc: Services) -> None:
    svc.gh.set_branch("acme/web", "orphan", svc.gh.commit("acme/web"))
    query = ('{ repository(owner: "acme", name: "web") { ref(qualifiedName: "refs/heads/prod") {'
             ' name unknown: compare(headRef: "refs/heads/nope") { status }'
             ' unrelated: compare(headRef: "orphan") { status } } } }')
    body = svc.post(query).json()
    assert body["data"] == {"repository": {"ref": {"name": "prod", "unknown": None, "unrelated": None}}}
    assert [(e["type"], e["path"]) for e in body["errors"]] == [
        ("NOT_FOUND", ["repository", "ref", "unknown"]), ("NOT_FOUND", ["repository", "ref", "unrelated"])]
    assert "refs/heads/nope" in body["errors"][0]["message"]


def test_authentication(svc: Services) -> None:
    anonymous = svc.post(BUDGET, who=None)
    assert anonymous.status_code == 401
    assert anonymous.json()["message"] == "This endpoint requires you to be authenticated."
    bad = svc.post(BUDGET, who="wrong")
    assert (bad.status_code, bad.json()["message"]) == (401, "Bad credentials")
    with httpx.Client(base_url=svc.gh.url, headers={"Authorization": "token tok"}, verify=TLS) as legacy:
        assert legacy.post("/graphql", json={"query": BUDGET}).status_code == 200
    assert svc.gh.graphql.remaining == 4999  # refused calls cost nothing
    assert svc.client.get("/graphql").status_code == 404  # POST only


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"query": "{ repository(owner: "}, "Syntax Error"),
        ({"query": '{ repository(owner: "acme", name: "web") { nope } }'}, "Cannot query field 'nope' on type 'Repository'."),
        ({"query": '{ repository(owner: "acme") { name } }'}, "'Query.repository(name:)' of type 'String!' is required"),
        ({"query": 'mutation { updateRefs(input: {}) { clientMutationId } }'}, "The mutation operation is not supported"),
        ({"query": "query($o: String!) { repository(owner: $o, name: $o) { name } }"}, "Variable '$o'"),
        ({"query": "query($o: String!) { repository(owner: $o, name: $o) { name } }", "variables": {"o": 7}}, "Variable '$o'"),
        ({"query": BUDGET, "variables": "{}"}, "Variables are invalid JSON."),
        ({"query": "query A { rateLimit { cost } } query B { rateLimit { used } }"}, "Must provide operation name"),
        ({"query": "query A { rateLimit { cost } }", "operationName": "B"}, "Unknown operation named 'B'."),
        ({"variables": {}}, "A query attribute must be specified and must be a string."),
        ({"query": 7}, "A query attribute must be specified and must be a string."),
    ],
)
def test_request_errors_are_200_with_errors_and_no_data(svc: Services, body: dict[str, Any], message: str) -> None:
    resp = svc.client.post("/graphql", json=body)
    assert resp.status_code == 200
    answer = resp.json()
    assert "data" not in answer, answer
    assert any(message in e["message"] for e in answer["errors"]), answer


def test_operation_name_and_a_body_that_is_not_json(svc: Services) -> None:
    two = "query A { rateLimit { cost } } query B { rateLimit { used } }"
    assert svc.post(two, operationName="B").json() == {"data": {"rateLimit": {"used": 1}}}
    assert svc.gh.graphql.queries()[0].root_fields == ["rateLimit"]
    broken = svc.client.post("/graphql", content=b"query=nope")
    assert (broken.status_code, broken.json()["message"]) == (400, "Problems parsing JSON")


def test_cost_budget_and_headers(svc: Services) -> None:
    first = svc.post(BUDGET)
    budget = first.json()["data"]["rateLimit"]
    assert {k: budget[k] for k in ("cost", "limit", "nodeCount", "remaining", "used")} == {
        "cost": 1, "limit": 5000, "nodeCount": 0, "remaining": 4999, "used": 1}
    assert budget["resetAt"].endswith("Z")
    assert first.headers["x-ratelimit-resource"] == "graphql"
    assert (first.headers["x-ratelimit-remaining"], first.headers["x-ratelimit-used"]) == ("4999", "1")
    assert int(first.headers["x-ratelimit-reset"]) > time.time()
    invalid = svc.post("{ nope }")
    assert invalid.headers["x-ratelimit-remaining"] == "4998"  # every call costs at least one point
    rest = svc.client.get("/repos/acme/web/branches/main")
    assert (rest.headers["x-ratelimit-resource"], rest.headers["x-ratelimit-remaining"]) == ("core", "4999")
    limits = svc.client.get("/rate_limit").json()["resources"]
    assert (limits["graphql"]["remaining"], limits["graphql"]["used"], limits["core"]["remaining"]) == (4998, 2, 4999)


def test_an_exhausted_budget_is_200_with_a_rate_limit_error(svc: Services) -> None:
    svc.gh.graphql.remaining = 1
    assert svc.post(BUDGET).json()["data"]["rateLimit"]["remaining"] == 0
    limited = svc.post(BUDGET)
    assert limited.status_code == 200
    (error,) = limited.json()["errors"]
    assert (error["type"], error["code"]) == ("RATE_LIMIT", "graphql_rate_limit")
    assert error["message"].startswith("API rate limit already exceeded for user ID ")
    assert "data" not in limited.json() and limited.headers["x-ratelimit-remaining"] == "0"
    assert svc.client.get("/repos/acme/web/branches/main").status_code == 200  # REST has its own budget
    svc.gh.graphql.reset = time.time() - 1
    assert svc.post(BUDGET).json()["data"]["rateLimit"]["remaining"] == 4999


def test_a_call_over_the_timeout_is_504_and_costs_its_point(svc: Services) -> None:
    svc.gh.graphql.timeout = 0.2
    injection = svc.gh.inject(Fault.delay(0.3), path=r"/graphql")
    slow = svc.post(BUDGET)
    assert (slow.status_code, slow.json()) == (504, {"message": TIMEOUT_MESSAGE})
    assert slow.headers["x-ratelimit-remaining"] == "4999"
    assert injection.fired == 1 and svc.gh.requests[-1].fault == "delay"
    assert svc.post(BUDGET).json()["data"]["rateLimit"]["remaining"] == 4998
    svc.gh.latency = 0.25
    assert svc.post(BUDGET).status_code == 504


def test_other_faults_apply_to_graphql_like_any_path(svc: Services) -> None:
    svc.gh.inject(Fault.drop_before(), path=r"/graphql")
    with pytest.raises(httpx.RemoteProtocolError):
        svc.post(BUDGET)
    svc.gh.inject(Fault.status(502, "Server Error"), method="POST", path=r"/graphql")
    assert svc.post(BUDGET).status_code == 502
    assert [(c.status, c.root_fields) for c in svc.gh.graphql.queries()] == [(None, ["rateLimit"]), (502, ["rateLimit"])]
    assert svc.gh.graphql.remaining == 5000  # neither reached the endpoint


def test_a_bug_in_the_fake_is_a_500_not_a_plausible_graphql_error(svc: Services, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(self: Repo, base: str, head: str) -> None:
        raise RuntimeError("compare is broken")

    monkeypatch.setattr(Repo, "compare", broken)
    resp = svc.post(*EXAMPLES["phase"])
    assert resp.status_code == 500 and "compare is broken" in resp.json()["message"]


# ---- random commit graphs: compare agrees with git ---------------------------------------

Dag = list[tuple[int, ...]]


@st.composite
def dags(draw: st.DrawFn) -> Dag:
    """Commit i's parents are earlier commits: up to two (a merge), sometimes none (a new root)."""
    size = draw(st.integers(1, 8))
    return [() if i == 0 else tuple(draw(st.lists(st.integers(0, i - 1), max_size=2, unique=True)))
            for i in range(size)]


def _git_repo(root: Path, dag: Dag) -> Path:
    """The same graph as a real git repository (commit i on branch ci), by one fast-import."""
    lines = []
    for i, parents in enumerate(dag):
        lines += [f"commit refs/heads/c{i}", f"mark :{i + 1}", "committer T <t@example.com> 0 +0000",
                  f"data {len(f'c{i}')}", f"c{i}"]
        lines += [f"{'from' if k == 0 else 'merge'} :{p + 1}" for k, p in enumerate(parents)]
    repo = root / "dag.git"
    git("init", "--quiet", "--bare", str(repo))
    git("fast-import", "--quiet", cwd=repo, input="\n".join(lines) + "\n")
    return repo


def _git_compare(repo: Path, base: int, head: int) -> tuple[str, int, int] | None:
    """git's answer for base...head; None when the two share no commit."""
    behind, ahead = map(int, git("rev-list", "--left-right", "--count", f"c{base}...c{head}", cwd=repo).split())
    if behind == int(git("rev-list", "--count", f"c{base}", cwd=repo)):
        return None  # nothing of base's history is on head's side: no common ancestor
    status = "IDENTICAL" if base == head else "DIVERGED" if ahead and behind else "AHEAD" if ahead else "BEHIND"
    return status, ahead, behind


_dag_repos = itertools.count()


@pytest.fixture(scope="module")
def shared() -> Iterator[FakeGitHub]:
    with FakeGitHub() as gh:
        yield gh


@settings(max_examples=40, deadline=None)
@given(dag=dags(), data=st.data())
def test_compare_agrees_with_git_on_random_graphs(shared: FakeGitHub, dag: Dag, data: st.DataObject) -> None:
    name = f"r{next(_dag_repos)}"
    repo = f"dag/{name}"
    shared.add_repo(repo)
    shas: list[str] = []
    for i, parents in enumerate(dag):
        shas.append(shared.commit(repo, parents=[shas[p] for p in parents]))
        shared.set_branch(repo, f"c{i}", shas[-1])
    shared.add_token(f"tok-{name}", read=[repo])
    nodes = st.integers(0, len(dag) - 1)
    pairs = data.draw(st.lists(st.tuples(nodes, nodes), min_size=1, max_size=6))
    spelled = [data.draw(st.sampled_from([f"refs/heads/c{h}", f"c{h}", shas[h], shas[h][:10]])) for _, h in pairs]
    fields = " ".join(f'p{k}: ref(qualifiedName: "refs/heads/c{b}") {{ compare(headRef: "{head}") {{ status aheadBy behindBy }} }}'
                      for k, ((b, _), head) in enumerate(zip(pairs, spelled, strict=True)))
    headers = {"Authorization": f"bearer tok-{name}"}
    answer = httpx.post(f"{shared.url}/graphql", headers=headers, verify=TLS, timeout=10,
                        json={"query": f'{{ repository(owner: "dag", name: "{name}") {{ {fields} }} }}'}).json()
    with tempfile.TemporaryDirectory() as tmp:
        real = _git_repo(Path(tmp), dag)
        expected = [_git_compare(real, b, h) for b, h in pairs]
    got = answer["data"]["repository"]
    for k, want in enumerate(expected):
        compare = got[f"p{k}"]["compare"]
        assert (None if compare is None else (compare["status"], compare["aheadBy"], compare["behindBy"])) == want
    unrelated = [["repository", f"p{k}", "compare"] for k, want in enumerate(expected) if want is None]
    assert [e["path"] for e in answer.get("errors", [])] == unrelated


# ---- the fake's answers are answers GitHub's schema allows ---------------------------------


def _by_response_key(source: Any, info: GraphQLResolveInfo[Any], **args: Any) -> Any:
    """Read a field back out of an answer, by its response key (alias or name)."""
    return source.get(info.path.key) if isinstance(source, dict) else None


def _the_fakes_only_type(value: Any, info: GraphQLResolveInfo[Any], abstract_type: GraphQLAbstractType) -> str:
    """The object type of the fake's answer for an interface: its ``__typename`` when asked, else
    the fake's type whose fields hold every key of the answer (a Commit first: only the fields a
    Blob has and a Commit has not tell a Blob)."""
    if isinstance(value, dict) and isinstance(value.get("__typename"), str):
        return str(value["__typename"])
    abstract = SCHEMA.get_type(abstract_type.name)
    assert abstract is not None and is_abstract_type(abstract)
    keys = set(value) if isinstance(value, dict) else set()
    types = sorted(SCHEMA.get_possible_types(abstract), key=lambda t: t.name != "Commit")
    return next(t.name for t in types if keys <= set(t.fields))


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_the_answers_fit_githubs_schema(svc: Services, github: GraphQLSchema, name: str) -> None:
    """Executing the query on GitHub's schema over the fake's answer gives the answer back with
    no error: every non-null field has a value, every enum value is GitHub's, every scalar fits."""
    query, variables = EXAMPLES[name]
    data = svc.data(query, variables)
    result = execute_sync(github, parse(query), root_value=data, variable_values=variables,
                          field_resolver=_by_response_key, type_resolver=_the_fakes_only_type)
    assert result.errors is None
    assert result.data == data


def test_object_reads_a_file_on_a_branch_as_its_blob(svc: Services) -> None:
    data = svc.data(FILES, {"e": "records:g.json"})["r"]
    rest = svc.client.get("/repos/acme/web/contents/g.json", params={"ref": "records"}).json()
    assert data["f"]["__typename"] == "Blob" and data["f"]["oid"] == rest["sha"]  # the Contents API's sha
    assert (data["f"]["text"], data["f"]["byteSize"], data["f"]["isTruncated"]) == (RECORD.decode(), len(RECORD),
                                                                                      False)
    assert data["c"] == {"__typename": "Commit", "oid": svc.heads["acme/web"][0]}
    assert data["none"] is None  # a missing file (or branch) is null without an error
    assert svc.data(FILES, {"e": "gone:g.json"})["r"]["f"] is None


def test_a_binary_blob_has_no_text_and_a_large_one_is_truncated(svc: Services) -> None:
    svc.gh.put_file("acme/web", "records", "bin", b"\x00\x01")
    svc.gh.put_file("acme/web", "records", "big.json", b"x" * (BLOB_TEXT_LIMIT + 10))
    query = ('query($a: String, $b: String) { r: repository(owner: "acme", name: "web") {'
             " a: object(expression: $a) { ... on Blob { isBinary text } }"
             " b: object(expression: $b) { ... on Blob { isTruncated byteSize text } } } }")
    data = svc.data(query, {"a": "records:bin", "b": "records:big.json"})["r"]
    assert data["a"] == {"isBinary": True, "text": None}
    assert data["b"]["isTruncated"] and data["b"]["byteSize"] == BLOB_TEXT_LIMIT + 10
    assert len(data["b"]["text"]) == BLOB_TEXT_LIMIT

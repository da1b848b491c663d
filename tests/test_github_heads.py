"""The GitHub forge's batched heads reads (``HeadsBatch``) against the fake GitHub over real HTTP.

Every service's reads asked in one turn of the event loop (the gate's ``asyncio.gather``) must be
one ``POST /graphql`` per 100 services, with names as variables and the read token, and must give
what REST would: the fake's true branch heads and ancestry.  Where GraphQL cannot answer (a ref it
does not find, a repository it cannot see, a failed or rate-limited query) exactly the REST reads
that settle it go out, and a connection that never answers is an error, not a REST retry.  Nothing
of our code is mocked; the fake executes the query with graphql-core.
"""

from __future__ import annotations

import asyncio
import gc
import io
import math
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import Any, Literal, TypeVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lockstep.config import Config, ServiceConfig
from lockstep.errors import ForgeError
from lockstep.forges.github.forge import GitHubForge, RetryPolicy
from lockstep.forges.github.heads import MAX_ALIASES, FileRead, FileSeen
from lockstep.model import Heads, Sha, TargetCheck
from tests.support.fakegithub import FakeGitHub, Fault, GraphQLCall, RecordedRequest

T = TypeVar("T")

READ = "ghp_HEADSread" + "r" * 27
PUSH = "github_pat_HEADSpush" + "p" * 30
OWNER = "acme-heads"
FAST = RetryPolicy(tries=3, budget=5.0, max_wait=2.0, base_delay=0.01, jitter=0.5, secondary_wait=0.05)

# How one service's repository is shaped (source ``main``, target ``prod``):
#   ahead: prod=root, main=root→c2 (fast-forward)   diverged: prod=side, main=c2 (both from root)
#   identical: prod=main=c2                          behind: prod=c2, main=root
#   seed: no prod                                    unrelated: prod has no history in common with main
#   no_source: no main                               hidden: the read token cannot see the repository
Kind = Literal["ahead", "diverged", "identical", "behind", "seed", "unrelated", "no_source", "hidden"]
KINDS: tuple[Kind, ...] = ("ahead", "diverged", "identical", "behind", "seed", "unrelated", "no_source", "hidden")


def repo_name(i: int) -> str:
    return f"{OWNER}/repo-{i}"


class Sleeps:
    """Backoff waits recorded, not slept."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        await asyncio.sleep(0)


class Fleet:
    """One repository per service in the fake, shaped by ``kinds``, and the config naming them."""

    def __init__(self, gh: FakeGitHub, kinds: Sequence[Kind], *, repos: Sequence[str] | None = None) -> None:
        self.gh = gh
        self.kinds = list(kinds)
        self.repos = list(repos) if repos is not None else [repo_name(i) for i in range(len(kinds))]
        for repo, kind in zip(self.repos, self.kinds, strict=True):
            self.shape(repo, kind)
        visible = [r for r, k in zip(self.repos, self.kinds, strict=True) if k != "hidden"]
        gh.add_token(READ, read=visible, write=[])
        gh.add_token(PUSH, read=visible, write=visible)
        self.config = make_config(self.repos)
        self.services: tuple[ServiceConfig, ...] = self.config.services
        self.sleeps = Sleeps()

    def shape(self, repo: str, kind: Kind) -> None:
        gh = self.gh
        gh.add_repo(repo)
        root = gh.commit(repo, parents=())
        c2 = gh.commit(repo, parents=(root,))
        main, prod = {
            "ahead": (c2, root),
            "diverged": (c2, gh.commit(repo, parents=(root,))),
            "identical": (c2, c2),
            "behind": (root, c2),
            "seed": (c2, None),
            "unrelated": (c2, gh.commit(repo, parents=())),
            "no_source": (None, root),
            "hidden": (c2, root),
        }[kind]
        if main is not None:
            gh.set_branch(repo, "main", main)
        if prod is not None:
            gh.set_branch(repo, "prod", prod)

    # ---- the truth, read from the fake's state ---------------------------------------

    def heads(self, i: int) -> Heads:
        repo = self.repos[i]
        source, target = self.gh.branch(repo, "main"), self.gh.branch(repo, "prod")
        assert source is not None
        return Heads(source=Sha(source), target=None if target is None else Sha(target))

    def check(self, i: int, new: Sha) -> TargetCheck:
        target = self.gh.branch(self.repos[i], "prod")
        if target is None:
            return TargetCheck(None, True)
        return TargetCheck(Sha(target), self.gh.is_ancestor(self.repos[i], target, str(new)))

    # ---- running the forge ------------------------------------------------------------

    def env(self) -> dict[str, str]:
        return {"GITHUB_TOKEN": READ, "PUSH_TOKEN": PUSH, "GITHUB_API_URL": self.gh.url}

    def run(self, fn: Callable[[GitHubForge], Awaitable[T]], *, retry: RetryPolicy = FAST) -> T:
        """``fn`` against a fresh forge; afterwards no task of ours may be left and the loop must not
        have reported anything (a future's exception never retrieved, a task destroyed pending)."""
        reported: list[dict[str, Any]] = []

        async def main() -> T:
            loop = asyncio.get_running_loop()
            loop.set_exception_handler(lambda _loop, context: reported.append(context))
            forge = GitHubForge.from_env(self.config, self.env(), retry=retry, sleep=self.sleeps)
            try:
                return await fn(forge)
            finally:
                await forge.aclose()
                for _ in range(3):
                    await asyncio.sleep(0)
                gc.collect()
                left = asyncio.all_tasks() - {asyncio.current_task()}
                assert not left, f"tasks left pending after aclose: {left}"

        result = asyncio.run(main())
        gc.collect()
        assert not reported, f"the event loop reported: {reported}"
        return result

    # ---- the request log ----------------------------------------------------------------

    def queries(self) -> list[GraphQLCall]:
        return self.gh.graphql.queries()

    def rest(self) -> list[RecordedRequest]:
        return [r for r in self.gh.requests if r.path != "/graphql"]

    def rest_paths(self) -> list[str]:
        return sorted(f"{r.method} {r.path}" for r in self.rest())


def make_config(repos: Sequence[str]) -> Config:
    return Config.model_validate(
        {
            "gate": {"name": "g1", "forge": "github", "request_timeout": 2},
            "bypass": {"tracker": f"{OWNER}/ops#1"},
            "services": [
                {
                    "name": f"svc{i}",
                    "repo": repo,
                    "target": "prod",
                    "token_env": "PUSH_TOKEN",
                    "health_url": "http://127.0.0.1/h",
                    "version_url": "http://127.0.0.1/v",
                }
                for i, repo in enumerate(repos)
            ],
        }
    )


def branch_get(repo: str, branch: str) -> str:
    return f"GET /repos/{repo}/branches/{branch}"


async def all_heads(forge: GitHubForge, services: Sequence[ServiceConfig]) -> list[Heads | BaseException]:
    return await asyncio.gather(*(forge.read_heads(s) for s in services), return_exceptions=True)


@pytest.fixture
def gh() -> Iterator[FakeGitHub]:
    with FakeGitHub() as fake:
        yield fake


# ---- 1. one request for the whole phase ---------------------------------------------------------


def test_n_services_read_together_are_one_graphql_request_with_variables_and_the_read_token(
    gh: FakeGitHub,
) -> None:
    kinds: list[Kind] = ["ahead", "diverged", "identical", "behind", "ahead", "diverged", "ahead"]
    fleet = Fleet(gh, kinds)
    got = fleet.run(lambda f: all_heads(f, fleet.services))
    assert got == [fleet.heads(i) for i in range(len(kinds))]

    (request,) = gh.requests
    assert (request.method, request.path, request.status) == ("POST", "/graphql", 200)
    assert request.headers["authorization"] == f"Bearer {READ}"
    (call,) = fleet.queries()
    assert call.kind == "query"
    assert call.root_fields == [f"s{i}" for i in range(len(kinds))]
    assert call.repositories == fleet.repos  # variables filled in, in the services' order
    expected_variables: dict[str, str] = {}
    for i, repo in enumerate(fleet.repos):
        owner, name = repo.split("/")
        expected_variables |= {f"o{i}": owner, f"n{i}": name, f"s{i}": "refs/heads/main",
                               f"t{i}": "refs/heads/prod"}
    assert call.variables == expected_variables
    for value in (OWNER, *(r.split("/")[1] for r in fleet.repos), "refs/heads", "main", "prod"):
        assert value not in call.query  # names travel as variables only
    assert call.operation is not None
    assert len(call.operation.variable_definitions or ()) == 4 * len(kinds)


def test_the_same_service_asked_twice_in_one_turn_is_one_alias(gh: FakeGitHub) -> None:
    fleet = Fleet(gh, ["ahead", "diverged"])
    s0, s1 = fleet.services

    async def mixed(f: GitHubForge) -> list[Heads | Sha | None]:
        return list(await asyncio.gather(f.read_heads(s0), f.read_target(s0), f.read_heads(s1)))

    assert fleet.run(mixed) == [fleet.heads(0), fleet.heads(0).target, fleet.heads(1)]
    (call,) = fleet.queries()
    assert call.repositories == fleet.repos
    assert fleet.rest() == []


def test_each_phase_is_its_own_query_and_sees_what_moved_in_between(gh: FakeGitHub) -> None:
    fleet = Fleet(gh, ["ahead", "ahead"])
    repo = fleet.repos[1]

    async def two_phases(f: GitHubForge) -> tuple[list[Heads | BaseException], list[Heads | BaseException]]:
        first = await all_heads(f, fleet.services)
        gh.set_branch(repo, "prod", gh.branch(repo, "main") or "")  # another writer promotes repo-1
        return first, await all_heads(f, fleet.services)

    before = [fleet.heads(0), fleet.heads(1)]
    first, second = fleet.run(two_phases)
    assert first == before
    assert second == [fleet.heads(0), fleet.heads(1)] != before  # nothing stale from the first query
    assert [c.repositories for c in fleet.queries()] == [fleet.repos, fleet.repos]
    assert fleet.rest() == []


# ---- 2. read_target and check_target ------------------------------------------------------------


def test_read_target_then_check_target_are_one_request_per_phase_and_the_compare_answers_fast_forward(
    gh: FakeGitHub,
) -> None:
    kinds: list[Kind] = ["ahead", "diverged", "identical", "behind", "ahead"]
    fleet = Fleet(gh, kinds)
    sources = [fleet.heads(i).source for i in range(len(kinds))]

    async def phases(f: GitHubForge) -> tuple[list[Sha | None], list[TargetCheck]]:
        targets = await asyncio.gather(*(f.read_target(s) for s in fleet.services))
        after_first = len(gh.requests)
        checks = await asyncio.gather(*(f.check_target(s, new) for s, new in zip(fleet.services, sources,
                                                                                 strict=True)))
        assert after_first == 1
        return list(targets), list(checks)

    targets, checks = fleet.run(phases)
    assert targets == [fleet.heads(i).target for i in range(len(kinds))]
    assert checks == [fleet.check(i, sources[i]) for i in range(len(kinds))]
    assert [c.fast_forward for c in checks] == [True, False, True, False, True]  # the fake agrees
    assert [(r.method, r.path, r.status) for r in gh.requests] == [("POST", "/graphql", 200)] * 2
    assert fleet.rest() == []  # no REST compare: the query's compare said it


def test_check_target_of_a_sha_the_query_did_not_compare_asks_one_rest_compare(gh: FakeGitHub) -> None:
    fleet = Fleet(gh, ["ahead", "diverged"])
    repo = fleet.repos[0]
    prod = gh.branch(repo, "prod")
    assert prod is not None
    newer = Sha(gh.commit(repo, parents=(fleet.heads(0).source,)))  # not any branch's head
    other = Sha(gh.commit(fleet.repos[1], parents=()))  # unrelated to repo-1's prod

    async def checks(f: GitHubForge) -> list[TargetCheck | BaseException]:
        return list(await asyncio.gather(f.check_target(fleet.services[0], newer),
                                         f.check_target(fleet.services[1], other), return_exceptions=True))

    first, second = fleet.run(checks)
    assert first == TargetCheck(Sha(prod), True)
    assert isinstance(second, ForgeError) and fleet.repos[1] in str(second)
    assert fleet.rest_paths() == sorted([
        f"GET /repos/{repo}/compare/{prod}...{newer}",
        f"GET /repos/{fleet.repos[1]}/compare/{gh.branch(fleet.repos[1], 'prod')}...{other}",
    ])
    assert len(fleet.queries()) == 1


# ---- 3. what GraphQL does not find --------------------------------------------------------------


def test_a_missing_target_is_one_rest_read_and_a_seed(gh: FakeGitHub) -> None:
    fleet = Fleet(gh, ["ahead", "seed", "diverged"])
    new = fleet.heads(1).source

    async def phases(f: GitHubForge) -> tuple[list[Heads | BaseException], TargetCheck]:
        return await all_heads(f, fleet.services), await f.check_target(fleet.services[1], new)

    heads, check = fleet.run(phases)
    assert heads == [fleet.heads(0), Heads(source=new, target=None), fleet.heads(2)]
    assert check == TargetCheck(None, True)
    assert [(r.method, r.path, r.status) for r in fleet.rest()] == [
        ("GET", f"/repos/{fleet.repos[1]}/branches/prod", 404)] * 2  # one per phase
    assert [c.repositories for c in fleet.queries()] == [fleet.repos, [fleet.repos[1]]]


def test_a_missing_source_is_a_forge_error_naming_repo_branch_and_404(gh: FakeGitHub) -> None:
    fleet = Fleet(gh, ["ahead", "no_source", "ahead"])
    got = fleet.run(lambda f: all_heads(f, fleet.services))
    assert got[0] == fleet.heads(0) and got[2] == fleet.heads(2)
    err = got[1]
    assert isinstance(err, ForgeError)
    assert fleet.repos[1] in str(err) and "'main'" in str(err) and "404" in str(err)
    assert err.status == 404
    assert fleet.rest_paths() == [branch_get(fleet.repos[1], "main")]
    assert len(fleet.queries()) == 1


def test_a_renamed_target_is_an_error_naming_the_new_name_not_a_seed(gh: FakeGitHub) -> None:
    fleet = Fleet(gh, ["ahead", "ahead"])
    gh.rename_branch(fleet.repos[1], "prod", "production")
    got = fleet.run(lambda f: all_heads(f, fleet.services))
    assert got[0] == fleet.heads(0)
    err = got[1]
    assert isinstance(err, ForgeError) and err.status == 301
    assert fleet.repos[1] in str(err) and "'production'" in str(err)
    assert fleet.rest_paths() == [branch_get(fleet.repos[1], "prod")]
    assert gh.branch(fleet.repos[1], "prod") is None  # and nothing was seeded


def test_a_repository_hidden_from_the_token_or_missing_is_read_over_rest_for_that_service_only(
    gh: FakeGitHub,
) -> None:
    ghost = f"{OWNER}/ghost"
    fleet = Fleet(gh, ["ahead", "hidden", "diverged", "ahead"])
    fleet.config = make_config([*fleet.repos, ghost])  # ghost: a repository that does not exist
    fleet.services = fleet.config.services
    got = fleet.run(lambda f: all_heads(f, fleet.services))

    assert got[0] == fleet.heads(0) and got[2] == fleet.heads(2) and got[3] == fleet.heads(3)
    for i, repo in ((1, fleet.repos[1]), (4, ghost)):
        err = got[i]
        assert isinstance(err, ForgeError), err
        assert repo in str(err) and "404" in str(err) and err.status == 404
    (call,) = fleet.queries()
    assert call.repositories == [*fleet.repos, ghost]
    assert fleet.rest_paths() == sorted(
        branch_get(repo, branch) for repo in (fleet.repos[1], ghost) for branch in ("main", "prod")
    )
    assert all(r.status == 404 for r in fleet.rest())


# ---- 4. a whole query GraphQL would not answer ----------------------------------------------------


def test_graphql_5xx_after_its_retries_falls_back_to_rest_with_a_warning(
    gh: FakeGitHub, logs: io.StringIO
) -> None:
    fleet = Fleet(gh, ["ahead", "seed", "diverged"])
    gh.inject(Fault.status(502), method="POST", path="/graphql", times=None)
    got = fleet.run(lambda f: all_heads(f, fleet.services))
    assert got == [fleet.heads(i) for i in range(3)]
    assert [c.status for c in fleet.queries()] == [502] * FAST.tries
    assert fleet.rest_paths() == sorted(branch_get(r, b) for r in fleet.repos for b in ("main", "prod"))
    assert "reading heads with GraphQL failed (HTTP 502" in logs.getvalue()
    assert "reading them over REST instead" in logs.getvalue()


def test_graphql_budget_spent_falls_back_to_rest_without_retrying_the_query(
    gh: FakeGitHub, logs: io.StringIO
) -> None:
    fleet = Fleet(gh, ["ahead", "behind"])
    gh.graphql.remaining = 0
    got = fleet.run(lambda f: all_heads(f, fleet.services))
    assert got == [fleet.heads(0), fleet.heads(1)]
    assert [c.status for c in fleet.queries()] == [200]  # a RATE_LIMIT error: no data, not retried
    assert fleet.rest_paths() == sorted(branch_get(r, b) for r in fleet.repos for b in ("main", "prod"))
    assert fleet.sleeps.waits == []
    assert "GraphQL error: API rate limit" in logs.getvalue()


def test_graphql_timeout_504_after_its_retries_falls_back_to_rest(gh: FakeGitHub, logs: io.StringIO) -> None:
    fleet = Fleet(gh, ["ahead", "identical"])
    gh.graphql.timeout = 0.01
    gh.inject(Fault.delay(0.05), method="POST", path="/graphql", times=None)
    got = fleet.run(lambda f: all_heads(f, fleet.services))
    assert got == [fleet.heads(0), fleet.heads(1)]
    assert [c.status for c in fleet.queries()] == [504] * FAST.tries
    assert len(fleet.rest()) == 4
    assert "reading heads with GraphQL failed (HTTP 504" in logs.getvalue()


def test_a_graphql_connection_that_never_answers_is_a_forge_error_per_service_and_no_rest_read(
    gh: FakeGitHub,
) -> None:
    fleet = Fleet(gh, ["ahead", "seed", "diverged"])
    gh.inject(Fault.drop_before(), method="POST", path="/graphql", times=None)
    got = fleet.run(lambda f: all_heads(f, fleet.services))
    for repo, err in zip(fleet.repos, got, strict=True):
        assert isinstance(err, ForgeError), err
        assert str(err).startswith(f"{repo}: cannot read 'main' and 'prod': no response")
        assert err.status is None and err.transient
    assert [c.status for c in fleet.queries()] == [None] * FAST.tries
    assert fleet.rest() == []  # REST would not do better a moment later


# ---- 5. more than one query's worth of services ---------------------------------------------------


@pytest.mark.parametrize("n", [MAX_ALIASES, MAX_ALIASES + 1, 2 * MAX_ALIASES + 1])
def test_more_than_max_aliases_services_are_ceil_n_over_max_aliases_queries(gh: FakeGitHub, n: int) -> None:
    kinds: list[Kind] = [("ahead", "diverged", "identical", "behind")[i % 4] for i in range(n)]
    fleet = Fleet(gh, kinds)
    got = fleet.run(lambda f: all_heads(f, fleet.services))
    assert got == [fleet.heads(i) for i in range(n)]
    calls = fleet.queries()
    assert len(gh.requests) == len(calls) == math.ceil(n / MAX_ALIASES)
    assert all(c.status == 200 and len(c.repositories) <= MAX_ALIASES for c in calls)
    assert sorted(r for c in calls for r in c.repositories) == sorted(fleet.repos)  # each once


def test_a_file_read_rides_in_the_first_query_of_a_full_batch(gh: FakeGitHub) -> None:
    fleet = Fleet(gh, ["ahead"] * MAX_ALIASES)
    repo = fleet.repos[0]
    records = gh.commit(repo, parents=(), message="records")
    gh.set_branch(repo, "lockstep/records", records)
    gh.put_file(repo, "lockstep/records", "g.json", b"{}\n")
    owner, name = repo.split("/")

    async def together(f: GitHubForge) -> tuple[list[Heads | BaseException], FileSeen | None]:
        heads, seen = await asyncio.gather(all_heads(f, fleet.services),
                                           f.read_file(FileRead(owner, name, "lockstep/records", "g.json")))
        return heads, seen

    heads, seen = fleet.run(together)
    assert heads == [fleet.heads(i) for i in range(MAX_ALIASES)]
    assert seen is not None and (seen.branch_exists, seen.text) == (True, "{}\n")
    assert len(gh.requests) == 1  # 100 services and the file: one query


# ---- 6. the batch agrees with the fake's state, whatever the mix ----------------------------------


@settings(max_examples=15, deadline=None)
@given(kinds=st.lists(st.sampled_from(KINDS), min_size=1, max_size=7))
def test_batched_reads_equal_the_true_heads_ancestry_and_the_rest_path_for_any_mix(kinds: list[Kind]) -> None:
    with FakeGitHub() as fake:
        fleet = Fleet(fake, kinds)
        ok = [i for i, k in enumerate(kinds) if k not in ("no_source", "hidden")]
        new = [fleet.heads(i).source for i in ok]

        async def phases(f: GitHubForge) -> tuple[list[Heads | BaseException], list[TargetCheck | BaseException]]:
            heads = await all_heads(f, fleet.services)
            after_first = len(fake.requests)
            checks = await asyncio.gather(
                *(f.check_target(fleet.services[i], n) for i, n in zip(ok, new, strict=True)),
                return_exceptions=True,
            )
            assert after_first == 1 + sum(len(rest_reads(fleet, i, k)) for i, k in enumerate(kinds))
            return heads, list(checks)

        heads, checks = fleet.run(phases)

        for i, kind in enumerate(kinds):
            if kind in ("no_source", "hidden"):
                err = heads[i]
                assert isinstance(err, ForgeError) and err.status == 404, (kind, err)
                assert fleet.repos[i] in str(err) and "'main'" in str(err)
            else:
                assert heads[i] == fleet.heads(i), kind
        for i, check in zip(ok, checks, strict=True):
            if kinds[i] == "unrelated":  # no common history: REST cannot compare either
                assert isinstance(check, ForgeError) and fleet.repos[i] in str(check)
            else:
                assert check == fleet.check(i, fleet.heads(i).source), kinds[i]

        calls = fleet.queries()
        assert [c.repositories for c in calls] == [fleet.repos] + ([[fleet.repos[i] for i in ok]] if ok else [])
        expected = sorted(
            [p for i, k in enumerate(kinds) for p in rest_reads(fleet, i, k)]
            + [p for i in ok for p in rest_reads(fleet, i, kinds[i], checking=True)]
        )
        assert fleet.rest_paths() == expected

        fake.graphql.remaining = 0  # the same reads again, all over REST: the same answers
        rest_heads, rest_checks = fleet.run(phases_over_rest(fleet, ok, new))
        assert [outcome(h) for h in rest_heads] == [outcome(h) for h in heads]
        assert [outcome(c) for c in rest_checks] == [outcome(c) for c in checks]


Outcome = Heads | TargetCheck | tuple[str, int | None]


def outcome(result: Heads | TargetCheck | BaseException) -> Outcome:
    if isinstance(result, ForgeError):
        return ("ForgeError", result.status)
    assert isinstance(result, Heads | TargetCheck), result
    return result


def phases_over_rest(
    fleet: Fleet, ok: list[int], new: list[Sha]
) -> Callable[[GitHubForge], Awaitable[tuple[list[Heads | BaseException], list[TargetCheck | BaseException]]]]:
    async def phases(f: GitHubForge) -> tuple[list[Heads | BaseException], list[TargetCheck | BaseException]]:
        heads = await all_heads(f, fleet.services)
        checks = await asyncio.gather(
            *(f.check_target(fleet.services[i], n) for i, n in zip(ok, new, strict=True)), return_exceptions=True
        )
        return heads, list(checks)

    return phases


def rest_reads(fleet: Fleet, i: int, kind: Kind, *, checking: bool = False) -> list[str]:
    """The REST requests that settle what GraphQL left open for service ``i`` in a phase."""
    repo = fleet.repos[i]
    if checking:
        if kind == "seed":
            return [branch_get(repo, "prod")]
        if kind == "unrelated":
            return [f"GET /repos/{repo}/compare/{fleet.gh.branch(repo, 'prod')}...{fleet.gh.branch(repo, 'main')}"]
        return []
    return {
        "seed": [branch_get(repo, "prod")],
        "no_source": [branch_get(repo, "main")],
        "hidden": [branch_get(repo, "main"), branch_get(repo, "prod")],
    }.get(kind, [])


# ---- 7. cancellation ------------------------------------------------------------------------------


async def query_in_flight(gh: FakeGitHub) -> None:
    """Until the fake has received the query (it is then held by a delay fault)."""
    for _ in range(500):
        if any(r.path == "/graphql" for r in gh.requests):
            return
        await asyncio.sleep(0.005)
    raise AssertionError("the GraphQL query never arrived")


def test_cancelling_one_caller_mid_query_leaves_the_others_their_results(gh: FakeGitHub) -> None:
    fleet = Fleet(gh, ["ahead", "diverged", "seed"])
    gh.inject(Fault.delay(0.3), method="POST", path="/graphql")

    async def cancel_one(f: GitHubForge) -> tuple[bool, list[Heads]]:
        tasks = [asyncio.create_task(f.read_heads(s)) for s in fleet.services]
        await query_in_flight(gh)
        tasks[0].cancel()
        rest = await asyncio.gather(*tasks[1:])
        with pytest.raises(asyncio.CancelledError):
            await tasks[0]
        return tasks[0].cancelled(), list(rest)

    cancelled, rest = fleet.run(cancel_one)
    assert cancelled
    assert rest == [fleet.heads(1), fleet.heads(2)]
    assert len(fleet.queries()) == 1
    assert fleet.rest_paths() == [branch_get(fleet.repos[2], "prod")]  # the seed's read, nothing more


def test_cancelling_every_caller_mid_query_then_closing_leaves_no_task_behind(gh: FakeGitHub) -> None:
    fleet = Fleet(gh, ["ahead", "diverged"])
    gh.inject(Fault.delay(0.3), method="POST", path="/graphql")

    async def cancel_all(f: GitHubForge) -> list[bool]:
        tasks = [asyncio.create_task(f.read_heads(s)) for s in fleet.services]
        await query_in_flight(gh)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        return [t.cancelled() for t in tasks]

    assert fleet.run(cancel_all) == [True, True]  # run() checks no task is left after aclose


def test_a_caller_cancelled_in_the_same_turn_does_not_stop_the_query_for_the_others(gh: FakeGitHub) -> None:
    fleet = Fleet(gh, ["ahead", "behind", "identical"])

    async def cancel_first_at_once(f: GitHubForge) -> list[Heads]:
        tasks = [asyncio.create_task(f.read_heads(s)) for s in fleet.services]
        await asyncio.sleep(0)  # every caller has asked; the query is about to go out
        tasks[0].cancel()
        done = await asyncio.gather(*tasks[1:])
        await asyncio.gather(tasks[0], return_exceptions=True)
        return list(done)

    assert fleet.run(cancel_first_at_once) == [fleet.heads(1), fleet.heads(2)]
    assert len(fleet.queries()) == 1


def test_a_read_still_waiting_when_the_forge_closes_is_answered_not_left_hanging(gh: FakeGitHub) -> None:
    fleet = Fleet(gh, ["ahead"])

    async def close_under_a_reader(f: GitHubForge) -> BaseException | Heads:
        reader = asyncio.create_task(f.read_heads(fleet.services[0]))
        await asyncio.sleep(0)  # the reader has asked; the query has not gone out yet
        await f.aclose()
        try:
            return await asyncio.wait_for(reader, 1.0)
        except Exception as exc:  # an error is a fine answer; only the wait running out is not
            return exc

    outcome = fleet.run(close_under_a_reader)
    assert not isinstance(outcome, TimeoutError), "the reader was never answered"

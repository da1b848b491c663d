"""The GitHub forge against the fake GitHub over real loopback HTTP.

Each test states one rule of ``docs/design.md`` "The GitHub forge" or issue 3 and can
fail on its own: seed vs error on 404, never following a 301, bounded retries
of reads only, re-read-and-classify after unclear pushes (the seed's "push
landed, response lost" case), the audit comment body sent as JSON text (the
seed's ``-f body=@file`` bug), and tokens that never leak.  Waits go through an
injected sleep that records and returns, so backoff is asserted, not slept.
"""

from __future__ import annotations

import asyncio
import io
import json
import re
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import httpx
import pytest

from lockstep import __version__
from lockstep.config import Config, ServiceConfig
from lockstep.errors import AuditError, ForgeError, LockError, UsageError
from lockstep.forges.github.audit import GitHubIssueSink
from lockstep.forges.github.forge import GitHubForge, RetryPolicy
from lockstep.forges.github.lock import GitHubRefLock
from lockstep.model import Heads, PushStatus, Sha
from tests.support.fakegithub import FakeGitHub, Fault

T = TypeVar("T")

READ = "ghp_READtoken" + "r" * 27  # planted: must never show up anywhere
PUSH = "github_pat_PUSHtoken" + "p" * 30
FAST = RetryPolicy(tries=3, budget=5.0, max_wait=2.0, base_delay=0.01, jitter=0.5, secondary_wait=0.05)
BRANCH = r"/repos/o/r/branches/"
REF_PROD = r"/repos/o/r/git/refs/heads/prod"


class Sleeps:
    """Records requested waits instead of sleeping them."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        await asyncio.sleep(0)


class World:
    """The fake plus the commits most tests use: prod=c1 → main=c2 (fast-forward)."""

    def __init__(self, gh: FakeGitHub) -> None:
        self.gh = gh
        gh.add_repo("o/r")
        self.c1 = Sha(gh.commit("o/r", parents=()))
        self.c2 = Sha(gh.commit("o/r", parents=(self.c1,)))
        self.side = Sha(gh.commit("o/r", parents=(self.c1,)))  # diverges from c2
        gh.set_branch("o/r", "main", self.c2)
        gh.set_branch("o/r", "prod", self.c1)
        gh.add_issue("o/t", 42)
        gh.add_token(READ, read=["o/r"], write=["o/t"])
        gh.add_token(PUSH, read=["o/r"], write=["o/r"])
        self.sleeps = Sleeps()

    def env(self, **extra: str) -> dict[str, str]:
        return {"GITHUB_TOKEN": READ, "PUSH_TOKEN": PUSH, "GITHUB_API_URL": self.gh.url, **extra}

    def run(
        self,
        fn: Callable[[GitHubForge], Awaitable[T]],
        *,
        env: dict[str, str] | None = None,
        config: Config | None = None,
        retry: RetryPolicy = FAST,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> T:
        async def main() -> T:
            forge = GitHubForge.from_env(
                config or make_config(),
                self.env() if env is None else env,
                retry=retry,
                transport=transport,
                sleep=self.sleeps,
            )
            try:
                return await fn(forge)
            finally:
                await forge.aclose()

        return asyncio.run(main())

    def count(self, method: str, path: str) -> int:
        return sum(1 for r in self.gh.requests if r.method == method and re.fullmatch(path, r.path))


def make_config(target: str = "prod", tracker: str = "o/t#42", repo: str = "o/r", **gate: Any) -> Config:
    return Config.model_validate(
        {
            "gate": {"name": "g1", "forge": "github", "request_timeout": 0.5, **gate},
            "bypass": {"tracker": tracker},
            "services": [
                {
                    "name": "svc",
                    "repo": repo,
                    "target": target,
                    "token_env": "PUSH_TOKEN",
                    "health_url": "http://127.0.0.1/h",
                    "version_url": "http://127.0.0.1/v",
                }
            ],
        }
    )


SVC: ServiceConfig = make_config().services[0]


@pytest.fixture
def w(logs: io.StringIO) -> Iterator[World]:
    with FakeGitHub() as gh:
        yield World(gh)


def forge_error(w: World, fn: Callable[[GitHubForge], Awaitable[object]]) -> ForgeError:
    with pytest.raises(ForgeError) as info:
        w.run(fn)
    return info.value


def graphql_spent(w: World) -> None:
    """GraphQL's own budget spent (HTTP 200, a RATE_LIMIT error, no data): the forge reads over REST,
    the path the tests that call this pin, with REST's statuses, retries and messages."""
    w.gh.graphql.remaining = 0


# ---- read_heads -------------------------------------------------------------------


def test_read_heads_is_one_graphql_query_with_the_read_token_and_github_headers(w: World) -> None:
    assert w.run(lambda f: f.read_heads(SVC)) == Heads(source=w.c2, target=w.c1)
    (query,) = w.gh.requests
    assert (query.method, query.path, query.status) == ("POST", "/graphql", 200)
    assert isinstance(query.json, dict) and query.json["variables"] == {
        "o0": "o", "n0": "r", "s0": "refs/heads/main", "t0": "refs/heads/prod"}
    for r in (query,):
        assert r.headers["authorization"] == f"Bearer {READ}"
        assert r.headers["accept"] == "application/vnd.github+json"
        assert r.headers["x-github-api-version"] == "2022-11-28"
        assert r.headers["user-agent"] == f"lockstep/{__version__}"


def test_a_graphql_query_is_retried_like_a_read_and_then_answers(w: World, logs: io.StringIO) -> None:
    w.gh.inject(Fault.status(503), method="POST", path="/graphql")
    w.gh.inject(Fault.rate_limit("secondary", status=403, retry_after=1), method="POST", path="/graphql")
    assert w.run(lambda f: f.read_heads(SVC)) == Heads(source=w.c2, target=w.c1)
    assert [r.status for r in w.gh.requests] == [503, 403, 200]  # no REST read: the query answered
    assert len(w.sleeps.waits) == 2 and w.sleeps.waits[1] == 1.0
    assert "GraphQL heads of o/r: HTTP 503" in logs.getvalue()


def test_read_heads_is_one_round_trip_of_wall_time(w: World) -> None:
    graphql_spent(w)
    for branch in ("main", "prod"):
        w.gh.inject(Fault.delay(0.5), method="GET", path=BRANCH + branch)

    async def timed(f: GitHubForge) -> float:
        start = time.monotonic()
        await f.read_heads(SVC)
        return time.monotonic() - start

    assert w.run(timed, config=make_config(request_timeout=3)) < 0.9  # sequential: >= 1.0 s
    assert w.sleeps.waits == []


def test_branch_with_slash_is_read_exactly(w: World) -> None:
    w.gh.set_branch("o/r", "release/prod", w.c2)
    w.gh.set_branch("o/r", "release/prod-old", w.c1)
    heads = w.run(lambda f: f.read_heads(make_config(target="release/prod").services[0]))
    assert heads == Heads(source=w.c2, target=w.c2)


def test_missing_target_is_seed(w: World) -> None:
    w.gh.delete_branch("o/r", "prod")
    assert w.run(lambda f: f.read_heads(SVC)) == Heads(source=w.c2, target=None)


def test_missing_source_is_an_error(w: World) -> None:
    w.gh.delete_branch("o/r", "main")
    err = forge_error(w, lambda f: f.read_heads(SVC))
    assert str(err) == "o/r: source branch 'main' not found (HTTP 404)"
    assert err.status == 404


def test_503_then_200_is_retried(w: World, logs: io.StringIO) -> None:
    graphql_spent(w)
    w.gh.inject(Fault.status(503), method="GET", path=BRANCH + "prod")
    assert w.run(lambda f: f.read_target(SVC)) == w.c1
    assert w.count("GET", BRANCH + "prod") == 2
    assert len(w.sleeps.waits) == 1 and 0.01 <= w.sleeps.waits[0] <= 0.015
    assert "o/r: reading target branch 'prod': HTTP 503" in logs.getvalue()
    assert "backoff" in logs.getvalue()


def test_503_forever_gives_up_after_the_bounded_tries(w: World) -> None:
    graphql_spent(w)
    w.gh.inject(Fault.status(503, "Service Unavailable"), method="GET", path=BRANCH + "prod", times=None)
    err = forge_error(w, lambda f: f.read_heads(SVC))
    assert "o/r: cannot read target branch 'prod': HTTP 503: Service Unavailable" in str(err)
    assert "gave up after 3 attempts" in str(err)
    assert err.status == 503 and err.transient
    assert w.count("GET", BRANCH + "prod") == FAST.tries
    assert len(w.sleeps.waits) == 2 and w.sleeps.waits[1] > w.sleeps.waits[0]  # exponential


def test_retry_budget_stops_early_and_says_so(w: World) -> None:
    graphql_spent(w)
    w.gh.inject(Fault.status(502), method="GET", path=BRANCH + "main", times=None)
    policy = RetryPolicy(tries=10, budget=0.5, max_wait=10.0, base_delay=0.2, jitter=0.0)
    with pytest.raises(ForgeError, match=r"would exceed the 0.5s retry budget") as info:
        w.run(lambda f: f.read_heads(SVC), retry=policy)
    assert "source branch 'main'" in str(info.value) and "HTTP 502" in str(info.value)
    assert w.count("GET", BRANCH + "main") == 2  # waited 0.2, the next 0.4 would overrun


def test_401_is_an_error_without_retry(w: World) -> None:
    graphql_spent(w)
    env = w.env(GITHUB_TOKEN="ghp_unknown_token_1234567890")
    with pytest.raises(ForgeError) as info:
        w.run(lambda f: f.read_heads(SVC), env=env)
    assert "o/r: cannot read source branch 'main': HTTP 401: Bad credentials" in str(info.value)
    assert info.value.status == 401 and not info.value.transient
    assert w.count("GET", BRANCH + "main") == 1
    assert w.sleeps.waits == []


def test_403_without_rate_limit_is_not_retried(w: World) -> None:
    graphql_spent(w)
    msg = "Resource not accessible by personal access token"
    w.gh.inject(Fault.status(403, msg, headers={"x-ratelimit-remaining": "4999"}), path=BRANCH + "prod")
    err = forge_error(w, lambda f: f.read_heads(SVC))
    assert f"target branch 'prod': HTTP 403: {msg}" in str(err)
    assert w.count("GET", BRANCH + "prod") == 1


def test_301_names_the_redirect_target_and_is_not_followed(w: World) -> None:
    w.gh.rename_branch("o/r", "prod", "production")
    err = forge_error(w, lambda f: f.read_heads(SVC))
    assert "target branch 'prod' answered HTTP 301" in str(err)
    assert "branch 'production'" in str(err)
    assert err.status == 301
    assert w.count("GET", BRANCH + "production") == 0


def test_timeout_is_retried(w: World) -> None:
    graphql_spent(w)
    w.gh.inject(Fault.delay(1.5), method="GET", path=BRANCH + "prod")
    assert w.run(lambda f: f.read_target(SVC)) == w.c1
    assert w.count("GET", BRANCH + "prod") == 2


def test_connection_error_names_repo_branches_and_cause(w: World) -> None:
    env = w.env(GITHUB_API_URL="http://127.0.0.1:9")  # discard port: connection refused
    with pytest.raises(ForgeError) as info:
        w.run(lambda f: f.read_target(SVC), env=env)
    assert "o/r: cannot read 'main' and 'prod': no response (ConnectError" in str(info.value)
    assert info.value.status is None and info.value.transient


def test_secondary_rate_limit_honours_retry_after(w: World, logs: io.StringIO) -> None:
    graphql_spent(w)
    w.gh.inject(Fault.rate_limit("secondary", status=403, retry_after=1), path=BRANCH + "prod")
    assert w.run(lambda f: f.read_target(SVC)) == w.c1
    assert w.sleeps.waits == [1.0]
    assert "retry-after 1s" in logs.getvalue() and "secondary rate limit" in logs.getvalue()


def test_primary_rate_limit_waits_for_reset(w: World) -> None:
    graphql_spent(w)
    w.gh.inject(Fault.rate_limit("primary", status=429, reset_in=1), path=BRANCH + "prod")
    assert w.run(lambda f: f.read_target(SVC)) == w.c1
    assert len(w.sleeps.waits) == 1 and 0.5 <= w.sleeps.waits[0] <= 2.5


def test_secondary_rate_limit_without_retry_after_waits_the_configured_minimum(w: World) -> None:
    graphql_spent(w)
    w.gh.inject(Fault.rate_limit("secondary", status=429), path=BRANCH + "prod")
    assert w.run(lambda f: f.read_target(SVC)) == w.c1
    assert len(w.sleeps.waits) == 1 and w.sleeps.waits[0] >= FAST.secondary_wait


def test_rate_limit_wait_beyond_the_cap_gives_up_at_once(w: World) -> None:
    graphql_spent(w)
    w.gh.inject(Fault.rate_limit("secondary", retry_after=600), path=BRANCH + "prod")
    err = forge_error(w, lambda f: f.read_target(SVC))
    assert "HTTP 403" in str(err) and "secondary rate limit" in str(err)
    assert "not retrying: GitHub asks to wait 600s" in str(err)
    assert w.sleeps.waits == [] and w.count("GET", BRANCH + "prod") == 1


# ---- is_ancestor --------------------------------------------------------------------


def test_is_ancestor_uses_compare(w: World) -> None:
    assert w.run(lambda f: f.is_ancestor(SVC, w.c1, w.c2)) is True
    assert w.run(lambda f: f.is_ancestor(SVC, w.c2, w.c2)) is True
    assert w.run(lambda f: f.is_ancestor(SVC, w.c2, w.c1)) is False
    assert w.run(lambda f: f.is_ancestor(SVC, w.side, w.c2)) is False
    compares = [r for r in w.gh.requests if "/compare/" in r.path]
    assert compares[0].path == f"/repos/o/r/compare/{w.c1}...{w.c2}"
    assert all(r.query == {"per_page": "1"} for r in compares)


def test_is_ancestor_unknown_sha_is_an_error(w: World) -> None:
    err = forge_error(w, lambda f: f.is_ancestor(SVC, Sha("e" * 40), w.c2))
    assert "o/r: cannot compare eeeeeee..." in str(err) and "HTTP 404" in str(err)


# ---- advance ------------------------------------------------------------------------


def patches(w: World) -> list[Any]:
    return [r for r in w.gh.requests if r.method == "PATCH"]


def test_advance_patches_fast_forward_only_with_the_push_token(w: World) -> None:
    result = w.run(lambda f: f.advance(SVC, w.c1, w.c2))
    assert result.status == PushStatus.LANDED
    assert w.gh.branch("o/r", "prod") == w.c2
    (patch,) = patches(w)
    assert patch.path == "/repos/o/r/git/refs/heads/prod"
    assert patch.json == {"sha": w.c2, "force": False}
    assert patch.headers["authorization"] == f"Bearer {PUSH}"
    reads = [r for r in w.gh.requests if r.method == "GET"]
    assert reads == []  # the gate's preflight (check_target) re-read it: the PATCH goes out at once
    assert all(r.headers["authorization"] == f"Bearer {READ}" for r in reads)


def test_advance_not_fast_forward_is_rejected_and_unchanged(w: World) -> None:
    w.gh.set_branch("o/r", "prod", w.c2)
    result = w.run(lambda f: f.advance(SVC, w.c2, w.side))
    assert result.status == PushStatus.REJECTED
    assert "o/r: advance 'prod' rejected (HTTP 422: Update is not a fast forward)" in result.detail
    assert w.gh.branch("o/r", "prod") == w.c2


def test_advance_protected_branch_is_rejected(w: World) -> None:
    w.gh.protect("o/r", "prod")
    result = w.run(lambda f: f.advance(SVC, w.c1, w.c2))
    assert result.status == PushStatus.REJECTED
    assert "HTTP 422: Repository rule violations found Cannot update this protected ref." in result.detail
    assert len(patches(w)) == 1 and w.gh.branch("o/r", "prod") == w.c1


def test_advance_without_push_permission_is_rejected(w: World) -> None:
    w.gh.add_token(PUSH, read=["o/r"], write=[])
    result = w.run(lambda f: f.advance(SVC, w.c1, w.c2))
    assert result.status == PushStatus.REJECTED and "HTTP 403" in result.detail
    assert len(patches(w)) == 1


def test_advance_response_lost_after_landing_is_landed_with_one_patch(w: World) -> None:
    w.gh.inject(Fault.drop_after(), method="PATCH", path=REF_PROD)
    result = w.run(lambda f: f.advance(SVC, w.c1, w.c2))
    assert result.status == PushStatus.LANDED and "confirmed by re-read" in result.detail
    assert len(patches(w)) == 1
    assert w.gh.branch("o/r", "prod") == w.c2


def test_advance_dropped_before_landing_retries_once(w: World) -> None:
    w.gh.inject(Fault.drop_before(), method="PATCH", path=REF_PROD)
    result = w.run(lambda f: f.advance(SVC, w.c1, w.c2))
    assert result.status == PushStatus.LANDED
    assert len(patches(w)) == 2
    assert w.gh.branch("o/r", "prod") == w.c2


def test_advance_unclear_twice_stops_after_one_retry(w: World) -> None:
    w.gh.inject(Fault.status(502), method="PATCH", path=REF_PROD, times=None)
    result = w.run(lambda f: f.advance(SVC, w.c1, w.c2))
    assert result.status == PushStatus.REJECTED
    assert "did not land after 2 attempts (HTTP 502" in result.detail
    assert len(patches(w)) == 2 and w.gh.branch("o/r", "prod") == w.c1


class MoveAfter503(httpx.AsyncBaseTransport):
    """Real HTTP; right after a 503 to a PATCH, another writer moves the target."""

    def __init__(self, w: World, to: str) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.w, self.to = w, to

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        if request.method == "PATCH" and response.status_code == 503:
            self.w.gh.set_branch("o/r", "prod", self.to)
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


def test_advance_503_then_concurrent_move_is_concurrent(w: World) -> None:
    w.gh.inject(Fault.status(503), method="PATCH", path=REF_PROD)
    result = w.run(lambda f: f.advance(SVC, w.c1, w.c2), transport=MoveAfter503(w, w.side))
    assert result.status == PushStatus.CONCURRENT
    assert f"now at {w.side.short}" in result.detail
    assert len(patches(w)) == 1 and w.gh.branch("o/r", "prod") == w.side


def test_advance_over_a_target_moved_elsewhere_is_refused_and_reported_concurrent(w: World) -> None:
    w.gh.set_branch("o/r", "prod", w.side)  # another writer, after the preflight re-read
    result = w.run(lambda f: f.advance(SVC, w.c1, w.c2))
    assert result.status == PushStatus.CONCURRENT and "another writer" in result.detail
    assert len(patches(w)) == 1 and patches(w)[0].status == 422  # force:false: GitHub refuses
    assert w.gh.branch("o/r", "prod") == w.side


def test_check_target_reads_the_target_and_fast_forward_in_one_request(w: World) -> None:
    found = w.run(lambda f: f.check_target(SVC, w.c2))
    assert found.current == w.c1 and found.fast_forward is True
    (req,) = w.gh.requests
    assert req.path == "/graphql"  # the query's compare (prod...main, main at c2) answers both


def test_check_target_over_rest_is_one_compare(w: World) -> None:
    graphql_spent(w)
    found = w.run(lambda f: f.check_target(SVC, w.c2))
    assert found.current == w.c1 and found.fast_forward is True
    rest = [r.path for r in w.gh.requests if r.path != "/graphql"]
    assert rest == [f"/repos/o/r/compare/prod...{w.c2}"]


def test_check_target_sees_a_moved_or_diverged_target(w: World) -> None:
    w.gh.set_branch("o/r", "prod", w.side)
    found = w.run(lambda f: f.check_target(SVC, w.c2))
    assert found.current == w.side and found.fast_forward is False


def test_check_target_of_a_missing_target_allows_the_seed(w: World) -> None:
    w.gh.delete_branch("o/r", "prod")
    found = w.run(lambda f: f.check_target(SVC, w.c2))
    assert found.current is None and found.fast_forward is True


def test_check_target_failure_names_repo_branch_and_status(w: World) -> None:
    graphql_spent(w)
    w.gh.inject(Fault.status(401), method="GET", path=r"/repos/o/r/compare/.*", times=None)
    with pytest.raises(ForgeError, match=r"o/r: cannot re-read 'prod' before pushing: HTTP 401"):
        w.run(lambda f: f.check_target(SVC, w.c2))


def test_advance_unreadable_after_unclear_result_is_unknown(w: World) -> None:
    w.gh.inject(Fault.status(500), method="PATCH", path=REF_PROD)
    w.gh.inject(Fault.status(503), method="POST", path="/graphql", times=None)  # and its REST fallback:
    w.gh.inject(Fault.status(503), method="GET", path=BRANCH + "prod", times=None)
    result = w.run(lambda f: f.advance(SVC, w.c1, w.c2))
    assert result.status == PushStatus.UNKNOWN and "cannot re-read" in result.detail
    assert len(patches(w)) == 1


# ---- create -------------------------------------------------------------------------


def test_create_posts_the_ref(w: World) -> None:
    w.gh.delete_branch("o/r", "prod")
    result = w.run(lambda f: f.create(SVC, w.c2))
    assert result.status == PushStatus.LANDED
    (post,) = w.gh.writes()
    assert (post.method, post.path) == ("POST", "/repos/o/r/git/refs")
    assert post.json == {"ref": "refs/heads/prod", "sha": w.c2}
    assert post.headers["authorization"] == f"Bearer {PUSH}"
    assert w.gh.branch("o/r", "prod") == w.c2


def test_create_when_it_exists_elsewhere_is_concurrent(w: World) -> None:
    result = w.run(lambda f: f.create(SVC, w.c2))
    assert result.status == PushStatus.CONCURRENT
    assert "HTTP 422: Reference already exists" in result.detail
    assert w.gh.branch("o/r", "prod") == w.c1


def test_create_when_it_exists_at_new_is_landed(w: World) -> None:
    w.gh.set_branch("o/r", "prod", w.c2)
    assert w.run(lambda f: f.create(SVC, w.c2)).status == PushStatus.LANDED


def test_create_dropped_before_retries_once(w: World) -> None:
    w.gh.delete_branch("o/r", "prod")
    w.gh.inject(Fault.drop_before(), method="POST", path=r"/repos/o/r/git/refs")
    assert w.run(lambda f: f.create(SVC, w.c2)).status == PushStatus.LANDED
    assert len(w.gh.writes()) == 2


def test_create_unknown_sha_is_rejected(w: World) -> None:
    w.gh.delete_branch("o/r", "prod")
    result = w.run(lambda f: f.create(SVC, Sha("e" * 40)))
    assert result.status == PushStatus.REJECTED and "Object does not exist" in result.detail
    assert w.gh.branch("o/r", "prod") is None


# ---- the audit sink -------------------------------------------------------------------

MARKDOWN = (
    "### lockstep bypass: `g1`\n\n````text\n@/tmp/tmp.XXXXXX\n```\nEOF\n````\n\u00e9 \U0001f680 \\n\t%s\n"
)


def store(w: World, tracker: str = "o/t#42", markdown: str = MARKDOWN) -> str:
    return w.run(lambda f: GitHubIssueSink(f, tracker).store(markdown, {"kind": "x"}))


def test_audit_comment_body_is_the_markdown_as_json(w: World) -> None:
    url = store(w)
    (post,) = w.gh.writes()
    assert post.path == "/repos/o/t/issues/42/comments"
    assert post.headers["content-type"] == "application/json"
    assert post.json == {"body": MARKDOWN}
    assert post.headers["authorization"] == f"Bearer {READ}"
    (comment,) = w.gh.comments("o/t", 42)
    assert comment["body"] == MARKDOWN
    assert url == comment["html_url"]


@pytest.mark.parametrize(
    ("setup", "needle"),
    [
        (lambda gh: gh.add_issue("o/t", 42, locked=True), "HTTP 403: Unable to create comment"),
        (lambda gh: gh.disable_issues("o/t"), "HTTP 410"),
        (
            lambda gh: gh.inject(Fault.status(422, "Body is too long (maximum is 65536 characters)")),
            "HTTP 422",
        ),
        (lambda gh: gh.inject(Fault.status(503)), "HTTP 503"),
        (lambda gh: gh.inject(Fault.drop_after()), "no response (RemoteProtocolError"),
    ],
    ids=["locked", "disabled", "too-long", "5xx", "dropped"],
)
def test_audit_failures_raise_audit_error_without_retry(
    w: World, setup: Callable[[FakeGitHub], object], needle: str
) -> None:
    setup(w.gh)
    with pytest.raises(AuditError) as info:
        store(w)
    assert str(info.value).startswith("cannot post the bypass audit comment to o/t#42: ")
    assert needle in str(info.value)
    assert len(w.gh.writes()) == 1


def test_audit_unknown_issue_is_an_error(w: World) -> None:
    with pytest.raises(AuditError, match=r"o/t#7: HTTP 404"):
        store(w, tracker="o/t#7")


def test_audit_retries_once_only_when_nothing_was_sent() -> None:
    calls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.content.decode())
        if len(calls) == 1:
            raise httpx.ConnectError("connection refused")
        return httpx.Response(201, json={"html_url": "https://gh.example/o/t/issues/42#c1"})

    async def main() -> str:
        env = {"GITHUB_TOKEN": READ, "PUSH_TOKEN": PUSH}
        forge = GitHubForge.from_env(make_config(), env, transport=httpx.MockTransport(handler))
        try:
            return await GitHubIssueSink(forge, make_config().bypass.tracker or "").store("body", {})
        finally:
            await forge.aclose()

    assert asyncio.run(main()) == "https://gh.example/o/t/issues/42#c1"
    assert [json.loads(c) for c in calls] == [{"body": "body"}] * 2


@pytest.mark.parametrize("tracker", ["o/t", "o/t#0", "o#1", "o/t/x#1", "o/t#1 x", "../t#1", "o/t#-1"])
def test_malformed_tracker_is_a_usage_error(w: World, tracker: str) -> None:
    with pytest.raises(UsageError, match="OWNER/REPO#NUMBER"):
        store(w, tracker=tracker)
    assert w.gh.requests == []


# ---- configuration and tokens -----------------------------------------------------------


@pytest.mark.parametrize(
    ("drop", "extra", "needle"),
    [
        ("GITHUB_TOKEN", {}, "GITHUB_TOKEN (or GH_TOKEN) is not set"),
        ("PUSH_TOKEN", {}, "environment variable PUSH_TOKEN is not set"),
        (None, {"PUSH_TOKEN": "  "}, "environment variable PUSH_TOKEN is not set"),
        (None, {"PUSH_TOKEN": "bad token\n"}, "PUSH_TOKEN holds characters a token cannot contain"),
        (None, {"GITHUB_API_URL": "ftp://x"}, "GITHUB_API_URL must be an http(s) URL"),
        (None, {"GITHUB_API_URL": f"https://x:{PUSH}@h/"}, "must not contain credentials"),
    ],
)
def test_setup_errors_name_the_variable_before_any_request(
    w: World, drop: str | None, extra: dict[str, str], needle: str
) -> None:
    env = {k: v for k, v in w.env(**extra).items() if k != drop}
    with pytest.raises(UsageError) as info:
        w.run(lambda f: f.read_heads(SVC), env=env)
    assert needle in str(info.value)
    assert w.gh.requests == []


def test_malformed_sha_from_github_is_an_error() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"commit": {"sha": "ABC; rm -rf /"}})

    async def main() -> None:
        env = {"GITHUB_TOKEN": READ, "PUSH_TOKEN": PUSH}
        forge = GitHubForge.from_env(make_config(), env, transport=httpx.MockTransport(handler))
        try:
            await forge.read_target(SVC)
        finally:
            await forge.aclose()

    with pytest.raises(ForgeError, match=r"o/r: unexpected answer for target branch 'prod'"):
        asyncio.run(main())


def test_gh_token_is_accepted_for_reads(w: World) -> None:
    env = w.env()
    env["GH_TOKEN"] = env.pop("GITHUB_TOKEN")
    assert w.run(lambda f: f.read_target(SVC), env=env) == w.c1


@pytest.mark.parametrize(
    ("config", "needle"),
    [
        (lambda: make_config(repo="o/r/x"), "services[0] (svc).repo: expected a GitHub repository"),
        (lambda: make_config(repo="https://github.com/o/r"), "expected a GitHub repository"),
        (lambda: make_config(target="../../issues"), "services[0] (svc).target"),
        (lambda: make_config(target="prod.lock"), "not a valid branch name"),
        (
            lambda: Config.model_validate(
                {**make_config().model_dump(), "services": [{**SVC.model_dump(), "token_env": None}]}
            ),
            "token_env: required for the github forge",
        ),
    ],
)
def test_bad_repo_branch_or_token_env_is_a_usage_error(
    w: World, config: Callable[[], Config], needle: str
) -> None:
    with pytest.raises(UsageError) as info:
        w.run(lambda f: f.read_target(SVC), config=config())
    assert needle in str(info.value)
    assert w.gh.requests == []


def test_api_url_path_prefix_and_trailing_slash_are_kept() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"commit": {"sha": "a" * 40}})

    async def main() -> Sha | None:
        env = {"GH_TOKEN": READ, "PUSH_TOKEN": PUSH, "GITHUB_API_URL": "https://ghe.example/api/v3/"}
        forge = GitHubForge.from_env(
            make_config(target="rel/v1+x"), env, transport=httpx.MockTransport(handler)
        )
        try:
            return await forge.read_target(forge_service(make_config(target="rel/v1+x")))
        finally:
            await forge.aclose()

    assert asyncio.run(main()) == "a" * 40
    # GHES serves GraphQL beside /api/v3; an answer without data sends the read to REST
    assert [str(r.url) for r in seen] == [
        "https://ghe.example/api/graphql", "https://ghe.example/api/v3/repos/o/r/branches/rel/v1%2Bx"]
    assert all(r.extensions["timeout"]["read"] == 0.5 for r in seen)


def forge_service(config: Config) -> ServiceConfig:
    return config.services[0]


def test_tokens_never_leak(w: World, logs: io.StringIO) -> None:
    """Plant tokens, make GitHub echo them in error messages, scan everything people see."""
    echo = f"token {READ} / {PUSH} rejected"
    w.gh.inject(Fault.status(500, echo), method="POST", path="/graphql", times=None)
    w.gh.inject(Fault.status(500, echo), method="GET", path=BRANCH + "main", times=None)
    w.gh.inject(Fault.status(503, echo), method="PATCH", path=REF_PROD, times=None)
    w.gh.inject(Fault.status(422, echo), method="POST", path=r"/repos/o/r/git/refs")
    w.gh.inject(Fault.status(403, echo), method="POST", path=r"/repos/o/t/issues/42/comments")
    texts: list[str] = []

    async def everything(f: GitHubForge) -> None:
        texts.append(repr(f))
        texts.append(repr(f.read_token) + str(f.read_token) + f"{f.push_token(SVC)}")
        for op in (f.read_heads(SVC), GitHubIssueSink(f, "o/t#42").store("x", {})):
            try:
                await op
            except Exception as exc:
                texts.append(f"{exc} {exc!r}")
        texts.append((await f.advance(SVC, w.c1, w.c2)).detail)
        texts.append((await f.create(SVC, w.c2)).detail)

    w.run(everything)
    for env in (
        {"GITHUB_TOKEN": f"bad {READ}", "PUSH_TOKEN": PUSH},
        {"GITHUB_TOKEN": READ, "PUSH_TOKEN": ""},
    ):
        try:
            GitHubForge.from_env(make_config(), env)
        except UsageError as exc:
            texts.append(str(exc))
    texts.append(logs.getvalue())
    blob = "\n".join(texts)
    assert "HTTP 500" in blob and "HTTP 503" in blob and "HTTP 403" in blob and "***" in blob
    assert READ not in blob and PUSH not in blob
    assert READ[:12] not in blob and PUSH[:15] not in blob


# ---- the ref lock ---------------------------------------------------------------------


def test_ref_lock_is_created_and_deleted(w: World) -> None:
    async def body(f: GitHubForge) -> None:
        async with GitHubRefLock.in_first_service(f, make_config(), poll_interval=0.01):
            assert w.gh.branch("o/r", "lockstep-lock/g1") == w.c2

    w.run(body)
    assert w.gh.branch("o/r", "lockstep-lock/g1") is None
    post, delete = w.gh.writes()
    assert post.json == {"ref": "refs/heads/lockstep-lock/g1", "sha": w.c2}
    assert delete.method == "DELETE" and delete.path == "/repos/o/r/git/refs/heads/lockstep-lock/g1"
    assert {post.headers["authorization"], delete.headers["authorization"]} == {f"Bearer {PUSH}"}


def test_ref_lock_for_config_owns_its_forge(w: World) -> None:
    async def body() -> None:
        config = make_config(lock="ref", lock_timeout=1)
        async with GitHubRefLock.for_config(config, w.env(), poll_interval=0.01) as lock:
            assert lock.held and w.gh.branch("o/r", "lockstep-lock/g1") == w.c2

    asyncio.run(body())
    assert w.gh.branch("o/r", "lockstep-lock/g1") is None
    with pytest.raises(UsageError, match="PUSH_TOKEN"):
        GitHubRefLock.for_config(make_config(), {"GITHUB_TOKEN": READ})


def test_ref_lock_held_times_out_with_instructions(w: World) -> None:
    w.gh.set_branch("o/r", "lockstep-lock/g1", w.c1)

    async def body(f: GitHubForge) -> None:
        async with GitHubRefLock(f, SVC, "g1", 3600, timeout=0.1, poll_interval=0.02):
            pytest.fail("must not get the lock")

    with pytest.raises(LockError) as info:
        w.run(body)
    msg = str(info.value)
    assert msg.startswith("lock held: refs/heads/lockstep-lock/g1 in o/r exists")
    assert "delete it if no lockstep run is active" in msg and "lock_timeout" in msg
    assert w.gh.branch("o/r", "lockstep-lock/g1") == w.c1  # never broken by lockstep


def test_ref_lock_watched_past_stale_after_says_probably_stale(w: World) -> None:
    w.gh.set_branch("o/r", "lockstep-lock/g1", w.c1)
    with pytest.raises(LockError, match="probably stale"):
        w.run(lambda f: GitHubRefLock(f, SVC, "g1", 0.05, timeout=10, poll_interval=0.02).acquire())


def test_ref_lock_waits_for_release(w: World) -> None:
    w.gh.set_branch("o/r", "lockstep-lock/g1", w.c1)

    async def body(f: GitHubForge) -> bool:
        lock = GitHubRefLock(f, SVC, "g1", 3600, timeout=5, poll_interval=0.02)
        task = asyncio.create_task(lock.acquire())
        await asyncio.sleep(0.1)
        assert not lock.held
        w.gh.delete_branch("o/r", "lockstep-lock/g1")
        await task
        await lock.release()
        return lock.held

    assert w.run(body) is False
    assert [r.method for r in w.gh.writes()].count("POST") >= 2


def test_ref_lock_without_write_access_is_a_lock_error(w: World) -> None:
    w.gh.add_token(PUSH, read=["o/r"], write=[])
    with pytest.raises(LockError, match=r"cannot create the lock .* HTTP 403"):
        w.run(lambda f: GitHubRefLock(f, SVC, "g1", 3600, timeout=1).acquire())


def test_ref_lock_released_between_post_and_read_is_retried(w: World) -> None:
    w.gh.inject(Fault.status(422, "Reference already exists"), method="POST")
    w.run(lambda f: GitHubRefLock(f, SVC, "g1", 3600, timeout=1).acquire())
    assert w.gh.branch("o/r", "lockstep-lock/g1") == w.c2
    assert [r.status for r in w.gh.writes()] == [422, 201]


def test_ref_lock_lost_answer_is_not_assumed_ours(w: World) -> None:
    w.gh.inject(Fault.drop_after(), method="POST", path=r"/repos/o/r/git/refs")
    with pytest.raises(LockError, match=r"cannot confirm who holds the lock .* no response"):
        w.run(lambda f: GitHubRefLock(f, SVC, "g1", 3600, timeout=1).acquire())


@pytest.mark.parametrize(
    ("fault", "gone", "needle"),
    [
        (Fault.status(500), False, "could not delete the lock refs/heads/lockstep-lock/g1 in o/r (HTTP 500"),
        (Fault.drop_after(), True, "lock released: refs/heads/lockstep-lock/g1 in o/r is gone"),
    ],
)
def test_ref_lock_release_failure_warns_with_the_fix(
    w: World, logs: io.StringIO, fault: Fault, gone: bool, needle: str
) -> None:
    w.gh.inject(fault, method="DELETE")

    async def body(f: GitHubForge) -> None:
        async with GitHubRefLock(f, SVC, "g1", 3600, timeout=1):
            pass

    w.run(body)
    assert (w.gh.branch("o/r", "lockstep-lock/g1") is None) is gone
    assert needle in logs.getvalue()
    if not gone:
        assert "gh api -X DELETE repos/o/r/git/refs/heads/lockstep-lock/g1" in logs.getvalue()

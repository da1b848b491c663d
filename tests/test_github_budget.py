"""GitHub's write limits planned before the first push (src/lockstep/forges/github/budget.py).

A refusal between two pushes is a split prod for as long as the wait; so the forge counts what it
sent and waits *before* the pre-push re-read.  Checked against the fake GitHub's own enforcement of
the published limits (80 writes a minute per credential), with one clock for both.
"""

from __future__ import annotations

import asyncio
import io

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lockstep.config import Config
from lockstep.errors import ForgeError
from lockstep.forges.github.budget import MARGIN, WriteBudget
from lockstep.forges.github.forge import GitHubForge
from lockstep.forges.github.http import GitHubHttp, RetryPolicy, Secret
from lockstep.model import PushStatus, Sha
from tests.support.fakegithub import FakeGitHub

READ = "ghp_BUDGETread" + "r" * 26
PUSH = "github_pat_BUDGETpush" + "p" * 29


class Clock:
    """One clock for the forge's budget and the fake's limits; sleeping moves both."""

    def __init__(self, gh: FakeGitHub | None = None) -> None:
        self.now = 1000.0
        self.gh = gh
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds
        if self.gh is not None:
            self.gh.limits.advance(seconds)
        await asyncio.sleep(0)


def token(value: str = PUSH, source: str = "PUSH_TOKEN") -> Secret:
    return Secret(value, source)


def test_writes_that_fit_need_no_wait() -> None:
    clock = Clock()
    budget = WriteBudget(clock)
    for _ in range(70):
        budget.note(token())
    plan = budget.plan([(token(), 10)])
    assert (plan.wait, plan.fits) == (0.0, True)


def test_writes_that_would_pass_the_minute_wait_for_the_oldest_to_leave_it() -> None:
    clock = Clock()
    budget = WriteBudget(clock)
    for _ in range(78):
        budget.note(token())
        clock.now += 0.5  # 78 writes over 39 s
    plan = budget.plan([(token(), 5)])  # 78 + 5 = 83: the 3 oldest must leave the minute first
    assert plan.fits and plan.wait == pytest.approx(1000.0 + 2 * 0.5 + 60 - clock.now + MARGIN)
    assert "5 more writes with the token from $PUSH_TOKEN would pass GitHub's 80 writes a minute" in plan.why
    assert PUSH not in plan.why


def test_more_writes_than_a_minute_allows_cannot_fit_and_say_so() -> None:
    plan = WriteBudget(Clock()).plan([(token(), 60), (token(), 30)])  # one token value, two services
    assert not plan.fits and plan.wait == 0.0
    assert plan.why == "90 writes with the token from $PUSH_TOKEN exceed GitHub's 80 writes a minute"


def test_other_tokens_have_windows_of_their_own() -> None:
    clock = Clock()
    budget = WriteBudget(clock)
    for _ in range(80):
        budget.note(token())
    assert budget.plan([(token("github_pat_OTHER" + "o" * 30, "OTHER"), 80)]).wait == 0.0
    assert budget.plan([(token(), 1)]).wait == pytest.approx(60.0 + MARGIN)


def test_the_hourly_limit_counts_too() -> None:
    clock = Clock()
    budget = WriteBudget(clock)
    for _ in range(10):
        for _ in range(50):
            budget.note(token())
        clock.now += 61  # 500 writes in ten minutes, never 80 in one
    plan = budget.plan([(token(), 1)])
    assert plan.fits and plan.wait == pytest.approx(1000.0 + 3600 - clock.now + MARGIN)
    assert "500 writes an hour" in plan.why


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(min_value=0, max_value=5), min_size=0, max_size=120), st.integers(1, 80))
def test_after_the_planned_wait_the_writes_fit_and_no_shorter_wait_would(gaps: list[float], need: int) -> None:
    clock = Clock()
    budget = WriteBudget(clock)
    for gap in gaps:
        clock.now += gap
        budget.note(token())
    sent = [1000.0 + sum(gaps[: i + 1]) for i in range(len(gaps))]
    plan = budget.plan([(token(), need)])

    def fits_at(t: float) -> bool:
        return sum(1 for s in sent if s > t - 60) + need <= 80 and sum(1 for s in sent if s > t - 3600) + need <= 500

    assert plan.fits and fits_at(clock.now + plan.wait)
    if plan.wait > 0:  # and no wait much shorter would do
        assert not fits_at(clock.now + plan.wait - MARGIN - 0.01)


def config() -> Config:
    return Config.model_validate({
        "gate": {"name": "g", "forge": "github"},
        "bypass": {"tracker": "o/t#1"},
        "services": [{"name": "svc", "repo": "o/r", "token_env": "PUSH_TOKEN",
                      "health_url": "http://127.0.0.1/h", "version_url": "http://127.0.0.1/v"}],
    })


def test_a_push_after_a_full_minute_waits_before_the_re_read_and_is_never_refused(logs: io.StringIO) -> None:
    with FakeGitHub() as gh:
        gh.add_repo("o/r")
        c1 = Sha(gh.commit("o/r", parents=()))
        c2 = Sha(gh.commit("o/r", parents=(c1,)))
        gh.set_branch("o/r", "main", c2)
        gh.set_branch("o/r", "prod", c1)
        gh.add_token(READ, read=["o/r"])
        gh.add_token(PUSH, read=["o/r"], write=["o/r"])
        clock = Clock(gh)
        service = config().services[0]

        async def main() -> tuple[PushStatus, float]:
            http = GitHubHttp(gh.url, timeout=2.0, retry=RetryPolicy(), sleep=clock.sleep, clock=clock)
            push = Secret(PUSH, "PUSH_TOKEN")
            forge = GitHubForge(http, read_token=Secret(READ, "GITHUB_TOKEN"), push_tokens={"svc": push},
                                repos={"svc": ("o", "r")})
            try:
                for _ in range(80):  # the minute's writes, spent with the push token
                    reply = await http.send("POST", "/repos/o/r/dispatches", token=push,
                                            json_body={"event_type": "x"})
                    assert reply.status == 204
                await forge.reserve_writes([service], 0)
                waited = sum(clock.slept)
                found = await forge.check_target(service, c2)
                assert found.current == c1
                return (await forge.advance(service, c1, c2)).status, waited
            finally:
                await forge.aclose()

        status, waited = asyncio.run(main())
        assert status == PushStatus.LANDED and gh.branch("o/r", "prod") == c2
        assert waited == pytest.approx(60.0, abs=1.0)
        patches = [r for r in gh.requests if r.method == "PATCH"]
        assert [r.status for r in patches] == [200]  # the wait came first: no 403 between pushes
        assert "waiting 60s before the pre-push re-read" in logs.getvalue()


def test_a_wait_longer_than_lockstep_allows_is_an_error_before_anything_is_pushed() -> None:
    clock = Clock()

    async def main() -> None:
        http = GitHubHttp("http://127.0.0.1:9", timeout=1.0, retry=RetryPolicy(max_wait=60.0),
                          sleep=clock.sleep, clock=clock)
        push = Secret(PUSH, "PUSH_TOKEN")
        forge = GitHubForge(http, read_token=Secret(READ, "GITHUB_TOKEN"), push_tokens={"svc": push},
                            repos={"svc": ("o", "r")})
        for _ in range(10):
            for _ in range(50):
                http.budget.note(push)
            clock.now += 61
        try:
            await forge.reserve_writes(config().services, 0)
        finally:
            await forge.aclose()

    with pytest.raises(ForgeError, match=r"500 writes an hour.*nothing was pushed, run again later"):
        asyncio.run(main())
    assert clock.slept == []

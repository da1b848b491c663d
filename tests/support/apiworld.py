"""One repository on the fake GitHub and an httpx client speaking to it: the world of the tests
that hold the fake's answers to GitHub's (tests/test_fakegithub_contract.py and friends)."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TypeVar

import httpx

from tests.support.fakegithub import FakeGitHub

REPO = "o/r"
BASE = f"/repos/{REPO}"
# One shared context: each httpx.Client otherwise loads the CA bundle again (~50 ms).
TLS = ssl.create_default_context()


@dataclass
class ApiWorld:
    """``REPO`` with main = c1 <- c2 <- c3, prod = c1, side = c1 <- side (diverges from main)."""

    gh: FakeGitHub
    client: httpx.Client  # as "tok-write", with the API version header
    c1: str
    c2: str
    c3: str
    side: str

    def as_(self, token: str | None) -> httpx.Client:
        """A second client with another (or no) credential."""
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.gh.url, headers=headers, timeout=5, verify=TLS)


W = TypeVar("W", bound=ApiWorld)


@contextmanager
def api_world(cls: type[W], *, main: str = "c3", tracker: bool = False, login: str = "lockstep-bot") -> Iterator[W]:
    """The world, with tokens "tok-write" (writes REPO), "tok-read" and "tok-other" (reads o/other
    only); ``tracker`` adds o/tracker with issue 42 to the first two."""
    with FakeGitHub() as gh:
        gh.add_repo(REPO)
        c1 = gh.commit(REPO)
        c2 = gh.commit(REPO, parents=(c1,))
        c3 = gh.commit(REPO, parents=(c2,))
        side = gh.commit(REPO, parents=(c1,))
        gh.set_branch(REPO, "main", {"c2": c2, "c3": c3}[main])
        gh.set_branch(REPO, "prod", c1)
        gh.set_branch(REPO, "side", side)
        extra = ["o/tracker"] if tracker else []
        gh.add_token("tok-write", write=[REPO, *extra], login=login)
        gh.add_token("tok-read", read=[REPO, *extra])
        gh.add_token("tok-other", read=["o/other"])
        if tracker:
            gh.add_issue("o/tracker", 42)
        headers = {"Authorization": "Bearer tok-write", "X-GitHub-Api-Version": "2022-11-28"}
        with httpx.Client(base_url=gh.url, headers=headers, timeout=5, verify=TLS) as client:
            yield cls(gh, client, c1, c2, c3, side)


def error(resp: httpx.Response, status: int) -> str:
    """Assert GitHub's error shape and return the message."""
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"] == "application/json; charset=utf-8"
    body = resp.json()
    assert body["status"] == str(status)
    assert body["documentation_url"].startswith("https://docs.github.com/")
    return str(body["message"])

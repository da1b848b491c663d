"""A stateful fake GitHub (REST, and GraphQL reads) over real loopback HTTP, for forge tests.

Quick reference::

    with FakeGitHub() as gh:                       # gh.url is the API root
        gh.add_repo("o/r")
        c1 = gh.commit("o/r"); c2 = gh.commit("o/r", parents=(c1,))
        gh.set_branch("o/r", "main", c2)
        gh.add_token("tok", read=["o/r"], write=[])
        gh.inject(Fault.drop_after(), method="PATCH", path=r"/repos/o/r/git/refs/heads/prod")
        gh.requests / gh.writes()                  # RecordedRequest list
        gh.events("o/r")                           # webhook events the applied writes sent (Event)
        gh.limits.advance(60); gh.limits.writes_per_minute = 5   # secondary limits (on by default)
        gh.graphql.queries()                       # POST /graphql calls, parsed (GraphQLCall)
        gh.graphql.remaining = 0; gh.graphql.timeout = 0.2   # its own budget and timeout

Endpoints, codes and messages follow ``docs/github-api.md``; the fake is
never more forgiving than GitHub (wrong types, unknown shas, missing refs,
non-fast-forward updates and missing permissions are all refused).
"""

from tests.support.fakegithub.events import Event
from tests.support.fakegithub.faults import Fault, Injection
from tests.support.fakegithub.graphql import GraphQLCall
from tests.support.fakegithub.server import FakeGitHub, RecordedRequest

__all__ = ["Event", "FakeGitHub", "Fault", "GraphQLCall", "Injection", "RecordedRequest"]

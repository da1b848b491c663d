"""The webhook events each applied write would send on GitHub, recorded per repository.

Why: an event is a side effect in someone's repository.  A ``deployment`` event starts every
``on: deployment`` workflow there, a ``push`` every ``on: push`` one; a promotion tool must send
exactly the events its users expect (the prod pushes) and no others (``docs/github-api.md``,
"Deployments as records: side effects").  The fake derives them from the request that was
applied, the way GitHub does, so a test can assert "no event in any service repository but
the prod pushes".

Rules (GitHub's webhook events and payloads):

* a ref created under ``refs/heads/`` or ``refs/tags/`` → ``create`` and ``push``; moved → ``push``;
  deleted → ``delete`` and ``push``; any other ref (``refs/lockstep/...``) → nothing;
* a file written with the Contents API → ``push`` on its branch;
* ``POST deployments`` → ``deployment``; ``POST deployments/{id}/statuses`` → ``deployment_status``;
* ``POST issues/{n}/comments`` → ``issue_comment``; ``POST dispatches`` → ``repository_dispatch``;
* ``POST statuses/{sha}`` → ``status``; ``POST check-runs`` → ``check_run``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote

_REPO = r"/repos/(?P<repo>[^/]+/[^/]+)"


@dataclass(frozen=True)
class Event:
    """One webhook event: where, which, about which ref (push/create/delete), sent by whom."""

    repo: str
    name: str
    ref: str | None
    sender: str
    request: int  # index of the request that caused it in the fake's log


def _ref_events(method: str, ref: str) -> list[tuple[str, str | None]]:
    if not ref.startswith(("refs/heads/", "refs/tags/")):
        return []  # refs outside branches and tags send no event (what the git forge's records use)
    if method == "POST":
        return [("create", ref), ("push", ref)]
    if method == "DELETE":
        return [("delete", ref), ("push", ref)]
    return [("push", ref)]


_SIMPLE = (
    (re.compile(_REPO + r"/deployments"), "deployment"),
    (re.compile(_REPO + r"/deployments/\d+/statuses"), "deployment_status"),
    (re.compile(_REPO + r"/issues/\d+/comments"), "issue_comment"),
    (re.compile(_REPO + r"/dispatches"), "repository_dispatch"),
    (re.compile(_REPO + r"/statuses/[0-9a-f]+"), "status"),
    (re.compile(_REPO + r"/check-runs"), "check_run"),
)
_REFS = re.compile(_REPO + r"/git/refs(?:/(?P<ref>.+))?")
_CONTENTS = re.compile(_REPO + r"/contents/.+")


def events_for(method: str, path: str, body: object, default_branch: str | None) -> list[tuple[str, str, str | None]]:
    """(repo, event, ref) for one applied write (2xx); ``body`` is the request's JSON."""
    fields = body if isinstance(body, dict) else {}
    match = _REFS.fullmatch(path)
    if match is not None:
        ref = f"refs/{unquote(match['ref'])}" if match["ref"] else str(fields.get("ref", ""))
        return [(match["repo"], name, r) for name, r in _ref_events(method, ref)]
    match = _CONTENTS.fullmatch(path)
    if match is not None and method == "PUT":
        branch = fields.get("branch") or default_branch
        return [(match["repo"], "push", f"refs/heads/{branch}")]
    if method != "POST":
        return []
    for pattern, name in _SIMPLE:
        match = pattern.fullmatch(path)
        if match is not None:
            return [(match["repo"], name, None)]
    return []

"""The bypass audit record on GitHub: a comment on the tracker issue."""

from __future__ import annotations

from urllib.parse import quote

from lockstep import log
from lockstep.errors import AuditError
from lockstep.forges.github.forge import GitHubForge, parse_tracker
from lockstep.redact import clean_text


class GitHubIssueSink:
    """The bypass audit record as a comment on the tracker issue (``OWNER/REPO#N``).

    The body is the rendered markdown sent as JSON text (the seed's ``-f
    body=@file`` bug posted a file path instead).  A comment POST is not
    idempotent, so it is retried only when the connection failed before the
    request left (cannot duplicate); every other failure is an AuditError,
    which blocks the bypass.  A lost *response* to a comment that was stored is
    therefore reported as a failure: a blocked bypass is the safe side.
    """

    def __init__(self, forge: GitHubForge, tracker: str) -> None:
        self._forge = forge
        self.owner, self.repo, self.number = parse_tracker(tracker)
        self.tracker = f"{self.owner}/{self.repo}#{self.number}"

    def __repr__(self) -> str:
        return f"GitHubIssueSink({self.tracker!r})"

    async def store(self, markdown: str, record: dict[str, object]) -> str:
        http = self._forge.http
        path = f"/repos/{quote(self.owner)}/{quote(self.repo)}/issues/{self.number}/comments"
        reply = await http.send("POST", path, token=self._forge.read_token, json_body={"body": markdown})
        if reply.not_sent:
            log.warn(
                f"audit comment on {self.tracker}: {reply.error}; "
                f"the connection failed before sending, retrying once"
            )
            reply = await http.send("POST", path, token=self._forge.read_token, json_body={"body": markdown})
        if reply.status == 201:
            url = (reply.json_object() or {}).get("html_url")
            if isinstance(url, str) and url.startswith(("https://", "http://")):
                return clean_text(url, 500)
            return self.tracker
        raise AuditError(
            f"cannot post the bypass audit comment to {self.tracker}: {reply.describe()}"
        )

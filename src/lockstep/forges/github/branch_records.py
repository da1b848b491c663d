"""Promotion records on GitHub as one JSON file on one branch of one repository.

Where a record lives
    ``<gate>.json`` on the branch ``[gate] records_branch`` (``lockstep/records``) of
    ``[gate] records_repo`` (by default the repository of ``bypass.tracker``): the
    latest promotion record of the gate, replaced by each write.  Earlier records stay
    in the branch's git history (``git log -p lockstep/records -- <gate>.json``).  The
    latest record is all ``status``, ``reconcile`` and a re-run's start state need
    (:func:`lockstep.records.latest_run`), so one read is one request.

Why a file on a branch, not deployments
    Deployments cost one write per service per record and send ``deployment`` and
    ``deployment_status`` events in every service repository, which start any
    ``on: deployment`` workflow there (``docs/github-api.md``).  A file costs one
    write per record whatever N is, touches no service repository, and its ``push``
    event fires in the records repository only, on a branch no deploy workflow
    watches; made with the Actions ``GITHUB_TOKEN`` it starts no workflow at all.

Writes
    ``PUT /repos/{o}/{r}/contents/<gate>.json`` with ``sha`` = the file's current blob
    id: a compare-and-swap, so a write never silently replaces one it did not see
    (409 when the file moved, 422 when ``sha`` is missing for an existing file: re-read,
    then retry, at most :data:`ATTEMPTS` times).  A ``started`` record replaces the previous
    run's; a ``finished`` one only its own run's ``started`` record (or nothing): finding
    another run's record there is a ForgeError, never an overwrite.  A lost answer is harmless: the retry's
    re-read finds this very record and stops.  The first record of a repository creates
    the branch as an orphan commit holding only the file (``POST git/trees`` with the
    content inline, ``POST git/commits`` without parents, ``POST git/refs``): three
    writes, once.  Writes use the read token (``$GITHUB_TOKEN``), which therefore needs
    ``Contents: write`` on the records repository.

Reads
    In the GraphQL query the heads of the same phase go in (``forges/github/heads.py``:
    ``object(expression: "<branch>:<gate>.json") { ... on Blob { oid text } }`` and the branch's
    ref), so reading the records costs no request of its own: the gate reads them beside the
    pre-push re-read.  Over REST when GraphQL cannot answer (the text cut or binary, the
    repository not found, the query failing):
    ``GET /repos/{o}/{r}/contents/<gate>.json?ref=<branch>``: 200 with the record; 404
    ``No commit found for the ref ...`` when the branch does not exist yet and 404
    ``Not Found`` when the file does not (both: no records yet).  Any other answer is a
    ForgeError naming the repository, branch, status and GitHub's message.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from dataclasses import dataclass
from urllib.parse import quote

from lockstep.config import Config
from lockstep.errors import ForgeError
from lockstep.forges.github.forge import GitHubForge, check_branch, parse_repo, parse_tracker
from lockstep.forges.github.heads import FileRead
from lockstep.forges.github.http import Reply
from lockstep.records import PromotionRecord

ATTEMPTS = 4
_EMPTY_REPO = "This repository is empty."  # GitHub's 404 for a repository without commits


def records_repo(config: Config) -> tuple[str, str]:
    """``[gate] records_repo``, else the tracker's repository (the config refuses neither being set)."""
    if config.gate.records_repo:
        return parse_repo(config.gate.records_repo, "gate.records_repo")
    owner, repo, _ = parse_tracker(config.bypass.tracker or "")
    return owner, repo


def _blob_sha(text: str) -> str:
    """The id git (and so the Contents API's ``sha``) gives a file holding ``text``."""
    data = text.encode()
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()


def _parsed(text: str) -> PromotionRecord | None:
    """The record in the file; None for anything else (replaced by the next write, never trusted)."""
    try:
        return PromotionRecord.from_json(json.loads(text))
    except ValueError:
        return None


def _branch_gone(reply: Reply) -> bool:
    """GitHub's 404 for a PUT to a branch that does not exist (any other 404: no access)."""
    message = reply.message()
    return reply.status == 404 and message.startswith("Branch ") and message.endswith(" not found")


@dataclass(frozen=True)
class _Current:
    """What the file holds now: its blob id and record (``sha`` None: no file yet)."""

    sha: str | None
    record: PromotionRecord | None
    branch_exists: bool


class GitHubBranchRecordStore:
    """:class:`~lockstep.forges.base.RecordStore` in one file on one branch (see the module docstring)."""

    def __init__(self, forge: GitHubForge, config: Config) -> None:
        self._forge = forge
        self.owner, self.repo = records_repo(config)
        self.branch = check_branch(config.gate.records_branch, "gate.records_branch")
        self.path = f"{config.gate.name}.json"
        self._known: _Current | None = None  # from the last read or write, for the next write

    def __repr__(self) -> str:
        return f"GitHubBranchRecordStore({self.location!r})"

    @property
    def location(self) -> str:
        return f"{self.owner}/{self.repo} branch {self.branch}, file {self.path}"

    def _base(self) -> str:
        return f"/repos/{quote(self.owner)}/{quote(self.repo)}"

    def _fail(self, doing: str, reply: Reply) -> ForgeError:
        detail = reply.describe() + (f" ({reply.gave_up})" if reply.gave_up else "")
        if reply.status in (401, 404) or reply.header("x-accepted-github-permissions"):  # not "too large"
            detail += f" (the token from ${self._forge.read_token.source} needs Contents: write there)"
        return ForgeError(f"{self.owner}/{self.repo}: cannot {doing} {self.path} on {self.branch}: {detail}")

    # -- reading ------------------------------------------------------------------------

    async def _read(self) -> _Current:
        """The file from the GraphQL query the heads of this phase go in (no request of its own);
        over REST when GraphQL cannot answer (its text cut or binary, the repository not found)."""
        seen = await self._forge.read_file(FileRead(self.owner, self.repo, self.branch, self.path))
        if seen is None:
            return await self._read_rest()
        self._known = _Current(seen.sha, _parsed(seen.text) if seen.text is not None else None,
                               branch_exists=seen.branch_exists)
        return self._known

    async def _read_rest(self) -> _Current:
        reply = await self._forge.http.get(
            f"{self._base()}/contents/{quote(self.path)}",
            token=self._forge.read_token,
            what=f"read the promotion records in {self.location}",
            params={"ref": self.branch},
        )
        if reply.status == 404:
            message = reply.message()
            branch_missing = message.startswith("No commit found for the ref") or message == _EMPTY_REPO
            self._known = _Current(None, None, branch_exists=not branch_missing)
            return self._known
        body = reply.json_object() if reply.status == 200 else None
        if body is None or not isinstance(body.get("sha"), str) or not isinstance(body.get("content"), str):
            raise self._fail("read", reply)
        try:
            text = base64.b64decode(body["content"].replace("\n", ""), validate=True).decode()
        except (binascii.Error, ValueError):
            text = ""
        self._known = _Current(body["sha"], _parsed(text), branch_exists=True)
        return self._known

    async def read_all(self) -> list[PromotionRecord]:
        """The latest record (older ones live in the branch's git history, not needed here)."""
        current = await self._read()
        return [current.record] if current.record is not None else []

    async def read_recent(self) -> list[PromotionRecord]:
        """The same one request as :meth:`read_all`."""
        return await self.read_all()

    # -- writing ------------------------------------------------------------------------

    async def write(self, record: PromotionRecord) -> str:
        """Replace the file with ``record`` (compare-and-swap on what was read); ForgeError on failure."""
        text = json.dumps(record.to_json(), sort_keys=True, ensure_ascii=False, indent=1) + "\n"
        for _ in range(ATTEMPTS):
            current = self._known or await self._read()
            if current.record == record:
                return self.location  # an earlier attempt landed and its answer was lost
            other = current.record.run_id if current.record is not None else record.run_id
            if record.phase == "finished" and other != record.run_id:
                raise ForgeError(
                    f"{self.owner}/{self.repo}: {self.path} on {self.branch} now holds the record of run "
                    f"{other}, not this run's: another run of this gate wrote it, so this run's finished "
                    "record was not written over it"
                )
            if not current.branch_exists:
                if await self._create_branch(record, text):
                    return self.location
                continue
            reply = await self._put(record, text, current.sha)
            if reply.status in (200, 201):
                sha = ((reply.json_object() or {}).get("content") or {}).get("sha")
                self._known = _Current(sha if isinstance(sha, str) else None, record, True)
                return self.location
            if reply.status in (409, 422) or reply.response is None or _branch_gone(reply):
                self._known = None  # moved, created or deleted meanwhile, or no answer: read again
                continue
            raise self._fail("write", reply)
        raise ForgeError(
            f"{self.owner}/{self.repo}: {self.path} on {self.branch} kept changing; "
            f"record not written after {ATTEMPTS} tries"
        )

    async def _put(self, record: PromotionRecord, text: str, sha: str | None) -> Reply:
        body: dict[str, object] = {
            "message": f"lockstep: {record.phase} record of run {record.run_id}",
            "content": base64.b64encode(text.encode()).decode(),
            "branch": self.branch,
        }
        if sha is not None:
            body["sha"] = sha
        path = f"{self._base()}/contents/{quote(self.path)}"
        return await self._forge.http.send("PUT", path, token=self._forge.read_token, json_body=body)

    async def _create_branch(self, record: PromotionRecord, text: str) -> bool:
        """The branch as an orphan commit holding only the file; False when another writer created
        it first (the caller reads again and replaces the file the usual way)."""
        http, token, base = self._forge.http, self._forge.read_token, self._base()
        entry = {"path": self.path, "mode": "100644", "type": "blob", "content": text}
        tree = await http.send("POST", f"{base}/git/trees", token=token, json_body={"tree": [entry]})
        tree_sha = (tree.json_object() or {}).get("sha") if tree.status == 201 else None
        if not isinstance(tree_sha, str):
            raise self._fail("create the records branch for", tree)
        message = f"lockstep: promotion records (first: {record.phase} record of run {record.run_id})"
        commit = await http.send(
            "POST", f"{base}/git/commits", token=token,
            json_body={"message": message, "tree": tree_sha, "parents": []},
        )
        commit_sha = (commit.json_object() or {}).get("sha") if commit.status == 201 else None
        if not isinstance(commit_sha, str):
            raise self._fail("create the records branch for", commit)
        ref = await http.send(
            "POST", f"{base}/git/refs", token=token,
            json_body={"ref": f"refs/heads/{self.branch}", "sha": commit_sha},
        )
        self._known = None
        if ref.status == 201:
            # the file's blob id is git's hash of its bytes: the next write's compare-and-swap needs no read
            self._known = _Current(_blob_sha(text), record, branch_exists=True)
            return True
        if ref.status == 422 or ref.response is None:
            return False  # created meanwhile (or the answer was lost): read again
        raise self._fail("create the records branch for", ref)

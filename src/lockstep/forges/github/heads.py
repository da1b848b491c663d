"""Every service's heads in one GraphQL query per phase, instead of 2-3 REST reads each.

Why: at N = 50 the REST reads were 150 of a run's 256 requests, and each phase's reads all go
out at once anyway.  The gate asks the forge per service, all at once (``asyncio.gather``);
:class:`HeadsBatch` gathers what is asked in the same turn of the event loop into one query with
one alias per repository (``docs/github-api.md``, "GraphQL")::

    query LockstepHeads($o0: String!, $n0: String!, $s0: String!, $t0: String!, ...) {
      s0: repository(owner: $o0, name: $n0, followRenames: false) {
        source: ref(qualifiedName: $s0) { target { oid } }
        target: ref(qualifiedName: $t0) { target { oid } compare(headRef: $s0) { status } }
      }
      ...
    }

Names travel as variables, never spliced into the query.  The compare (the target is the base,
the source the head) answers the fast-forward question in the same call.

GraphQL answers HTTP 200 with per-alias errors, so each service is judged on its own alias:

* a repository that is ``null`` (``NOT_FOUND``: missing, renamed, or not readable with the token),
  or a whole query GitHub would not answer (an ``errors`` list without ``data``, its own
  ``RATE_LIMIT`` budget spent, a 5xx or 504 after the retries a read gets): ``None``, and the forge
  reads that service over REST, whose 404 and 301 it already tells apart;
* a ref that is ``null``: that ref's field of :class:`Observed` is ``None``, and the forge reads
  that branch over REST (a missing target is a seed, a renamed branch an error: GraphQL cannot tell
  them apart, REST's ``branches`` endpoint can);
* a compare that is ``null`` (no common history): ``status`` is ``None``, ancestry unknown;
* no answer at all (a connection that failed after its retries): :class:`ForgeError` for every
  service in the query, as a REST read would give; REST would not do better a moment later.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from lockstep import log
from lockstep.config import ServiceConfig
from lockstep.errors import ForgeError
from lockstep.forges.github.http import GitHubHttp, Reply, Secret
from lockstep.model import Sha
from lockstep.redact import clean_text

__all__ = ["MAX_ALIASES", "FileRead", "FileSeen", "HeadsBatch", "Observed", "build_query"]

MAX_ALIASES = 100  # services per query (plus its file reads): far from GitHub's 500,000-node and 10 s limits
STATUSES = frozenset({"AHEAD", "BEHIND", "DIVERGED", "IDENTICAL"})


@dataclass(frozen=True)
class Observed:
    """One repository's heads as one GraphQL answer gave them."""

    source: Sha | None  # None: GraphQL found no such ref (the forge asks REST)
    target: Sha | None
    status: str | None  # compare target...source; None when GraphQL could not compare


@dataclass(frozen=True)
class FileRead:
    """A file to read in the same query: ``path`` on ``branch`` of ``owner/name`` (the records)."""

    owner: str
    name: str
    branch: str
    path: str

    @property
    def repo(self) -> str:
        return f"{self.owner}/{self.name}"


@dataclass(frozen=True)
class FileSeen:
    """A file as one GraphQL answer gave it."""

    branch_exists: bool
    sha: str | None  # the blob id, which the Contents API calls ``sha``; None: no such file
    text: str | None


Item = ServiceConfig | FileRead
Answer = Observed | FileSeen | None


def build_query(items: Sequence[tuple[str, str, str, str] | FileRead]) -> dict[str, object]:
    """The request body: (owner, name, source branch, target branch) per alias ``s{i}``, and a file
    per alias ``f{i}`` (its branch's head, and its blob: ``object(expression: "branch:path")``)."""
    declared, fields = [], []
    variables: dict[str, str] = {}
    for i, item in enumerate(items):
        if isinstance(item, FileRead):
            declared.append(f"$fo{i}: String!, $fn{i}: String!, $fb{i}: String!, $fe{i}: String")
            variables |= {f"fo{i}": item.owner, f"fn{i}": item.name, f"fb{i}": f"refs/heads/{item.branch}",
                          f"fe{i}": f"{item.branch}:{item.path}"}
            fields.append(
                f"f{i}: repository(owner: $fo{i}, name: $fn{i}, followRenames: false) {{ "
                f"branch: ref(qualifiedName: $fb{i}) {{ target {{ oid }} }} "
                f"file: object(expression: $fe{i}) {{ ... on Blob {{ oid isTruncated text }} }} }}"
            )
            continue
        owner, name, source, target = item
        declared.append(f"$o{i}: String!, $n{i}: String!, $s{i}: String!, $t{i}: String!")
        variables |= {f"o{i}": owner, f"n{i}": name, f"s{i}": f"refs/heads/{source}",
                      f"t{i}": f"refs/heads/{target}"}
        fields.append(
            f"s{i}: repository(owner: $o{i}, name: $n{i}, followRenames: false) {{ "
            f"source: ref(qualifiedName: $s{i}) {{ target {{ oid }} }} "
            f"target: ref(qualifiedName: $t{i}) {{ target {{ oid }} "
            f"compare(headRef: $s{i}) {{ status }} }} }}"
        )
    query = f"query LockstepHeads({', '.join(declared)}) {{ {' '.join(fields)} }}"
    return {"query": query, "variables": variables}


def _oid(ref: object) -> Sha | None:
    target = ref.get("target") if isinstance(ref, dict) else None
    oid = target.get("oid") if isinstance(target, dict) else None
    try:
        return Sha(str(oid)) if isinstance(oid, str) else None
    except ValueError:
        return None


def _observed(node: object) -> Observed | None:
    if not isinstance(node, dict):
        return None
    target_ref = node.get("target")
    compare = target_ref.get("compare") if isinstance(target_ref, dict) else None
    status = compare.get("status") if isinstance(compare, dict) else None
    return Observed(_oid(node.get("source")), _oid(target_ref), status if status in STATUSES else None)


def _file_seen(node: object) -> FileSeen | None:
    """None (read it over REST) when the repository is not found or the text is cut or binary."""
    if not isinstance(node, dict):
        return None
    branch = node.get("branch") is not None
    blob = node.get("file")
    if not isinstance(blob, dict):
        return FileSeen(branch, None, None)
    oid, text = blob.get("oid"), blob.get("text")
    if blob.get("isTruncated") is not False or not isinstance(oid, str) or not isinstance(text, str):
        return None
    return FileSeen(branch, oid, text)


def _unanswered(reply: Reply, body: dict[str, Any] | None) -> str | None:
    """Why GraphQL gave no data for the whole query (None: it did, judge each alias)."""
    if reply.status != 200 or body is None:
        return reply.describe() + (f" ({reply.gave_up})" if reply.gave_up else "")
    if isinstance(body.get("data"), dict):
        return None
    errors = body.get("errors")
    first = errors[0] if isinstance(errors, list) and errors else {}
    message = first.get("message") if isinstance(first, dict) else None
    return f"GraphQL error: {clean_text(str(message), 160)}" if message else "GraphQL answered without data"


class HeadsBatch:
    """Coalesces the per-service reads of one phase into GraphQL queries (see the module doc)."""

    def __init__(
        self, http: GitHubHttp, token: Secret, repo: Callable[[ServiceConfig], tuple[str, str]]
    ) -> None:
        self._http = http
        self._token = token
        self._repo = repo
        self._waiting: dict[str, tuple[Item, list[asyncio.Future[Answer]]]] = {}
        self._flush: asyncio.Task[None] | None = None  # the next query, not yet sent
        self._tasks: set[asyncio.Task[None]] = set()  # every query task not yet done
        self.queries = 0  # GraphQL requests sent (for tests and benchmarks)

    async def observe(self, service: ServiceConfig) -> Observed | None:
        """This service's heads from the next query; None when GraphQL could not answer for it."""
        answer = await self._ask(f"s:{service.name}", service)
        assert answer is None or isinstance(answer, Observed)
        return answer

    async def read_file(self, file: FileRead) -> FileSeen | None:
        """A file from the next query; None when GraphQL could not answer for it (read it over REST)."""
        answer = await self._ask(f"f:{file.repo}:{file.branch}:{file.path}", file)
        assert answer is None or isinstance(answer, FileSeen)
        return answer

    async def _ask(self, key: str, item: Item) -> Answer:
        future: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(key, (item, []))[1].append(future)
        if self._flush is None:
            self._flush = task = asyncio.create_task(self._send())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return await future

    async def aclose(self) -> None:
        """Stop every query (sent or not) and answer every read still waiting with a ForgeError."""
        waiting, self._waiting, self._flush = list(self._waiting.values()), {}, None
        for item, futures in waiting:
            for future in futures:
                if not future.done():
                    future.set_exception(ForgeError(f"{item.repo}: the forge was closed before "
                                                    "this read was answered"))
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _send(self) -> None:
        await asyncio.sleep(0)  # every task of the caller's gather has asked by now
        batch, self._waiting, self._flush = list(self._waiting.values()), {}, None
        if not batch:
            return
        # up to MAX_ALIASES services a query; the file reads (the records) ride in the first
        heads = [entry for entry in batch if not isinstance(entry[0], FileRead)]
        files = [entry for entry in batch if isinstance(entry[0], FileRead)]
        chunks = [heads[i:i + MAX_ALIASES] for i in range(0, len(heads), MAX_ALIASES)] or [[]]
        chunks[0] += files
        await asyncio.gather(*(self._query(chunk) for chunk in chunks))

    async def _query(self, chunk: list[tuple[Item, list[asyncio.Future[Answer]]]]) -> None:
        try:
            answers = await self._answers([item for item, _ in chunk])
        except BaseException as exc:
            for _, futures in chunk:
                for future in futures:
                    if future.done():
                        continue
                    if isinstance(exc, asyncio.CancelledError):
                        future.cancel()  # the forge is closing: the reader is told, never left waiting
                    else:
                        future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        for (_, futures), answer in zip(chunk, answers, strict=True):
            for future in futures:
                if not future.done():
                    if isinstance(answer, ForgeError):
                        future.set_exception(answer)
                    else:
                        future.set_result(answer)

    async def _answers(self, items: list[Item]) -> list[Answer | ForgeError]:
        parts = [item if isinstance(item, FileRead) else (*self._repo(item), item.source, item.target)
                 for item in items]
        names = ", ".join(i.repo for i in items[:3]) + (", ..." if len(items) > 3 else "")
        self.queries += 1
        what = f"GraphQL heads of {names}"
        reply = await self._http.graphql(build_query(parts), token=self._token, what=what)
        body = reply.json_object()
        why = _unanswered(reply, body)
        if why is not None and reply.response is None:
            return [ForgeError(f"{i.repo}: cannot read {_what(i)}: {why}", status=None, transient=True)
                    for i in items]
        if why is not None:
            log.warn(f"reading heads with GraphQL failed ({why}); reading them over REST instead")
            return [None] * len(items)
        assert body is not None
        data = body["data"]
        return [_file_seen(data.get(f"f{i}")) if isinstance(item, FileRead) else _observed(data.get(f"s{i}"))
                for i, item in enumerate(items)]


def _what(item: Item) -> str:
    if isinstance(item, FileRead):
        return f"{item.path} on {item.branch}"
    return f"'{item.source}' and '{item.target}'"

"""External gates: a check that waits for a GitHub commit status or check run.

A ``[[checks]]`` entry with ``commit_status = "e2e"`` or ``check_run = "canary"``
runs nothing itself: heavy suites run wherever they like (any CI, any number of
machines) and report to GitHub on the commit they tested.  The gate then
requires that report on **each service's source sha resolved in this run**
(``services = [...]`` narrows which services must carry it) and polls, all
services at once, until every one is conclusive or ``timeout`` runs out.

What the newest report with that name on a service's sha means:

* status ``success``, or a check run completed with conclusion ``success``: passes;
* status ``pending``, or a check run not completed (``queued``, ``in_progress``
  ...): keep polling; at the timeout, "still pending on abc1234 after 10m";
* status ``failure`` / ``error`` (or a state GitHub may add), or a check run
  completed with any other conclusion: fails **at once**, and the other
  services stop being polled;
* nothing with that name: keep polling; at the timeout, "no `e2e` status on
  abc1234 after 10m" or, when one of the :data:`STALE_DEPTH` previous commits
  carries it, "`e2e` status reported on 1234567 ... but not on abc1234".

``neutral`` and ``skipped`` fail on purpose: GitHub's branch protection counts
them as passing, but a promotion gate whose suite did not run has proven nothing.

Endpoints (reads only, with the read token, retried like every other read):
``GET /repos/{o}/{r}/commits/{sha}/status`` (the combined status: its
``statuses`` hold the newest status of each context),
``GET /repos/{o}/{r}/commits/{sha}/check-runs?check_name=NAME`` (the newest
run, by id, wins: a re-run supersedes an earlier failure) and, only to explain
a missing report at the timeout, ``GET /repos/{o}/{r}/commits?sha={sha}``.

A read that fails for good (401, 403, 404, 422) fails the check at once with
the token permission it needs; a transient failure (5xx, timeouts, rate limits
left after the HTTP layer's own retries) is logged and polling goes on.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal
from urllib.parse import quote

from lockstep import log
from lockstep.checks import CheckResult
from lockstep.config import CheckConfig, ServiceConfig
from lockstep.forges.base import Forge
from lockstep.forges.github.forge import GitHubForge, parse_repo
from lockstep.forges.github.http import Reply
from lockstep.model import Sha
from lockstep.probes import human_duration
from lockstep.redact import clean_text

__all__ = [
    "STALE_DEPTH",
    "Observation",
    "ServiceVerdict",
    "run_external_check",
]

STALE_DEPTH = 5  # earlier commits searched to explain a missing report
_MAX_STATUS_PAGES = 10  # 100 contexts a page
_HEARTBEAT = 30.0
_TEXT_LIMIT = 120
_SUCCESS_STATUS = frozenset({"success"})
_PENDING_STATUS = frozenset({"pending"})

Verdict = Literal["success", "pending", "failure", "missing"]
Outcome = Literal["passed", "failed", "pending", "missing", "stale", "unreadable", "stopped"]


@dataclass(frozen=True)
class Observation:
    """What one read found for one commit.

    ``state`` is GitHub's own word: a status ``state``, or a check run's
    ``status`` (``conclusion`` once completed).  ``error`` is set instead when
    the read failed; ``fatal`` when retrying cannot help.
    """

    verdict: Verdict
    state: str = ""
    description: str = ""
    url: str = ""
    error: str = ""
    fatal: bool = False


@dataclass(frozen=True)
class ServiceVerdict:
    """How one service ended; ``message`` is the one line people read."""

    service: str
    sha: Sha
    outcome: Outcome
    state: str
    message: str
    url: str = ""
    polls: int = 0

    @property
    def ok(self) -> bool:
        return self.outcome == "passed"


class _Reader:
    """Reads one kind of report (status context or check run name) for one repository."""

    def __init__(self, forge: GitHubForge, check: CheckConfig, service: ServiceConfig) -> None:
        self.forge = forge
        self.check = check
        self.service = service
        self.kind = check.external or "commit_status"
        self.name = check.external_name
        self.owner, self.repo = parse_repo(service.repo)
        self.base = f"/repos/{quote(self.owner)}/{quote(self.repo)}"
        self.what = f"`{self.name}` " + ("status" if self.kind == "commit_status" else "check run")

    def _text(self, value: object, limit: int = _TEXT_LIMIT) -> str:
        return clean_text(value, limit) if isinstance(value, str) else ""

    def _failed_read(self, reply: Reply, sha: Sha) -> Observation:
        status = reply.status
        detail = reply.describe() + (f" ({reply.gave_up})" if reply.gave_up else "")
        transient = bool(reply.gave_up) or status is None or status >= 500 or status == 429
        error = f"cannot read {self.what} on {sha.short} in {self.service.repo}: {detail}"
        if status in (401, 403, 404):
            permission = "Commit statuses" if self.kind == "commit_status" else "Checks"
            error += f" (the read token needs {permission}: read on {self.service.repo})"
        return Observation("missing", error=error, fatal=not transient)

    async def _get(self, path: str, sha: Sha, params: Mapping[str, str]) -> tuple[Reply, Observation | None]:
        reply = await self.forge.http.get(
            self.base + path,
            token=self.forge.read_token,
            what=f"{self.service.repo}: reading {self.what} on {sha.short}",
            params=params,
        )
        if reply.status == 200 and reply.json_object() is not None:
            return reply, None
        if reply.status == 200:
            return reply, Observation(
                "missing",
                error=f"unexpected answer reading {self.what} on {sha.short} in {self.service.repo} "
                "(HTTP 200 without a JSON object)",
            )
        return reply, self._failed_read(reply, sha)

    async def observe(self, sha: Sha) -> Observation:
        if self.kind == "commit_status":
            return await self._status(sha)
        return await self._check_run(sha)

    async def _status(self, sha: Sha) -> Observation:
        """The newest status with this context, from the combined status (paged by 100 contexts)."""
        for page in range(1, _MAX_STATUS_PAGES + 1):
            reply, failed = await self._get(
                f"/commits/{quote(sha)}/status", sha, {"per_page": "100", "page": str(page)}
            )
            if failed is not None:
                return failed
            body = reply.json_object() or {}
            statuses = body.get("statuses")
            statuses = statuses if isinstance(statuses, list) else []
            mine = [s for s in statuses if isinstance(s, dict) and s.get("context") == self.name]
            if mine:
                newest = max(mine, key=lambda s: (str(s.get("updated_at") or ""), _int(s.get("id"))))
                return self._from_status(newest)
            total = _int(body.get("total_count"))
            if len(statuses) < 100 or total <= page * 100:
                break
        return Observation("missing", state="none")

    def _from_status(self, status: Mapping[str, object]) -> Observation:
        state = self._text(status.get("state"), 40) or "(no state)"
        description = self._text(status.get("description"))
        url = self._text(status.get("target_url"), 300)
        if state in _SUCCESS_STATUS:
            verdict: Verdict = "success"
        elif state in _PENDING_STATUS:
            verdict = "pending"
        else:  # failure, error, and anything GitHub might add: never a pass
            verdict = "failure"
        return Observation(verdict, state, description, url)

    async def _check_run(self, sha: Sha) -> Observation:
        """The newest check run (highest id) with this name: a re-run supersedes an earlier result."""
        reply, failed = await self._get(
            f"/commits/{quote(sha)}/check-runs", sha, {"check_name": self.name, "per_page": "100"}
        )
        if failed is not None:
            return failed
        runs = (reply.json_object() or {}).get("check_runs")
        runs = runs if isinstance(runs, list) else []
        mine = [r for r in runs if isinstance(r, dict) and r.get("name") == self.name]
        if not mine:
            return Observation("missing", state="none")
        newest = max(mine, key=lambda r: _int(r.get("id")))
        status = self._text(newest.get("status"), 40) or "(no status)"
        output = newest.get("output")
        title = self._text(output.get("title")) if isinstance(output, dict) else ""
        url = self._text(newest.get("details_url") or newest.get("html_url"), 300)
        if status != "completed":
            return Observation("pending", status, title, url)
        conclusion = self._text(newest.get("conclusion"), 40) or "(no conclusion)"
        return Observation("success" if conclusion == "success" else "failure", conclusion, title, url)

    async def earlier_report(self, sha: Sha) -> tuple[Sha, int, Observation] | None:
        """The nearest of the ``STALE_DEPTH`` previous commits carrying this report, if any.

        Best effort, used once at the timeout: any failure means "don't know".
        """
        reply = await self.forge.http.get(
            f"{self.base}/commits",
            token=self.forge.read_token,
            what=f"{self.service.repo}: listing commits before {sha.short}",
            params={"sha": str(sha), "per_page": str(STALE_DEPTH + 1)},
        )
        if reply.status != 200 or reply.response is None:
            return None
        try:
            items = reply.response.json()
        except ValueError:
            return None
        if not isinstance(items, list):
            return None
        shas: list[Sha] = []
        for item in items:
            try:
                shas.append(Sha(str(item.get("sha") if isinstance(item, dict) else "")))
            except ValueError:
                return None
        if not shas or shas[0] != sha:
            return None
        for distance, earlier in enumerate(shas[1:], start=1):
            seen = await self.observe(earlier)
            if seen.error:
                return None
            if seen.verdict != "missing":
                return earlier, distance, seen
        return None


def _int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _with_description(text: str, seen: Observation) -> str:
    return text + (f": {seen.description}" if seen.description else "")


class _Poller:
    """Polls one service until its report is conclusive or the shared deadline passes."""

    def __init__(
        self,
        reader: _Reader,
        sha: Sha,
        *,
        deadline: float,
        clock: Callable[[], float],
        sleep: Callable[[float], Awaitable[None]],
    ) -> None:
        self.reader = reader
        self.sha = sha
        self.deadline = deadline
        self.clock = clock
        self.sleep = sleep
        self.last = Observation("missing", state="none")
        self.polls = 0
        self.good_reads = 0
        self._logged: tuple[str, str, str] | None = None
        self._last_log = 0.0

    @property
    def name(self) -> str:
        return self.reader.service.name

    def _verdict(self, outcome: Outcome, message: str, state: str | None = None) -> ServiceVerdict:
        return ServiceVerdict(
            self.name,
            self.sha,
            outcome,
            self.last.state if state is None else state,
            f"{self.name}: {message}",
            self.last.url,
            self.polls,
        )

    def _log(self, seen: Observation, now: float) -> None:
        key = (seen.verdict, seen.state, seen.error)
        label = self.reader.check.name
        if key != self._logged:
            self._logged, self._last_log = key, now
            if seen.error:
                log.warn(f"[{label}] {self.name}: {seen.error}; still polling")
            elif seen.verdict == "missing":
                log.info(f"[{label}] {self.name}: no {self.reader.what} on {self.sha.short} yet")
            else:
                text = f"{self.reader.what} is {seen.state} on {self.sha.short}"
                log.info(f"[{label}] {self.name}: {_with_description(text, seen)}")
        elif now - self._last_log >= _HEARTBEAT:
            self._last_log = now
            state = "no report yet" if seen.verdict == "missing" else seen.state
            waiting = f"still waiting for {self.reader.what} on {self.sha.short} ({state})"
            log.info(f"[{label}] {self.name}: {waiting}")

    async def run(self, timeout: float) -> ServiceVerdict:
        what, short = self.reader.what, self.sha.short
        while True:
            seen = await self.reader.observe(self.sha)
            self.polls += 1
            now = self.clock()
            if seen.error and seen.fatal:
                self.last = seen
                return self._verdict("unreadable", seen.error, "unreadable")
            if not seen.error:
                self.last = seen
                self.good_reads += 1
            self._log(seen, now)
            if not seen.error and seen.verdict == "success":
                return self._verdict("passed", _with_description(f"{what} is {seen.state} on {short}", seen))
            if not seen.error and seen.verdict == "failure":
                text = f"{what} is {seen.state} on {short}"
                if self.reader.kind == "check_run" and seen.state in ("neutral", "skipped"):
                    text += " (lockstep requires success)"
                return self._verdict("failed", _with_description(text, seen))
            if now >= self.deadline:
                return await self._timed_out(seen, human_duration(timeout))
            await self.sleep(max(0.0, min(self.reader.check.interval, self.deadline - now)))

    async def _timed_out(self, seen: Observation, took: str) -> ServiceVerdict:
        what, short = self.reader.what, self.sha.short
        if self.last.verdict == "pending":
            return self._verdict("pending", f"{what} still {self.last.state} on {short} after {took}")
        if seen.error and not self.good_reads:
            # No read ever succeeded: say so rather than "missing".
            return self._verdict("unreadable", f"{seen.error} (until the {took} timeout)", "unreadable")
        try:
            earlier = await self.reader.earlier_report(self.sha)
        except Exception as exc:  # best effort: never lose the verdict over an explanation
            log.warn(f"{self.name}: could not look for an earlier {what}: {type(exc).__name__}")
            earlier = None
        if earlier is not None:
            other, distance, found = earlier
            commits = "commit" if distance == 1 else "commits"
            return self._verdict(
                "stale",
                f"{what} reported on {other.short} ({distance} {commits} earlier, {found.state}) "
                f"but not on {short} after {took}: did the suite run for this commit?",
                "none",
            )
        return self._verdict("missing", f"no {what} on {short} after {took}", "none")

    def stopped(self, because: str) -> ServiceVerdict:
        what, short = self.reader.what, self.sha.short
        if self.last.verdict == "pending":
            text = f"{what} still {self.last.state} on {short}"
        else:
            text = f"no {what} on {short} yet"
        return self._verdict("stopped", f"{text}; stopped waiting because {because} failed")


def _failure(check: CheckConfig, detail: str, seconds: float = 0.0) -> CheckResult:
    return CheckResult(check.name, False, seconds, None, False, detail, f"check {check.name}: {detail}")


async def run_external_check(
    check: CheckConfig,
    forge: Forge,
    services: Sequence[ServiceConfig],
    shas: Mapping[str, Sha],
    *,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> CheckResult:
    """Wait for ``check``'s commit status / check run on each service's sha (``shas``: name → sha).

    ``services`` are the config's services; ``check.services`` (if set) picks
    among them.  Returns a :class:`~lockstep.checks.CheckResult` whose
    ``output_tail`` has one line per service and whose ``detail`` names every
    service that did not pass; never raises except on cancellation.
    """
    start = clock()
    if check.external is None:
        return _failure(check, "not a commit_status / check_run check")
    if not isinstance(forge, GitHubForge):
        return _failure(check, f'{check.external} needs forge = "github"')
    wanted = [s for s in services if check.services is None or s.name in check.services]
    missing_sha = [s.name for s in wanted if s.name not in shas]
    if not wanted or missing_sha:
        return _failure(check, f"no resolved source sha for {', '.join(missing_sha) or 'any service'}")
    deadline = start + check.timeout
    pollers = [
        _Poller(_Reader(forge, check, s), shas[s.name], deadline=deadline, clock=clock, sleep=sleep)
        for s in wanted
    ]
    what = pollers[0].reader.what
    log.info(
        f"[{check.name}] waiting up to {human_duration(check.timeout)} for {what} on "
        + ", ".join(f"{p.name}@{p.sha.short}" for p in pollers)
    )
    verdicts = await _wait_fail_fast(pollers, check.timeout)
    return _result(check, what, [verdicts[p.name] for p in pollers], clock() - start)


async def _wait_fail_fast(pollers: Sequence[_Poller], timeout: float) -> dict[str, ServiceVerdict]:
    """Every poller's verdict; the first service that fails or cannot be read stops the others
    (their verdict says by whom), so a red check blocks the run at once."""
    tasks = {asyncio.ensure_future(p.run(timeout)): p for p in pollers}
    verdicts: dict[str, ServiceVerdict] = {}
    try:
        pending = set(tasks)
        while pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            results = [task.result() for task in done]
            verdicts.update((v.service, v) for v in results)
            failed = next((v.service for v in results if v.outcome in ("failed", "unreadable")), None)
            if failed is not None and pending:
                for task in pending:
                    task.cancel()
                await asyncio.gather(*pending, return_exceptions=True)
                verdicts.update((tasks[task].name, tasks[task].stopped(failed)) for task in pending)
                pending = set()
    finally:
        for task in tasks:
            task.cancel()
    return verdicts


def _result(check: CheckConfig, what: str, ordered: list[ServiceVerdict], seconds: float) -> CheckResult:
    """The check's result: one line per service, and a detail naming every service that blocks."""
    took = human_duration(seconds)
    tail = "\n".join(v.message + (f" <{v.url}>" if v.url else "") for v in ordered)
    if all(v.ok for v in ordered):
        count = f"{len(ordered)} service" + ("" if len(ordered) == 1 else "s")
        detail = f"check {check.name} passed: {what} success on {count} in {took}"
        return CheckResult(check.name, True, seconds, None, False, tail, detail)
    blocking = [v for v in ordered if v.outcome != "stopped" and not v.ok]
    timed_out = all(v.outcome in ("pending", "missing", "stale") for v in blocking)
    detail = f"check {check.name} failed: " + "; ".join(v.message for v in blocking)
    return CheckResult(check.name, False, seconds, None, timed_out, tail, detail)

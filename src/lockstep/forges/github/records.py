"""Promotion records on GitHub: deployments (and their statuses) in every service's repository.

Where a record lives
    Each record is stored in **every service repository it names**, as a
    deployment of that service's new sha to the environment ``<gate>/<target>``
    (``POST /repos/{o}/{r}/deployments`` with ``ref`` = the new sha, ``payload`` =
    :meth:`PromotionRecord.to_json`, ``auto_merge: false`` so GitHub never
    merges anything, ``required_contexts: []`` so it does not re-check commit
    statuses the gate already judged, ``production_environment: true``).  Each
    repository's page therefore shows its own promotions, and the records
    survive without the failed run's artifacts: ``status`` and ``reconcile``
    need nothing but read access to the service repositories.

The two phases
    * ``started`` (written before the first push): one deployment per service.
      The store keeps the ids, keyed by (run id, service).
    * ``finished`` (written after verify): one deployment *status* per service on
      that same deployment: ``advanced`` / ``unchanged`` / ``rolled back`` (the
      target is at the deployment's sha) → ``success``,
      ``unknown`` → ``error``, anything else (``failed``, ``skipped``,
      ``cancelled``) → ``failure``.  A status carries no payload and its
      ``description`` is capped at 140 characters, far too small for the
      manifest, so the description holds only that service's exact outcome and
      the run's result: ``lockstep <mode> run <run_id> <result>: <outcome>``.
      When the ``started`` write failed for a service (no id), the finished
      write creates the deployment then, with the *finished* payload, and
      posts its status.

How ``read_all`` rebuilds the history
    ``GET .../deployments?environment=<gate>/<target>&per_page=20`` per service,
    concurrently (payloads that are not lockstep records of this gate are
    skipped); then, for the newest lockstep deployment of each service only
    (to bound requests) when it is a ``started`` one,
    ``GET .../deployments/{id}/statuses?per_page=1``, concurrently.  A run
    whose started deployment has a status gets a ``finished`` record rebuilt
    from the started payload: each service's outcome from its status
    description when that parses, else from the state (``success`` →
    advanced/unchanged by whether it moves, ``error`` → unknown, ``failure``
    → failed); services whose status was not read keep ``pending``.  Records
    are deduplicated by (run id, phase) (the same record sits in N
    repositories; a real finished payload wins over a rebuilt one) and sorted
    by when GitHub stored them (deployment ``created_at``, then id), which
    unlike ``record.time`` does not depend on the runners' clocks.  Only the
    newest run gets rebuilt outcomes; older runs may show only ``started``,
    which is all ``status`` and ``reconcile`` need (:func:`latest_run`).  Runs
    older than the newest 20 deployments per environment are not read.

Requests (N services)
    A run that moves anything writes N deployments (``started``) + N statuses
    (``finished``): 2N writes, each phase concurrent across repositories, so
    each costs one round trip (the started write sits before the first push,
    the finished one after verify: neither widens the split window).  A read
    (``status``, ``reconcile``) is N + at most N GETs in two concurrent rounds.
    A promoting run reads only the first service's repository (2 GETs,
    :meth:`GitHubDeploymentRecordStore.read_recent`), concurrently with its gate
    steps, to tell whether it starts from a split.

Tokens and permissions
    Writes use each service's **push** token (``token_env``), which then needs
    ``Deployments: write`` on its repository besides ``Contents: write``; reads
    use the read token (``$GITHUB_TOKEN`` / ``$GH_TOKEN``), which needs
    ``Deployments: read`` (or ``Contents: read`` for classic tokens) on every
    service repository.  Tokens travel only in headers; every message passes
    :mod:`lockstep.redact`.

Failures
    Every failure is a :class:`ForgeError` naming the repository, the HTTP
    status and GitHub's message.  Writes are never retried blindly: a POST is
    repeated only when the connection failed before the request left.  A
    partial write (some repositories stored, some not) is an error that says
    which were stored; the gate reports it as a warning and never blocks or
    undoes a promotion for it.  A read fails as a whole when any repository
    cannot be read: a history missing one repository's newest run could point
    ``reconcile`` at an older one.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, TypeVar
from urllib.parse import quote

from lockstep import log
from lockstep.config import Config, ServiceConfig
from lockstep.errors import ForgeError
from lockstep.forges.github.forge import GitHubForge
from lockstep.forges.github.http import Reply
from lockstep.model import Outcome, Result
from lockstep.records import Pending, PromotionRecord, RecordService
from lockstep.redact import clean_text

__all__ = ["GitHubDeploymentRecordStore", "status_state"]

T = TypeVar("T")

MAX_DESCRIPTION = 140  # GitHub's limit for a deployment status description
READ_PAGE = 20

_SUCCESS = {Outcome.ADVANCED, Outcome.UNCHANGED, Outcome.ROLLED_BACK}
_RESULTS = {r.value for r in Result}


def status_state(outcome: Outcome | Pending) -> str:
    """The deployment status state for a service's final outcome."""
    if outcome in _SUCCESS:
        return "success"
    if outcome == Outcome.UNKNOWN:
        return "error"
    return "failure"


@dataclass(frozen=True)
class _Found:
    """One lockstep deployment as read back."""

    record: PromotionRecord
    service: str  # the config service whose environment it was listed under
    deployment_id: int
    created_at: str

    @property
    def key(self) -> tuple[str, int]:
        return (self.created_at, self.deployment_id)


@dataclass(frozen=True)
class _Status:
    state: str
    description: str
    created_at: str


class GitHubDeploymentRecordStore:
    """:class:`~lockstep.forges.base.RecordStore` over GitHub deployments (see the module docstring)."""

    def __init__(self, forge: GitHubForge, config: Config, *, per_page: int = READ_PAGE) -> None:
        self._forge = forge
        self._gate = config.gate.name
        self._services = {s.name: s for s in config.services}
        self._per_page = per_page
        self._ids: dict[tuple[str, str], int] = {}  # (run id, service) -> deployment id

    def __repr__(self) -> str:
        return f"GitHubDeploymentRecordStore({self.location!r})"

    @property
    def location(self) -> str:
        envs = sorted({self.environment(s) for s in self._services.values()})
        repos = sorted({s.repo for s in self._services.values()})
        plural = "s" if len(envs) > 1 else ""
        return f"GitHub deployments (environment{plural} {', '.join(envs)}) in {', '.join(repos)}"

    def environment(self, service: ServiceConfig) -> str:
        return f"{self._gate}/{service.target}"

    def _path(self, service: ServiceConfig, tail: str = "") -> str:
        owner, name = self._forge.repo_of(service)
        return f"/repos/{quote(owner)}/{quote(name)}/deployments{tail}"

    def _full(self, service: ServiceConfig) -> str:
        return "/".join(self._forge.repo_of(service))

    def _describe(self, reply: Reply) -> str:
        detail = reply.describe()
        return detail + (f" ({reply.gave_up})" if reply.gave_up else "")

    def _describe_write(self, reply: Reply, service: ServiceConfig) -> str:
        """A refused write also names the token's variable and the permission GitHub wants."""
        detail = self._describe(reply)
        if reply.status in (401, 403, 404):
            detail += f" (push token from ${self._forge.push_token(service).source}"
            needed = reply.header("x-accepted-github-permissions")
            if needed:
                detail += f"; needs {clean_text(needed, 80)}"
            detail += ")"
        return detail

    # -- writing ----------------------------------------------------------------------

    async def write(self, record: PromotionRecord) -> str:
        """Store ``record`` in every service repository it names; ForgeError if any failed."""
        jobs: list[Awaitable[str]] = []
        problems: list[str] = []
        for svc in record.services:
            service = self._services.get(svc.name)
            if service is None:
                problems.append(f"{svc.name}: not in the config, so no token to record it with")
                continue
            deployment_id = self._ids.get((record.run_id, svc.name))
            if record.phase == "finished" and deployment_id is not None:
                jobs.append(self._post_status(service, svc, record, deployment_id))
            else:
                jobs.append(self._create(service, svc, record))
        results = await _gather(jobs)
        stored: list[str] = []
        status: int | None = None
        for result in results:
            if isinstance(result, ForgeError):
                problems.append(str(result))
                status = status if status is not None else result.status
            else:
                stored.append(result)
        where = f"GitHub deployments {', '.join(stored)}"
        if problems:
            also = f" (stored: {', '.join(stored)})" if stored else " (nothing stored)"
            raise ForgeError("; ".join(problems) + also, status=status)
        return where

    def _body(self, svc: RecordService, service: ServiceConfig, record: PromotionRecord) -> dict[str, Any]:
        description = clean_text(f"lockstep {record.mode} run {record.run_id}", MAX_DESCRIPTION)
        return {
            "ref": svc.new_sha,
            "environment": self.environment(service),
            "payload": record.to_json(),
            "auto_merge": False,
            "required_contexts": [],
            "transient_environment": False,
            "production_environment": True,
            "description": description,
        }

    async def _post(self, service: ServiceConfig, path: str, body: Mapping[str, object]) -> Reply:
        """One POST with the service's push token; repeated only if it never left (cannot duplicate)."""
        http, token = self._forge.http, self._forge.push_token(service)
        reply = await http.send("POST", path, token=token, json_body=body)
        if reply.not_sent:
            log.warn(
                f"{self._full(service)}: {reply.error}; the connection failed before sending, retrying once"
            )
            reply = await http.send("POST", path, token=token, json_body=body)
        return reply

    async def _create(self, service: ServiceConfig, svc: RecordService, record: PromotionRecord) -> str:
        full = self._full(service)
        body = self._body(svc, service, record)
        reply = await self._post(service, self._path(service), body)
        deployment_id = (reply.json_object() or {}).get("id") if reply.status == 201 else None
        if not isinstance(deployment_id, int) or isinstance(deployment_id, bool):
            outcome = self._describe_write(reply, service)
            if reply.status == 201:
                outcome = "HTTP 201 without a deployment id"
            raise ForgeError(
                f"{full}: cannot create the {record.phase} record deployment "
                f"(environment {body['environment']}): {outcome}",
                status=reply.status,
            )
        self._ids[(record.run_id, svc.name)] = deployment_id
        if record.phase == "finished":
            return await self._post_status(service, svc, record, deployment_id)
        return f"{full}#{deployment_id}"

    async def _post_status(
        self, service: ServiceConfig, svc: RecordService, record: PromotionRecord, deployment_id: int
    ) -> str:
        full = self._full(service)
        text = f"lockstep {record.mode} run {record.run_id} {record.result or '?'}: {svc.outcome}"
        body = {
            "state": status_state(svc.outcome),
            "description": clean_text(text, MAX_DESCRIPTION),
        }
        if record.run_url and record.run_url.startswith(("https://", "http://")):
            body["log_url"] = record.run_url
        reply = await self._post(service, self._path(service, f"/{deployment_id}/statuses"), body)
        if reply.status != 201:
            raise ForgeError(
                f"{full}: cannot set the status of record deployment #{deployment_id}: "
                f"{self._describe_write(reply, service)}",
                status=reply.status,
            )
        return f"{full}#{deployment_id} ({body['state']})"

    # -- reading ----------------------------------------------------------------------

    async def read_all(self) -> list[PromotionRecord]:
        """Every record, oldest first (see the module docstring for what is read)."""
        return await self._read(list(self._services.values()))

    async def read_recent(self) -> list[PromotionRecord]:
        """The records as the first service's repository holds them: 2 requests instead of 2N.

        Enough for a run to tell whether it starts from a split (every run writes its
        record to every repository); ``status`` and ``reconcile`` read them all.
        """
        return await self._read(list(self._services.values())[:1])

    async def _read(self, services: list[ServiceConfig]) -> list[PromotionRecord]:
        listed = await _gather([self._list(s) for s in services])
        _raise_first(listed)
        found = [f for batch in listed if not isinstance(batch, BaseException) for f in batch]
        newest: dict[str, _Found] = {}
        for f in found:  # newest lockstep deployment per service
            if f.service not in newest or f.key > newest[f.service].key:
                newest[f.service] = f
        probe = [f for f in newest.values() if f.record.phase == "started"]
        statuses = await _gather([self._latest_status(self._services[f.service], f) for f in probe])
        _raise_first(statuses)
        by_run: dict[str, dict[str, _Status]] = {}
        for f, status in zip(probe, statuses, strict=True):
            if isinstance(status, _Status):
                by_run.setdefault(f.record.run_id, {})[f.service] = status
        return _history(found, by_run)

    async def _list(self, service: ServiceConfig) -> list[_Found]:
        full, env = self._full(service), self.environment(service)
        items = await self._get_list(
            service,
            self._path(service),
            {"environment": env, "per_page": str(self._per_page)},
            reading="promotion records",
            failure=f"read the promotion records (deployments in environment {env})",
        )
        if items is None:
            raise ForgeError(f"{full}: unexpected answer listing deployments (not a JSON list)", status=200)
        found: list[_Found] = []
        skipped = 0
        for item in items:
            parsed = self._parse(item, service)
            if parsed is None:
                skipped += 1
            else:
                found.append(parsed)
        if skipped:
            log.info(f"{full}: skipped {skipped} deployment(s) in {env} that hold no lockstep record")
        return found

    async def _get_list(
        self, service: ServiceConfig, path: str, params: dict[str, str], *, reading: str, failure: str
    ) -> list[object] | None:
        """GET a list with the read token: None if the answer is not a JSON list; a failed read
        raises, naming the repository, what it was reading and the HTTP status."""
        full = self._full(service)
        reply = await self._forge.http.get(
            path, token=self._forge.read_token, what=f"{full}: reading {reading}", params=params
        )
        if reply.status != 200:
            raise ForgeError(
                f"{full}: cannot {failure}: {self._describe(reply)}",
                status=reply.status,
                transient=reply.status is None or reply.status >= 500,
            )
        return _json_list(reply)

    def _parse(self, item: object, service: ServiceConfig) -> _Found | None:
        if not isinstance(item, dict):
            return None
        deployment_id, payload = item.get("id"), item.get("payload")
        if not isinstance(deployment_id, int) or isinstance(deployment_id, bool):
            return None
        if isinstance(payload, str):
            try:
                payload = json.loads(payload)
            except ValueError:
                return None
        if not isinstance(payload, dict):
            return None
        try:
            record = PromotionRecord.from_json(payload)
        except ValueError:
            return None
        if record.gate != self._gate or record.service(service.name) is None:
            return None
        created = item.get("created_at")
        return _Found(
            record, service.name, deployment_id, created if isinstance(created, str) else record.time
        )

    async def _latest_status(self, service: ServiceConfig, found: _Found) -> _Status | None:
        items = await self._get_list(
            service,
            self._path(service, f"/{found.deployment_id}/statuses"),
            {"per_page": "1"},
            reading=f"the status of record deployment #{found.deployment_id}",
            failure=f"read the status of record deployment #{found.deployment_id}",
        )
        if not items or not isinstance(items[0], dict):
            return None
        first = items[0]
        state, description, created = (first.get(k) for k in ("state", "description", "created_at"))
        if not isinstance(state, str):
            return None
        return _Status(
            state,
            description if isinstance(description, str) else "",
            created if isinstance(created, str) else found.record.time,
        )


def _json_list(reply: Reply) -> list[Any] | None:
    if reply.response is None:
        return None
    try:
        body = reply.response.json()
    except ValueError:
        return None
    return body if isinstance(body, list) else None


async def _gather(jobs: Sequence[Awaitable[T]]) -> list[T | ForgeError]:
    """Run concurrently; ForgeErrors become results, anything else propagates."""
    results = await asyncio.gather(*jobs, return_exceptions=True)
    out: list[T | ForgeError] = []
    for result in results:
        if isinstance(result, BaseException) and not isinstance(result, ForgeError):
            raise result
        out.append(result)
    return out


def _raise_first(results: Sequence[object]) -> None:
    errors = [r for r in results if isinstance(r, ForgeError)]
    if len(errors) == 1:
        raise errors[0]
    if errors:
        raise ForgeError("; ".join(str(e) for e in errors), status=errors[0].status)


def _finished_outcome(
    svc: RecordService, status: _Status, record: PromotionRecord
) -> tuple[Outcome | Pending, str | None]:
    """(outcome, result) from our status description, else from the state alone."""
    prefix = f"lockstep {record.mode} run {record.run_id} "
    if status.description.startswith(prefix):
        result, sep, said = status.description[len(prefix) :].partition(": ")
        outcome = Outcome.parse(said)
        if sep and status_state(outcome) == status.state:
            return outcome, result if result in _RESULTS else None
    if status.state == "success":
        return (Outcome.ADVANCED if svc.moves else Outcome.UNCHANGED), None
    if status.state == "error":
        return Outcome.UNKNOWN, None
    if status.state == "failure":
        return Outcome.FAILED, None
    return svc.outcome, None


def _rebuild(started: PromotionRecord, statuses: Mapping[str, _Status]) -> PromotionRecord | None:
    """The finished record of a run from its started payload and its services' statuses."""
    services: list[RecordService] = []
    results: list[str] = []
    learnt = False
    for svc in started.services:
        status = statuses.get(svc.name)
        if status is None:
            services.append(svc)
            continue
        outcome, result = _finished_outcome(svc, status, started)
        learnt = learnt or outcome != svc.outcome
        services.append(replace(svc, outcome=outcome))
        if result:
            results.append(result)
    if not learnt:
        return None
    times = [s.created_at for s in statuses.values()]
    return replace(
        started,
        phase="finished",
        services=tuple(services),
        time=max([started.time, *times]),
        result=results[0] if results else None,
    )


def _history(found: Sequence[_Found], statuses: Mapping[str, Mapping[str, _Status]]) -> list[PromotionRecord]:
    """Deduplicated by (run id, phase), a stored finished payload beating a rebuilt one; oldest first."""
    best: dict[tuple[str, str], tuple[tuple[str, int, int], PromotionRecord]] = {}
    for f in sorted(found, key=lambda f: f.key):
        rank = 0 if f.record.phase == "started" else 1
        best.setdefault((f.record.run_id, f.record.phase), ((*f.key, rank), f.record))
    for run_id, by_service in statuses.items():
        entry = best.get((run_id, "started"))
        if entry is None or (run_id, "finished") in best:
            continue
        rebuilt = _rebuild(entry[1], by_service)
        if rebuilt is not None:
            created, deployment_id, _ = entry[0]
            best[(run_id, "finished")] = ((created, deployment_id, 1), rebuilt)
    return [record for _, record in sorted(best.values(), key=lambda e: e[0])]

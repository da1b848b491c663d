"""The GitHub forge: the REST API (refs, deployments, statuses, issues), external gates and dispatch."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import AbstractAsyncContextManager

from lockstep import redact
from lockstep.checks import CheckResult
from lockstep.config import CheckConfig, Config, ServiceConfig
from lockstep.errors import UsageError
from lockstep.forges.base import AuditSink, RecordStore, Wiring
from lockstep.model import Sha


def wire(config: Config, env: Mapping[str, str]) -> Wiring:
    """A :class:`~lockstep.forges.github.forge.GitHubForge` (every token and name checked, no
    request made), the tracker issue sink, deployment records, external gates and the ref lock."""
    from lockstep.forges.github.audit import GitHubIssueSink
    from lockstep.forges.github.branch_records import GitHubBranchRecordStore
    from lockstep.forges.github.external import run_external_check
    from lockstep.forges.github.forge import GitHubForge
    from lockstep.forges.github.lock import GitHubRefLock
    from lockstep.forges.github.records import GitHubDeploymentRecordStore

    forge = GitHubForge.from_env(config, env)
    tracker = config.bypass.tracker

    def sink() -> AuditSink:
        if not tracker:
            raise UsageError("bypass.tracker is not set: name the issue that receives audit comments")
        return GitHubIssueSink(forge, tracker)

    async def external(
        check: CheckConfig, services: Sequence[ServiceConfig], shas: Mapping[str, Sha]
    ) -> CheckResult:
        return await run_external_check(check, forge, services, shas)

    def ref_lock() -> AbstractAsyncContextManager[object]:
        return GitHubRefLock.for_config(config, env)

    records: RecordStore | None = None
    if config.gate.records and config.gate.records_store == "deployments":
        records = GitHubDeploymentRecordStore(forge, config)
    elif config.gate.records:
        records = GitHubBranchRecordStore(forge, config)
    return Wiring(forge, sink, redact.check_secret_vars(config), records, external, ref_lock)

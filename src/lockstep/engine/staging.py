"""What staging must prove before any push: healthy, serving the exact source shas, checks passing.

Each function is one gate step and raises :class:`~lockstep.errors.Blocked` with the reasons
(every failing service at once, so one run names every problem).  They read staging and run
commands only; nothing here touches a forge's refs.
"""

from __future__ import annotations

from collections.abc import Mapping

import httpx

from lockstep import actions
from lockstep.checks import check_environment, run_check
from lockstep.config import CheckConfig, Config
from lockstep.errors import Blocked
from lockstep.forges.base import ExternalCheck
from lockstep.model import Sha, StepReport
from lockstep.probes import verify_versions, wait_healthy
from lockstep.progress import Progress


async def require_healthy(config: Config, client: httpx.AsyncClient | None, progress: Progress) -> None:
    """Poll every service's health URL until all answer 200 (or the health timeout ends)."""
    g = config.gate

    def on_progress(name: str, message: str) -> None:
        progress.service(name, "health", message)

    results = await wait_healthy(
        config.services,
        timeout=g.health_timeout,
        interval=g.health_interval,
        request_timeout=g.request_timeout,
        client=client,
        on_progress=on_progress,
    )
    failed = [r.detail for r in results if not r.ok]
    if failed:
        raise Blocked("; ".join(failed))


async def require_versions(
    config: Config, sources: Mapping[str, Sha], client: httpx.AsyncClient | None, progress: Progress
) -> None:
    """Every staging ``/version`` must report exactly the source sha this run will promote."""
    results = await verify_versions(
        config.services, sources, request_timeout=config.gate.request_timeout, client=client
    )
    for r in results:
        progress.service(r.service, "version", "✓" if r.ok else "✗ " + r.detail[:60])
    failed = [r.detail for r in results if not r.ok]
    if failed:
        raise Blocked("; ".join(failed))


async def require_check(
    check: CheckConfig,
    step: StepReport,
    config: Config,
    sources: Mapping[str, Sha],
    *,
    env: Mapping[str, str],
    secret_vars: frozenset[str],
    external_check: ExternalCheck | None,
) -> None:
    """One ``[[checks]]`` entry: a command run here, or a status another system posts on the
    source commits (``external``); its output tail goes into ``step``."""
    if check.external is not None:  # a commit status / check run another system posts: nothing runs here
        if external_check is None:
            raise Blocked(f'check {check.name}: {check.external} needs forge = "github"')
        result = await external_check(check, config.services, sources)
        step.output_tail = result.output_tail
        if not result.ok:
            raise Blocked(result.detail)
        return
    shas = {s.slug: sources[s.name] for s in config.services}
    check_env = check_environment(env, check, shas, secret_vars)
    with actions.stop_commands(env=env):  # check output is untrusted: no workflow commands
        outcome = await run_check(check, env=check_env, cwd=config.base_dir)
    step.output_tail = outcome.output_tail
    if not outcome.ok:
        raise Blocked(outcome.detail)

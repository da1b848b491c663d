"""The git forge: any git remote, through the git command line."""

from __future__ import annotations

from collections.abc import Mapping

from lockstep import redact
from lockstep.config import Config
from lockstep.forges.base import Wiring


def wire(config: Config, env: Mapping[str, str]) -> Wiring:
    """A :class:`~lockstep.forges.git.forge.GitForge`, the tracker file sink and the records ref."""
    from lockstep.audit import FileAuditSink
    from lockstep.forges.git.forge import GitForge
    from lockstep.forges.git.records import GitRecordStore

    path = config.tracker_path()
    forge = GitForge(base_dir=config.base_dir, timeout=max(config.gate.request_timeout, 30.0), env=env)
    records = GitRecordStore(forge, config.services[0], config.gate.name) if config.gate.records else None
    return Wiring(
        forge,
        (lambda: FileAuditSink(path)) if path else None,
        redact.check_secret_vars(config),
        records,
    )

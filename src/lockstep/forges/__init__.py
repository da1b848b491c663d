"""The forges lockstep promotes through, by the name ``[gate] forge`` gives them.

Each forge is a package here whose ``wire(config, env)`` returns a
:class:`~lockstep.forges.base.Wiring` (the forge, its audit sink, record store,
external gates and ref lock).  The engine asks :func:`wire` and never imports a
concrete forge, so adding one (GitLab, Gitea) is a new folder and one line in
:data:`FORGES`.  Forge packages are imported only when a config names them.
"""

from __future__ import annotations

from collections.abc import Mapping
from importlib import import_module

from lockstep.config import Config
from lockstep.forges.base import Wiring

FORGES: dict[str, str] = {
    "git": "lockstep.forges.git",
    "github": "lockstep.forges.github",
}


def wire(config: Config, env: Mapping[str, str]) -> Wiring:
    """The forge and everything around it for ``config``; raises UsageError before any request."""
    module = import_module(FORGES[config.gate.forge])
    wiring: Wiring = module.wire(config, env)
    return wiring

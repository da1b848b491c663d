"""Setup commands (``init``, ``validate``, ``dispatch``), registered onto the main group."""

from __future__ import annotations

import click


def register(group: click.Group) -> None:
    """Add the setup commands to ``group``."""

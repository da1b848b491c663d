"""Shared fixtures: a world of real git repositories and staging servers."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pytest

from lockstep import log
from tests.support.gitworld import GitWorld, build_world


@pytest.fixture
def world(tmp_path: Path) -> Iterator[GitWorld]:
    yield from build_world(tmp_path)


@pytest.fixture
def logs() -> Iterator[io.StringIO]:
    """lockstep's progress lines, captured (for asserting what a person would read)."""
    stream = io.StringIO()
    log.set_stream(stream)
    try:
        yield stream
    finally:
        log.set_stream(None)

"""Shared fixtures: a world of real git repositories and staging servers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.gitworld import GitWorld, build_world


@pytest.fixture
def world(tmp_path: Path) -> Iterator[GitWorld]:
    yield from build_world(tmp_path)

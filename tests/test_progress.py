"""The live view and its plain fallback: what a person watching a run sees."""

from __future__ import annotations

import io
import re
import sys

import pytest
from rich.console import Console

from lockstep.progress import LiveProgress, PlainProgress, make_progress
from tests.support.gitworld import GitWorld


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_live_view_renders_steps_and_services_snapshot() -> None:
    clock = Clock()
    view = LiveProgress(io.StringIO(), clock=clock)
    view.step_started("resolve")
    view.service("backend", "heads", "main=abc1234 prod=def5678")
    view.step_finished("resolve", "passed", 0.2, "")
    view.step_started("health")
    view.service("backend", "health", "ready after 0.1s")
    view.step_finished("health", "failed", 5.0, "health http://x/health not ready after 5.0s (last: HTTP 503)")
    view.step_started("check e2e")
    clock.now += 3.25
    out = Console(file=io.StringIO(), width=100, record=True, color_system=None)
    out.print(view.render())
    view.close()
    lines = [line.rstrip() for line in out.export_text().splitlines()]
    assert lines[0] == "✓  resolve   0.2s"
    assert lines[1] == "✗  health    5.0s health http://x/health not ready after 5.0s (last: HTTP 503)"
    assert lines[2].endswith("check e2e 3.2s")  # running: a spinner and the live elapsed time
    assert lines[3] == "   backend        heads main=abc1234 prod=def5678 · health ready after 0.1s"


def test_plain_progress_groups_steps_under_actions(capsys: object) -> None:
    import sys

    from lockstep import log

    stream = io.StringIO()
    log.set_stream(stream)
    old = sys.stderr
    sys.stderr = stream
    try:
        plain = PlainProgress({"GITHUB_ACTIONS": "true"})
        plain.step_started("health")
        plain.step_finished("health", "failed", 1.5, "not ready")
        plain.close()
    finally:
        sys.stderr = old
        log.set_stream(None)
    text = stream.getvalue()
    assert text.index("::group::▶ health") < text.index("✗ health failed in 1.5s: not ready") < text.index("::endgroup::")


def test_plain_progress_outside_actions_is_timestamped_lines() -> None:
    from lockstep import log

    stream = io.StringIO()
    log.set_stream(stream)
    try:
        plain = PlainProgress({})
        plain.step_started("resolve")
        plain.service("backend", "push", "✓ prod → abc1234")
        plain.step_finished("resolve", "passed", 0.1, "")
    finally:
        log.set_stream(None)
    lines = stream.getvalue().splitlines()
    assert [line[9:] for line in lines] == ["▶ resolve", "  backend: push ✓ prod → abc1234", "✓ resolve passed in 0.1s"]
    assert all(line[2] == ":" and line[5] == ":" for line in lines)


def test_live_view_only_for_a_terminal_without_no_color() -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert isinstance(make_progress({}, stream=io.StringIO()), PlainProgress)
    assert isinstance(make_progress({"NO_COLOR": "1"}, stream=Tty()), PlainProgress)
    assert isinstance(make_progress({"GITHUB_ACTIONS": "true"}, stream=Tty()), PlainProgress)
    assert isinstance(make_progress({}, stream=Tty(), enabled=False), PlainProgress)
    live = make_progress({}, stream=Tty())
    assert isinstance(live, LiveProgress)
    live.close()


def test_health_progress_names_the_step_once(world: GitWorld) -> None:
    """Issue 10 item 12: a service's health line read `health health http://…: not ready`."""
    world.config(gate={"health_timeout": '"0.5s"'})
    world.staging["alpha"].health_status = 503
    res = world.run("run")
    assert res.code == 1
    lines = [line[9:] for line in res.err.splitlines()]  # drop the timestamps
    assert "  alpha: health not ready (HTTP 503)" in lines, res.err
    assert any(line.startswith("  beta: health ready after ") for line in lines), res.err
    health = [line for line in lines if ": health " in line]
    assert health and not any(re.search(r"\b(\w+) \1\b", line) for line in health), res.err


def _live_output(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> str:
    """What make_progress draws on a colour terminal under ``env`` (rich reads os.environ too)."""
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm-256color")
    for key, value in env.items():
        monkeypatch.setenv(key, value)

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    stream = Tty()
    stderr = sys.stderr
    sys.stderr = stream  # the plain form writes to stderr through lockstep.log
    try:
        view = make_progress(env, stream=stream)
        view.step_started("health")
        view.service("backend", "health", "not ready (HTTP 503)")
        view.step_finished("health", "failed", 1.0, "not ready")
        view.close()
    finally:
        sys.stderr = stderr
    return stream.getvalue()


def test_empty_no_color_keeps_colour_and_a_value_removes_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """no-color.org: NO_COLOR counts only when it is set to a non-empty value."""
    bold = "\x1b[1m"  # the live view's service names: styled only when colour is on
    assert bold in _live_output({}, monkeypatch)
    assert bold in _live_output({"NO_COLOR": ""}, monkeypatch)
    plain = _live_output({"NO_COLOR": "1"}, monkeypatch)
    assert "\x1b[" not in plain and "backend: health not ready (HTTP 503)" in plain

"""The live view and its plain fallback: what a person watching a run sees."""

from __future__ import annotations

import io

from rich.console import Console

from lockstep.progress import LiveProgress, PlainProgress, make_progress


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

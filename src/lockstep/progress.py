"""What a person watching a run sees: a live view in a terminal, plain lines elsewhere.

The gate reports events (a step started or finished, a service's health,
version or push changed, a check printed a line) to a :class:`Progress`.
:class:`PlainProgress` turns them into timestamped lines (inside ``::group::``
blocks under GitHub Actions); :class:`LiveProgress` draws one line per step and
per service with rich, redrawn in place.  A non-empty ``NO_COLOR``,
``--no-progress``, a non-terminal stderr and Actions all choose the plain form.
Both forms scrub every text of secrets (:mod:`lockstep.redact`): the plain one
through :mod:`lockstep.log`, the live one as each event arrives.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import IO, Any, Protocol

from lockstep import actions, log
from lockstep.redact import scrub

_MARKS = {"passed": "✓", "failed": "✗", "cancelled": "✗", "skipped": "·"}


class Progress(Protocol):
    def step_started(self, name: str) -> None: ...

    def step_finished(self, name: str, status: str, seconds: float, detail: str) -> None: ...

    def service(self, name: str, what: str, text: str) -> None: ...


    def close(self) -> None: ...


class PlainProgress:
    """Timestamped lines on stderr; each step is a collapsible group in Actions."""

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        self._env = env
        self._grouped = False

    def step_started(self, name: str) -> None:
        if actions.in_actions(self._env):
            actions.start_group(f"▶ {name}")
            self._grouped = True
        else:
            log.info(f"▶ {name}")

    def step_finished(self, name: str, status: str, seconds: float, detail: str) -> None:
        suffix = f": {detail}" if detail and status != "passed" else ""
        log.info(f"{_MARKS.get(status, '·')} {name} {status} in {seconds:.1f}s{suffix}")
        if self._grouped:
            actions.end_group()
            self._grouped = False

    def service(self, name: str, what: str, text: str) -> None:
        log.info(f"  {name}: {what} {text}")

    def close(self) -> None:
        if self._grouped:
            actions.end_group()
            self._grouped = False


@dataclass
class _Step:
    name: str
    started: float
    status: str = "running"
    seconds: float = 0.0
    detail: str = ""


@dataclass
class _LiveState:
    steps: list[_Step] = field(default_factory=list)
    services: dict[str, dict[str, str]] = field(default_factory=dict)


class LiveProgress:
    """A rich live view: one line per step (spinner, elapsed, ✓/✗) and per service."""

    def __init__(self, stream: IO[str] | None = None, *, clock: Any = time.monotonic) -> None:
        from rich.console import Console
        from rich.live import Live

        self._clock = clock
        self.state = _LiveState()
        self.console = Console(file=stream or sys.stderr, highlight=False)
        self._live = Live(console=self.console, refresh_per_second=8, transient=False,
                          get_renderable=self.render)
        self._live.start()

    def render(self) -> Any:
        from rich.spinner import Spinner
        from rich.table import Table

        table = Table.grid(padding=(0, 1))
        table.add_column(width=2)
        table.add_column()
        table.add_column(justify="right")
        table.add_column()
        now = self._clock()
        for step in self.state.steps:
            if step.status == "running":
                mark: Any = Spinner("dots")
                seconds = now - step.started
            else:
                mark = _MARKS.get(step.status, "·")
                seconds = step.seconds
            table.add_row(mark, step.name, f"{seconds:.1f}s", step.detail[:100])
        for name, fields in self.state.services.items():
            parts = " · ".join(f"{k} {v}" for k, v in fields.items())
            table.add_row("", f"[bold]{name}[/]", "", parts)
        return table

    def step_started(self, name: str) -> None:
        self.state.steps.append(_Step(scrub(name), self._clock()))

    def step_finished(self, name: str, status: str, seconds: float, detail: str) -> None:
        name = scrub(name)
        for step in reversed(self.state.steps):
            if step.name == name:
                step.status, step.seconds = status, seconds
                step.detail = scrub(detail) if status != "passed" else ""
                break

    def service(self, name: str, what: str, text: str) -> None:
        self.state.services.setdefault(scrub(name), {})[what] = scrub(text)

    def close(self) -> None:
        try:
            self._live.refresh()
            self._live.stop()
        except (OSError, ValueError):
            log.silence(self.console.file)  # the terminal went away (SIGHUP): the report comes next
            self._live.stop()  # a no-op if stop itself failed: its clean-up is in a finally


def make_progress(env: Mapping[str, str], *, enabled: bool = True, stream: IO[str] | None = None) -> Progress:
    """The live view when a person watches a terminal; plain lines otherwise."""
    out = stream or sys.stderr
    if (
        enabled
        and not actions.in_actions(env)
        and not env.get("NO_COLOR")  # no-color.org: only a non-empty value asks for no colour
        and env.get("TERM") != "dumb"
        and out.isatty()
    ):
        return LiveProgress(out)
    return PlainProgress(env)

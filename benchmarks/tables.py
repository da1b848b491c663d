"""A table that prints with rich on a terminal and renders as GitHub markdown for the docs."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass
class Table:
    title: str
    columns: list[str]
    rows: list[list[str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, *cells: object) -> None:
        if len(cells) != len(self.columns):
            raise ValueError(f"{self.title}: {len(cells)} cells for {len(self.columns)} columns")
        self.rows.append([str(c) for c in cells])

    def markdown(self) -> str:
        out = [f"### {self.title}", ""]
        out.append("| " + " | ".join(self.columns) + " |")
        out.append("|" + "|".join(" --- " if i == 0 else " ---: " for i in range(len(self.columns))) + "|")
        out += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in self.rows]
        if self.notes:
            out.append("")
            out += [f"- {n}" for n in self.notes]
        return "\n".join(out) + "\n"

    def rich(self) -> object:
        from rich import box
        from rich.table import Table as RichTable

        table = RichTable(title=self.title, box=box.SIMPLE_HEAVY, title_justify="left")
        for i, name in enumerate(self.columns):
            table.add_column(name, justify="left" if i == 0 else "right")
        for row in self.rows:
            table.add_row(*row)
        if self.notes:
            table.caption = "\n".join(self.notes)
            table.caption_justify = "left"
        return table


def secs(value: float, digits: int = 3) -> str:
    return "–" if math.isnan(value) else f"{value:.{digits}f}"


def ms(value: float) -> str:
    return "–" if math.isnan(value) else f"{value * 1000:.1f}"


def rts(value: float, latency: float) -> str:
    """``value`` in round trips of ``latency``; '–' without injected latency."""
    if latency <= 0 or math.isnan(value):
        return "–"
    return f"{value / latency:.1f}"


def ratio(a: float, b: float) -> str:
    if math.isnan(a) or math.isnan(b) or b == 0:
        return "–"
    return f"{a / b:.2f}×"


def yes(ok: bool | None) -> str:
    return "–" if ok is None else ("yes" if ok else "NO")


def join(parts: Sequence[str]) -> str:
    return ", ".join(parts)

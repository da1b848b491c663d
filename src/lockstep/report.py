"""The run's two renderings: the markdown summary people read and the JSON machines read.

The summary only states what the report's re-read positions say: a split
callout appears only when targets really are split, and the bypass footer
names exactly what happened to the audit record (the seed's iteration 4 shows
what a footer that guessed did).
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from lockstep import __version__
from lockstep.markdown import code_block, inline_code, table_cell
from lockstep.model import Outcome, Report, Result

_HEADLINES = {
    Result.PROMOTED: "✅ promoted",
    Result.NOOP: "✅ nothing to promote",
    Result.BLOCKED: "⛔ blocked: nothing was pushed",
    Result.SPLIT: "🚨 split: targets are inconsistent",
    Result.UNKNOWN: "🚨 unknown: some targets could not be verified",
    Result.ERROR: "⛔ error",
}


def _sha(value: str | None) -> str:
    return inline_code(value[:7]) if value else "(missing)"


def outcome_text(outcome: Outcome, source_branch: str) -> str:
    if outcome == Outcome.UNCHANGED:
        return f"unchanged (already at {source_branch})"
    return outcome.value


def render_markdown(report: Report) -> str:
    """The summary: headline, per-service table, split callout, messages, bypass footer."""
    lines = [f"## lockstep {table_cell(report.gate)}: {_HEADLINES[report.result]}", ""]
    meta = [f"**Mode:** {report.mode}", f"**Actor:** {inline_code(report.actor)}"]
    if report.run_url:
        meta.append(f"[run log](<{report.run_url}>)")
    lines += [" · ".join(meta), ""]
    lines += ["| service | old target | new target | outcome |", "| --- | --- | --- | --- |"]
    for s in report.services:
        name = f"{table_cell(s.name)} ({table_cell(s.target)})"
        lines.append(
            f"| {name} | {_sha(s.old_target_sha)} | {_sha(s.final_target_sha)} "
            f"| {outcome_text(s.outcome, s.source)} |"
        )
    lines.append("")

    if report.result in (Result.SPLIT, Result.UNKNOWN):
        moved = [s.name for s in report.services if s.did_push]
        lines.append("> [!CAUTION]")
        if report.result == Result.SPLIT:
            behind = [
                s.name for s in report.services
                if not s.did_push and s.outcome not in (Outcome.UNCHANGED,)
            ]
            lines.append(
                "> **Split promotion.** Advanced: "
                + ", ".join(table_cell(n) for n in moved)
                + ". Not advanced: "
                + ", ".join(table_cell(n) for n in behind)
                + "."
            )
        else:
            lines.append(
                "> **Possible split.** Some targets could not be re-read; check them before anything else."
            )
        lines.append(
            "> Re-running `lockstep run` once the cause is fixed advances the remaining targets "
            "(the advanced ones are then no-ops)."
        )
        if report.runbook_url:
            lines.append(f"> Runbook: <{report.runbook_url}>")
        lines.append("")

    if report.messages:
        lines += ["**Details**", "", code_block("\n".join(report.messages)), ""]
    if report.warnings:
        lines += ["**Warnings**", "", code_block("\n".join(report.warnings)), ""]

    footer = bypass_footer(report)
    if footer:
        lines += [footer, ""]
    return "\n".join(lines)


def bypass_footer(report: Report) -> str | None:
    """An accurate sentence about the audit record, or None when no bypass was asked."""
    audit = report.audit
    if not audit.requested:
        return None
    if audit.stored:
        where = inline_code(audit.location or "")
        return f"**Bypass:** the gate was skipped; the justification was logged at {where} before any push."
    if audit.suppressed_noop:
        return "**Bypass:** requested, but there was nothing to promote, so no audit record was written."
    if audit.error:
        return "**Bypass blocked:** the audit record could not be stored, so nothing was pushed."
    return (
        "**Bypass:** requested, but the run stopped before the audit record was written; "
        "nothing was pushed."
    )


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, str):
        return str(value)
    return value


def to_json_dict(report: Report) -> dict[str, Any]:
    data: dict[str, Any] = {"lockstep_version": __version__}
    data.update(_plain(report))
    data["exit_code"] = report.exit_code
    return data


def render_json(report: Report) -> str:
    return json.dumps(to_json_dict(report), indent=2, ensure_ascii=False) + "\n"

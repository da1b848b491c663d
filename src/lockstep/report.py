"""The run's two renderings: the markdown summary people read and the JSON machines read.

The summary only states what the report's re-read positions say: a split
callout appears only when targets really are split, a "possible split" only
when the run cannot rule one out, and the bypass footer names exactly what
happened to the audit record (the seed's iteration 4 shows what a footer that
guessed did).

Text lockstep does not control (the actor, messages such as git stderr, the
run URL, config strings) is only ever written through :mod:`lockstep.markdown`
(a code span or a fence it cannot escape) or as an autolink that was checked
to be a plain http(s) URL, so it cannot add headings, links or HTML.
"""

from __future__ import annotations

import dataclasses
import json
import re
from typing import Any

from lockstep import __version__
from lockstep.markdown import code_block, inline_code, table_cell
from lockstep.model import Outcome, Report, Result, ServiceReport

_HEADLINES = {
    Result.PROMOTED: "✅ promoted",
    Result.NOOP: "✅ nothing to promote",
    Result.BLOCKED: "⛔ blocked: nothing was pushed",
    Result.SPLIT: "🚨 split: targets are inconsistent",
    Result.ROLLED_BACK: "↩️ rolled back: the split was undone, nothing is promoted",
    Result.UNKNOWN: "🚨 unknown: some targets could not be verified",
    Result.ERROR: "⛔ error",
}

# Printable ASCII without space, "<" or ">": nothing that can end an autolink early.
_SAFE_URL_RE = re.compile(r"https?://[!-;=?-~]+")
# Branch names shown as plain text: no character markdown or GitHub would turn into
# emphasis, a link, a mention or a table-cell break (anything else goes in a code span).
_PLAIN_BRANCH_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9/-]*")


def link(url: str) -> str:
    """An autolink for a plain http(s) URL; anything else is shown inert in a code span."""
    return f"<{url}>" if _SAFE_URL_RE.fullmatch(url) else inline_code(url)


# What the JSON report calls each outcome (``services[].outcome``): the words documented in the
# README, kept stable for the scripts that read them; the summary's cell says more (outcome_text).
OUTCOME_LABELS: dict[Outcome, str] = {
    Outcome.ADVANCED: "advanced",
    Outcome.UNCHANGED: "unchanged (already at main)",
    Outcome.SKIPPED: "skipped (earlier step failed)",
    Outcome.FAILED: "failed",
    Outcome.CANCELLED: "cancelled",
    Outcome.UNKNOWN: "unknown",
    Outcome.ROLLED_BACK: "rolled back",
}


def outcome_text(outcome: Outcome, source_branch: str, mode: str = "gate") -> str:
    """The outcome cell, e.g. ``unchanged (already at main)``, safe inside a table row."""
    if outcome != Outcome.UNCHANGED:
        return OUTCOME_LABELS[outcome]
    if mode not in ("gate", "bypass"):
        return "unchanged (already at the recorded sha)"  # reconcile and rollback aim at records
    branch = source_branch if _PLAIN_BRANCH_RE.fullmatch(source_branch) else table_cell(source_branch)
    return f"unchanged (already at {branch})"


def _position(svc: ServiceReport, sha: str | None, *, final: bool) -> str:
    if sha:
        return inline_code(sha[:7])
    if svc.source_sha is None:
        return "–"  # never resolved in this run
    if final and (svc.did_push or svc.outcome == Outcome.UNKNOWN or svc.reread_failed):
        return "unknown"  # could not be re-read
    return "(missing)"


def _names(services: list[ServiceReport]) -> str:
    return ", ".join(inline_code(s.name) for s in services) or "none"


def headline(report: Report) -> str:
    """What happened, in a few words: a rollback that worked says rolled back, never promoted."""
    if report.result == Result.PROMOTED and report.mode.endswith("rollback"):
        return "↩️ rolled back"
    return _HEADLINES[report.result]


def _rolled_back_callout(report: Report) -> list[str]:
    rewound = [s for s in report.services if s.outcome == Outcome.ROLLED_BACK]
    behind = [s for s in report.services if s.outcome not in (Outcome.ROLLED_BACK, Outcome.UNCHANGED)]
    return [
        "> [!WARNING]",
        f"> **Rolled back.** Advanced, then rolled back: {_names(rewound)}. Not advanced: {_names(behind)}. "
        "Every target is where it was before this run: fix the cause, then run `lockstep run` again.",
        "",
    ]


def _callout(report: Report) -> list[str]:
    """The split / possible-split warning (empty for every other result)."""
    if report.result == Result.ROLLED_BACK:
        return _rolled_back_callout(report)
    if report.result not in (Result.SPLIT, Result.UNKNOWN):
        return []
    in_play = [s for s in report.services if s.outcome != Outcome.UNCHANGED]
    moved = [s for s in in_play if s.did_push]
    unknown = [s for s in in_play if not s.did_push and s.outcome == Outcome.UNKNOWN]
    behind = [s for s in in_play if not s.did_push and s.outcome != Outcome.UNKNOWN]
    verb = "rolled back" if report.mode.endswith("rollback") else "advanced"
    done = f"{verb.capitalize()}: {_names(moved)}. Not {verb}: {_names(behind)}."
    if report.result == Result.SPLIT:
        text = f"**Split promotion.** {done}"
    elif len(in_play) > 1:
        text = f"**Possible split.** Position unknown: {_names(unknown)}. {done} Check those first."
    else:  # the only target that had to move is unknown: nothing can be split
        text = f"**Position unknown:** {_names(unknown)}. Check the target before anything else."
    lines = ["> [!CAUTION]", f"> {text}"]
    if report.fix_command:
        lines.append(f"> To finish the promotion: {inline_code(report.fix_command)}")
    elif verb == "advanced" and report.rollback is None:
        lines.append(
            "> Re-running `lockstep run` once the cause is fixed advances the remaining targets "
            "(the advanced ones are then no-ops)."
        )
    if report.runbook_url:
        lines.append(f"> Runbook: {link(report.runbook_url)}")
    return [*lines, ""]


def render_markdown(report: Report, *, level: int = 2) -> str:
    """The summary: headline, per-service table, split callout, details, bypass footer, and the
    automatic rollback (``on_split = "rollback"``) as a sub-section of the run it undid."""
    title = f"lockstep {inline_code(report.gate)}" if level == 2 else "Automatic rollback"
    lines = [f"{'#' * level} {title}: {headline(report)}", ""]
    meta = [f"**Mode:** {inline_code(report.mode)}", f"**Actor:** {inline_code(report.actor)}"]
    if report.record:
        meta.append(f"**Record:** {inline_code(report.record)}")
    if report.run_url:
        meta.append(f"**Run:** {link(report.run_url)}")
    lines += [" · ".join(meta), ""]
    lines += ["| service | old target | new target | outcome |", "| --- | --- | --- | --- |"]
    for s in report.services:
        cells = [
            f"{table_cell(s.name)} ({table_cell(s.target)})",
            _position(s, s.old_target_sha, final=False),
            _position(s, s.final_target_sha, final=True),
            outcome_text(s.outcome, s.source, report.mode),
        ]
        lines.append(f"| {' | '.join(cells)} |")
    lines.append("")
    lines += _callout(report)

    details = [*report.messages, *(f"{s.name}: {s.detail}" for s in report.services if s.detail)]
    if details:
        lines += ["**Details**", "", code_block("\n".join(details))]
    if report.warnings:
        lines += ["**Warnings**", "", code_block("\n".join(report.warnings))]

    footer = bypass_footer(report)
    if footer:
        lines += [footer, ""]
    if report.rollback is not None:
        lines += [render_markdown(report.rollback, level=level + 1)]
    return "\n".join(lines)


_AUDITED_MODES = {
    "reconcile-forward": "Reconcile --forward",
    "reconcile-rollback": "Reconcile --rollback",
    "rollback": "Automatic rollback",
}


def bypass_footer(report: Report) -> str | None:
    """One accurate sentence about the audit record, or None when no bypass was asked.

    "logged" is said only when the record was stored; every other case says why not.
    """
    audit = report.audit
    if not audit.requested:
        return None
    if audit.stored:
        where = f" at {inline_code(audit.location)}" if audit.location else ""
        label = _AUDITED_MODES.get(report.mode)
        if label:
            return f"**{label}:** the justification was logged{where} before any push."
        return f"**Bypass:** the gate was skipped; the justification was logged{where} before any push."
    if audit.suppressed_noop:
        return "**Bypass:** requested, but there was nothing to promote, so no audit record was written."
    if audit.error:
        return "**Bypass blocked:** the audit record could not be stored, so nothing was pushed."
    return (
        "**Bypass:** requested, but the run stopped before the audit record was written; nothing was pushed."
    )


def _plain(value: Any) -> Any:
    """JSON-ready data: enums and ``Sha`` become plain ``str``; text always encodes as UTF-8."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, str):
        # Lone surrogates (undecodable subprocess bytes) would make the report unwritable.
        return str(value).encode("utf-8", "backslashreplace").decode("utf-8")
    return value


def to_json_dict(report: Report) -> dict[str, Any]:
    data: dict[str, Any] = {"lockstep_version": __version__}
    data.update(_plain(report))
    for entry, svc in zip(_service_lists(data), _service_reports(report), strict=True):
        entry["outcome"] = OUTCOME_LABELS[svc.outcome]
    data["exit_code"] = report.exit_code
    return data


def _service_reports(report: Report) -> list[ServiceReport]:
    """The report's services, then its automatic rollback's (nested under ``rollback``)."""
    return report.services + (_service_reports(report.rollback) if report.rollback else [])


def _service_lists(data: dict[str, Any]) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = list(data["services"])
    return entries + (_service_lists(data["rollback"]) if data.get("rollback") else [])


def render_json(report: Report) -> str:
    return json.dumps(to_json_dict(report), indent=2, ensure_ascii=False) + "\n"

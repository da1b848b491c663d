"""Writing what a run found: the summary, the JSON report and the Actions outputs, all redacted."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path

from lockstep import actions, log, redact
from lockstep.config import Config
from lockstep.engine.prepare import RunRequest
from lockstep.errors import LockstepError
from lockstep.model import Report, Result
from lockstep.report import render_json, render_markdown


def publish(report: Report, config: Config, request: RunRequest, env: Mapping[str, str]) -> int:
    """Write the summary, JSON report and Actions outputs; a write failure is reported, never hidden.

    The report is scrubbed of secrets before it is rendered (rendering can change
    how a secret is spelled: JSON escapes, markdown table cells), and the
    rendered summary once more.
    """
    report = redact.scrub_data(report)
    markdown = render_markdown(report)
    markdown = redact.scrub(markdown)
    code = report.exit_code
    problems: list[str] = []
    if request.report_path:
        try:
            request.report_path.write_text(render_json(report), encoding="utf-8")
        except OSError as exc:
            problems.append(f"cannot write the report to {request.report_path}: {exc.strerror}")
    if actions.in_actions(env):
        try:
            actions.append_step_summary(env, markdown)
        except LockstepError as exc:
            problems.append(str(exc))
        output_path = env.get("GITHUB_OUTPUT")
        if output_path:
            try:
                actions.OutputWriter(Path(output_path)).write_many(actions.report_outputs(report))
            except LockstepError as exc:
                problems.append(str(exc))
        if report.result in (Result.SPLIT, Result.UNKNOWN):
            actions.annotation("error", " ".join(report.messages) or report.result.value, title="lockstep")
        elif report.result in (Result.BLOCKED, Result.ROLLED_BACK):
            actions.annotation("warning", " ".join(report.messages) or "blocked", title="lockstep")
    # log.write: a terminal closed by now (SIGHUP) loses the screen copy, never the exit code
    if request.json_out:
        log.write(sys.stdout, render_json(report))
        log.write(sys.stderr, markdown + "\n")
    else:
        log.write(sys.stdout, markdown + "\n")
    for problem in problems:
        log.error(problem)
    if report.fix_command:
        log.error(f"the targets are split; to finish the promotion: {report.fix_command}")
    if problems and code == 0 and not any(s.did_push for s in report.services):
        code = 1
    return code

"""GitHub Actions I/O: the event, step outputs, the step summary, masks, log groups.

Everything here is a thin, strict layer over the runner's file and stdout
protocols (``docs/github-api.md``, "GitHub Actions runtime"):

* ``$GITHUB_EVENT_PATH`` is read with a size cap; ``workflow_dispatch`` inputs
  give the bypass request, a ``repository_dispatch`` payload is summarised as
  *information only* (nothing returned from it is ever a sha the gate uses).
* ``$GITHUB_OUTPUT`` is written the way ``@actions/core`` writes it: a fresh
  ``ghadelimiter_<uuid4>`` per multi-line value, refusing any name or value that
  contains it, flushed and fsynced, every failure a one-line :class:`ActionsError`.
* ``$GITHUB_STEP_SUMMARY`` is appended to and kept under GitHub's 1 MiB limit.
* Workflow commands (``::add-mask::``, ``::group::``, ``::error::`` …) are
  written to **stderr** by default.  The runner reads commands from both stdout
  and stderr; stderr keeps them in order with lockstep's progress lines (which
  go there too) and keeps stdout clean for the summary and ``--json``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sys
import uuid
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TextIO

from lockstep import log
from lockstep.errors import LockstepError, UsageError
from lockstep.model import Report, service_slug
from lockstep.redact import clean_text, scrub

#: The most of ``$GITHUB_EVENT_PATH`` that is ever read.
EVENT_READ_LIMIT = 1024 * 1024
#: GitHub rejects a step summary larger than this (per step, all appends together).
SUMMARY_LIMIT = 1024 * 1024
#: Bound on the sanitised ``client_payload`` summary and the dispatch action.
PAYLOAD_SUMMARY_LIMIT = 500
ACTION_LIMIT = 100

_NAME_RE = re.compile(r"[A-Za-z0-9_-]+")
_LOGIN_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}(\[bot\])?")
_REPO_RE = re.compile(r"[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+")
_FENCE_RE = re.compile(r" {0,3}(`{3,}|~{3,})(.*)")
_RENDER_DEPTH = 16

Level = Literal["error", "warning", "notice"]


class ActionsError(LockstepError):
    """A runner file (``$GITHUB_OUTPUT``, ``$GITHUB_STEP_SUMMARY``) could not be written."""


# --------------------------------------------------------------------------- environment


def _environ(env: Mapping[str, str] | None) -> Mapping[str, str]:
    return os.environ if env is None else env


def in_actions(env: Mapping[str, str] | None = None) -> bool:
    """True when running as a GitHub Actions step (``GITHUB_ACTIONS=true``)."""
    return _environ(env).get("GITHUB_ACTIONS") == "true"


def run_url(env: Mapping[str, str] | None = None) -> str | None:
    """This run's web link, or None when the variables are missing or malformed.

    ``$GITHUB_SERVER_URL/$GITHUB_REPOSITORY/actions/runs/$GITHUB_RUN_ID``, plus
    ``/attempts/N`` for a re-run (``GITHUB_RUN_ATTEMPT`` > 1) so the link opens
    the attempt that actually ran, not the first one.
    """
    e = _environ(env)
    server = e.get("GITHUB_SERVER_URL", "").rstrip("/")
    repo = e.get("GITHUB_REPOSITORY", "")
    run_id = e.get("GITHUB_RUN_ID", "")
    if not re.fullmatch(r"https?://[^\s/]+(/[^\s]*)?", server):
        return None
    if not _REPO_RE.fullmatch(repo) or not run_id.isdecimal() or not run_id.isascii():
        return None
    url = f"{server}/{repo}/actions/runs/{run_id}"
    attempt = e.get("GITHUB_RUN_ATTEMPT", "")
    if attempt.isascii() and attempt.isdecimal() and int(attempt) > 1:
        url += f"/attempts/{int(attempt)}"
    return url


def actor(env: Mapping[str, str] | None = None) -> str | None:
    """Who started this run attempt: ``$GITHUB_TRIGGERING_ACTOR``, else ``$GITHUB_ACTOR``.

    The triggering actor comes first: on a re-run it is the person who pressed
    "re-run", and that person (not the original dispatcher) is the one to audit
    and to check against ``allowed_actors``.  Values that are not plausible
    logins are ignored.
    """
    e = _environ(env)
    for name in ("GITHUB_TRIGGERING_ACTOR", "GITHUB_ACTOR"):
        value = e.get(name, "")
        if _LOGIN_RE.fullmatch(value):
            return value
    return None


# --------------------------------------------------------------------------- the event


@dataclass(frozen=True)
class EventInputs:
    """What lockstep takes from the triggering event.

    ``skip_gate``/``justification`` come only from ``workflow_dispatch`` inputs
    (None when absent).  ``dispatch_action``/``client_payload_summary`` come
    only from ``repository_dispatch`` and are sanitised, bounded text to *log*:
    the gate never takes a sha (or anything else) from them.
    """

    event_name: str | None = None
    skip_gate: bool | None = None
    justification: str | None = None
    dispatch_action: str | None = None
    client_payload_summary: str | None = None


def _render(value: object, budget: int, depth: int = 0) -> str:
    """Compact JSON-like text of ``value``, stopping early once ``budget`` chars are out."""
    if depth >= _RENDER_DEPTH:
        return "…"
    if isinstance(value, dict):
        parts: list[str] = []
        used = 2
        for key, item in value.items():
            if used > budget:
                parts.append("…")
                break
            part = json.dumps(str(key)[: max(budget, 0) + 1]) + ":" + _render(item, budget - used, depth + 1)
            parts.append(part)
            used += len(part) + 1
        return "{" + ",".join(parts) + "}"
    if isinstance(value, list):
        parts = []
        used = 2
        for item in value:
            if used > budget:
                parts.append("…")
                break
            part = _render(item, budget - used, depth + 1)
            parts.append(part)
            used += len(part) + 1
        return "[" + ",".join(parts) + "]"
    if isinstance(value, str):
        return json.dumps(value[: max(budget, 0) + 1], ensure_ascii=False)
    return json.dumps(value)


def summarize_payload(payload: object, limit: int = PAYLOAD_SUMMARY_LIMIT) -> str:
    """One sanitised line (at most ``limit`` chars) describing a JSON value, however large or deep."""
    return clean_text(_render(payload, limit), limit)


def read_event(env: Mapping[str, str] | None = None) -> EventInputs:
    """Read ``$GITHUB_EVENT_NAME`` and ``$GITHUB_EVENT_PATH`` into :class:`EventInputs`.

    No ``GITHUB_EVENT_PATH``: only the event name is returned.  A set path whose
    file is missing, unreadable or not a JSON object is a :class:`UsageError`
    naming the path.  A file over 1 MiB, or JSON nested too deeply to parse, is
    a :class:`UsageError` for ``workflow_dispatch`` (its inputs decide the
    bypass) and only a note in the summary for any other event.
    """
    e = _environ(env)
    event_name = e.get("GITHUB_EVENT_NAME") or None
    path = e.get("GITHUB_EVENT_PATH") or None
    if path is None:
        return EventInputs(event_name=event_name)
    needs_inputs = event_name == "workflow_dispatch"
    where = f"GITHUB_EVENT_PATH {path!r}"

    try:
        with open(path, "rb") as fh:
            data = fh.read(EVENT_READ_LIMIT + 1)
    except FileNotFoundError:
        raise UsageError(f"{where}: event file not found") from None
    except OSError as exc:
        raise UsageError(f"{where}: cannot read event file: {exc.strerror or exc}") from None

    problem: str | None = None
    event: object = None
    if len(data) > EVENT_READ_LIMIT:
        problem = f"event file is larger than {EVENT_READ_LIMIT} bytes"
    else:
        try:
            event = json.loads(data)
        except RecursionError:
            problem = "event JSON is nested too deeply"
        except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
            raise UsageError(f"{where}: not valid JSON: {clean_text(str(exc))}") from None
    if problem is not None:
        if needs_inputs:
            raise UsageError(f"{where}: {problem}")
        return EventInputs(event_name=event_name, client_payload_summary=f"({problem}; not read)")
    if not isinstance(event, dict):
        raise UsageError(f"{where}: event JSON is not an object")

    if event_name == "workflow_dispatch":
        inputs = event.get("inputs")
        if inputs is None:
            return EventInputs(event_name=event_name)
        if not isinstance(inputs, dict):
            raise UsageError(f"{where}: inputs must be an object")
        return EventInputs(
            event_name=event_name,
            skip_gate=_parse_skip_gate(inputs.get("skip_gate"), where),
            justification=_parse_justification(inputs.get("justification"), where),
        )
    if event_name == "repository_dispatch":
        action = event.get("action")
        payload = event.get("client_payload")
        return EventInputs(
            event_name=event_name,
            dispatch_action=clean_text(action, ACTION_LIMIT) if isinstance(action, str) else None,
            client_payload_summary=None if payload is None else summarize_payload(payload),
        )
    return EventInputs(event_name=event_name)


def _parse_skip_gate(value: object, where: str) -> bool | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return value
    if value == "true":
        return True
    if value == "false":
        return False
    shown = clean_text(repr(value), 60)
    raise UsageError(f'{where}: inputs.skip_gate must be true or false (or "true"/"false"), got {shown}')


def _parse_justification(value: object, where: str) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise UsageError(f"{where}: inputs.justification must be a string, got {type(value).__name__}")


# --------------------------------------------------------------------------- $GITHUB_OUTPUT

OutputValue = str | bool | int


def _as_text(value: OutputValue) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return value
    raise TypeError(f"output values must be str, bool or int, not {type(value).__name__}")


def format_output(name: str, value: OutputValue) -> str:
    """The exact text appended to ``$GITHUB_OUTPUT`` for one output (ends with a newline)."""
    if not _NAME_RE.fullmatch(name):
        raise ActionsError(f"invalid output name {name!r:.80}: use letters, digits, '_' or '-'")
    text = scrub(_as_text(value))
    if "\n" not in text and "\r" not in text:
        return f"{name}={text}\n"
    delimiter = f"ghadelimiter_{uuid.uuid4()}"
    if delimiter in name or delimiter in text:  # as @actions/core does; a uuid4 clash is ~impossible
        raise ActionsError(f"output {name!r}: value contains the delimiter {delimiter}")
    return f"{name}<<{delimiter}\n{text}\n{delimiter}\n"


def _append(path: Path, text: str, what: str) -> None:
    try:
        with open(path, "a", encoding="utf-8", newline="") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
    except OSError as exc:
        reason = exc.strerror or clean_text(str(exc)) or type(exc).__name__
        raise ActionsError(f"cannot write {what} to {str(path)!r}: {reason}") from None
    except UnicodeEncodeError:
        raise ActionsError(f"cannot write {what} to {str(path)!r}: text is not valid UTF-8") from None


class OutputWriter:
    """Appends step outputs to ``$GITHUB_OUTPUT`` (or any path, for tests)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> OutputWriter | None:
        """The writer for ``$GITHUB_OUTPUT``, or None when it is not set."""
        path = _environ(env).get("GITHUB_OUTPUT")
        return cls(path) if path else None

    def set(self, name: str, value: OutputValue) -> None:
        """Append one output; raise :class:`ActionsError` if it is refused or not written."""
        self._write({name: value})

    def write_many(self, values: Mapping[str, OutputValue]) -> None:
        """Validate every output first, then append them all in one fsynced write."""
        self._write(values)

    def _write(self, values: Mapping[str, OutputValue]) -> None:
        text = "".join(format_output(name, value) for name, value in values.items())
        if text:
            names = ", ".join(values)
            _append(self.path, text, f"GitHub Actions output ({names:.200})")


def output_slug(service_name: str) -> str:
    """A service's output prefix: the same rule as ``ServiceConfig.output_slug``."""
    return service_slug(service_name).lower()


def report_outputs(report: Report) -> dict[str, str]:
    """The step outputs for a finished run.

    ``result``; per service ``<slug>_source_sha``, ``<slug>_old_target_sha``,
    ``<slug>_final_target_sha`` (empty when unknown or missing) and
    ``<slug>_did_push`` (``true``/``false``); and ``services``, the same data as
    one JSON object keyed by slug (the composite action re-exports it, since a
    composite action can only expose outputs it declares).
    """
    outputs: dict[str, str] = {"result": report.result.value}
    services: dict[str, dict[str, str | bool]] = {}
    for svc in report.services:
        slug = output_slug(svc.name)
        row: dict[str, str | bool] = {
            "source_sha": svc.source_sha or "",
            "old_target_sha": svc.old_target_sha or "",
            "final_target_sha": svc.final_target_sha or "",
            "did_push": bool(svc.did_push),
        }
        services[slug] = row
        for key, value in row.items():
            outputs[f"{slug}_{key}"] = _as_text(value)
    outputs["services"] = json.dumps(services, sort_keys=True, separators=(",", ":"))
    return outputs


# --------------------------------------------------------------------------- step summary


def _open_fence(text: str) -> str | None:
    """The fence marker still open at the end of ``text`` (CommonMark-ish), if any."""
    fence: str | None = None
    for line in text.split("\n"):
        m = _FENCE_RE.match(line)
        if not m:
            continue
        marker, rest = m.group(1), m.group(2)
        if fence is None:
            if not (marker[0] == "`" and "`" in rest):
                fence = marker
        elif marker[0] == fence[0] and len(marker) >= len(fence) and not rest.strip():
            fence = None
    return fence


def _truncate_summary(markdown: str, room: int) -> str:
    note = (
        "\n\n> **Note:** lockstep truncated this summary: GitHub rejects a step summary "
        "over 1 MiB. The full details are in the job log and the JSON report.\n"
    )
    budget = room - len(note.encode()) - 16  # 16: room for a closing fence
    if budget <= 0:
        return ""
    cut = markdown.encode("utf-8")[:budget].decode("utf-8", errors="ignore")
    if "\n" in cut:
        cut = cut[: cut.rindex("\n")]
    fence = _open_fence(cut)
    if fence is not None:
        cut += "\n" + fence
    return cut + note


def append_step_summary(env: Mapping[str, str] | None, markdown: str) -> bool:
    """Append ``markdown`` to ``$GITHUB_STEP_SUMMARY``; False when it is not set.

    If the step's summary would pass 1 MiB, the new text is cut at a line
    boundary (closing an open code fence) and ends with a note saying so.
    """
    path_text = _environ(env).get("GITHUB_STEP_SUMMARY")
    if not path_text:
        return False
    path = Path(path_text)
    markdown = scrub(markdown)
    if not markdown.endswith("\n"):
        markdown += "\n"
    try:
        existing = path.stat().st_size if path.exists() else 0
    except OSError:
        existing = 0  # the write below reports the real problem
    room = SUMMARY_LIMIT - existing
    if len(markdown.encode("utf-8", errors="replace")) > room:
        markdown = _truncate_summary(markdown, room)
        log.warn("the step summary was truncated to stay under GitHub's 1 MiB limit")
        if not markdown:
            return True
    _append(path, markdown, "the step summary")
    return True


# --------------------------------------------------------------------------- workflow commands


def escape_data(text: str) -> str:
    """Escape workflow-command data: ``%``, ``\\r``, ``\\n``."""
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(text: str) -> str:
    """Escape a workflow-command property value: data escapes plus ``:`` and ``,``."""
    return escape_data(text).replace(":", "%3A").replace(",", "%2C")


def _out(stream: TextIO | None) -> TextIO:
    return sys.stderr if stream is None else stream


def _command(stream: TextIO | None, line: str) -> None:
    out = _out(stream)
    out.write(line + "\n")
    out.flush()


def add_mask(value: str, stream: TextIO | None = None) -> None:
    """Emit ``::add-mask::`` for ``value`` and for each trimmed non-empty line of it.

    Only call this under Actions (see :func:`mask_secrets`): anywhere else the
    line would print the secret instead of hiding it.
    """
    seen: set[str] = set()
    for candidate in (value, *(line.strip() for line in value.splitlines())):
        if candidate.strip() and candidate not in seen:
            seen.add(candidate)
            _command(stream, f"::add-mask::{escape_data(candidate)}")


def mask_secrets(
    env: Mapping[str, str] | None,
    names: Iterable[str],
    stream: TextIO | None = None,
    values: Iterable[str] = (),
) -> int:
    """Mask the value of every named, set variable, then each of ``values``; a no-op outside Actions.

    ``values`` are secrets that live in no variable of their own (a URL's password
    in the config).  Returns how many values were masked.  Call it before
    anything else is printed.
    """
    e = _environ(env)
    if not in_actions(e):
        return 0
    found = [e.get(name) or "" for name in dict.fromkeys(names)]
    count = 0
    for value in dict.fromkeys([*found, *values]):
        if value.strip():
            add_mask(value, stream)
            count += 1
    return count


def start_group(title: str, stream: TextIO | None = None) -> None:
    """Open a collapsible log group (Actions cannot nest them: the caller closes each first)."""
    _command(stream, f"::group::{escape_data(scrub(title))}")


def end_group(stream: TextIO | None = None) -> None:
    _command(stream, "::endgroup::")


def annotation(
    level: Level,
    message: str,
    title: str | None = None,
    *,
    env: Mapping[str, str] | None = None,
    stream: TextIO | None = None,
) -> None:
    """An ``::error``/``::warning``/``::notice`` annotation; a plain log line outside Actions."""
    if level not in ("error", "warning", "notice"):
        raise ValueError(f"unknown annotation level {level!r}")
    if not in_actions(env):
        text = f"{title}: {message}" if title else message
        {"error": log.error, "warning": log.warn, "notice": log.info}[level](text)
        return
    props = f" title={escape_property(scrub(title))}" if title else ""
    _command(stream, f"::{level}{props}::{escape_data(scrub(message))}")


@contextlib.contextmanager
def stop_commands(*, env: Mapping[str, str] | None = None, stream: TextIO | None = None) -> Iterator[None]:
    """While active, the runner ignores workflow commands (for echoing untrusted output)."""
    if not in_actions(env):
        yield
        return
    token = f"lockstep-{uuid.uuid4().hex}"
    _command(stream, f"::stop-commands::{token}")
    try:
        yield
    finally:
        _command(stream, f"::{token}::")

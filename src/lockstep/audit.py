"""The bypass audit record: validation, rendering, and the file sink.

A bypass (``--skip-gate``) skips every check, so the only thing standing
between it and prod is a record that says who did it, when, what moved and
why.  This module makes that record hard to get wrong, fixing each audit bug
the seed PR found:

* a justification with no visible content (spaces, tabs, NBSP, zero-width
  characters, Hangul fillers...) is refused, not just an empty string;
* the justification is rendered into a fenced block it cannot escape
  (:func:`lockstep.markdown.code_block`), never through a shell or a heredoc,
  so a line ``EOF`` or a run of backticks is just text;
* the record is the rendered text itself, passed to the sink as a string (no
  ``@path`` indirection that could be posted literally);
* a sink that cannot store the record raises :class:`AuditError`, which
  blocks the bypass; the caller reports "audit stored" only after ``store``
  returned;
* the file sink appends only to regular files and never follows a symbolic
  link at the tracker or its ``.jsonl`` twin: a planted ``audit.md -> ~/.bashrc``
  would otherwise receive the record (and the audit trail would be elsewhere).
"""

from __future__ import annotations

import asyncio
import errno
import json
import os
import re
import stat
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal, NamedTuple

from lockstep.errors import AuditError, UsageError
from lockstep.markdown import code_block, has_bidi, inline_code, table_cell
from lockstep.model import Sha
from lockstep.redact import clean_text

__all__ = [
    "MAX_ACTOR",
    "MAX_JUSTIFICATION",
    "AuditRecord",
    "AuditService",
    "FileAuditSink",
    "render_markdown",
    "tracker_problem",
    "utc_now",
    "validate_actor",
    "validate_justification",
]

MAX_JUSTIFICATION = 4000
MAX_ACTOR = 100

_GATE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")  # same rule as config's Name
_TIME_RE = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z")
_AUTOLINK_RE = re.compile(r"https?://[!-~]+")  # printable ASCII, no space
_INVISIBLE_CATEGORIES = frozenset({"Zs", "Zl", "Zp", "Cc", "Cf", "Mn", "Me"})
_INVISIBLE_CHARS = frozenset(
    "\u200b\u200c\u200d\u200e\u200f"  # zero-width space/joiners, LRM, RLM
    "\u2060\u2061\u2062\u2063\u2064"  # word joiner, invisible operators
    "\ufeff"  # BOM / zero-width no-break space
    "\u115f\u1160\u3164\uffa0"  # Hangul fillers (category Lo, yet blank)
    "\u180e"  # Mongolian vowel separator
    "\u2800"  # Braille pattern blank (category So, yet blank)
)


def _is_invisible(char: str) -> bool:
    return (
        char.isspace()
        or char in _INVISIBLE_CHARS
        or unicodedata.category(char) in _INVISIBLE_CATEGORIES
    )


def validate_justification(text: str | None) -> str:
    """Return the justification stripped of surrounding whitespace, or raise UsageError.

    A justification must say something a reviewer can read: one made only of
    whitespace, invisible or combining characters is as empty as ``""`` (the
    seed's ``' \\n\\t '`` bug, generalised to Unicode).
    """
    if text is None:
        raise UsageError("--justification is required with --skip-gate")
    stripped = text.strip()
    if not stripped or all(_is_invisible(char) for char in stripped):
        raise UsageError("justification is empty: it has no visible characters")
    if len(stripped) > MAX_JUSTIFICATION:
        raise UsageError(
            f"justification is too long: {len(stripped)} characters (at most {MAX_JUSTIFICATION})"
        )
    return stripped


def validate_actor(name: str | None) -> str:
    """Return the actor name stripped, or raise UsageError naming ``--actor``.

    Light on purpose: actors come from ``$GITHUB_ACTOR``, ``--actor`` or the
    login name; we only refuse what would make the record misleading.
    """
    actor = (name or "").strip()
    if not actor:
        raise UsageError("--actor is empty")
    if len(actor) > MAX_ACTOR:
        raise UsageError(f"--actor is too long: {len(actor)} characters (at most {MAX_ACTOR})")
    for char in actor:
        if unicodedata.category(char) in ("Cc", "Cf", "Cs", "Zl", "Zp"):
            raise UsageError(f"--actor contains a control character (U+{ord(char):04X})")
    return actor


AuditAction = Literal["bypass", "reconcile-forward", "reconcile-rollback", "rollback"]


def utc_now() -> str:
    """The current time as ``2026-11-27T02:30:00Z`` (UTC, whole seconds)."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class AuditService(NamedTuple):
    """One target the bypass will move: ``old_sha`` is None when the target is seeded."""

    name: str
    repo: str
    target: str
    old_sha: Sha | None
    new_sha: Sha


@dataclass(frozen=True)
class AuditRecord:
    """Everything a bypass audit says; validated on construction.

    Building one runs :func:`validate_justification` and :func:`validate_actor`
    (UsageError), and checks the gate name, the time format and every sha
    (ValueError, a programming or config error), so an invalid record cannot
    reach a sink.
    """

    gate: str
    actor: str
    tracker: str
    services: Sequence[AuditService]
    justification: str
    run_url: str | None = None
    time: str = field(default_factory=utc_now)
    action: AuditAction = "bypass"

    def __post_init__(self) -> None:
        if not _GATE_RE.fullmatch(self.gate):
            raise ValueError(f"invalid gate name: {self.gate!r:.80}")
        if not _TIME_RE.fullmatch(self.time):
            raise ValueError(f"time must look like 2026-11-27T02:30:00Z, got {self.time!r:.40}")
        moves = []
        for move in self.services:
            moves.append(
                AuditService(
                    move.name,
                    move.repo,
                    move.target,
                    None if move.old_sha is None else Sha(move.old_sha),
                    Sha(move.new_sha),
                )
            )
        object.__setattr__(self, "services", tuple(moves))
        object.__setattr__(self, "actor", validate_actor(self.actor))
        object.__setattr__(self, "justification", validate_justification(self.justification))

    def to_json(self) -> dict[str, object]:
        """The record as a JSON-ready dict; every key is always present, in this order."""
        return {
            "kind": "lockstep-bypass",
            "version": 1,
            "gate": self.gate,
            "time": self.time,
            "actor": self.actor,
            "run_url": self.run_url,
            "tracker": self.tracker,
            "services": [
                {
                    "name": m.name,
                    "repo": m.repo,
                    "target": m.target,
                    "old_sha": None if m.old_sha is None else str(m.old_sha),
                    "new_sha": str(m.new_sha),
                }
                for m in self.services
            ],
            "justification": self.justification,
        }


def _run_link(url: str) -> str:
    """An autolink only for a plain http(s) URL; anything else stays inert in a code span."""
    if _AUTOLINK_RE.fullmatch(url) and "<" not in url and ">" not in url:
        return f"<{url}>"
    return inline_code(url)


def render_markdown(record: AuditRecord) -> str:
    """The audit section (issue comment or file section), ending with a newline.

    Every value that is not lockstep's own wording or a validated sha/time is
    inside a code span or the final code block.  The justification comes last
    so nothing follows text a reader might mistake for the end of the record.
    """
    lines = [
        f"### lockstep {record.action}: {inline_code(record.gate)}",
        "",
        f"- Time: {record.time}",
        f"- Actor: {inline_code(record.actor)}",
    ]
    if record.run_url:
        lines.append(f"- Run: {_run_link(record.run_url)}")
    lines += [
        "",
        "| Service | Repository | Target | Old target | New target |",
        "| --- | --- | --- | --- | --- |",
    ]
    for move in record.services:
        old = "none (seeded)" if move.old_sha is None else inline_code(move.old_sha)
        cells = [table_cell(move.name), table_cell(move.repo), table_cell(move.target)]
        lines.append(f"| {' | '.join(cells)} | {old} | {inline_code(move.new_sha)} |")
    lines += ["", "Justification:", ""]
    if has_bidi(record.justification):
        lines += [
            "> ⚠️ The justification contains bidirectional control characters (shown escaped).",
            "",
        ]
    return "\n".join(lines) + "\n" + code_block(record.justification)


def _one_line(error: BaseException) -> str:
    reason = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
    return clean_text(reason) or type(error).__name__


def json_twin(path: Path) -> Path:
    """The JSON-lines file kept beside the markdown audit log ``path``."""
    return path.with_name(path.name + ".jsonl")


def tracker_problem(path: Path) -> str | None:
    """Why the git forge's audit log ``path`` (or its twin) is not a file to append to, or None.

    Checked before anything happens by ``run``, ``reconcile`` and ``validate``.
    A file that does not exist yet is fine (the first record creates it); a
    missing directory is the sink's to report (``validate`` checks it too).
    """
    for candidate in (path, json_twin(path)):
        try:
            mode = candidate.lstat().st_mode
        except (FileNotFoundError, NotADirectoryError):
            continue
        except OSError as error:
            return f"{candidate}: {_one_line(error)}"
        if stat.S_ISLNK(mode):
            return f"{candidate} is a symbolic link: the audit log must be a regular file"
        if not stat.S_ISREG(mode):
            return f"{candidate} is not a regular file"
    return None


def _open_no_follow(path: str, flags: int) -> int:
    # O_NONBLOCK: a FIFO planted at the path must not hang the run before it is refused below
    return os.open(path, flags | os.O_NOFOLLOW | os.O_NONBLOCK, 0o666)


def _append(path: Path, text: str, separator: str) -> None:
    """Append ``text`` durably; a non-empty file first gets ``separator``.

    The file's last line is completed first if it lacks a newline, so a
    hand-edited log cannot glue our section or JSON line onto its last line.
    Only a regular file is written, and a symbolic link is never followed
    (``O_NOFOLLOW``), even one planted after ``run`` checked the path.
    """
    data = text.encode("utf-8")
    try:
        handle = open(path, "a+b", opener=_open_no_follow)  # noqa: SIM115 (closed by the with below)
    except OSError as error:
        if error.errno in (errno.ELOOP, errno.EMLINK) and path.is_symlink():
            raise ValueError("is a symbolic link: the audit log must be a regular file") from None
        raise
    with handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise ValueError("is not a regular file")
        size = info.st_size
        if size:
            handle.seek(size - 1)
            ended = handle.read(1) == b"\n"
            data = (b"" if ended else b"\n") + separator.encode("utf-8") + data
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    if not size:
        _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    """Make a new file's directory entry durable; best effort (not every FS supports it)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class FileAuditSink:
    """The git forge's audit sink: a markdown log plus a JSON-lines twin.

    ``store`` appends the rendered section to ``path`` (separated from the
    previous one by ``---``) and one JSON line to ``<path>.jsonl``, each
    flushed and fsynced before returning.  The parent directory must already
    exist: creating it would hide a typo'd path.  Both files must be regular
    files, never symbolic links (see :func:`tracker_problem`).  Any failure,
    including a JSON failure after the markdown landed, raises AuditError so
    the bypass is blocked.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.json_path = json_twin(self.path)

    async def store(self, markdown: str, record: dict[str, object]) -> str:
        """Store the record; return the markdown file's path."""
        try:
            line = json.dumps(record, ensure_ascii=True, separators=(",", ":")) + "\n"
        except (TypeError, ValueError) as error:
            raise AuditError(
                f"could not store the audit record in {self.path}: {_one_line(error)}"
            ) from error
        await asyncio.to_thread(self._write, markdown, line)
        return str(self.path)

    def _write(self, markdown: str, line: str) -> None:
        try:
            _append(self.path, markdown, "\n---\n\n")
        except (OSError, ValueError) as error:
            raise AuditError(
                f"could not store the audit record in {self.path}: {_one_line(error)}"
            ) from error
        try:
            _append(self.json_path, line, "")
        except (OSError, ValueError) as error:
            raise AuditError(
                f"could not store the audit record in {self.path}: "
                f"{self.json_path}: {_one_line(error)}"
            ) from error

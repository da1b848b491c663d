"""Plain, timestamped progress lines on stderr.

stdout is reserved for the summary and ``--json``; everything a person watches
while the run goes goes here.  One place so that masking and Actions grouping
can be layered on without touching callers.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

_stream: TextIO | None = None
_secrets: set[str] = set()


def add_secrets(*values: str) -> None:
    """Values that must never be printed (tokens); every line and report is scrubbed of them."""
    _secrets.update(v for v in values if len(v) >= 4)


def redact(text: str) -> str:
    """``text`` with every registered secret replaced by ``***`` (longest first)."""
    for secret in sorted(_secrets, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, "***")
    return text


def set_stream(stream: TextIO | None) -> None:
    """Redirect progress lines (tests and the demo use this); None = stderr."""
    global _stream
    _stream = stream


def _emit(prefix: str, message: str) -> None:
    stream = _stream or sys.stderr
    stamp = time.strftime("%H:%M:%S")
    for line in redact(message).splitlines() or [""]:
        stream.write(f"{stamp} {prefix}{line}\n")
    stream.flush()


def info(message: str) -> None:
    _emit("", message)


def warn(message: str) -> None:
    _emit("warning: ", message)


def error(message: str) -> None:
    _emit("error: ", message)

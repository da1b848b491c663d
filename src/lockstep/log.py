"""Plain, timestamped progress lines on stderr.

stdout is reserved for the summary and ``--json``; everything a person watches
while the run goes goes here.  One place so that every line is scrubbed of
secrets (:mod:`lockstep.redact`) whoever wrote it.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

from lockstep.redact import scrub

_stream: TextIO | None = None


def set_stream(stream: TextIO | None) -> None:
    """Redirect progress lines (tests and the demo use this); None = stderr."""
    global _stream
    _stream = stream


def _emit(prefix: str, message: str) -> None:
    stream = _stream or sys.stderr
    stamp = time.strftime("%H:%M:%S")
    for line in scrub(message).splitlines() or [""]:
        stream.write(f"{stamp} {prefix}{line}\n")
    stream.flush()


def info(message: str) -> None:
    _emit("", message)


def warn(message: str) -> None:
    _emit("warning: ", message)


def error(message: str) -> None:
    _emit("error: ", message)

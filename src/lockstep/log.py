"""Plain, timestamped progress lines on stderr.

stdout is reserved for the summary and ``--json``; everything a person watches
while the run goes goes here.  One place so that masking and Actions grouping
can be layered on without touching callers.
"""

from __future__ import annotations

import os
import sys
import time
from typing import IO, TextIO

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


def write(stream: IO[str], text: str) -> None:
    """Write and flush ``text``, surviving a reader that went away.

    A closed terminal or ssh session (SIGHUP) makes every later write fail
    with EIO or EPIPE; the run must still finish its pushes, records and
    ``--report`` and exit with its own code, so the dead stream is pointed at
    /dev/null (see :func:`silence`) instead of raising.
    """
    try:
        stream.write(text)
        stream.flush()
    except (OSError, ValueError):
        silence(stream)


def silence(stream: IO[str]) -> None:
    """Point ``stream``'s descriptor at /dev/null: later writes, including other code's and the
    interpreter's final flush, then succeed instead of failing or changing the exit code."""
    try:
        fd = stream.fileno()
        null = os.open(os.devnull, os.O_WRONLY)
    except (OSError, ValueError):
        return  # not a file (a test's StringIO, an already closed stream): nothing to redirect
    try:
        os.dup2(null, fd)
    except OSError:
        pass
    finally:
        os.close(null)


def _emit(prefix: str, message: str) -> None:
    stamp = time.strftime("%H:%M:%S")
    lines = redact(message).splitlines() or [""]
    write(_stream or sys.stderr, "".join(f"{stamp} {prefix}{line}\n" for line in lines))


def info(message: str) -> None:
    _emit("", message)


def warn(message: str) -> None:
    _emit("warning: ", message)


def error(message: str) -> None:
    _emit("error: ", message)

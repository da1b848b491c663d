"""Plain, timestamped progress lines on stderr.

stdout is reserved for the summary and ``--json``; everything a person watches
while the run goes goes here.  One place so that every line is scrubbed of
secrets (:mod:`lockstep.redact`) whoever wrote it.
"""

from __future__ import annotations

import os
import sys
import time
from typing import IO, TextIO

from lockstep.redact import scrub

_stream: TextIO | None = None


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
    lines = scrub(message).splitlines() or [""]
    write(_stream or sys.stderr, "".join(f"{stamp} {prefix}{line}\n" for line in lines))


def info(message: str) -> None:
    _emit("", message)


def warn(message: str) -> None:
    _emit("warning: ", message)


def error(message: str) -> None:
    _emit("error: ", message)

"""Safe markdown rendering primitives for untrusted text.

The audit record and the run summary quote text that lockstep does not control
(a bypass justification, an actor name, command output).  Such text must never
become markdown structure: no headings, links, ``@mentions``, HTML or a fence
that closes early and lets the rest of the text out (the seed's iteration-2 bug).
The rule is therefore simple: untrusted text only ever appears inside a code
span or a fenced code block built here, whose delimiter is longer than any run
of backticks in the text, so nothing in the text can close it.

Characters that are invisible or that change how neighbouring text is displayed
are shown as ``<U+XXXX>`` so a reviewer sees what was really submitted:

* control characters (C0, DEL, C1, NUL), except ``\\n`` and ``\\t`` in blocks;
* format characters (Unicode category Cf): the bidirectional controls
  (U+202A–U+202E, U+2066–U+2069, U+200E, U+200F, U+061C), zero-width
  characters, the BOM, tag characters;
* the line and paragraph separators U+2028 and U+2029 (some renderers break
  lines there, CommonMark does not);
* lone surrogates, so the text can always be encoded as UTF-8.

``\\r\\n`` and ``\\r`` are first normalised to ``\\n``.  A literal ``<U+202E>``
typed by a user looks the same as an escaped character; the JSON audit line
keeps the exact text for anyone who needs to tell them apart.
"""

from __future__ import annotations

import re
import unicodedata

__all__ = [
    "BIDI_CONTROLS",
    "code_block",
    "escape_controls",
    "has_bidi",
    "inline_code",
    "table_cell",
]

BIDI_CONTROLS = frozenset(
    "\u202a\u202b\u202c\u202d\u202e"  # embeddings, overrides, pop
    "\u2066\u2067\u2068\u2069"  # isolates
    "\u200e\u200f\u061c"  # LRM, RLM, ALM
)

_ESCAPED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
_BACKTICK_RUN = re.compile(r"`+")


def _normalise_newlines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _escape_char(char: str) -> str:
    return f"<U+{ord(char):04X}>"


def escape_controls(text: str, *, keep_newlines: bool = True) -> str:
    """Normalise newlines and show invisible/control characters as ``<U+XXXX>``.

    ``\\t`` is always kept; ``\\n`` is kept unless ``keep_newlines`` is false
    (a code span must stay on one line).
    """
    kept = {"\t", "\n"} if keep_newlines else {"\t"}
    out = []
    for char in _normalise_newlines(text):
        if char not in kept and unicodedata.category(char) in _ESCAPED_CATEGORIES:
            out.append(_escape_char(char))
        else:
            out.append(char)
    return "".join(out)


def has_bidi(text: str) -> bool:
    """True when the text holds a bidirectional control (a "Trojan Source" risk)."""
    return any(char in BIDI_CONTROLS for char in text)


def _longest_backtick_run(text: str) -> int:
    return max((len(m.group()) for m in _BACKTICK_RUN.finditer(text)), default=0)


def code_block(text: str) -> str:
    """A fenced code block that ``text`` cannot escape, ending with a newline.

    The fence is backticks, one longer than the longest backtick run in the
    text (at least three): a closing fence must be at least as long as the
    opening one, and tildes never close a backtick fence.  The fence has no info
    string.  The body is ``escape_controls(text)`` followed by a newline unless
    it already ends with one (so ``"a"`` and ``"a\\n"`` render alike); an empty
    text gives an empty block.
    """
    body = escape_controls(text)
    if body and not body.endswith("\n"):
        body += "\n"
    fence = "`" * max(3, _longest_backtick_run(body) + 1)
    return f"{fence}\n{body}{fence}\n"


def inline_code(text: str) -> str:
    """A one-line code span whose content is ``escape_controls(text, keep_newlines=False)``.

    The delimiter is one backtick longer than the longest run inside.  Per
    CommonMark, one space is stripped from each side of the content when both
    ends are spaces, and a backtick next to the delimiter would merge with it, so
    the content is padded with a space on each side in those cases.  An empty
    text gives a span holding a single space (an empty span does not exist).
    """
    content = escape_controls(text, keep_newlines=False)
    if not content:
        return "` `"
    needs_padding = (
        content[0] == "`"
        or content[-1] == "`"
        or (content[0] == " " and content[-1] == " " and content.strip(" ") != "")
    )
    if needs_padding:
        content = f" {content} "
    delimiter = "`" * (_longest_backtick_run(content) + 1)
    return f"{delimiter}{content}{delimiter}"


def table_cell(text: str) -> str:
    """Text for one GFM table cell: always a code span, with ``|`` escaped.

    Backslash-escaping plain text is not enough on GitHub, which also turns
    ``@user``, ``#123``, ``:emoji:`` and bare URLs into links outside code; a
    code span neutralises all of them.  A pipe still splits table cells even
    inside a code span, so it is written ``\\|``, which GFM turns back into
    ``|`` inside the span.  An empty text gives an empty cell.
    """
    if not text:
        return ""
    return inline_code(text).replace("|", "\\|")

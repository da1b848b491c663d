"""Hostile text for markdown tests, and what the safe renderers must turn it into.

Expected outputs come from an independent reference of the documented
transformation (``reference_escape``), not from :mod:`lockstep.markdown` itself.
"""

from __future__ import annotations

import unicodedata

from hypothesis import strategies as st

BIDI = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c"

# Fragments that have broken markdown quoting before (the seed's iterations 2-4 and more).
FRAGMENTS = [
    *("`" * n for n in range(1, 13)),
    *("~" * n for n in range(1, 8)),
    "EOF",
    "\n",
    "\r",
    "\r\n",
    "\u2028",
    "\u2029",
    "\x00",
    "\x0b",
    "\x0c",
    "\x1b[31m",
    "\x7f",
    "\x85",
    "\ufeff",
    "\u200b",
    *BIDI,
    "@team",
    "@/tmp/tmp.abc",
    "[link](http://x)",
    "![img](http://x/i.png)",
    "<http://x>",
    "# heading",
    "===",
    "---",
    "> quote",
    "- item",
    "1. item",
    "    indented",
    "<script>alert(1)</script>",
    "<!--",
    "&amp;",
    "\\",
    "|",
    "*",
    "_",
    " ",
    "\t",
    "text",
]

tricky_text = st.one_of(
    st.text(),
    st.lists(st.sampled_from(FRAGMENTS), max_size=25).map("".join),
    st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.text(max_size=5)), max_size=15).map(
        "".join
    ),
)


def reference_escape(text: str, *, keep_newlines: bool) -> str:
    """The documented transformation, written independently of the module."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    out = []
    for ch in text:
        if ch == "\t" or (ch == "\n" and keep_newlines):
            out.append(ch)
        elif (
            ch in BIDI
            or ord(ch) < 0x20
            or 0x7F <= ord(ch) <= 0x9F
            or ch in "\u2028\u2029"
            or unicodedata.category(ch) in ("Cf", "Cs")
        ):
            out.append(f"<U+{ord(ch):04X}>")
        else:
            out.append(ch)
    return "".join(out)


def expected_fence_content(text: str) -> str:
    body = reference_escape(text, keep_newlines=True)
    return body if not body or body.endswith("\n") else body + "\n"


def expected_span_content(text: str) -> str:
    return reference_escape(text, keep_newlines=False) or " "

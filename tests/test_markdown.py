"""The safe-rendering primitives hold for any text, checked by a real CommonMark parser.

Expected outputs come from an independent reference of the documented
transformation (``reference_escape`` in tests/support/markdown_text.py), not from the module under test.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from markdown_it import MarkdownIt
from markdown_it.token import Token

from lockstep.markdown import code_block, escape_controls, has_bidi, inline_code, table_cell
from tests.support.markdown_text import (
    BIDI,
    expected_fence_content,
    expected_span_content,
    reference_escape,
    tricky_text,
)

MD = MarkdownIt("commonmark").enable("table")

def _inline_children(tokens: list[Token]) -> list[list[Token]]:
    return [t.children or [] for t in tokens if t.type == "inline"]


# -- code_block ---------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(tricky_text)
def test_code_block_is_one_fence_holding_the_text(text: str) -> None:
    tokens = MD.parse(code_block(text))
    assert [t.type for t in tokens] == ["fence"]
    fence = tokens[0]
    assert fence.content == expected_fence_content(text)
    assert fence.info == ""
    assert set(fence.markup) == {"`"} and len(fence.markup) >= 3


@settings(max_examples=100, deadline=None)
@given(tricky_text)
def test_code_block_cannot_be_escaped_into_following_text(text: str) -> None:
    # Whatever the text, the paragraph after the block stays a paragraph.
    source = "intro\n\n" + code_block(text) + "\nafter\n"
    tokens = MD.parse(source)
    assert [t.type for t in tokens] == [
        "paragraph_open",
        "inline",
        "paragraph_close",
        "fence",
        "paragraph_open",
        "inline",
        "paragraph_close",
    ]
    assert tokens[3].content == expected_fence_content(text)
    assert tokens[5].content == "after"


@pytest.mark.parametrize("run", [1, 2, 3, 4, 5, 10, 40])
@pytest.mark.parametrize("char", ["`", "~"])
def test_fence_runs_of_any_length_stay_inside(run: int, char: str) -> None:
    text = f"{char * run}\nmiddle\n{char * run}\n{char * (run + 1)} x\n"
    block = code_block(text)
    opening = block.split("\n", 1)[0]
    assert set(opening) == {"`"}
    assert len(opening) == max(3, run + 2 if char == "`" else 3)
    tokens = MD.parse(block)
    assert [t.type for t in tokens] == ["fence"]
    assert tokens[0].content == text


def test_code_block_examples() -> None:
    assert code_block("") == "```\n```\n"
    assert code_block("a") == "```\na\n```\n"
    assert code_block("a\r\nb\rc") == "```\na\nb\nc\n```\n"
    assert code_block("x ``` y") == "````\nx ``` y\n````\n"
    assert code_block("EOF\n") == "```\nEOF\n```\n"
    assert code_block("rtl \u202e evil\x00") == "```\nrtl <U+202E> evil<U+0000>\n```\n"


# -- inline_code --------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(tricky_text)
def test_inline_code_is_exactly_one_code_span(text: str) -> None:
    tokens = MD.parse(f"Actor: {inline_code(text)}\n")
    assert [t.type for t in tokens] == ["paragraph_open", "inline", "paragraph_close"]
    children = _inline_children(tokens)[0]
    assert [(c.type, c.content) for c in children] == [
        ("text", "Actor: "),
        ("code_inline", expected_span_content(text)),
    ]


@pytest.mark.parametrize(
    ("text", "rendered"),
    [
        ("alice", "`alice`"),
        ("a`b", "``a`b``"),
        ("`a", "`` `a ``"),
        ("a``", "``` a`` ```"),
        (" a ", "`  a  `"),
        ("   ", "`   `"),
        ("", "` `"),
        ("a\nb", "`a<U+000A>b`"),
        ("\u202eadmin", "`<U+202E>admin`"),
    ],
)
def test_inline_code_examples(text: str, rendered: str) -> None:
    assert inline_code(text) == rendered


# -- table_cell ---------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(tricky_text)
def test_table_cell_stays_in_its_cell(text: str) -> None:
    source = f"| a | b |\n| --- | --- |\n| {table_cell(text)} | z |\n"
    tokens = MD.parse(source)
    cells = [t for t in tokens if t.type == "td_open"]
    assert len(cells) == 2
    inlines = _inline_children(tokens)
    assert len(inlines) == 4  # two header cells, two body cells
    first, second = inlines[2], inlines[3]
    if text:
        assert [(c.type, c.content) for c in first] == [
            ("code_inline", expected_span_content(text))
        ]
    else:
        assert first == []
    assert [(c.type, c.content) for c in second] == [("text", "z")]


def test_table_cell_escapes_pipes() -> None:
    assert table_cell("a|b") == "`a\\|b`"
    assert table_cell("") == ""


# -- escape_controls / has_bidi -------------------------------------------------


@pytest.mark.parametrize("char", list(BIDI))
def test_each_bidi_control_is_detected_and_escaped(char: str) -> None:
    assert has_bidi(f"ok {char} ok")
    assert escape_controls(char) == f"<U+{ord(char):04X}>"


def test_has_bidi_ignores_ordinary_text() -> None:
    assert not has_bidi("plain text, emoji 🚀, Hebrew שלום, Arabic مرحبا")


@settings(max_examples=200, deadline=None)
@given(tricky_text)
def test_escape_controls_matches_reference(text: str) -> None:
    assert escape_controls(text) == reference_escape(text, keep_newlines=True)
    assert escape_controls(text, keep_newlines=False) == reference_escape(
        text, keep_newlines=False
    )


def test_escape_controls_keeps_visible_unicode_and_tabs() -> None:
    text = "tab\there — naïve 日本語 🚀"
    assert escape_controls(text) == text
    assert escape_controls("\x85\x9f\x7f\x1b") == "<U+0085><U+009F><U+007F><U+001B>"
    assert escape_controls("\ud800") == "<U+D800>"  # lone surrogate: always encodable

"""The bypass audit record: validation, rendering that no justification can break, file sink.

Regression tests for the seed's audit bugs: fence escape (iter 2), ``EOF``
heredoc (iter 3), whitespace-only justification (iter 3), the literal
``@/tmp/...`` body posted with ``-f`` (iter 3).
"""

from __future__ import annotations

import asyncio
import json
import os
import unicodedata
from pathlib import Path
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from markdown_it import MarkdownIt
from markdown_it.token import Token

from lockstep.audit import (
    AuditRecord,
    AuditService,
    FileAuditSink,
    render_markdown,
    utc_now,
    validate_actor,
    validate_justification,
)
from lockstep.errors import AuditError, UsageError
from lockstep.model import Sha
from tests.support.markdown_text import BIDI, FRAGMENTS, expected_fence_content, tricky_text

MD = MarkdownIt("commonmark").enable("table")

OLD = Sha("1" * 40)
NEW = Sha("2" * 40)
NEW2 = Sha("3" * 40)
SERVICES = [
    AuditService("Backend-Service", "WXYC/Backend-Service", "prod", OLD, NEW),
    AuditService("library-metadata-lookup", "WXYC/library-metadata-lookup", "prod", None, NEW2),
]


def make_record(justification: str = "staging is down, hotfix for outage", **kw: Any) -> AuditRecord:
    fields: dict[str, Any] = {
        "gate": "bs-lml",
        "actor": "alice",
        "tracker": "audit/bypass.md",
        "services": SERVICES,
        "justification": justification,
        "run_url": "https://github.com/WXYC/wxyc-shared/actions/runs/42",
        "time": "2026-11-27T02:30:00Z",
    }
    fields.update(kw)
    return AuditRecord(**fields)


def _is_valid(text: str) -> bool:
    try:
        validate_justification(text)
    except UsageError:
        return False
    return True


def _shape(tokens: list[Token]) -> list[tuple[object, ...]]:
    """Token structure with each fence's content and markup blanked out."""
    out: list[tuple[object, ...]] = []
    for t in tokens:
        fence = t.type == "fence"
        out.append(
            (
                t.type,
                t.tag,
                t.nesting,
                t.level,
                t.info,
                tuple(sorted(t.attrs.items())),
                t.block,
                t.hidden,
                None if fence else t.content,
                None if fence else t.markup,
                tuple(_shape(t.children or [])),
            )
        )
    return out


# -- rendering: structure is fixed whatever the justification -------------------


valid_actor = st.text(min_size=1, max_size=40).filter(
    lambda s: s.strip() != ""
    and all(unicodedata.category(c) not in ("Cc", "Cf", "Cs", "Zl", "Zp") for c in s)
)
run_urls = st.one_of(
    st.none(),
    st.just("https://github.com/o/r/actions/runs/1"),
    st.just("http://ci.example/run?id=1&x=<y>"),
    st.just("https://ci.example/a b"),
    st.just("file:///etc/passwd"),
    st.text(max_size=20),
)


@settings(max_examples=250, deadline=None)
@given(
    justification=tricky_text,
    actor=valid_actor,
    run_url=run_urls,
    name=st.one_of(st.just("svc"), tricky_text),
    repo=st.one_of(st.just("o/r"), tricky_text),
)
def test_any_justification_only_changes_the_one_fence(
    justification: str, actor: str, run_url: str | None, name: str, repo: str
) -> None:
    assume(_is_valid(justification))
    services = [AuditService(name, repo, "prod", OLD, NEW), SERVICES[1]]
    record = make_record(justification, actor=actor, run_url=run_url, services=services)
    # The placeholder triggers the same bidi warning (or not) as the real text.
    placeholder = "\u202eX" if _bidi(record.justification) else "X"
    reference = make_record(placeholder, actor=actor, run_url=run_url, services=services)

    tokens = MD.parse(render_markdown(record))
    ref_tokens = MD.parse(render_markdown(reference))

    assert _shape(tokens) == _shape(ref_tokens)
    fences = [t for t in tokens if t.type == "fence"]
    assert len(fences) == 1
    assert fences[0].content == expected_fence_content(record.justification)
    assert tokens[-1] is fences[0]  # the justification is the record's last element
    assert tokens[0].type == "heading_open" and tokens[0].tag == "h3"
    actor_line = next(
        t.children for t in tokens if t.type == "inline" and t.content.startswith("Actor: ")
    )
    assert [c.type for c in actor_line or []] == ["text", "code_inline"]


def _bidi(text: str) -> bool:
    return any(c in BIDI for c in text)


def test_rendered_record_reads_right() -> None:
    text = render_markdown(make_record("hotfix\nEOF\n```\n@team see [x](http://x)"))
    assert text.startswith("### lockstep bypass: `bs-lml`\n")
    assert "- Actor: `alice`" in text
    assert "- Run: <https://github.com/WXYC/wxyc-shared/actions/runs/42>" in text
    assert "| `Backend-Service` | `WXYC/Backend-Service` | `prod` | `1111111" in text
    assert "| none (seeded) | `3333333" in text
    assert text.endswith("Justification:\n\n````\nhotfix\nEOF\n```\n@team see [x](http://x)\n````\n")
    assert "@/tmp" not in text
    assert "⚠️" not in text


def test_heredoc_eof_line_is_just_text() -> None:
    # Iteration 3: a justification line of exactly EOF ended the heredoc early.
    record = make_record("before\nEOF\nafter")
    fence = [t for t in MD.parse(render_markdown(record)) if t.type == "fence"]
    assert fence[0].content == "before\nEOF\nafter\n"


def test_bidi_warning_comes_before_the_block() -> None:
    text = render_markdown(make_record("approve \u202eevil"))
    warning = "> ⚠️ The justification contains bidirectional control characters (shown escaped)."
    assert warning in text
    assert text.index(warning) < text.index("```")
    assert "approve <U+202E>evil" in text
    assert "\u202e" not in text


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://gh.example/o/r/actions/runs/7", "- Run: <https://gh.example/o/r/actions/runs/7>"),
        ("https://x.example/a b", "- Run: `https://x.example/a b`"),
        ("https://x.example/<img>", "- Run: `https://x.example/<img>`"),
        ("javascript:alert(1)", "- Run: `javascript:alert(1)`"),
    ],
)
def test_run_link_is_an_autolink_only_when_safe(url: str, shown: str) -> None:
    assert shown in render_markdown(make_record(run_url=url))


def test_no_run_url_no_run_line() -> None:
    assert "- Run:" not in render_markdown(make_record(run_url=None))


def test_to_json_is_stable_and_complete() -> None:
    record = make_record(run_url=None)
    data = record.to_json()
    assert list(data) == [
        "kind", "version", "gate", "time", "actor", "run_url", "tracker", "services",
        "justification",
    ]
    assert data["run_url"] is None
    assert data["services"] == [
        {"name": "Backend-Service", "repo": "WXYC/Backend-Service", "target": "prod",
         "old_sha": "1" * 40, "new_sha": "2" * 40},
        {"name": "library-metadata-lookup", "repo": "WXYC/library-metadata-lookup",
         "target": "prod", "old_sha": None, "new_sha": "3" * 40},
    ]
    assert json.loads(json.dumps(data)) == data


def test_record_validates_its_fields() -> None:
    with pytest.raises(UsageError):
        make_record("   ")
    with pytest.raises(UsageError, match="--actor"):
        make_record(actor="")
    with pytest.raises(ValueError, match="gate"):
        make_record(gate="bad name")
    with pytest.raises(ValueError, match="time"):
        make_record(time="2026-11-27 02:30")
    with pytest.raises(ValueError, match="sha"):
        make_record(services=[AuditService("a", "o/r", "prod", None, "deadbeef")])  # type: ignore[arg-type]
    assert make_record("  why  \n").justification == "why"
    assert make_record(time=utc_now()).time.endswith("Z")


# -- validate_justification ------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    ["", " ", "\t\n", " \n\t ", "\u00a0", "\u3000", "\u200b", "\ufeff", "\u3164", "\u2800",
     "\u115f\u1160\uffa0", "\u180e", "\u2060", "\u0301\u0301", "\u20dd", "\u2028\u2029",
     "\x00", "\u202e", "\u00a0\u200b\u3164 \ufeff"],
)
def test_invisible_justifications_are_refused(text: str) -> None:
    with pytest.raises(UsageError, match="no visible characters"):
        validate_justification(text)


def test_missing_justification_names_the_flag() -> None:
    with pytest.raises(UsageError, match=r"^--justification is required with --skip-gate$"):
        validate_justification(None)


def test_real_justifications_are_kept() -> None:
    assert validate_justification("  staging down; INC-1234  \n") == "staging down; INC-1234"
    assert validate_justification("e\u0301") == "e\u0301"  # combining mark on a letter
    assert validate_justification("\u200b.") == "\u200b."
    assert validate_justification("EOF") == "EOF"
    assert validate_justification("x" * 4000) == "x" * 4000


def test_too_long_justification_is_refused() -> None:
    with pytest.raises(UsageError, match=r"^justification is too long: 4001 characters \(at most 4000\)$"):
        validate_justification("x" * 4001)


invisible_alphabet = st.one_of(
    st.characters(categories=["Zs", "Zl", "Zp", "Cc", "Cf", "Mn", "Me"]),
    st.sampled_from("\u200b\u200c\u200d\u200e\u200f\u2060\u2061\u2062\u2063\u2064"
                    "\ufeff\u115f\u1160\u3164\uffa0\u180e\u2800\t\n\r\x0b\x0c\x1c\x85"),
)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=invisible_alphabet, max_size=50))
def test_invisible_only_text_is_always_refused(text: str) -> None:
    with pytest.raises(UsageError):
        validate_justification(text)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=30), st.characters(categories=["L", "N", "P"]), st.text(max_size=30))
def test_text_with_a_letter_digit_or_punctuation_is_accepted(a: str, c: str, b: str) -> None:
    text = a + c + b
    assert validate_justification(text) == text.strip()


# -- validate_actor ------------------------------------------------------------------


def test_validate_actor() -> None:
    assert validate_actor("  octocat ") == "octocat"
    for bad, why in [("", "empty"), ("   ", "empty"), (None, "empty"), ("a" * 101, "too long"),
                     ("evil\u202e", "U\\+202E"), ("a\nb", "U\\+000A")]:
        with pytest.raises(UsageError, match=f"^--actor .*{why}"):
            validate_actor(bad)
    assert validate_actor("a" * 100) == "a" * 100


# -- FileAuditSink --------------------------------------------------------------------


def _store(sink: FileAuditSink, record: AuditRecord) -> str:
    return asyncio.run(sink.store(render_markdown(record), record.to_json()))


def test_file_sink_appends_parseable_sections_and_json_lines(tmp_path: Path) -> None:
    path = tmp_path / "bypass.md"
    sink = FileAuditSink(path)
    first = make_record("first reason\nEOF\n```")
    second = make_record("second \u202e reason", actor="bob", run_url=None)
    assert _store(sink, first) == str(path)
    assert _store(sink, second) == str(path)

    text = path.read_text(encoding="utf-8")
    assert "@/tmp" not in text and text.startswith("### lockstep bypass:")
    tokens = MD.parse(text)
    assert [t.tag for t in tokens if t.type == "heading_open"] == ["h3", "h3"]
    assert [t.type for t in tokens].count("hr") == 1
    assert [t.content for t in tokens if t.type == "fence"] == [
        "first reason\nEOF\n```\n",
        "second <U+202E> reason\n",
    ]

    lines = (tmp_path / "bypass.md.jsonl").read_text(encoding="utf-8").splitlines()
    assert [json.loads(line) for line in lines] == [first.to_json(), second.to_json()]
    assert json.loads(lines[1])["justification"] == "second \u202e reason"  # exact text kept


def test_file_sink_completes_a_hand_edited_last_line(tmp_path: Path) -> None:
    path = tmp_path / "bypass.md"
    path.write_text("# Bypass log\nno newline at end")
    jsonl = tmp_path / "bypass.md.jsonl"
    jsonl.write_text('{"old": true}')
    _store(FileAuditSink(path), make_record())
    tokens = MD.parse(path.read_text())
    assert [t.type for t in tokens][:5] == [
        "heading_open", "inline", "heading_close", "paragraph_open", "inline",
    ]
    assert "hr" in [t.type for t in tokens]
    assert json.loads(jsonl.read_text().splitlines()[0]) == {"old": True}


def _assert_blocked(path: Path, match: str = "") -> AuditError:
    with pytest.raises(AuditError) as info:
        _store(FileAuditSink(path), make_record())
    message = str(info.value)
    assert message.startswith(f"could not store the audit record in {path}: ")
    assert "\n" not in message
    assert match in message
    return info.value


def test_missing_directory_is_not_created(tmp_path: Path) -> None:
    path = tmp_path / "typo" / "bypass.md"
    _assert_blocked(path, "No such file or directory")
    assert not path.parent.exists()


def test_directory_at_the_path(tmp_path: Path) -> None:
    (tmp_path / "bypass.md").mkdir()
    _assert_blocked(tmp_path / "bypass.md")


def test_parent_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    _assert_blocked(tmp_path / "file" / "bypass.md", "Not a directory")


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_a_device_is_not_a_regular_file() -> None:
    """/dev/full once stood in for a full disk; a device is now refused before any byte is written."""
    _assert_blocked(Path("/dev/full"), "is not a regular file")
    assert not Path("/dev/full.jsonl").exists()


def test_json_failure_after_markdown_still_blocks(tmp_path: Path) -> None:
    path = tmp_path / "bypass.md"
    (tmp_path / "bypass.md.jsonl").mkdir()
    error = _assert_blocked(path, "bypass.md.jsonl")
    assert "directory" in str(error).lower()
    assert path.read_text().startswith("### lockstep bypass:")  # markdown went first


def test_unserialisable_record_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "bypass.md"
    with pytest.raises(AuditError, match="could not store the audit record in"):
        asyncio.run(FileAuditSink(path).store("# x\n", {"bad": object()}))
    assert not path.exists()


@pytest.mark.parametrize("fragment", [f for f in FRAGMENTS if _is_valid(f)][:10])
def test_sink_round_trips_tricky_justifications(tmp_path: Path, fragment: str) -> None:
    record = make_record(f"reason {fragment} end")
    _store(FileAuditSink(tmp_path / "a.md"), record)
    line = (tmp_path / "a.md.jsonl").read_text(encoding="utf-8")
    assert json.loads(line)["justification"] == record.justification

"""The summary and JSON report say exactly what the report's facts say, whatever the text in them.

Regression tests for the seed's summary bugs: the bypass footer that claimed
"logged" on the noop path (iter 4), outcomes inferred instead of read from
``did_push`` (iter 3), and the "possible split" callout (iter 5).  The
markdown is checked through a real CommonMark+tables parser, by structure.
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from markdown_it import MarkdownIt
from markdown_it.token import Token

from lockstep.model import Action, AuditInfo, Outcome, Report, Result, ServiceReport, StepReport, StepStatus
from lockstep.report import OUTCOME_LABELS, bypass_footer, render_json, render_markdown, to_json_dict
from tests.support.markdown_text import expected_fence_content, expected_span_content, tricky_text

MD = MarkdownIt("commonmark").enable("table")

OLD, NEW, OTHER = "1" * 40, "2" * 40, "3" * 40
RUNBOOK = "https://example.org/runbook#split"
FOOTERS = {
    "logged": "Bypass: the gate was skipped; the justification was logged",
    "noop": "Bypass: requested, but there was nothing to promote, so no audit record was written.",
    "blocked": "Bypass blocked: the audit record could not be stored, so nothing was pushed.",
    "stopped": "Bypass: requested, but the run stopped before the audit record was written; nothing was pushed.",
}


def svc(name: str, outcome: Outcome = Outcome.ADVANCED, **kw: Any) -> ServiceReport:
    fields: dict[str, Any] = {
        "repo": f"o/{name}",
        "source": "main",
        "target": "prod",
        "source_sha": NEW,
        "old_target_sha": OLD,
        "final_target_sha": NEW if outcome == Outcome.ADVANCED else OLD,
        "action": Action.FAST_FORWARD,
        "did_push": outcome == Outcome.ADVANCED,
    }
    fields.update(kw)
    return ServiceReport(name=name, outcome=outcome, **fields)


def make_report(
    result: Result = Result.PROMOTED, services: list[ServiceReport] | None = None, **kw: Any
) -> Report:
    fields: dict[str, Any] = {
        "gate": "bs-lml",
        "mode": "gate",
        "actor": "alice",
        "run_url": "https://github.com/o/r/actions/runs/1",
        "started_at": "2026-01-01T00:00:00Z",
        "finished_at": "2026-01-01T00:01:00Z",
        "result": result,
        "services": services if services is not None else [svc("Backend-Service"), svc("lml")],
    }
    fields.update(kw)
    return Report(**fields)


def split_report(**kw: Any) -> Report:
    services = [
        svc("Backend-Service"),
        svc("already", Outcome.UNCHANGED, old_target_sha=NEW, final_target_sha=NEW, action=Action.NOOP),
        svc("lml", Outcome.FAILED, detail="HTTP 503 from the forge"),
        svc("third", Outcome.SKIPPED),
    ]
    return make_report(Result.SPLIT, services, **kw)


# -- reading the parsed document -------------------------------------------------


def parse(report: Report) -> list[Token]:
    return MD.parse(render_markdown(report))


def rows(tokens: list[Token]) -> list[list[list[Token]]]:
    """Body rows of the (only) table, each a list of cells' inline children."""
    out: list[list[list[Token]]] = []
    in_body = False
    for t in tokens:
        if t.type == "tbody_open":
            in_body = True
        elif t.type == "tbody_close":
            in_body = False
        elif in_body and t.type == "tr_open":
            out.append([])
        elif in_body and t.type == "inline":
            out[-1].append(t.children or [])
    return out


def header(tokens: list[Token]) -> list[str]:
    start = next(i for i, t in enumerate(tokens) if t.type == "thead_open")
    end = next(i for i, t in enumerate(tokens) if t.type == "thead_close")
    return [t.content for t in tokens[start:end] if t.type == "inline"]


def plain(children: list[Token]) -> str:
    """What a reader sees: text and code spans' content, markup dropped."""
    return "".join(c.content for c in children if c.type in ("text", "code_inline"))


def codes(children: list[Token]) -> list[str]:
    return [c.content for c in children if c.type == "code_inline"]


def blockquotes(tokens: list[Token]) -> list[list[list[Token]]]:
    """Each blockquote's inline lines (children split at soft breaks)."""
    out: list[list[list[Token]]] = []
    depth = 0
    for t in tokens:
        if t.type == "blockquote_open":
            depth += 1
            out.append([])
        elif t.type == "blockquote_close":
            depth -= 1
        elif depth and t.type == "inline":
            line: list[Token] = []
            for c in t.children or []:
                if c.type == "softbreak":
                    out[-1].append(line)
                    line = []
                else:
                    line.append(c)
            out[-1].append(line)
    return out


def paragraphs(tokens: list[Token]) -> list[list[Token]]:
    """Top-level paragraphs' inline children (not those inside the callout)."""
    return [
        tokens[i + 1].children or []
        for i, t in enumerate(tokens)
        if t.type == "paragraph_open" and t.level == 0
    ]


def footer_lines(tokens: list[Token]) -> list[str]:
    return [plain(p) for p in paragraphs(tokens) if plain(p).startswith(("Bypass:", "Bypass blocked:"))]


# -- the table -----------------------------------------------------------------


def test_table_has_one_row_per_service_in_config_order() -> None:
    services = [
        svc("zeta"),
        svc("alpha", Outcome.UNCHANGED, old_target_sha=NEW, final_target_sha=NEW, action=Action.NOOP),
        svc("mid.svc_1", old_target_sha=None, action=Action.SEED),
    ]
    tokens = parse(make_report(services=services))
    assert header(tokens) == ["service", "old target", "new target", "outcome"]
    table = rows(tokens)
    assert len(table) == 3
    assert all(len(row) == 4 for row in table)
    assert [codes(row[0]) for row in table] == [["zeta", "prod"], ["alpha", "prod"], ["mid.svc_1", "prod"]]
    assert [plain(row[0]) for row in table] == ["zeta (prod)", "alpha (prod)", "mid.svc_1 (prod)"]
    assert [(plain(r[1]), plain(r[2]), plain(r[3])) for r in table] == [
        ("1111111", "2222222", "advanced"),
        ("2222222", "2222222", "unchanged (already at main)"),
        ("(missing)", "2222222", "advanced"),
    ]
    assert sum(t.type == "table_open" for t in tokens) == 1


@pytest.mark.parametrize("outcome", list(Outcome))
def test_outcome_text_per_outcome(outcome: Outcome) -> None:
    tokens = parse(make_report(services=[svc("a", outcome, source="trunk")]))
    expected = "unchanged (already at trunk)" if outcome == Outcome.UNCHANGED else OUTCOME_LABELS[outcome]
    assert plain(rows(tokens)[0][3]) == expected


@pytest.mark.parametrize("branch", ["release/v2", "a|b", "_x_", "[x](http://e)", "www.example.com", "@team"])
def test_unusual_source_branch_stays_in_its_cell(branch: str) -> None:
    tokens = parse(make_report(services=[svc("a", Outcome.UNCHANGED, source=branch)]))
    (row,) = rows(tokens)
    assert len(row) == 4
    assert plain(row[3]) == f"unchanged (already at {branch})"
    assert [c.type for c in row[3]] in (["text"], ["text", "code_inline", "text"])
    if branch != "release/v2":
        assert codes(row[3]) == [branch]


def test_positions_never_guessed() -> None:
    services = [
        svc(
            "unread",
            Outcome.SKIPPED,
            source_sha=None,
            old_target_sha=None,
            final_target_sha=None,
            action=None,
        ),
        svc("seed-blocked", Outcome.SKIPPED, old_target_sha=None, final_target_sha=None, action=Action.SEED),
        svc("lost", Outcome.UNKNOWN, final_target_sha=None, did_push=False),
        svc("landed-unread", Outcome.ADVANCED, final_target_sha=None, did_push=True),
    ]
    table = rows(parse(make_report(Result.UNKNOWN, services)))
    assert [(plain(r[1]), plain(r[2])) for r in table] == [
        ("–", "–"),
        ("(missing)", "(missing)"),
        ("1111111", "unknown"),
        ("1111111", "unknown"),
    ]


# -- split and possible-split callouts ------------------------------------------------


@pytest.mark.parametrize("result", list(Result))
def test_callout_only_for_split_or_unknown(result: Result) -> None:
    report = split_report(runbook_url=RUNBOOK)
    report.result = result
    quotes = blockquotes(parse(report))
    if result in (Result.SPLIT, Result.UNKNOWN):
        assert len(quotes) == 1 and plain(quotes[0][0]) == "[!CAUTION]"
    elif result == Result.ROLLED_BACK:  # the split is gone: a warning that says what was undone
        assert len(quotes) == 1 and plain(quotes[0][0]) == "[!WARNING]"
        assert plain(quotes[0][1]).startswith("Rolled back.")
    else:
        assert quotes == []
        assert "split" not in render_markdown(report).lower()


def test_split_callout_names_what_moved_and_links_the_runbook() -> None:
    (quote,) = blockquotes(parse(split_report(runbook_url=RUNBOOK)))
    statement = quote[1]
    assert plain(statement) == "Split promotion. Advanced: Backend-Service. Not advanced: lml, third."
    assert codes(statement) == ["Backend-Service", "lml", "third"]  # the noop service is not named
    runbook = quote[-1]
    assert [c.type for c in runbook] == ["text", "link_open", "text", "link_close"]
    assert runbook[1].attrs["href"] == RUNBOOK and runbook[1].markup == "autolink"


def test_split_callout_gives_the_fix_command() -> None:
    command = 'lockstep reconcile --forward --config "my config.toml" --justification "<why>"'
    (quote,) = blockquotes(parse(split_report(fix_command=command)))
    assert plain(quote[2]) == f"To finish the promotion: {command}"
    assert codes(quote[2]) == [command]
    assert "Re-running" not in render_markdown(split_report(fix_command=command))


def test_split_callout_of_a_rollback_says_rolled_back() -> None:
    services = [svc("a", Outcome.ROLLED_BACK, did_push=True), svc("b", Outcome.FAILED)]
    (quote,) = blockquotes(parse(make_report(Result.SPLIT, services, mode="rollback")))
    assert plain(quote[1]) == "Split promotion. Rolled back: a. Not rolled back: b."
    assert [plain(line) for line in quote[2:]] == []  # "re-run lockstep run" would roll nothing back


def test_split_callout_without_runbook_has_no_link() -> None:
    tokens = parse(split_report(runbook_url=None))
    (quote,) = blockquotes(tokens)
    assert not any(c.type == "link_open" for line in quote for c in line)
    assert "Runbook" not in render_markdown(split_report(runbook_url=None))


def test_possible_split_when_an_unknown_push_cannot_be_ruled_out() -> None:
    services = [
        svc("Backend-Service", Outcome.UNKNOWN, final_target_sha=None, did_push=False),
        svc("lml", Outcome.SKIPPED),
    ]
    (quote,) = blockquotes(parse(make_report(Result.UNKNOWN, services, runbook_url=RUNBOOK)))
    assert plain(quote[1]).startswith(
        "Possible split. Position unknown: Backend-Service. Advanced: none. Not advanced: lml."
    )
    assert any(c.type == "link_open" for c in quote[-1])


def test_no_possible_split_when_only_one_target_had_to_move() -> None:
    # The other target was already at main: whatever happened, nothing can be split.
    services = [
        svc(
            "Backend-Service", Outcome.UNCHANGED, old_target_sha=NEW, final_target_sha=NEW, action=Action.NOOP
        ),
        svc("lml", Outcome.UNKNOWN, final_target_sha=None, did_push=False),
    ]
    (quote,) = blockquotes(parse(make_report(Result.UNKNOWN, services)))
    assert plain(quote[1]) == "Position unknown: lml. Check the target before anything else."
    assert "split" not in " ".join(plain(line) for line in quote).lower()


# -- the bypass footer -------------------------------------------------------------


@pytest.mark.parametrize(
    ("audit", "result", "expected"),
    [
        (
            AuditInfo(requested=True, stored=True, location="audit/bypass.md"),
            Result.PROMOTED,
            "Bypass: the gate was skipped; the justification was logged at audit/bypass.md before any push.",
        ),
        (AuditInfo(requested=True, suppressed_noop=True), Result.NOOP, FOOTERS["noop"]),
        (AuditInfo(requested=True, error="HTTP 403"), Result.BLOCKED, FOOTERS["blocked"]),
        (AuditInfo(requested=True), Result.BLOCKED, FOOTERS["stopped"]),
    ],
)
def test_each_footer_sentence(audit: AuditInfo, result: Result, expected: str) -> None:
    tokens = parse(make_report(result, mode="bypass", audit=audit))
    assert footer_lines(tokens) == [expected]
    assert plain(paragraphs(tokens)[-1]) == expected


def test_no_footer_without_a_bypass() -> None:
    report = make_report(audit=AuditInfo(requested=False, stored=True, location="x"))
    assert bypass_footer(report) is None
    assert "Bypass" not in render_markdown(report)


@settings(max_examples=200, deadline=None)
@given(
    requested=st.booleans(),
    stored=st.booleans(),
    suppressed=st.booleans(),
    location=st.one_of(st.none(), st.just(""), tricky_text),
    error=st.one_of(st.none(), st.just(""), tricky_text),
    result=st.sampled_from(list(Result)),
)
def test_footer_never_claims_logged_unless_stored(
    requested: bool, stored: bool, suppressed: bool, location: str | None, error: str | None, result: Result
) -> None:
    audit = AuditInfo(requested, stored, suppressed, location, error)
    tokens = parse(make_report(result, audit=audit))
    lines = footer_lines(tokens)
    if not requested:
        assert lines == []
        return
    assert len(lines) == 1
    (line,) = lines
    matched = [key for key, sentence in FOOTERS.items() if line.startswith(sentence)]
    assert len(matched) == 1
    assert ("logged" in line) == stored
    expected = "logged" if stored else "noop" if suppressed else "blocked" if error else "stopped"
    assert matched == [expected]
    footer = paragraphs(tokens)[-1]
    assert plain(footer) == line  # the footer is the document's last block
    if stored and location:
        assert codes(footer) == [expected_span_content(location)]
    else:
        assert codes(footer) == []


# -- untrusted text cannot change the document's structure ----------------------------------

service_names = st.lists(
    st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,15}", fullmatch=True),
    min_size=1,
    max_size=4,
    unique_by=str.lower,
)
run_urls = st.one_of(
    st.none(),
    st.just("https://github.com/o/r/actions/runs/1"),
    st.just("http://ci.example/run?id=1&x=<y>"),
    st.just("https://ci.example/a b"),
    st.just("https://ci.example/x>\n# owned"),
    st.just("javascript:alert(1)"),
    st.builds(lambda t: "https://ci.example/" + t, tricky_text),
    tricky_text,
)


def _shape(tokens: list[Token], in_link: bool = False) -> list[tuple[object, ...]]:
    """Token structure with code spans', fences' and autolinks' text blanked (inline tokens by their children)."""
    out: list[tuple[object, ...]] = []
    for t in tokens:
        if t.type == "link_open":
            in_link = True
        blank = t.type in ("code_inline", "fence", "inline") or (in_link and t.type == "text")
        out.append(
            (
                t.type,
                t.tag,
                t.nesting,
                t.level,
                t.info,
                () if t.type == "link_open" else tuple(sorted(t.attrs.items())),
                None if blank else t.content,
                None if t.type in ("fence", "code_inline") else t.markup,
                tuple(_shape(t.children or [], in_link)),
            )
        )
        if t.type == "link_close":
            in_link = False
    return out


def _links(tokens: list[Token]) -> list[Token]:
    return [c for t in tokens if t.type == "inline" for c in t.children or [] if c.type == "link_open"]


def _safe_http(url: str) -> bool:
    return url.startswith(("http://", "https://")) and all(
        0x21 <= ord(c) <= 0x7E and c not in "<>" for c in url
    )


@settings(max_examples=150, deadline=None)
@given(
    names=service_names,
    outcomes=st.lists(st.sampled_from(list(Outcome)), min_size=4, max_size=4),
    messages=st.lists(tricky_text, max_size=3),
    detail=tricky_text,
    actor=tricky_text,
    run_url=run_urls,
    location=tricky_text,
    fix_command=st.one_of(st.none(), tricky_text),
    record=st.one_of(st.none(), tricky_text),
    result=st.sampled_from(list(Result)),
)
def test_untrusted_text_only_inside_code(
    names: list[str],
    outcomes: list[Outcome],
    messages: list[str],
    detail: str,
    actor: str,
    run_url: str | None,
    location: str,
    fix_command: str | None,
    record: str | None,
    result: Result,
) -> None:
    services = [svc(n, outcomes[i], detail=detail if i == 0 else "") for i, n in enumerate(names)]
    audit = AuditInfo(requested=True, stored=True, location=location)
    report = make_report(
        result,
        services,
        messages=messages,
        actor=actor,
        run_url=run_url,
        audit=audit,
        runbook_url=RUNBOOK,
        fix_command=fix_command,
        record=record,
    )
    tokens = parse(report)

    # The same report with harmless text has the same structure.
    autolinked = bool(run_url) and _safe_http(run_url or "")
    reference = make_report(
        result,
        [replace(s, detail="d" if s.detail else "") for s in services],
        messages=["m" for _ in messages],
        actor="a",
        run_url=("https://example.org/run" if autolinked else "not a url") if run_url else None,
        audit=replace(audit, location="l" if location else ""),
        runbook_url=RUNBOOK,
        fix_command="f" if fix_command else fix_command,
        record="r" if record else record,
    )
    assert _shape(tokens) == _shape(parse(reference))

    assert [t.tag for t in tokens if t.type == "heading_open"] == ["h2"]
    assert not [t for t in tokens if t.type == "html_block"]
    assert not [c for t in tokens if t.type == "inline" for c in t.children or [] if c.type == "html_inline"]
    assert len(rows(tokens)) == len(names)

    details = [*messages, *(f"{s.name}: {s.detail}" for s in services if s.detail)]
    fences = [t.content for t in tokens if t.type == "fence"]
    assert fences == ([expected_fence_content("\n".join(details))] if details else [])

    meta = paragraphs(tokens)[0]
    assert codes(meta)[:2] == ["gate", expected_span_content(actor)]
    links = _links(tokens)
    run_links = [link for link in links if link.attrs["href"] != RUNBOOK]
    if autolinked:
        assert len(run_links) == 1 and run_links[0].markup == "autolink"
        assert plain(meta).endswith(f"Run: {run_url}")
    else:
        assert run_links == []
        if run_url:
            assert codes(meta)[-1] == expected_span_content(run_url)
    assert len(links) == len(run_links) + (result in (Result.SPLIT, Result.UNKNOWN))


@pytest.mark.parametrize(
    "url",
    [
        "https://ci.example/a b",
        "https://x.example/x>[y](javascript:z)",
        "https://x/\n# h",
        "javascript:alert(1)",
        "ftp://x.example/",
        "https://x.example/<img>",
    ],
)
def test_unsafe_urls_are_shown_not_linked(url: str) -> None:
    report = split_report(run_url=url, runbook_url=url)
    tokens = parse(report)
    assert _links(tokens) == []
    (quote,) = blockquotes(tokens)
    assert codes(quote[-1]) == [expected_span_content(url)]
    assert codes(paragraphs(tokens)[0])[-1] == expected_span_content(url)


def test_gate_run_url_is_an_autolink() -> None:
    url = "https://github.com/WXYC/wxyc-shared/actions/runs/42?a=1&b=(2)"
    tokens = parse(make_report(run_url=url))
    (link,) = _links(tokens)
    assert link.markup == "autolink"
    assert plain(paragraphs(tokens)[0]) == f"Mode: gate · Actor: alice · Run: {url}"


def test_push_failure_detail_is_shown_in_the_details_block() -> None:
    tokens = parse(split_report(messages=["split promotion: advanced Backend-Service"]))
    (fence,) = [t for t in tokens if t.type == "fence"]
    assert fence.content == "split promotion: advanced Backend-Service\nlml: HTTP 503 from the forge\n"


# -- JSON ------------------------------------------------------------------------


def full_report(result: Result) -> Report:
    report = split_report(mode="bypass", runbook_url=RUNBOOK)
    report.result = result
    report.audit = AuditInfo(requested=True, stored=True, location="o/r#1")
    report.steps = [
        StepReport("resolve", StepStatus.PASSED, 0.1),
        StepReport("promote", StepStatus.FAILED, 1.0, "x"),
    ]
    report.messages = ["line 1", "line 2"]
    return report


@pytest.mark.parametrize("result", list(Result))
def test_json_round_trips_with_every_service(result: Result) -> None:
    report = full_report(result)
    data = json.loads(render_json(report))
    assert data["exit_code"] == result.exit_code
    assert data["result"] == result.value
    assert data["lockstep_version"]
    assert [s["name"] for s in data["services"]] == [s.name for s in report.services]
    for got, want in zip(data["services"], report.services, strict=True):
        assert got["source_sha"] == want.source_sha
        assert got["old_target_sha"] == want.old_target_sha
        assert got["final_target_sha"] == want.final_target_sha
        assert got["did_push"] is want.did_push
        assert got["outcome"] == OUTCOME_LABELS[want.outcome]
        assert got["action"] == (want.action.value if want.action else None)
    assert data["audit"] == {
        "requested": True,
        "stored": True,
        "suppressed_noop": False,
        "location": "o/r#1",
        "error": None,
    }
    assert data["steps"][1] == {
        "name": "promote",
        "status": "failed",
        "seconds": 1.0,
        "detail": "x",
        "output_tail": None,
    }
    assert data["messages"] == ["line 1", "line 2"]


def test_json_enums_are_plain_strings() -> None:
    data = to_json_dict(full_report(Result.SPLIT))
    assert type(data["result"]) is str
    for s in data["services"]:
        assert type(s["outcome"]) is str and type(s["action"]) is str and type(s["source_sha"]) is str
    assert all(type(step["status"]) is str for step in data["steps"])


@settings(max_examples=100, deadline=None)
@given(messages=st.lists(st.one_of(tricky_text, st.just("\udcff git bytes")), max_size=3), actor=tricky_text)
def test_json_is_always_valid_utf8(messages: list[str], actor: str) -> None:
    report = make_report(messages=messages, actor=actor)
    text = render_json(report)
    data = json.loads(text.encode("utf-8").decode("utf-8"))
    assert data["actor"] == actor
    assert data["messages"] == [m.replace("\udcff", "\\udcff") for m in messages]

"""lockstep.actions: the event, $GITHUB_OUTPUT, the step summary and workflow commands."""

from __future__ import annotations

import io
import json
import os
import re
import sys
import time
import uuid
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lockstep import actions, log
from lockstep.actions import ActionsError, EventInputs, OutputWriter
from lockstep.config import ServiceConfig
from lockstep.errors import LockstepError, UsageError
from lockstep.model import Report, Result, ServiceReport
from tests.support.outputs import parse_output_file

SHA_A = "a" * 40
SHA_B = "b" * 40
ACTIONS_ENV = {"GITHUB_ACTIONS": "true"}


def write_event(tmp_path: Path, payload: object, name: str = "event.json") -> str:
    path = tmp_path / name
    path.write_text(json.dumps(payload), encoding="utf-8")
    return str(path)


def event_env(path: str, event_name: str) -> dict[str, str]:
    return {"GITHUB_EVENT_PATH": path, "GITHUB_EVENT_NAME": event_name, "GITHUB_ACTIONS": "true"}


# --------------------------------------------------------------------------- environment


def test_in_actions() -> None:
    assert actions.in_actions({"GITHUB_ACTIONS": "true"})
    assert not actions.in_actions({"GITHUB_ACTIONS": "1"})
    assert not actions.in_actions({})


def test_run_url() -> None:
    env = {
        "GITHUB_SERVER_URL": "https://github.example.org/",
        "GITHUB_REPOSITORY": "org/gate",
        "GITHUB_RUN_ID": "123",
    }
    assert actions.run_url(env) == "https://github.example.org/org/gate/actions/runs/123"
    assert actions.run_url({**env, "GITHUB_RUN_ATTEMPT": "1"}) == actions.run_url(env)
    assert actions.run_url({**env, "GITHUB_RUN_ATTEMPT": "3"}) == (
        "https://github.example.org/org/gate/actions/runs/123/attempts/3"
    )
    assert actions.run_url({**env, "GITHUB_RUN_ATTEMPT": "x"}) == actions.run_url(env)
    for key, bad in [
        ("GITHUB_RUN_ID", ""),
        ("GITHUB_RUN_ID", "12 3"),
        ("GITHUB_REPOSITORY", "org/gate/../x"),
        ("GITHUB_SERVER_URL", "javascript:alert(1)"),
    ]:
        assert actions.run_url({**env, key: bad}) is None
    assert actions.run_url({}) is None


def test_actor_prefers_the_triggering_actor() -> None:
    assert actions.actor({"GITHUB_ACTOR": "alice", "GITHUB_TRIGGERING_ACTOR": "bob"}) == "bob"
    assert actions.actor({"GITHUB_ACTOR": "alice"}) == "alice"
    assert actions.actor({"GITHUB_ACTOR": "dependabot[bot]"}) == "dependabot[bot]"
    assert actions.actor({"GITHUB_TRIGGERING_ACTOR": "x\n::error::y", "GITHUB_ACTOR": "alice"}) == "alice"
    assert actions.actor({}) is None


# --------------------------------------------------------------------------- the event


def test_no_event_path_gives_only_the_name() -> None:
    assert actions.read_event({"GITHUB_EVENT_NAME": "push"}) == EventInputs(event_name="push")
    assert actions.read_event({}) == EventInputs()


@pytest.mark.parametrize(
    ("raw", "expected"),
    [(True, True), (False, False), ("true", True), ("false", False), (None, None), ("", None)],
)
def test_skip_gate_booleans_and_strings(tmp_path: Path, raw: object, expected: bool | None) -> None:
    path = write_event(tmp_path, {"inputs": {"skip_gate": raw, "justification": "prod is down"}})
    event = actions.read_event(event_env(path, "workflow_dispatch"))
    assert event.skip_gate is expected
    assert event.justification == "prod is down"
    assert event.event_name == "workflow_dispatch"


@pytest.mark.parametrize("raw", ["yes", "True", "1", 1, 0, [], {}, "true "])
def test_skip_gate_other_values_are_usage_errors(tmp_path: Path, raw: object) -> None:
    path = write_event(tmp_path, {"inputs": {"skip_gate": raw}})
    with pytest.raises(UsageError, match=r"inputs\.skip_gate") as info:
        actions.read_event(event_env(path, "workflow_dispatch"))
    assert info.value.exit_code == 2
    assert "\n" not in str(info.value)


def test_justification_must_be_a_string(tmp_path: Path) -> None:
    path = write_event(tmp_path, {"inputs": {"skip_gate": True, "justification": ["x"]}})
    with pytest.raises(UsageError, match=r"inputs\.justification"):
        actions.read_event(event_env(path, "workflow_dispatch"))


def test_inputs_missing_or_malformed(tmp_path: Path) -> None:
    path = write_event(tmp_path, {"ref": "refs/heads/main"})
    assert actions.read_event(event_env(path, "workflow_dispatch")).skip_gate is None
    path = write_event(tmp_path, {"inputs": "skip_gate=true"})
    with pytest.raises(UsageError, match="inputs must be an object"):
        actions.read_event(event_env(path, "workflow_dispatch"))


def test_inputs_of_other_events_are_ignored(tmp_path: Path) -> None:
    path = write_event(
        tmp_path,
        {"action": "staging-deployed", "inputs": {"skip_gate": True}, "client_payload": {"skip_gate": True}},
    )
    event = actions.read_event(event_env(path, "repository_dispatch"))
    assert event.skip_gate is None and event.justification is None


@pytest.mark.parametrize("event_name", ["workflow_dispatch", "repository_dispatch"])
def test_missing_unreadable_or_invalid_event_file(tmp_path: Path, event_name: str) -> None:
    missing = str(tmp_path / "nope.json")
    with pytest.raises(UsageError, match=r"GITHUB_EVENT_PATH '.*nope\.json': event file not found"):
        actions.read_event(event_env(missing, event_name))
    with pytest.raises(UsageError, match=r"GITHUB_EVENT_PATH .*cannot read"):
        actions.read_event(event_env(str(tmp_path), event_name))
    bad = tmp_path / "bad.json"
    for text in ['{"inputs": ', "[1, 2]", "\xff\xfe garbage"]:
        bad.write_bytes(text.encode("latin-1"))
        with pytest.raises(UsageError, match="GITHUB_EVENT_PATH") as info:
            actions.read_event(event_env(str(bad), event_name))
        assert "\n" not in str(info.value)


def test_repository_dispatch_payload_is_sanitised_information(tmp_path: Path) -> None:
    payload = {
        "sha": SHA_A,
        "note": "line1\nline2\r\x1b[31mred\x00 \u202eevil\u2028x\ttab",
    }
    path = write_event(tmp_path, {"action": "staging-\ndeployed\u202e", "client_payload": payload})
    event = actions.read_event(event_env(path, "repository_dispatch"))
    assert event.dispatch_action == "staging- deployed"  # lockstep.redact.clean_text: a line break is a space
    summary = event.client_payload_summary
    assert summary is not None
    assert SHA_A in summary  # shown to people...
    assert all(ch >= " " or ch == "\t" for ch in summary) and "\t" not in summary
    assert "\u202e" not in summary and "\u2028" not in summary and "\x1b" not in summary
    # ...but never offered as anything the gate could take a sha from
    assert set(EventInputs.__dataclass_fields__) == {
        "event_name",
        "skip_gate",
        "justification",
        "dispatch_action",
        "client_payload_summary",
    }


def test_payload_summary_is_bounded(tmp_path: Path) -> None:
    payload = {f"key{i}": {"sha": SHA_B, "list": list(range(100)), "s": "x" * 200} for i in range(1500)}
    path = write_event(tmp_path, {"action": "a" * 1000, "client_payload": payload})
    assert os.path.getsize(path) < actions.EVENT_READ_LIMIT
    started = time.monotonic()
    event = actions.read_event(event_env(path, "repository_dispatch"))
    assert time.monotonic() - started < 1.0
    assert event.client_payload_summary is not None
    assert len(event.client_payload_summary) <= actions.PAYLOAD_SUMMARY_LIMIT
    assert event.client_payload_summary.endswith("…")
    assert event.dispatch_action is not None and len(event.dispatch_action) <= actions.ACTION_LIMIT


@pytest.mark.parametrize("depth", [50, 900, 100_000])
def test_deeply_nested_payload_never_blows_up(tmp_path: Path, depth: int) -> None:
    path = tmp_path / "deep.json"
    path.write_text('{"action": "x", "client_payload": ' + "[" * depth + "]" * depth + "}")
    event = actions.read_event(event_env(str(path), "repository_dispatch"))
    assert event.client_payload_summary is not None
    assert len(event.client_payload_summary) <= actions.PAYLOAD_SUMMARY_LIMIT
    if depth == 100_000:
        assert event.client_payload_summary == "(event JSON is nested too deeply; not read)"
        with pytest.raises(UsageError, match="nested too deeply"):
            actions.read_event(event_env(str(path), "workflow_dispatch"))


def test_oversized_event_file_is_capped(tmp_path: Path) -> None:
    path = tmp_path / "huge.json"
    path.write_text('{"client_payload": "' + "x" * (actions.EVENT_READ_LIMIT + 10) + '"}')
    event = actions.read_event(event_env(str(path), "repository_dispatch"))
    assert event.client_payload_summary is not None
    assert "larger than 1048576 bytes" in event.client_payload_summary
    with pytest.raises(UsageError, match="larger than"):
        actions.read_event(event_env(str(path), "workflow_dispatch"))


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="needs /dev/zero")
def test_endless_event_file_read_stops_at_the_cap() -> None:
    event = actions.read_event(event_env("/dev/zero", "repository_dispatch"))
    assert event.client_payload_summary is not None and "larger than" in event.client_payload_summary


# --------------------------------------------------------------------------- $GITHUB_OUTPUT


def test_single_and_multi_line_outputs(tmp_path: Path) -> None:
    path = tmp_path / "output"
    writer = OutputWriter(path)
    writer.set("result", "promoted")
    writer.set("svc_did_push", True)
    writer.set("count", 2)
    writer.set("empty", "")
    writer.set("summary", "line one\nline two\n")
    text = path.read_text(encoding="utf-8")
    assert text.startswith("result=promoted\nsvc_did_push=true\ncount=2\nempty=\nsummary<<ghadelimiter_")
    delimiters = re.findall(r"^summary<<(ghadelimiter_[0-9a-f-]{36})$", text, re.M)
    assert len(delimiters) == 1
    assert parse_output_file(text) == {
        "result": "promoted",
        "svc_did_push": "true",
        "count": "2",
        "empty": "",
        "summary": "line one\nline two\n",
    }


def test_each_multi_line_value_gets_a_new_delimiter(tmp_path: Path) -> None:
    writer = OutputWriter(tmp_path / "output")
    writer.write_many({"a": "1\n2", "b": "3\r4"})
    text = (tmp_path / "output").read_bytes().decode("utf-8")
    delimiters = re.findall(r"<<(.+)$", text, re.M)
    assert len(set(delimiters)) == 2
    assert parse_output_file(text) == {"a": "1\n2", "b": "3\r4"}


def test_a_value_with_an_eof_line_cannot_inject_outputs(tmp_path: Path) -> None:
    path = tmp_path / "output"
    hostile = "first\nEOF\nresult=promoted\nx<<EOF\ny\nEOF"
    OutputWriter(path).set("justification", hostile)
    OutputWriter(path).set("result", "blocked")
    assert parse_output_file(path.read_text(encoding="utf-8")) == {
        "justification": hostile,
        "result": "blocked",
    }


@pytest.mark.parametrize("name", ["", "a b", "a=b", "a<<b", "na\nme", "é", "a.b"])
def test_invalid_output_names_are_refused(tmp_path: Path, name: str) -> None:
    path = tmp_path / "output"
    with pytest.raises(ActionsError, match="invalid output name"):
        OutputWriter(path).set(name, "x")
    assert not path.exists()


def test_a_value_containing_the_delimiter_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fixed = uuid.UUID("12345678-1234-4234-8234-123456789abc")
    monkeypatch.setattr(uuid, "uuid4", lambda: fixed)
    path = tmp_path / "output"
    with pytest.raises(ActionsError, match="contains the delimiter"):
        OutputWriter(path).write_many({"ok": "fine", "bad": f"x\nghadelimiter_{fixed}\ny"})
    assert not path.exists()  # validated before anything was written


def test_write_failure_is_one_line_naming_the_path(tmp_path: Path) -> None:
    with pytest.raises(ActionsError) as info:
        OutputWriter(tmp_path).set("result", "promoted")
    message = str(info.value)
    assert str(tmp_path) in message and "\n" not in message
    assert "Is a directory" in message
    assert isinstance(info.value, LockstepError) and info.value.exit_code == 1
    with pytest.raises(ActionsError, match="No such file or directory"):
        OutputWriter(tmp_path / "missing-dir" / "out").set("result", "promoted")


def test_lone_surrogates_are_refused_cleanly(tmp_path: Path) -> None:
    with pytest.raises(ActionsError, match="not valid UTF-8"):
        OutputWriter(tmp_path / "out").set("x", "\ud800")


def test_every_write_is_fsynced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    real = os.fsync

    def fsync(fd: int) -> None:
        calls.append(fd)
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    writer = OutputWriter(tmp_path / "out")
    writer.set("a", "1")
    writer.write_many({"b": "2", "c": "3"})
    assert len(calls) == 2


def test_writer_from_env(tmp_path: Path) -> None:
    assert OutputWriter.from_env({}) is None
    writer = OutputWriter.from_env({"GITHUB_OUTPUT": str(tmp_path / "o")})
    assert writer is not None and writer.path == tmp_path / "o"


_names = st.from_regex(r"[A-Za-z0-9_-]{1,20}", fullmatch=True)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(values=st.dictionaries(_names, st.text(), max_size=5), tricky=st.sampled_from(["EOF", "", "x<<EOF"]))
def test_any_values_round_trip_through_the_runner_parser(
    tmp_path: Path, values: dict[str, str], tricky: str
) -> None:
    path = tmp_path / "output"
    path.unlink(missing_ok=True)
    values = {k: v + "\n" + tricky if i % 2 else v for i, (k, v) in enumerate(values.items())}
    OutputWriter(path).write_many(values)
    text = path.read_bytes().decode("utf-8") if path.exists() else ""
    assert parse_output_file(text) == values


def _service(name: str, **kw: object) -> ServiceReport:
    return ServiceReport(name=name, repo=f"o/{name}", source="main", target="prod", **kw)  # type: ignore[arg-type]


def test_report_outputs() -> None:
    report = Report(gate="g", mode="gate", actor="a", run_url=None, started_at="t", result=Result.SPLIT)
    report.services = [
        _service(
            "Backend-Service", source_sha=SHA_A, old_target_sha=SHA_B, final_target_sha=SHA_A, did_push=True
        ),
        _service("lml", source_sha=SHA_A, old_target_sha=None, final_target_sha=None),
    ]
    outputs = actions.report_outputs(report)
    assert outputs["result"] == "split"
    assert outputs["backend_service_source_sha"] == SHA_A
    assert outputs["backend_service_old_target_sha"] == SHA_B
    assert outputs["backend_service_final_target_sha"] == SHA_A
    assert outputs["backend_service_did_push"] == "true"
    assert outputs["lml_old_target_sha"] == "" and outputs["lml_did_push"] == "false"
    services = json.loads(outputs["services"])
    assert services["lml"] == {
        "source_sha": SHA_A,
        "old_target_sha": "",
        "final_target_sha": "",
        "did_push": False,
    }
    assert "\n" not in outputs["services"]


@pytest.mark.parametrize("name", ["Backend-Service", "library-metadata-lookup", "a.b_c--d", "X9"])
def test_output_slug_matches_the_config(name: str) -> None:
    svc = ServiceConfig(name=name, repo="o/r", health_url="http://h/", version_url="http://h/v")
    assert actions.output_slug(name) == svc.output_slug


# --------------------------------------------------------------------------- step summary


def test_step_summary_appends(tmp_path: Path) -> None:
    path = tmp_path / "summary.md"
    env = {"GITHUB_STEP_SUMMARY": str(path)}
    assert actions.append_step_summary({}, "# x") is False
    assert actions.append_step_summary(env, "# one") is True
    assert actions.append_step_summary(env, "two\n") is True
    assert path.read_text(encoding="utf-8") == "# one\ntwo\n"


def test_step_summary_is_truncated_under_the_limit(tmp_path: Path) -> None:
    path = tmp_path / "summary.md"
    path.write_text("earlier step\n" * 1000, encoding="utf-8")
    env = {"GITHUB_STEP_SUMMARY": str(path)}
    big = "# Report\n\n```text\n" + "é log line\n" * 200_000 + "```\n\nafter\n"
    stream = io.StringIO()
    log.set_stream(stream)
    try:
        actions.append_step_summary(env, big)
    finally:
        log.set_stream(None)
    data = path.read_bytes()
    assert len(data) <= actions.SUMMARY_LIMIT
    text = data.decode("utf-8")  # cut on a character boundary
    assert text.startswith("earlier step\n" * 1000 + "# Report\n")
    assert "lockstep truncated this summary" in text
    body = text.split("# Report", 1)[1]
    assert body.count("```") == 2  # the open fence was closed before the note
    assert "truncated" in stream.getvalue()
    # a full summary gets nothing more, not an error
    path.write_bytes(b"x" * actions.SUMMARY_LIMIT)
    actions.append_step_summary(env, "more")
    assert path.stat().st_size == actions.SUMMARY_LIMIT


def test_step_summary_write_failure(tmp_path: Path) -> None:
    with pytest.raises(ActionsError, match="step summary"):
        actions.append_step_summary({"GITHUB_STEP_SUMMARY": str(tmp_path)}, "x")


# --------------------------------------------------------------------------- workflow commands


def test_escaping() -> None:
    assert actions.escape_data("50% a\r\nb:c,d") == "50%25 a%0D%0Ab:c,d"
    assert actions.escape_property("50% a\r\nb:c,d") == "50%25 a%0D%0Ab%3Ac%2Cd"


def test_add_mask_escapes_and_masks_each_line() -> None:
    out = io.StringIO()
    actions.add_mask("ab%c\n  line two  \n\n", out)
    assert out.getvalue().splitlines() == [
        "::add-mask::ab%25c%0A  line two  %0A%0A",
        "::add-mask::ab%25c",
        "::add-mask::line two",
    ]
    out = io.StringIO()
    actions.add_mask("single", out)
    actions.add_mask("   ", out)
    assert out.getvalue() == "::add-mask::single\n"


def test_mask_secrets_only_under_actions() -> None:
    env = {"TOKEN_A": "ghp_secret", "TOKEN_B": "", "OTHER": "x"}
    out = io.StringIO()
    assert actions.mask_secrets(env, ["TOKEN_A", "TOKEN_B", "MISSING"], out) == 0
    assert out.getvalue() == ""  # outside Actions the command would print the secret
    assert actions.mask_secrets({**env, **ACTIONS_ENV}, ["TOKEN_A", "TOKEN_B", "TOKEN_A"], out) == 1
    assert out.getvalue() == "::add-mask::ghp_secret\n"


def test_annotation_escapes_data_and_properties() -> None:
    out = io.StringIO()
    actions.annotation(
        "error", "split: a moved\nb did not (100%)", title="Split, a:b", env=ACTIONS_ENV, stream=out
    )
    actions.annotation("notice", "ok", env=ACTIONS_ENV, stream=out)
    assert out.getvalue().splitlines() == [
        "::error title=Split%2C a%3Ab::split: a moved%0Ab did not (100%25)",
        "::notice::ok",
    ]
    with pytest.raises(ValueError, match="level"):
        actions.annotation("debug", "x", env=ACTIONS_ENV, stream=out)  # type: ignore[arg-type]


def test_annotation_outside_actions_is_a_log_line() -> None:
    out, logged = io.StringIO(), io.StringIO()
    log.set_stream(logged)
    try:
        actions.annotation("warning", "careful", title="T", env={}, stream=out)
    finally:
        log.set_stream(None)
    assert out.getvalue() == ""
    assert "warning: T: careful" in logged.getvalue()


def test_groups_escape_their_title_and_close_even_when_a_step_never_finished() -> None:
    from lockstep.progress import PlainProgress

    out = io.StringIO()
    actions.start_group("health\n%", stream=out)
    actions.end_group(stream=out)
    assert out.getvalue().splitlines() == ["::group::health%0A%25", "::endgroup::"]

    logged = io.StringIO()
    log.set_stream(logged)
    real_stderr = sys.stderr
    sys.stderr = out = io.StringIO()  # workflow commands go to stderr, in order with the log lines
    try:
        plain = PlainProgress(ACTIONS_ENV)
        plain.step_started("resolve")
        plain.step_finished("resolve", "passed", 0.1, "")
        plain.step_started("check e2e")  # cancelled: never finished
        plain.close()
    finally:
        sys.stderr = real_stderr
        log.set_stream(None)
    assert out.getvalue().splitlines() == [
        "::group::▶ resolve", "::endgroup::", "::group::▶ check e2e", "::endgroup::",
    ]


def test_stop_commands() -> None:
    out = io.StringIO()
    with actions.stop_commands(env=ACTIONS_ENV, stream=out):
        out.write("::error::from untrusted output\n")
    lines = out.getvalue().splitlines()
    token = lines[0].removeprefix("::stop-commands::")
    assert re.fullmatch(r"lockstep-[0-9a-f]{32}", token)
    assert lines[-1] == f"::{token}::"
    out = io.StringIO()
    with actions.stop_commands(env={}, stream=out):
        pass
    assert out.getvalue() == ""

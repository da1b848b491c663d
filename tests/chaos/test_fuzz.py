"""Fuzzing every input a stranger or an attacker controls (issue 7, "Fuzzing and hostile input").

Each property states the same contract: the input ends in a correct result or
in one clear error line, within a bounded time, and never in a traceback.

* event files and ``client_payload`` (``lockstep.actions.read_event``, and a
  real Actions-mode run reading them);
* ``/version`` bodies (non-JSON, wrong types, huge, compressed, slow) through
  ``lockstep.probes``, and health endpoints that never answer, trickle bytes or
  speak garbage;
* ``lockstep.toml``: random mutations of a valid config through ``parse_config``;
* the justification and the actor through the CLI (a real bypass run against
  real git repositories): refused with one line, or stored so that the audit
  markdown, parsed with markdown-it-py, holds the justification only inside one
  code block and is otherwise exactly the template.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import re
import socket
import threading
import time
import unicodedata
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from markdown_it import MarkdownIt

from lockstep.actions import EventInputs, read_event
from lockstep.audit import MAX_ACTOR, MAX_JUSTIFICATION
from lockstep.config import Config, parse_config
from lockstep.errors import ConfigError, UsageError
from lockstep.markdown import escape_controls, has_bidi
from lockstep.model import Sha
from lockstep.probes import BODY_CAP, verify_versions, wait_healthy
from tests.chaos.runners import run_inprocess
from tests.support.gitworld import GitWorld, build_world
from tests.support.staging import Staging

SHA = Sha("0123456789abcdef0123456789abcdef01234567")
FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
CLI_FUZZ = settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
_BAD_CATEGORIES = {"Cc", "Cf", "Cs", "Zl", "Zp"}

json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=40)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=25,
)
hostile_text = st.one_of(
    st.text(max_size=300),
    st.text(alphabet=st.sampled_from(list("`~\n\r\t <>@#[]()!|*_\\-=:EOF\u202e\u2066\u200b\u0000\x1b")),
            max_size=120),
    st.sampled_from([
        "```\nEOF\n```", "~~~~", "EOF", "\nEOF\n", "@everyone", "<script>alert(1)</script>",
        "[click](https://evil.example)", "![x](https://evil.example/x.png)", "# heading", "| a | b |",
        "\u202eevil\u202c", "`" * 20, "::add-mask::x", "%0A::error::x", "\r\n---\r\n", "x" * 4000,
    ]),
)


def _one_line(message: str) -> None:
    """A message people read: one line, bounded, nothing invisible or bidirectional in it."""
    assert "\n" not in message and "\r" not in message, message
    assert len(message) <= 600, len(message)
    assert not any(unicodedata.category(ch) in _BAD_CATEGORIES for ch in message), ascii(message)


@contextlib.contextmanager
def _bounded(seconds: float) -> Iterator[None]:
    start = time.monotonic()
    yield
    assert time.monotonic() - start <= seconds, f"took {time.monotonic() - start:.2f}s (bound {seconds}s)"


# ------------------------------------------------------------------------------------- event files


def _event_bytes(document: Any, how: str) -> bytes:
    data = json.dumps(document, ensure_ascii=how == "ascii").encode("utf-8", "surrogatepass")
    if how == "truncated":
        return data[: max(0, len(data) // 2)]
    if how == "bom":
        return b"\xef\xbb\xbf" + data
    if how == "latin1":
        return data + b"\xff\xfe"
    return data


events = st.one_of(
    json_values,
    st.fixed_dictionaries({"inputs": st.one_of(json_values, st.fixed_dictionaries(
        {"skip_gate": json_values | st.sampled_from(["true", "false", "", "TRUE", "yes"]),
         "justification": json_values | hostile_text}))}),
    st.fixed_dictionaries({"action": json_values | hostile_text, "client_payload": json_values}),
)


@FUZZ
@given(document=events, name=st.sampled_from(["workflow_dispatch", "repository_dispatch", "push", ""]),
       how=st.sampled_from(["utf8", "ascii", "truncated", "bom", "latin1"]))
def test_any_event_file_is_a_result_or_one_usage_error(
    tmp_path_factory: pytest.TempPathFactory, document: Any, name: str, how: str
) -> None:
    path = tmp_path_factory.mktemp("event") / "event.json"
    path.write_bytes(_event_bytes(document, how))
    _check_event(path, name)


def _check_event(path: Path, name: str) -> None:
    env = {"GITHUB_EVENT_PATH": str(path), "GITHUB_EVENT_NAME": name}
    with _bounded(3.0):
        try:
            event = read_event(env)
        except UsageError as exc:
            _one_line(str(exc))
            return
    assert isinstance(event, EventInputs)
    assert event.skip_gate in (None, True, False)
    assert event.justification is None or isinstance(event.justification, str)
    for text in (event.client_payload_summary, event.dispatch_action):
        if text is not None:
            _one_line(text)
            assert len(text) <= 500


@pytest.mark.parametrize("how", ["huge", "deep-list", "deep-dict", "nul", "lone-surrogate", "empty", "nan"])
@pytest.mark.parametrize("name", ["workflow_dispatch", "repository_dispatch"])
def test_hostile_event_files(tmp_path: Path, how: str, name: str) -> None:
    payloads = {
        "huge": json.dumps({"client_payload": {"x": "a" * (2 * 1024 * 1024)}}).encode(),
        "deep-list": b'{"client_payload": ' + b"[" * 200_000 + b"]" * 200_000 + b"}",
        "deep-dict": b'{"inputs": ' + b'{"a":' * 50_000 + b"1" + b"}" * 50_000 + b"}",
        "nul": b'{"inputs": {"skip_gate": "true", "justification": "a\\u0000b"}, "action": "\\u0000"}',
        "lone-surrogate": b'{"inputs": {"justification": "\\ud800"}, "client_payload": {"\\udfff": 1}}',
        "empty": b"",
        "nan": b'{"client_payload": NaN, "inputs": {"skip_gate": Infinity}}',
    }
    path = tmp_path / "event.json"
    path.write_bytes(payloads[how])
    _check_event(path, name)


# ------------------------------------------------------------------------------------- /version bodies


@pytest.fixture(scope="module")
def version_server() -> Iterator[Staging]:
    with Staging(version_body={"sha": SHA}) as staging:
        yield staging


def _service_config(url: str, field: str = "sha", health: str | None = None) -> Config:
    return Config.model_validate({
        "gate": {"name": "fuzz"},
        "services": [{"name": "svc", "repo": "r.git", "health_url": health or f"{url}/health",
                      "version_url": f"{url}/version", "version_field": field}],
    })


def _expected_ok(body: bytes, field: str) -> bool:
    if len(body) > BODY_CAP:
        return False
    try:
        value: Any = json.loads(body)
    except (ValueError, RecursionError):
        return False
    for part in field.split("."):
        if not isinstance(value, dict) or part not in value:
            return False
        value = value[part]
    return bool(value == SHA)


bodies = st.one_of(
    st.binary(max_size=200),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.sampled_from([SHA, SHA.upper(), SHA[:7], f" {SHA}", f"{SHA}\n", SHA + "0", "\u202e" + SHA]).map(
        lambda s: json.dumps({"sha": s, "build": {"commit": s}}).encode()),
    st.just(json.dumps({"sha": SHA}).encode()),
    st.just(json.dumps({"build": {"commit": SHA}}).encode()),
    st.integers(BODY_CAP - 20, BODY_CAP + 20).map(lambda n: b'{"sha": "' + SHA.encode() + b'", "p": "'
                                                + b"x" * n + b'"}'),
)


@FUZZ
@given(body=bodies, field=st.sampled_from(["sha", "build.commit"]), length=st.booleans(),
       encoding=st.sampled_from(["identity", "gzip", "bogus"]))
def test_any_version_body_is_a_correct_verdict_in_one_line(
    version_server: Staging, body: bytes, field: str, length: bool, encoding: str
) -> None:
    version_server.version_content_length = length
    version_server.version_headers = {} if encoding == "identity" else {"Content-Encoding": encoding}
    version_server.version_body = gzip.compress(body) if encoding == "gzip" else body
    config = _service_config(version_server.url, field)
    with _bounded(3.0):
        [result] = asyncio.run(verify_versions(config.services, {"svc": SHA}, request_timeout=2.0))
    expected = _expected_ok(body, field) and encoding != "bogus"
    assert result.ok == expected, (result.detail, body[:200])
    _one_line(result.detail)


@pytest.mark.parametrize("how", ["gzip-bomb", "deflate-bomb", "trickle", "stall", "huge-no-length", "deep"])
def test_hostile_version_endpoints_fail_in_bounded_time(how: str) -> None:
    staging = Staging(version_body={"sha": SHA})
    if how == "gzip-bomb":
        staging.version_body = gzip.compress(b'{"sha": "' + b"0" * 50_000_000 + b'"}', 9)
        staging.version_headers = {"Content-Encoding": "gzip"}
    elif how == "deflate-bomb":
        import zlib

        staging.version_body = zlib.compress(b"[" * 30_000_000, 9)
        staging.version_headers = {"Content-Encoding": "deflate"}
    elif how == "trickle":
        staging.trickle = 0.05
    elif how == "stall":
        staging.delay = 5.0
    elif how == "huge-no-length":
        staging.version_body = b'{"sha": "' + b"a" * 20_000_000 + b'"}'
        staging.version_content_length = False
    else:
        staging.version_body = b"[" * 60_000 + b"]" * 60_000
    with staging:
        config = _service_config(staging.url)
        with _bounded(3.0):
            [result] = asyncio.run(verify_versions(config.services, {"svc": SHA}, request_timeout=1.0))
    assert not result.ok
    _one_line(result.detail)


# ------------------------------------------------------------------------------------- health endpoints


class RawServer:
    """A TCP server that answers every connection with ``script`` (bytes, pause seconds, ...)."""

    def __init__(self, script: list[bytes | float]) -> None:
        self.script = script
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        self.sock.settimeout(0.05)
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        with contextlib.suppress(OSError), conn:
            conn.settimeout(2)
            with contextlib.suppress(OSError):
                conn.recv(65536)
            for step in self.script:
                if self.stop.is_set():
                    return
                if isinstance(step, float):
                    time.sleep(step)
                else:
                    conn.sendall(step)

    def __enter__(self) -> RawServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(2)
        self.sock.close()


def _trickled(data: bytes, pause: float) -> list[bytes | float]:
    out: list[bytes | float] = []
    for i in range(len(data)):
        out += [data[i : i + 1], pause]
    return out


health_scripts = st.one_of(
    st.just([3.0]),  # accepts, never answers
    st.just([b""]),  # closes at once
    st.binary(min_size=1, max_size=200).map(lambda b: [b]),  # garbage
    st.floats(0.02, 0.1).map(lambda p: _trickled(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", p)),
    st.sampled_from([b"HTTP/1.1 200 OK\r\n", b"HTTP/1.1 503 Busy\r\nContent-Length: 0\r\n\r\n",
                     b"HTTP/1.1 200 OK\r\nContent-Length: 99999999\r\n\r\n" + b"x" * 10,
                     b"HTTP/1.1 301 Moved\r\nLocation: http://127.0.0.1:9/\r\nContent-Length: 0\r\n\r\n",
                     b"HTTP/9.9 200 OK\r\n\r\n", b"\x16\x03\x01\x02\x00"]).map(lambda b: [b]),
)


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(script=health_scripts)
def test_health_endpoints_that_misbehave_fail_within_the_timeout(script: list[bytes | float]) -> None:
    with RawServer(script) as server:
        config = _service_config(server.url)
        timeout, request_timeout = 0.4, 0.2
        with _bounded(timeout + request_timeout + 1.0):
            [result] = asyncio.run(wait_healthy(config.services, timeout=timeout, interval=0.02,
                                                request_timeout=request_timeout))
    _one_line(result.detail)
    # Only a complete 200 status line with headers may count as healthy.
    data = b"".join(s for s in script if isinstance(s, bytes))
    if result.ok:
        assert re.match(rb"HTTP/\d\.\d 200 ", data) and b"\r\n\r\n" in data, data[:100]


# ------------------------------------------------------------------------------------- lockstep.toml

VALID_TOML = """\
[gate]
name = "bs-lml"
forge = "github"
runbook_url = "https://example.org/runbook#split"
health_timeout = "5m"
health_interval = "5s"
request_timeout = "10s"

[bypass]
tracker = "WXYC/wxyc-shared#${ISSUE}"
allowed_actors = ["alice", "bob"]

[recovery]
allow_rollback = true
on_split = "rollback"

[[services]]
name = "Backend-Service"
repo = "WXYC/Backend-Service"
token_env = "PROD_PUSH_TOKEN_BS"
health_url = "${BS_STAGING_BASE_URL}/healthcheck"
version_url = "${BS_STAGING_BASE_URL}/version"
version_field = "build.commit"

[[services]]
name = "library-metadata-lookup"
repo = "WXYC/library-metadata-lookup"
source = "trunk"
target = "live"
token_env = "PROD_PUSH_TOKEN_LML"
health_url = "${LML_STAGING_BASE_URL}/health"
version_url = "${LML_STAGING_BASE_URL}/version"

[[checks]]
name = "e2e"
run = ["npm", "run", "test:e2e"]
env = { E2E_BASE_URL = "${BS_STAGING_BASE_URL}" }
timeout = "20m"
"""
TOML_ENV = {"ISSUE": "42", "BS_STAGING_BASE_URL": "https://bs.example", "LML_STAGING_BASE_URL": "http://lml:8"}
LINES = VALID_TOML.splitlines()
toml_values = st.one_of(
    st.integers(-(2**70), 2**70).map(str),
    st.sampled_from(["true", "false", "nan", "inf", "-0.0", "1979-05-27"]),
    st.text(max_size=30).map(lambda t: json.dumps(t)),
    st.sampled_from([
        '"${MISSING}"', '"${ISSUE}"', '"0s"', '"-5m"', '"1h30m"', '"250ms"', '"5 m"', '""', "[]", '["a", 1]',
        "{ }", '{ a = "b" }', '"http://"', '"ftp://x"', '"OWNER/REPO#0"', '"a/b#99999999999"', '"rollback"',
        '"ref"', '"\\u0000"', "'''x'''",
    ]),
)
mutation = st.one_of(
    st.tuples(st.just("drop"), st.integers(0, len(LINES) - 1)),
    st.tuples(st.just("dup"), st.integers(0, len(LINES) - 1)),
    st.tuples(st.just("swap"), st.integers(0, len(LINES) - 1), st.integers(0, len(LINES) - 1)),
    st.tuples(st.just("value"), st.integers(0, len(LINES) - 1), toml_values),
    st.tuples(st.just("key"), st.integers(0, len(LINES) - 1), st.from_regex(r"[a-z_]{1,12}", fullmatch=True),
              toml_values),
    st.tuples(st.just("insert"), st.integers(0, len(VALID_TOML)), st.text(max_size=10)),
    st.tuples(st.just("truncate"), st.integers(0, len(VALID_TOML))),
)


def _mutate(text: str, edit: tuple[Any, ...]) -> str:
    lines = text.splitlines()
    kind = edit[0]
    if kind == "insert":
        return str(text[: edit[1]] + edit[2] + text[edit[1] :])
    if kind == "truncate":
        return text[: edit[1]]
    i = edit[1] % max(len(lines), 1)
    if not lines:
        return text
    if kind == "drop":
        del lines[i]
    elif kind == "dup":
        lines.insert(i, lines[i])
    elif kind == "swap":
        j = edit[2] % len(lines)
        lines[i], lines[j] = lines[j], lines[i]
    elif kind == "value" and "=" in lines[i]:
        lines[i] = lines[i].split("=", 1)[0] + "= " + edit[2]
    elif kind == "key":
        lines.insert(i, f"{edit[2]} = {edit[3]}")
    return "\n".join(lines) + "\n"


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(edits=st.lists(mutation, min_size=1, max_size=4))
def test_mutated_configs_are_a_config_or_errors_naming_the_file(edits: list[tuple[Any, ...]]) -> None:
    text = VALID_TOML
    for edit in edits:
        text = _mutate(text, edit)
    with _bounded(2.0):
        try:
            config = parse_config(text, env=TOML_ENV, source="lockstep.toml", base_dir=Path("/cfg"))
        except ConfigError as exc:
            lines = str(exc).splitlines()
            assert lines, "empty config error"
            for line in lines:
                assert line.startswith("lockstep.toml: "), line
                assert len(line) <= 600, line
            return
    assert isinstance(config, Config)
    assert config.services and config.gate.name


# ------------------------------------------------------------------------------------- justification/actor


@pytest.fixture(scope="module")
def bypass_world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GitWorld]:
    for world in build_world(tmp_path_factory.mktemp("bypass")):
        world.config()
        world.olds = {n: world.sha(n, "prod") for n in world.names}  # type: ignore[attr-defined]
        yield world


def _bypass(world: GitWorld, justification: str, actor: str, via_event: bool) -> tuple[Any, str | None]:
    """One real bypass run; prod is reset and the audit file removed first."""
    for name, old in world.olds.items():  # type: ignore[attr-defined]
        world.set_branch(name, "prod", old)
    audit = world.root / "audit.md"
    for path in (audit, audit.with_name("audit.md.jsonl")):
        path.unlink(missing_ok=True)
    env = world.env()
    args = ["run", "--config", str(world.root / "lockstep.toml"), "--actor", actor]
    if via_event:
        event = world.root / "event.json"
        event.write_text(json.dumps({"inputs": {"skip_gate": "true", "justification": justification}}))
        env |= {"GITHUB_ACTIONS": "true", "GITHUB_EVENT_NAME": "workflow_dispatch",
                "GITHUB_EVENT_PATH": str(event)}
    else:
        args += ["--skip-gate", "--justification", justification]
    with _bounded(20.0):
        run = run_inprocess(args, env)
    return run, audit.read_text(encoding="utf-8") if audit.exists() else None


def _visible(text: str) -> bool:
    """Has a character a reviewer can see (DESIGN: blank, zero-width and combining-only text is empty)."""
    invisible = {"Zs", "Zl", "Zp", "Cc", "Cf", "Mn", "Me"}
    blank = set("\u115f\u1160\u3164\uffa0\u180e\u2800")
    return any(not ch.isspace() and ch not in blank and unicodedata.category(ch) not in invisible for ch in text)


def _shape(markdown: str) -> list[tuple[str, str]]:
    """The document's token stream with the values lockstep does not control blanked out."""
    out: list[tuple[str, str]] = []
    for token in MarkdownIt("commonmark").enable(["table", "strikethrough"]).parse(markdown):
        if token.type == "fence":
            out.append(("fence", "<justification>"))
            continue
        if token.type != "inline":
            out.append((token.type, ""))
            continue
        for child in token.children or []:
            content = child.content
            if child.type == "code_inline" and not re.fullmatch(r"[0-9a-f]{40}", content):
                content = "<value>"
            content = re.sub(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", "<time>", content)
            out.append((child.type, content))
    return out


@pytest.fixture(scope="module")
def templates(bypass_world: GitWorld) -> dict[bool, list[tuple[str, str]]]:
    """The audit section's shape for a plain and for a bidi justification."""
    shapes = {}
    for bidi, text in ((False, "reference justification"), (True, "reference \u202e justification")):
        run, audit = _bypass(bypass_world, text, "reference-actor", via_event=False)
        assert run.code == 0 and audit is not None, run.stderr
        shapes[bidi] = _shape(audit)
    return shapes


@CLI_FUZZ
@given(justification=hostile_text, actor=st.one_of(st.sampled_from(["alice", "a`b", "@team", "<b>x</b>"]),
                                                   st.text(max_size=30)),
       via_event=st.booleans())
def test_any_justification_and_actor_are_refused_in_one_line_or_stored_inside_one_code_block(
    bypass_world: GitWorld, templates: dict[bool, list[tuple[str, str]]], justification: str, actor: str,
    via_event: bool,
) -> None:
    if not via_event:  # argv cannot carry NUL or lone surrogates; an event file can
        assume("\x00" not in justification + actor)
        assume(not any(unicodedata.category(c) == "Cs" for c in justification + actor))
    run, audit = _bypass(bypass_world, justification, actor, via_event)
    output = run.stdout + run.stderr
    assert run.exception is None, run.exception
    assert "Traceback" not in output
    stripped_actor = actor.strip()
    actor_ok = bool(stripped_actor) and len(stripped_actor) <= MAX_ACTOR and not any(
        unicodedata.category(c) in _BAD_CATEGORIES for c in stripped_actor)
    fallback = via_event and actor == ""  # under Actions an empty --actor means "not given": $GITHUB_ACTOR
    actor_ok = actor_ok or fallback
    text = justification.strip()
    justification_ok = _visible(text) and len(text) <= MAX_JUSTIFICATION
    if not (actor_ok and justification_ok):
        assert run.code == 2, (run.code, output[-2000:])
        errors = [ln for ln in run.stderr.splitlines() if ln.startswith("lockstep: ")]
        assert len(errors) == 1, run.stderr
        _one_line(errors[0])
        assert audit is None
        assert all(bypass_world.sha(n, "prod") == o for n, o in bypass_world.olds.items())  # type: ignore[attr-defined]
        return
    assert run.code == 0, (run.code, output[-2000:])
    assert audit is not None
    fences = [t for t in MarkdownIt("commonmark").enable(["table", "strikethrough"]).parse(audit) if t.type == "fence"]
    assert len(fences) == 1
    shown = escape_controls(text)
    assert fences[0].content == shown + ("" if shown.endswith("\n") else "\n")
    assert _shape(audit) == templates[has_bidi(text)]
    record = json.loads((bypass_world.root / "audit.md.jsonl").read_text().splitlines()[-1])
    assert record["justification"] == text
    assert fallback or record["actor"] == stripped_actor


def test_cli_bypass_fuzz_sees_both_outcomes(bypass_world: GitWorld) -> None:
    """Guard against a vacuous property: a plain bypass is stored, an invisible one refused."""
    assert _bypass(bypass_world, "ok: staging down", "alice", False)[0].code == 0
    assert _bypass(bypass_world, "\u200b \u2060", "alice", False)[0].code == 2

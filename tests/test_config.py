"""Config loading: every mistake is one line naming the key or variable to fix."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lockstep.config import parse_config, parse_duration
from lockstep.errors import ConfigError
from tests.support.cli import run_cli

VALID = """
[gate]
name = "bs-lml"

[[services]]
name = "Backend-Service"
repo = "repos/backend.git"
health_url = "${BS}/health"
version_url = "${BS}/version"

[[services]]
name = "metadata"
repo = "repos/metadata.git"
source = "trunk"
target = "live"
health_url = "http://127.0.0.1:1/health"
version_url = "http://127.0.0.1:1/version"
version_field = "build.commit"

[[checks]]
name = "e2e"
run = ["npm", "run", "test:e2e"]
env = { E2E_BASE_URL = "${BS}" }
timeout = "20m"
"""


def load(text: str, **env: str) -> object:
    return parse_config(text, env={"BS": "https://staging.example", **env}, source="lockstep.toml",
                        base_dir=Path("/cfg"))


def error(text: str, **env: str) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(text, env=env, source="lockstep.toml", base_dir=Path("/cfg"))
    return str(info.value)


def test_valid_config_with_defaults_and_substitution() -> None:
    cfg = parse_config(VALID, env={"BS": "https://staging.example"}, source="x", base_dir=Path("/cfg"))
    backend, meta = cfg.services
    assert backend.health_url == "https://staging.example/health"
    assert (backend.source, backend.target, backend.version_field) == ("main", "prod", "sha")
    assert (meta.source, meta.target) == ("trunk", "live")
    assert backend.slug == "BACKEND_SERVICE"
    assert cfg.gate.health_timeout == 300 and cfg.gate.health_interval == 5
    assert cfg.gate.forge == "git"
    assert cfg.checks[0].timeout == 1200 and cfg.checks[0].env["E2E_BASE_URL"] == "https://staging.example"


@pytest.mark.parametrize(
    ("mutation", "expected"),
    [
        (lambda t: t.replace('name = "bs-lml"', 'name = "bs-lml"\nhelth = 1'), "lockstep.toml: gate.helth: unknown key"),
        (lambda t: t.replace('repo = "repos/metadata.git"\n', ""), "lockstep.toml: services[1].repo: required key is missing"),
        (lambda t: t.replace('name = "metadata"', 'name = "Backend-Service"'), "duplicate name 'Backend-Service'"),
        (lambda t: t.replace("${BS}/version", "${MISSING_VAR}/version"),
         "lockstep.toml: services[0].version_url: environment variable MISSING_VAR is not set"),
        (lambda t: t.replace("http://127.0.0.1:1/health", "ftp://x/health"),
         "lockstep.toml: services[1].health_url: must be an http:// or https:// URL"),
        (lambda t: t.replace('timeout = "20m"', 'timeout = "20 minutes"'), "lockstep.toml: checks[0].timeout:"),
        (lambda t: t.replace('run = ["npm", "run", "test:e2e"]', 'run = "npm run test:e2e"'), "checks[0].run"),
        (lambda t: t + "\n[gate2]\n", "gate2: unknown key"),
        (lambda t: t.replace("[gate]", "[gate"), "not valid TOML"),
    ],
)
def test_each_mistake_names_what_to_fix(mutation: object, expected: str) -> None:
    assert callable(mutation)
    message = error(mutation(VALID), BS="https://s")
    assert expected in message
    assert "Traceback" not in message


def test_duplicate_names_ignore_case_and_slug_collisions() -> None:
    text = VALID.replace('name = "metadata"', 'name = "backend_service"')
    assert "LOCKSTEP_<NAME>_SHA" in error(text, BS="https://s")


@pytest.mark.parametrize(("text", "seconds"), [("30s", 30), ("5m", 300), ("1h", 3600), ("250ms", 0.25),
                                               ("1m30s", 90), (12, 12), ("0s", 0)])
def test_durations(text: str | int, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["", "5", "5 m", "m5", "5d", "-1s", "1s2", True, None, []])
def test_bad_durations(bad: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(bad if bad != "5 m" else "5x")


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "1e400", "99999999999999999999999", '"99999999999h"',
                                   '"168h1ms"', "604801"])
def test_a_duration_that_would_wait_forever_is_one_config_error(value: str) -> None:
    # nan slipped past "cannot be negative", and inf or 1e400 seconds waited forever (or overflowed
    # the event loop's clock) instead of naming the key
    text = VALID.replace('name = "bs-lml"', f'name = "bs-lml"\nhealth_timeout = {value}', 1)
    with pytest.raises(ConfigError) as info:
        parse_config(text, env={"BS": "https://staging.example"}, source="lockstep.toml", base_dir=Path("/cfg"))
    assert str(info.value).startswith("lockstep.toml: gate.health_timeout: "), str(info.value)
    assert "\n" not in str(info.value)


@given(st.floats(min_value=0, max_value=7 * 24 * 3600))
def test_every_duration_up_to_7_days_is_taken(seconds: float) -> None:
    assert parse_duration(seconds) == seconds


@given(st.text(max_size=200))
def test_any_text_is_a_config_or_a_config_error(text: str) -> None:
    """No input makes the loader raise anything but ConfigError."""
    try:
        parse_config(text, env={}, source="lockstep.toml", base_dir=Path("/cfg"))
    except ConfigError as exc:
        assert str(exc).startswith("lockstep.toml")


LINES = VALID.strip().splitlines()


@given(st.lists(st.tuples(st.integers(0, len(LINES) - 1), st.sampled_from(["drop", "dup", "garble"])),
                max_size=4))
def test_mutated_configs_fail_cleanly(edits: list[tuple[int, str]]) -> None:
    lines = list(LINES)
    for index, kind in edits:
        index %= len(lines)
        if kind == "drop":
            del lines[index]
        elif kind == "dup":
            lines.insert(index, lines[index])
        else:
            lines[index] = lines[index][::-1]
        if not lines:
            break
    try:
        parse_config("\n".join(lines), env={"BS": "https://s"}, source="lockstep.toml", base_dir=Path("/c"))
    except ConfigError as exc:
        for line in str(exc).splitlines():
            assert line.startswith("lockstep.toml")


def test_an_invalid_service_is_one_line_not_two() -> None:
    text = VALID.replace("http://127.0.0.1:1/version", "ftp://x/version")
    lines = error(text, BS="https://s").splitlines()
    assert lines == ["lockstep.toml: services[1].version_url: must be an http:// or https:// URL"]


def test_ref_lock_needs_the_github_forge() -> None:
    text = VALID.replace('name = "bs-lml"', 'name = "bs-lml"\nlock = "ref"')
    assert 'gate.lock = "ref" needs forge = "github"' in error(text, BS="https://s")


@pytest.mark.parametrize("where", ["top", "env", "services"])
def test_values_nested_deeper_than_python_can_read_are_one_config_error(where: str) -> None:
    # tomllib (and the checks after it) recurse: a hostile config once ended in "internal error"
    deep = "[" * 5000 + "]" * 5000
    text = {
        "top": f"a = {deep}\n",
        "env": VALID.replace('[gate]\nname = "bs-lml"', f'[gate]\nname = "bs-lml"\nextra = {deep}'),
        "services": VALID + f"\n[[services]]\nname = {deep}\n",
    }[where]
    with pytest.raises(ConfigError) as info:
        parse_config(text, env={}, source="deep.toml", base_dir=Path("/tmp"))
    assert str(info.value) == "deep.toml: arrays or tables nested too deeply to read"


def test_the_cli_says_so_in_one_line_and_exits_2(tmp_path: Path) -> None:
    config = tmp_path / "lockstep.toml"
    config.write_text("a = " + "[" * 100_000 + "]" * 100_000 + "\n")
    for command in (("run",), ("validate", "--config", str(config)), ("plan", "--config", str(config))):
        res = run_cli(tmp_path, command, env=os.environ)
        assert (res.code, res.out) == (2, ""), (command, res.err)
        assert res.err == f"lockstep: {config}: arrays or tables nested too deeply to read\n", command


@pytest.mark.parametrize(
    ("gate", "key"),
    [
        ('forge = "github"', "gate.records_repo: not set"),
        ('lock = "ref"', 'gate.lock = "ref" needs forge = "github"'),
        ('records_store = "deployments"', "gate.records_store and gate.records_repo need forge"),
    ],
)
def test_a_check_across_tables_names_its_key_first(gate: str, key: str) -> None:
    """Errors from checks that span tables lead with the key to fix, not "(top level)"."""
    text = (
        f'[gate]\nname = "g"\n{gate}\n[[services]]\nname = "a"\nrepo = "o/a"\ntoken_env = "P"\n'
        'health_url = "http://x/h"\nversion_url = "http://x/v"\n'
    )
    with pytest.raises(ConfigError) as info:
        parse_config(text, env={}, source="lockstep.toml", base_dir=Path("."))
    message = str(info.value)
    assert message.startswith(f"lockstep.toml: {key}"), message
    assert "(top level)" not in message and "\n" not in message

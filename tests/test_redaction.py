"""Secrets never leave lockstep: planted tokens and URL passwords, scanned for in every output.

The integration tests plant a read token (``GITHUB_TOKEN``), a push token
(alpha's ``token_env``), a password in both repository URLs (real bare
repositories, reached through git's ``url.<base>.insteadOf``) and a
percent-encoded password in beta's staging URLs (a real loopback server), then
run the real CLI and read everything it produced: stdout, stderr, the JSON
report, ``$GITHUB_OUTPUT``, ``$GITHUB_STEP_SUMMARY``, the promotion records
in the remote and the bypass audit files.  Only ``::add-mask::`` lines may
name a secret: they are how Actions learns to hide it.
"""

from __future__ import annotations

import io
import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from rich.console import Console

from lockstep.progress import LiveProgress
from tests.support import githubworld
from tests.support.cli import CliResult
from tests.support.githubworld import GitHubWorld
from tests.support.gitworld import GitWorld
from tests.support.staging import closed_port_url

READ_TOKEN = "ghp_PLANTEDreadTOKEN" + "r" * 20
PUSH_TOKEN = "github_pat_PLANTEDpushTOKEN" + "p" * 20
REPO_PASSWORD = "r3p0-Passw0rd"
STAGING_PASSWORD = "s3cr3t%21pw"  # as written in the URL; "s3cr3t!pw" once decoded
GIT_HOST = "https://deploy:" + REPO_PASSWORD + "@git.invalid/"
SECRETS = (READ_TOKEN, PUSH_TOKEN, REPO_PASSWORD, STAGING_PASSWORD, unquote(STAGING_PASSWORD))
URL_PASSWORDS = (REPO_PASSWORD, STAGING_PASSWORD, unquote(STAGING_PASSWORD))


# ---------------------------------------------------------------------------- the planted world


def plant(world: GitWorld, *, extra: str = "") -> Path:
    """lockstep.toml with a password in both repository URLs and in beta's staging URLs."""
    path = world.config(services={"alpha": 'token_env = "PUSH_TOKEN_ALPHA"'}, extra=extra)
    text = path.read_text()
    for name in world.names:
        text = text.replace(f'repo = "{name}.git"', f'repo = "{GIT_HOST}{name}.git"')
    beta = world.staging["beta"].url
    text = text.replace(beta, beta.replace("http://", f"http://user:{STAGING_PASSWORD}@"))
    path.write_text(text)
    return path


def planted_env(world: GitWorld, *, actions: bool = True, **extra: str) -> dict[str, str]:
    """The tokens, git's URL rewrite to the real repositories and (by default) an Actions runner."""
    env = world.env(
        GITHUB_TOKEN=READ_TOKEN,
        PUSH_TOKEN_ALPHA=PUSH_TOKEN,
        GIT_CONFIG_COUNT="1",
        GIT_CONFIG_KEY_0=f"url.{world.root}/.insteadOf",
        GIT_CONFIG_VALUE_0=GIT_HOST,
        **extra,
    )
    if actions:
        env.update(
            GITHUB_ACTIONS="true",
            GITHUB_OUTPUT=str(world.root / "github_output"),
            GITHUB_STEP_SUMMARY=str(world.root / "step_summary.md"),
        )
    return env


def records_text(world: GitWorld) -> str:
    """The promotion records lockstep stored in alpha's remote ("" when none were written)."""
    out = subprocess.run(
        ["git", "--git-dir", str(world.repos["alpha"]), "show", "refs/lockstep/test/records:records.jsonl"],
        capture_output=True, text=True, check=False,
    )
    return out.stdout


def everything(world: GitWorld, *results: CliResult) -> str:
    """Every output of the commands and every file they could write, add-mask lines left out."""
    parts = [records_text(world)]
    for res in results:
        parts += [res.out, res.err, json.dumps(res.report) if res.report else ""]
    for name in ("github_output", "step_summary.md", "report.json", "audit.md", "audit.md.jsonl"):
        path = world.root / name
        parts.append(path.read_text() if path.exists() else "")
    text = "\n".join(parts)
    return "\n".join(line for line in text.splitlines() if not line.startswith("::add-mask::"))


def assert_no_secret(world: GitWorld, *results: CliResult) -> None:
    text = everything(world, *results)
    leaked = [secret for secret in SECRETS if secret in text]
    assert not leaked, f"leaked {leaked}:\n{text}"


def masked(res: CliResult) -> set[str]:
    """The values Actions was told to mask (workflow-command data unescaped, as the runner reads it)."""
    lines = [line.removeprefix("::add-mask::") for line in res.err.splitlines() if line.startswith("::add-mask::")]
    return {line.replace("%0D", "\r").replace("%0A", "\n").replace("%25", "%") for line in lines}


def run(world: GitWorld, *args: str, env: dict[str, str] | None = None) -> CliResult:
    config = ["--config", str(world.root / "lockstep.toml")]
    return world.run(*args, *([] if args[0] == "run" else config), env=env or planted_env(world))


# ---------------------------------------------------------------------------- run


def test_run_that_promotes_shows_no_secret_and_masks_url_passwords(world: GitWorld) -> None:
    plant(world)
    res = run(world, "run")
    assert res.code == 0, res.err
    assert all(world.sha(n, "prod") == world.sha(n, "main") for n in world.names)
    assert records_text(world), "the run should have stored its promotion records"
    assert res.report is not None and world.service(res.report, "alpha")["repo"] == (
        "https://deploy:***@git.invalid/alpha.git"
    )
    assert_no_secret(world, res)
    assert {READ_TOKEN, PUSH_TOKEN, *URL_PASSWORDS} <= masked(res)


def test_run_blocked_by_a_failing_staging_server_shows_no_secret(world: GitWorld) -> None:
    plant(world)
    world.staging["beta"].health_status = 500
    res = run(world, "run")
    assert res.code == 1, res.err
    assert "HTTP 500" in res.out and "http://user:***@127.0.0.1" in res.out
    assert "::warning title=lockstep::" in res.err  # the annotation names the staging URL too
    assert_no_secret(world, res)


def test_run_blocked_by_a_version_that_echoes_a_token_shows_no_secret(world: GitWorld) -> None:
    plant(world)
    world.staging["beta"].version_body = {"sha": READ_TOKEN}  # a hostile staging server echoes a token
    res = run(world, "run")
    assert res.code == 1, res.err
    assert "version mismatch for beta" in res.out
    assert_no_secret(world, res)


def test_failed_push_then_status_and_plan_show_no_secret(world: GitWorld) -> None:
    plant(world)
    world.hook("beta", "pre-receive", 'echo "refused for $GITHUB_TOKEN / $PUSH_TOKEN_ALPHA" >&2; exit 1')
    res = run(world, "run")
    assert res.code == 3, res.err
    assert res.report is not None and world.service(res.report, "beta")["outcome"] == "failed"
    assert "refused for ***" in world.service(res.report, "beta")["detail"]
    status = run(world, "status")
    status_json = run(world, "status", "--json")
    plan = run(world, "plan")
    assert status.code == status_json.code == 3 and "verdict: split" in status.out, status.err
    assert json.loads(status_json.out)["services"][1]["repo"] == "https://deploy:***@git.invalid/beta.git"
    assert plan.code == 0, plan.err
    assert_no_secret(world, res, status, status_json, plan)


def test_plan_and_status_over_an_unreachable_remote_show_no_secret(world: GitWorld) -> None:
    plant(world)
    path = world.root / "lockstep.toml"
    dead = closed_port_url().replace("http://", "https://deploy:" + REPO_PASSWORD + "@") + "/beta.git"
    path.write_text(path.read_text().replace(f"{GIT_HOST}beta.git", dead))
    plan = run(world, "plan")
    status = run(world, "status", "--json")
    assert plan.code == 1 and "error:" in plan.out, plan.err
    assert status.code == 3 and json.loads(status.out)["verdict"] == "unknown", status.err
    assert_no_secret(world, plan, status)


def test_bypass_audit_record_holds_no_secret(world: GitWorld) -> None:
    plant(world)
    justification = f"hotfix INC-7: see https://ops:{REPO_PASSWORD}@wiki.example/x (token {PUSH_TOKEN})"
    res = run(world, "run", "--skip-gate", "--justification", justification)
    assert res.code == 0, res.err
    audit = (world.root / "audit.md").read_text()
    assert "https://deploy:***@git.invalid/alpha.git" in audit and "https://ops:***@wiki.example/x" in audit
    assert_no_secret(world, res)


def test_error_text_holds_no_secret(world: GitWorld) -> None:
    plant(world)
    res = run(world, "reconcile", "--forward", "--justification", "finish it")
    assert res.code == 1 and "no promotion record in https://deploy:***@git.invalid/alpha.git" in res.err
    assert_no_secret(world, res)


# ---------------------------------------------------------------------------- the github forge


@pytest.fixture
def gh_world(tmp_path: Path) -> Iterator[GitHubWorld]:
    yield from githubworld.build_world(tmp_path)


def test_github_forge_sends_and_shows_no_secret(gh_world: GitHubWorld) -> None:
    """Tokens travel only in Authorization headers; URL passwords nowhere (comment, records, outputs)."""
    world = gh_world
    path = world.config()
    backend = world.staging["backend"].url
    path.write_text(path.read_text().replace(backend, backend.replace("http://", f"http://user:{STAGING_PASSWORD}@")))
    world.staging["backend"].health_status = 500
    blocked = world.run("run", env=world.actions_env())
    assert blocked.code == 1 and "http://user:***@127.0.0.1" in blocked.out, blocked.err
    assert set(URL_PASSWORDS[1:]) <= masked(blocked)
    texts = [world.output_file.read_text(), world.summary_file.read_text()]
    leak = f"https://ops:{REPO_PASSWORD}@wiki.example/x with {world.push_tokens['backend']}"
    bypass = world.run("run", "--skip-gate", "--justification", f"INC-9: {leak}", env=world.actions_env())
    assert bypass.code == 0, bypass.err
    assert world.prods_now() == world.mains
    assert "https://ops:***@wiki.example/x with ***" in world.comments()[-1]["body"]
    texts += [world.output_file.read_text(), world.summary_file.read_text()]
    texts += [r.body.decode("utf-8", "replace") for r in world.gh.requests]  # comment, records, pushes
    for res in (blocked, bypass):
        texts += [json.dumps(res.report), res.out]
        texts += [line for line in res.err.splitlines() if not line.startswith("::add-mask::")]
    text = "\n".join(texts)
    leaked = [secret for secret in (*world.tokens, *URL_PASSWORDS) if secret in text]
    assert not leaked, text


# ---------------------------------------------------------------------------- refused: a token in a URL


def test_a_token_in_a_staging_url_is_refused_before_anything_happens(world: GitWorld) -> None:
    plant(world)
    path = world.root / "lockstep.toml"
    alpha = world.staging["alpha"].url + "/health"
    path.write_text(path.read_text().replace(alpha, alpha.replace("http://", "http://ci:${PUSH_TOKEN_ALPHA}@")))
    before = {n: world.sha(n, "prod") for n in world.names}
    for res in (run(world, "run"), run(world, "validate")):
        lines = [line for line in res.err.strip().splitlines() if not line.startswith("::")]
        assert res.code == 2, res.err
        assert len(lines) == 1 and lines[0].startswith("lockstep: ")  # validate names the file first
        assert lines[0].endswith(
            "services[0] (alpha).health_url contains the value of PUSH_TOKEN_ALPHA: "
            "a token never goes in a URL (staging gets no credentials)"
        )
        assert res.report is None
    assert all(s.requests == [] for s in world.staging.values())
    assert {n: world.sha(n, "prod") for n in world.names} == before and records_text(world) == ""
    assert_no_secret(world)


def test_the_read_token_in_a_version_url_query_is_refused(world: GitWorld) -> None:
    plant(world)
    path = world.root / "lockstep.toml"
    beta = re.search(r'version_url = "([^"]*)"\n\n*$', path.read_text())
    assert beta is not None
    path.write_text(path.read_text().replace(beta.group(1), beta.group(1) + "?t=${GITHUB_TOKEN}"))
    res = run(world, "run", env=planted_env(world, actions=False))
    assert res.code == 2
    assert res.err.strip() == (
        "lockstep: services[1] (beta).version_url contains the value of GITHUB_TOKEN: "
        "a token never goes in a URL (staging gets no credentials)"
    )
    assert all(s.requests == [] for s in world.staging.values())
    assert_no_secret(world, res)


def test_validate_output_holds_no_secret(world: GitWorld) -> None:
    plant(world, extra=f'\n[[checks]]\nname = "e2e"\nrun = ["{GIT_HOST}e2e"]\n')
    res = run(world, "validate")
    assert res.code == 2, res.err
    assert "checks[0] (e2e).run: https://deploy:***@git.invalid/e2e not found" in res.err
    assert_no_secret(world, res)


# ---------------------------------------------------------------------------- the live view


def test_live_view_shows_no_url_password() -> None:
    stream = io.StringIO()
    view = LiveProgress(stream)
    url = f"http://user:{STAGING_PASSWORD}@127.0.0.1:9/health"
    view.step_started("health")
    view.service("beta", "health", f"{url}: not ready")
    view.step_finished("health", "failed", 1.0, f"health {url}: HTTP 500")
    out = Console(file=io.StringIO(), width=200, record=True, color_system=None)
    out.print(view.render())
    view.close()
    text = out.export_text() + stream.getvalue()
    assert "http://user:***@127.0.0.1:9/health" in text
    assert STAGING_PASSWORD not in text


# ---------------------------------------------------------------------------- the scrubber itself

_USERINFO_CHARS = st.characters(codec="ascii", categories=["L", "N"]) | st.sampled_from("-._~!$&'()+,;=%:@")
_HOST = st.from_regex(r"[a-z0-9]([a-z0-9.-]{0,20}[a-z0-9])?(:[0-9]{1,5})?", fullmatch=True)
_PATH = st.from_regex(r"(/[A-Za-z0-9._~%!$&'()*+,;=:@-]{0,10}){1,3}", fullmatch=True)
_SCHEME = st.sampled_from(["http", "https", "ftp", "git", "svn+https"])


@settings(max_examples=300, deadline=None)
@given(
    prefix=st.text(max_size=40),
    suffix=st.text(max_size=40),
    scheme=_SCHEME,
    user=st.text(_USERINFO_CHARS.filter(lambda c: c not in ":@"), max_size=8),
    password=st.text(_USERINFO_CHARS, min_size=1, max_size=16),
    host=_HOST,
    path=_PATH,
)
def test_a_url_password_never_survives(
    prefix: str, suffix: str, scheme: str, user: str, password: str, host: str, path: str
) -> None:
    from lockstep.redact import Secrets

    left, right = f"{prefix}{scheme}://{user}:", f"@{host}{path}{suffix}"
    assume(password not in left and password not in right)  # only this URL holds it
    scrubbed = Secrets().scrub(left + password + right)
    assert password not in scrubbed
    assert f"{scheme}://{user}:***@" in scrubbed


@settings(max_examples=300, deadline=None)
@given(
    secrets=st.lists(st.text(min_size=4, max_size=12), min_size=1, max_size=3),
    pieces=st.lists(st.text(max_size=20), min_size=1, max_size=4),
    picks=st.lists(st.integers(min_value=0, max_value=2), min_size=1, max_size=4),
)
def test_a_registered_secret_never_survives(secrets: list[str], pieces: list[str], picks: list[int]) -> None:
    from lockstep.redact import Secrets

    registry = Secrets()
    registry.add(*secrets)
    text = "".join(piece + secrets[pick % len(secrets)] for piece, pick in zip(pieces, picks, strict=False))
    scrubbed = registry.scrub(text)
    assert not [s for s in secrets if s in scrubbed]


@settings(max_examples=300, deadline=None)
@given(text=st.text(max_size=200), secret=st.text(min_size=4, max_size=12))
def test_text_without_secrets_is_unchanged(text: str, secret: str) -> None:
    from lockstep.redact import Secrets

    assume(secret not in text and not ("://" in text and "@" in text))
    registry = Secrets()
    registry.add(secret)
    assert registry.scrub(text) == text


@settings(max_examples=200, deadline=None)
@given(scheme=_SCHEME | st.just("ssh"), host=_HOST, path=_PATH, suffix=st.text(max_size=20))
def test_urls_without_a_password_are_unchanged(scheme: str, host: str, path: str, suffix: str) -> None:
    from lockstep.redact import Secrets

    assume("@" not in suffix or "://" not in suffix)
    url = f"see {scheme}://{host}{path} {suffix}"
    assert Secrets().scrub(url) == url
    assert Secrets().scrub("ssh://git@github.com/o/r.git") == "ssh://git@github.com/o/r.git"


@settings(max_examples=300, deadline=None)
@given(
    before=st.text(max_size=300),
    after=st.text(max_size=300),
    limit=st.integers(min_value=1, max_value=120),
)
def test_clean_text_is_one_bounded_printable_line_without_secrets(before: str, after: str, limit: int) -> None:
    from lockstep import redact

    secret = "cl3an-" + "k" * 20
    redact.add(secret)  # unique to this test: no other output could contain it
    cleaned = redact.clean_text(before + secret + after, limit)
    assert len(cleaned) <= limit
    assert secret[:10] not in cleaned  # hidden before the cut, so not even a prefix is left
    assert all(ch.isprintable() for ch in cleaned) and "  " not in cleaned
    assert cleaned == cleaned.strip()


def test_clean_text_examples() -> None:
    from lockstep.redact import clean_text

    assert clean_text("a\tb\x00c\u200bd") == "a bcd"
    assert clean_text("x" * 100, 80) == "x" * 79 + "…"
    assert clean_text("line1\nline2\r\n::error::x \u202eevil\u2028y") == "line1 line2 ::error::x evil y"
    assert clean_text("fatal: https://u:pw@h/x.git") == "fatal: https://u:***@h/x.git"


def test_one_list_of_token_variables() -> None:
    from lockstep.config import parse_config
    from lockstep.redact import token_vars

    text = (
        '[gate]\nname = "g"\nforge = "github"\nrecords = false\n'
        + "".join(
            f'[[services]]\nname = "{n}"\nrepo = "o/{n}"\ntoken_env = "{v}"\n'
            f'health_url = "http://h/health"\nversion_url = "http://h/version"\n'
            for n, v in (("a", "PUSH_A"), ("b", "PUSH_B"), ("c", "PUSH_A"))
        )
    )
    config = parse_config(text, env={}, source="t", base_dir=Path("."))
    assert token_vars(config) == ("GITHUB_TOKEN", "GH_TOKEN", "PUSH_A", "PUSH_B")
    assert token_vars(config, read=False) == ("PUSH_A", "PUSH_B")

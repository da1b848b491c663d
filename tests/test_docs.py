"""The docs stay true: the generated reference, links, commands and exit codes.

* ``docs/configuration.md`` must equal what :mod:`tools.docgen` generates
  from the config models (regenerate with ``uv run python -m tools.docgen
  --write``), and every config key must have a description.
* Every relative link in ``docs/*.md`` and ``README.md`` points to a file that
  exists in the repository and, with ``#anchor``, to a heading in it (GitHub's
  anchor rules); nothing the repository ships points outside it (a clone has
  nothing next to it).
* Every ``lockstep COMMAND --flag`` written in a code span or a shell block
  names a real command, real options, and real choices for them.
* Every command and exit code of the user contract (``docs/design.md``) and
  every exit code a command's ``--help`` lists appears in ``docs/exit-codes.md``.
* The justification's length cap is the one the code enforces.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from markdown_it import MarkdownIt
from markdown_it.token import Token
from pydantic import BaseModel, Field
from tools import docgen

from lockstep.cli import cli
from lockstep.config import parse_config, parse_duration
from lockstep.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
REFERENCE = DOCS / "configuration.md"
EXIT_CODES = DOCS / "exit-codes.md"
DESIGN = DOCS / "design.md"  # what a run does, the invariants, the user contract
CHECKED = [*sorted(DOCS.glob("*.md")), ROOT / "README.md"]

_md = MarkdownIt("commonmark").enable("table")


def _rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


# --------------------------------------------------------------------------- the generated reference


def test_configuration_reference_is_current() -> None:
    expected = docgen.render()
    current = REFERENCE.read_text(encoding="utf-8") if REFERENCE.exists() else ""
    assert current == expected, (
        "docs/configuration.md is stale (a config model or a description changed): "
        "run `uv run python -m tools.docgen --write` and commit the result"
    )


def test_every_config_key_has_a_description() -> None:
    missing = docgen.missing_descriptions()
    assert not missing, (
        f"undocumented config keys: {', '.join(missing)}. Add Field(description=...) in "
        "src/lockstep/config.py (or a TABLE_INTROS entry in "
        "tools/docgen.py), then run `uv run python -m tools.docgen --write`"
    )


def test_every_key_of_every_table_is_in_the_reference() -> None:
    text = docgen.render()
    for table in docgen.tables():
        section = text.split(f"## `{table.header}`", 1)[1].split("\n## ", 1)[0]
        for name in table.model.model_fields:
            assert f"| `{name}` |" in section, f"{table.header} {name} missing from the reference"


def test_tables_are_read_from_the_config_model() -> None:
    assert [t.header for t in docgen.tables()] == [
        "[gate]", "[bypass]", "[[services]]", "[[checks]]", "[recovery]",
    ]
    required = {t.key for t in docgen.tables() if t.required}
    assert required == {"gate", "services"}


def test_an_undocumented_key_stops_the_generator(monkeypatch: pytest.MonkeyPatch) -> None:
    from lockstep.config import ServiceConfig

    monkeypatch.setattr(ServiceConfig.model_fields["version_field"], "description", None)
    assert docgen.missing_descriptions() == ["ServiceConfig.version_field"]
    with pytest.raises(docgen.DocgenError, match=r"ServiceConfig\.version_field"):
        docgen.render()
    assert docgen.main([]) == 1


def test_a_field_description_wins_over_the_table() -> None:
    class Probe(BaseModel):
        documented: int = Field(default=1, description="from the model")
        undocumented: int = 2

    fields = Probe.model_fields
    assert docgen.description_of(Probe, "documented", fields["documented"]) == "from the model"
    assert docgen.description_of(Probe, "undocumented", fields["undocumented"]) is None


def test_types_and_defaults_are_readable() -> None:
    text = docgen.render()
    assert '| `health_timeout` | [duration](#durations) | `"5m"` |' in text
    assert '| `lock_stale_after` | [duration](#durations) | `"2h"` |' in text
    assert '| `forge` | `"git"` \\| `"github"` | `"git"` |' in text
    assert "| `run` | array of non-empty strings (at least one) |" in text
    assert "| `allowed_actors` | array of strings | `[]` |" in text
    assert "| `env` | table of strings | `{}` |" in text
    assert "| `runbook_url` | [URL](#urls) | not set |" in text


@pytest.mark.parametrize("seconds", [0.0, 0.2, 0.25, 1.0, 5.0, 10.0, 90.0, 300.0, 1200.0, 1800.0, 3600.0,
                                     3725.5, 7200.0])
def test_durations_are_shown_in_a_form_that_parses_back(seconds: float) -> None:
    text = docgen.format_duration(seconds)
    assert parse_duration(text) == pytest.approx(seconds)


def test_the_minimal_config_in_the_reference_is_valid(tmp_path: Path) -> None:
    config = parse_config(docgen.MINIMAL_CONFIG, env=docgen.MINIMAL_ENV, source="lockstep.toml",
                          base_dir=tmp_path)
    assert [s.name for s in config.services] == ["api", "web"]
    assert config.gate.forge == "git"


def test_the_validation_example_is_what_lockstep_says(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(docgen.VALIDATION_EXAMPLE_CONFIG, env={}, source="lockstep.toml", base_dir=tmp_path)
    said = str(caught.value).splitlines()
    for line in docgen.VALIDATION_EXAMPLE_LINES:
        assert line in said
    assert f"lockstep: {docgen.VALIDATION_EXAMPLE_LINES[0]}" in docgen.render()


def test_write_and_check_from_the_command_line(tmp_path: Path) -> None:
    out = tmp_path / "docs" / "configuration.md"
    assert docgen.main(["--write", "--output", str(out)]) == 0
    assert out.read_text(encoding="utf-8") == docgen.render()
    assert docgen.main(["--check", "--output", str(out)]) == 0
    out.write_text(out.read_text(encoding="utf-8") + "edited by hand\n", encoding="utf-8")
    assert docgen.main(["--check", "--output", str(out)]) == 1


def test_python_dash_m_prints_the_reference() -> None:
    done = subprocess.run([sys.executable, "-m", "tools.docgen"], capture_output=True, text=True,
                          check=False, cwd=ROOT, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout == docgen.render()


# --------------------------------------------------------------------------- links and anchors


def github_slug(text: str) -> str:
    """GitHub's heading anchor: lower-case, punctuation and emoji dropped, spaces to '-'."""
    return re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")


def _inline_text(token: Token) -> str:
    return "".join(c.content for c in token.children or [] if c.type in ("text", "code_inline"))


def anchors(path: Path) -> set[str]:
    found: set[str] = set()
    counts: dict[str, int] = {}
    tokens = _md.parse(path.read_text(encoding="utf-8"))
    for i, token in enumerate(tokens):
        if token.type != "heading_open":
            continue
        slug = github_slug(_inline_text(tokens[i + 1]))
        n = counts.get(slug, 0)
        counts[slug] = n + 1
        found.add(slug if n == 0 else f"{slug}-{n}")
    return found


def links(path: Path) -> Iterator[str]:
    for token in _md.parse(path.read_text(encoding="utf-8")):
        for child in token.children or []:
            if child.type == "link_open":
                yield str(child.attrs["href"])
            elif child.type == "image":
                yield str(child.attrs["src"])


def test_github_slugs() -> None:
    assert github_slug("`[[services]]` (at least one)") == "services-at-least-one"
    assert github_slug("Exit codes (`run`)") == "exit-codes-run"
    assert github_slug("🚨 Split: some targets moved") == "-split-some-targets-moved"
    assert github_slug("`${VAR}` substitution") == "var-substitution"


@pytest.mark.parametrize("path", CHECKED, ids=_rel)
def test_relative_links_point_to_files_and_headings(path: Path) -> None:
    problems = []
    for href in links(path):
        if re.match(r"^[a-z][a-z0-9+.-]*:", href):  # https:, mailto:, ...: not checked offline
            continue
        target, _, anchor = href.partition("#")
        file = (path.parent / target).resolve() if target else path
        if not file.is_relative_to(ROOT):
            problems.append(f"{href}: points outside the repository, which a clone does not have")
            continue
        if not file.exists():
            problems.append(f"{href}: {target} does not exist")
            continue
        if anchor:
            if file.suffix != ".md":
                problems.append(f"{href}: anchor into a file that is not markdown")
            elif anchor not in anchors(file):
                problems.append(f"{href}: no heading #{anchor} in {_rel(file)}")
    assert not problems, f"{_rel(path)}: broken links:\n" + "\n".join(problems)


def test_the_docs_index_lists_every_page() -> None:
    index = DOCS / "README.md"
    listed = {Path(h.partition("#")[0]).name for h in links(index)}
    pages = {p.name for p in DOCS.glob("*.md")} - {"README.md"}
    assert pages <= listed, f"docs/README.md does not link to: {sorted(pages - listed)}"


# --------------------------------------------------------------------------- commands and flags


def _code_snippets(path: Path) -> Iterator[str]:
    """What a reader would type: inline code, shell/yaml blocks, and `$ ` lines of output blocks."""
    for token in _md.parse(path.read_text(encoding="utf-8")):
        if token.type == "fence":
            lang = token.info.strip().split(" ")[0]
            lines = token.content.splitlines()
            if lang in ("sh", "shell", "bash", "yaml", "yml"):
                yield from lines
            elif lang in ("text", "console", ""):
                yield from (line[2:] for line in lines if line.startswith("$ "))
        for child in token.children or []:
            if child.type == "code_inline":
                yield child.content


# `lockstep` where a command starts: at the start, or after `$ `, `exec `, `run ` (uv run), `&& `, `; `, `| `, `(`.
_INVOCATION = re.compile(
    r"(?:^|(?<=\$ )|(?<=exec )|(?<=run )|(?<=&& )|(?<=; )|(?<=\| )|(?<=\())"
    r"lockstep ([a-z][a-z-]*|--?[a-z-]+)(.*?)(?=(?:&&|;|\|) |\blockstep |$)"
)
_FLAG = re.compile(r"(?<![\w-])(--[a-z][a-z-]*)(?:[ =]([A-Za-z][\w|-]*))?")


def invocations(text: str) -> Iterator[tuple[str, str]]:
    for match in _INVOCATION.finditer(text):
        yield match.group(1), match.group(2)


def _options(command: click.Command) -> dict[str, click.Parameter]:
    opts: dict[str, click.Parameter] = {"--help": click.Option(["--help"], is_flag=True)}
    for param in command.params:
        for opt in (*param.opts, *param.secondary_opts):
            opts[opt] = param
    return opts


def test_invocation_parser() -> None:
    found = list(invocations('lockstep validate --config a.toml && lockstep plan --config a.toml'))
    assert [c for c, _ in found] == ["validate", "plan"]
    assert list(invocations("uv run lockstep demo --scenario split")) == [("demo", " --scenario split")]
    assert list(invocations("lockstep.toml and lockstep-bs-lml")) == []
    assert list(invocations("drifted: moved outside lockstep since run 4b2")) == []
    assert [c for c, _ in invocations("run: exec lockstep run --config x.toml")] == ["run"]


@pytest.mark.parametrize("path", CHECKED, ids=_rel)
def test_every_command_and_flag_mentioned_exists(path: Path) -> None:
    problems = []
    global_opts = _options(cli)
    for snippet in _code_snippets(path):
        for name, rest in invocations(snippet):
            if name.startswith("-"):
                if name not in global_opts and name != "-h":
                    problems.append(f"`lockstep {name}`: no such global option")
                continue
            command = cli.commands.get(name)
            if command is None:
                problems.append(f"`lockstep {name}{rest}`: no command {name!r}")
                continue
            opts = _options(command)
            for flag, value in _FLAG.findall(rest):
                param = opts.get(flag)
                if param is None:
                    problems.append(f"`lockstep {name}{rest}`: {name} has no option {flag}")
                elif value and isinstance(param.type, click.Choice):
                    bad = [v for v in value.split("|") if v not in param.type.choices]
                    if bad:
                        problems.append(f"`lockstep {name}{rest}`: {flag} has no choice {bad}")
    assert not problems, f"{_rel(path)}:\n" + "\n".join(problems)


# --------------------------------------------------------------------------- exit codes and the contract


def _design_contract() -> tuple[tuple[str, ...], tuple[str, ...]]:
    text = DESIGN.read_text(encoding="utf-8")
    commands_part = text.split("### Commands", 1)[1].split("###", 1)[0]
    commands = tuple(re.findall(r"^\| `lockstep ([a-z-]+)` \|", commands_part, re.M))
    codes_part = text.split("### Exit codes", 1)[1].split("###", 1)[0]
    codes = tuple(re.findall(r"^\| (\d) \|", codes_part, re.M))
    assert commands and codes, "docs/design.md's command or exit code table was not found"
    return commands, codes


def _sections(path: Path) -> dict[str, str]:
    """``## `lockstep CMD` `` sections of the exit codes page, by command."""
    text = path.read_text(encoding="utf-8")
    parts = re.split(r"^## ", text, flags=re.M)[1:]
    out = {}
    for part in parts:
        m = re.match(r"`lockstep ([a-z-]+)`", part)
        if m:
            out[m.group(1)] = part
    return out


def _epilog_codes(command: click.Command) -> list[str]:
    epilog = command.epilog or ""
    if "Exit codes" not in epilog:
        return []
    tail = epilog.split("Exit codes", 1)[1]
    return sorted(set(re.findall(r"(?<![\w.(])(\d)(?![\w.)])", tail)))


def test_the_contract_commands_and_exit_codes_are_documented() -> None:
    commands, codes = _design_contract()
    sections = _sections(EXIT_CODES)
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for command in commands:
        assert command in sections, f"docs/exit-codes.md has no section for lockstep {command}"
        assert f"lockstep {command}" in readme, f"README.md does not name lockstep {command}"
    for code in codes:
        assert re.search(rf"^\| {code} \|", sections["run"], re.M), f"exit code {code} of run undocumented"
        assert re.search(rf"^\| {code} \|", readme, re.M), f"README.md's exit code table lacks {code}"


@pytest.mark.parametrize("name", sorted(cli.commands))
def test_every_command_has_its_exit_codes_documented(name: str) -> None:
    sections = _sections(EXIT_CODES)
    assert name in sections, f"docs/exit-codes.md has no '## `lockstep {name}`' section"
    for code in _epilog_codes(cli.commands[name]):
        assert re.search(rf"^\| {code} \|", sections[name], re.M), (
            f"lockstep {name} --help lists exit code {code}; docs/exit-codes.md does not"
        )


def test_epilog_parser() -> None:
    assert _epilog_codes(cli.commands["run"]) == ["0", "1", "2", "3"]
    assert _epilog_codes(cli.commands["status"]) == ["0", "2", "3"]


def test_the_contract_lists_every_command() -> None:
    commands, _ = _design_contract()
    assert set(commands) == set(cli.commands), "docs/design.md's command table and the CLI differ"


# --------------------------------------------------------------------------- the repository is self-contained

# A file next to the checkout (the project's shared notes), or this machine's layout: a clone has neither.
_OUTSIDE = re.compile(r"\.\./shared\b|\bDESIGN\.md\b|(?<![\w.~-])/work/")
_SHIPPED = ("README.md", "docs", "src", "tests", "benchmarks", "examples", "action.yml", ".ci", "pyproject.toml")


def _shipped_files() -> Iterator[Path]:
    """Every file of the repository a reader may open (this one spells the patterns out)."""
    for name in _SHIPPED:
        top = ROOT / name
        paths = [top] if top.is_file() else sorted(p for p in top.rglob("*") if p.is_file())
        for path in paths:
            installed = "__pycache__" in path.parts or path.suffix == ".pyc" or (
                path.is_relative_to(ROOT / ".ci") and path.name != "run")  # .ci/node: npm's install
            if not installed and path != Path(__file__).resolve():
                yield path


def test_nothing_points_outside_the_repository() -> None:
    """Issue 10 item 15: README linked ../shared/DESIGN.md and docstrings cited it or /work/... paths."""
    problems = []
    for path in _shipped_files():
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        for number, line in enumerate(text.splitlines(), 1):
            if _OUTSIDE.search(line):
                problems.append(f"{_rel(path)}:{number}: {line.strip()[:120]}")
    assert not problems, "references to files a clone does not have:\n" + "\n".join(problems)


def test_outside_reference_pattern() -> None:
    assert _OUTSIDE.search("see ../shared/DESIGN.md §3") and _OUTSIDE.search("follow /work/shared/X.md")
    assert _OUTSIDE.search("(DESIGN.md section 1)")
    assert not _OUTSIDE.search("see docs/design.md") and not _OUTSIDE.search("https://github.com/WXYC/wxyc-shared")
    assert not _OUTSIDE.search("a ~/work/ directory")


# --------------------------------------------------------------------------- the justification cap


def test_the_justification_cap_is_documented_where_bypass_is() -> None:
    """Issue 10 item 15: the 4,000-character cap was enforced but documented nowhere."""
    from lockstep.audit import MAX_JUSTIFICATION

    cap = f"{MAX_JUSTIFICATION:,} characters"
    readme = (ROOT / "README.md").read_text(encoding="utf-8").split("## Bypass", 1)[1].split("\n## ", 1)[0]
    assert cap in readme, f"README.md's Bypass section does not give the cap ({cap})"
    for page in ("runbook.md", "github-actions.md", "design.md"):
        assert cap in (DOCS / page).read_text(encoding="utf-8"), f"docs/{page} does not give the cap ({cap})"
    for command in ("run", "reconcile"):
        option = next(p for p in cli.commands[command].params if p.name == "justification")
        assert f"{MAX_JUSTIFICATION} characters" in str(getattr(option, "help", "")), command

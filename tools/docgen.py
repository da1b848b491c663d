"""Generate ``docs/configuration.md`` from the config models in :mod:`lockstep.config`.

Every key of every table, with its type, default and description, comes from
the pydantic models themselves, so a new field shows up in the reference the
next time it is generated.  A field's description is its
``Field(description=...)``, next to the field in :mod:`lockstep.config` (one
source for the code and the reference).  A field without one is an error: the generator
refuses to write a reference with an undocumented key (and the drift test in
``tests/test_docs.py`` fails), so new fields must be documented.

Usage::

    uv run python -m tools.docgen > docs/configuration.md
    uv run python -m tools.docgen --write          # the same, into docs/configuration.md
    uv run python -m tools.docgen --check          # exit 1 if docs/configuration.md is stale
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import annotated_types
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from lockstep import config as cfg

__all__ = [
    "DocgenError",
    "main",
    "missing_descriptions",
    "render",
    "tables",
]

OUTPUT = Path("docs") / "configuration.md"

# What each top-level table is for; keyed by the key in lockstep.toml.
TABLE_INTROS: dict[str, str] = {
    "gate": "The gate itself: its name, forge, timings and lock.",
    "bypass": (
        "Audited bypasses (`lockstep run --skip-gate --justification TEXT`, or the "
        "`workflow_dispatch` inputs `skip_gate` / `justification` in Actions). A bypass skips "
        "health, version and checks, never the resolve, the fast-forward rule or the audit."
    ),
    "recovery": "What may happen after a split. See the [runbook](runbook.md).",
    "services": (
        "One table per repository, **promoted in this order**: service k+1 is pushed only once "
        "service k's push is known to have landed."
    ),
    "checks": (
        "Run in order after every health and version check passed; the first failure blocks "
        "the run. A check is a command (`run`) or, with the github forge, a GitHub commit status "
        "(`commit_status`) or check run (`check_run`) that suites running elsewhere (any CI, any "
        "number of machines) report on the commits being promoted."
    ),
}

# Rules that span several keys (model validators) and so cannot be read from one field.
CROSS_KEY_RULES: tuple[str, ...] = (
    "`[[services]]`: at least one; names unique ignoring case, also as `LOCKSTEP_<NAME>_SHA` "
    "(`api-v2` and `api_v2` collide).",
    "`[[checks]]`: names unique ignoring case; each has exactly one of `run`, `commit_status` "
    "and `check_run`; `env` only with `run`; `services` and `interval` only with "
    "`commit_status` / `check_run`, which need `forge = \"github\"` and name existing services.",
    "`[recovery] on_split = \"rollback\"` needs `allow_rollback = true` and a `[bypass] tracker`.",
)

# Named value patterns in config.py, shown as a type with a link instead of a regex.
_PATTERN_TYPES: dict[str, str] = {
    r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$": "[name](#names)",
    r"^[A-Za-z_][A-Za-z0-9_]*$": "[variable name](#names)",
    r"^[^.\s]+(\.[^.\s]+)*$": "dotted path",
}

# Validators in config.py shown as a named type (looked up by name: a missing one is skipped).
_VALIDATORS: dict[Any, str] = {
    func: text
    for func, text in (
        (getattr(cfg, "parse_duration", None), "[duration](#durations)"),
        (getattr(cfg, "_check_http_url", None), "[URL](#urls)"),
        (getattr(cfg, "_check_external_name", None), "string (at most 255 characters)"),
    )
    if func is not None
}


class DocgenError(Exception):
    """The reference cannot be generated (an undocumented key, an unknown table)."""


# --------------------------------------------------------------------------- model introspection


@dataclass(frozen=True)
class Key:
    name: str
    type: str
    default: str
    description: str | None


@dataclass(frozen=True)
class Table:
    key: str  # as in lockstep.toml: "gate", "services"
    model: type[BaseModel]
    array: bool  # [[services]] rather than [gate]
    required: bool

    @property
    def header(self) -> str:
        return f"[[{self.key}]]" if self.array else f"[{self.key}]"


def tables() -> list[Table]:
    """Every table of ``lockstep.toml``, read from :class:`lockstep.config.Config`."""
    found = []
    for key, field in cfg.Config.model_fields.items():
        model, array = _table_model(field.annotation)
        if model is None:
            continue  # not a table (base_dir is set by the loader, not by the file)
        found.append(Table(key, model, array, field.is_required()))
    return found


def _table_model(annotation: Any) -> tuple[type[BaseModel] | None, bool]:
    annotation = _strip_annotated(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation, False
    if typing.get_origin(annotation) in (tuple, list):
        args = [a for a in typing.get_args(annotation) if a is not Ellipsis]
        inner = _strip_annotated(args[0]) if args else None
        if isinstance(inner, type) and issubclass(inner, BaseModel):
            return inner, True
    return None, False


def _strip_annotated(annotation: Any) -> Any:
    while typing.get_origin(annotation) is Annotated:
        annotation = typing.get_args(annotation)[0]
    return annotation


def description_of(model: type[BaseModel], name: str, field: FieldInfo) -> str | None:
    return field.description


def keys(table: Table) -> list[Key]:
    return [
        Key(name, type_text(field), default_text(field), description_of(table.model, name, field))
        for name, field in table.model.model_fields.items()
    ]


def missing_descriptions() -> list[str]:
    """``Model.field`` for every key without a description (must be empty)."""
    missing = [
        f"{t.model.__name__}.{k.name}" for t in tables() for k in keys(t) if not k.description
    ]
    missing += [f"table {t.key!r} (TABLE_INTROS)" for t in tables() if t.key not in TABLE_INTROS]
    return missing


# --------------------------------------------------------------------------- types and defaults


def type_text(field: FieldInfo) -> str:
    """A short, human type for a field, e.g. ``[duration](#durations)`` or ``array of strings``."""
    return _describe(field.annotation, list(field.metadata))


def _describe(annotation: Any, metadata: list[Any]) -> str:
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        inner, *extra = typing.get_args(annotation)
        return _describe(inner, [*metadata, *extra])
    if origin in (Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return _describe(args[0], metadata)
        return " or ".join(_describe(a, []) for a in args)
    if origin is Literal:
        return " \\| ".join(f"`{json.dumps(v)}`" for v in typing.get_args(annotation))
    named = _named(metadata)
    if named:
        return named
    if origin in (tuple, list):
        args = [a for a in typing.get_args(annotation) if a is not Ellipsis]
        inner = _describe(args[0], []) if args else "values"
        text = f"array of {_plural(inner)}"
        if _min_length(metadata):
            text += " (at least one)"
        return text
    if origin in (dict, Mapping) or annotation in (dict, Mapping):
        kv = typing.get_args(annotation)
        value = _describe(kv[1], []) if len(kv) == 2 else "string"
        return f"table of {_plural(value)}"
    base = {str: "string", bool: "boolean", int: "integer", float: "number"}.get(annotation)
    if base is None:
        base = getattr(annotation, "__name__", str(annotation))
    bounds = _bounds(metadata)
    if base == "string" and _min_length(metadata):
        return "string (not empty)"
    return f"{base} ({bounds})" if bounds else base


def _named(metadata: list[Any]) -> str | None:
    for item in metadata:
        if isinstance(item, FieldInfo):
            found = _named(list(item.metadata))
            if found:
                return found
            continue
        func = getattr(item, "func", None)
        if func is not None and func in _VALIDATORS:
            return _VALIDATORS[func]
        pattern = getattr(item, "pattern", None)
        if isinstance(pattern, str):
            return _PATTERN_TYPES.get(pattern, f"string matching `{pattern}`".replace("|", "\\|"))
    return None


def _min_length(metadata: list[Any]) -> bool:
    for item in metadata:
        if isinstance(item, FieldInfo) and _min_length(list(item.metadata)):
            return True
        if isinstance(item, annotated_types.MinLen) and item.min_length > 0:
            return True
    return False


def _bounds(metadata: list[Any]) -> str:
    parts = []
    for item in metadata:
        for attr, sign in (("ge", "≥"), ("gt", ">"), ("le", "≤"), ("lt", "<")):
            value = getattr(item, attr, None)
            if value is not None:
                parts.append(f"{sign} {value}")
    return ", ".join(parts)


def _plural(text: str) -> str:
    if text == "string (not empty)":
        return "non-empty strings"
    if text in ("string", "boolean", "integer", "number"):
        return text + "s"
    if text.startswith("[") and "](" in text:  # "[name](#names)" -> "[names](#names)"
        label, rest = text[1:].split("](", 1)
        return f"[{label}s]({rest}"
    return text


def default_text(field: FieldInfo) -> str:
    """The default as it would be written in TOML, ``required`` or ``not set``."""
    if field.is_required():
        return "**required**"
    if field.default_factory is not None:
        value: Any = field.default_factory()  # type: ignore[call-arg]
    else:
        value = field.default
    if value is None or value is PydanticUndefined:
        return "not set"
    if _is_duration(field) and isinstance(value, int | float):
        return f"`{json.dumps(format_duration(float(value)))}`"
    return f"`{toml_value(value)}`"


def _is_duration(field: FieldInfo) -> bool:
    return any(getattr(m, "func", None) is cfg.parse_duration for m in field.metadata)


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, tuple | list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        if not value:
            return "{}"
        return "{ " + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + " }"
    return str(value)


def format_duration(seconds: float) -> str:
    """``300.0`` → ``"5m"``, ``90`` → ``"1m30s"``, ``0.2`` → ``"200ms"`` (parses back to the same value)."""
    ms = round(seconds * 1000)
    if ms == 0:
        return "0s"
    out = ""
    for unit, size in (("h", 3_600_000), ("m", 60_000), ("s", 1000), ("ms", 1)):
        count, ms = divmod(ms, size)
        if count:
            out += f"{count}{unit}"
    return out


# --------------------------------------------------------------------------- the page

HEADER = """\
<!-- Generated from src/lockstep/config.py by `uv run python -m tools.docgen --write`.
     Do not edit by hand: change the models and their Field(description=...),
     and regenerate (tests/test_docs.py fails while this file is stale). -->

# Configuration reference

lockstep reads one TOML file: `--config PATH`, else `$LOCKSTEP_CONFIG`, else
`./lockstep.toml`. It must be a regular file (a symbolic link to one is fine)
of at most 1 MiB, in UTF-8: a directory, FIFO or device (`/dev/zero`) is
refused before anything is read, a larger file after reading at most 1 MiB
(exit 2, one line). Paths in it (git repositories, the audit file) are
relative to the file's directory, and checks run in that directory. Check a
config, and the environment it needs, without contacting anything with
`lockstep validate`; then `lockstep plan` shows what a run would do.

Contents: [a minimal config](#a-minimal-config) ·
""".rstrip("\n")

MINIMAL_CONFIG = """\
[gate]
name = "shop"

[[services]]
name = "api"
repo = "../repos/api.git"
health_url = "${API_STAGING_URL}/health"
version_url = "${API_STAGING_URL}/version"

[[services]]
name = "web"
repo = "../repos/web.git"
health_url = "${WEB_STAGING_URL}/health"
version_url = "${WEB_STAGING_URL}/version"

[[checks]]
name = "smoke"
run = ["./smoke.sh"]
"""

MINIMAL_ENV = {"API_STAGING_URL": "http://127.0.0.1:8001", "WEB_STAGING_URL": "http://127.0.0.1:8002"}

VALUE_TYPES = """\
## Value types

### Durations

A string of one or more `<number><unit>` parts, units `ms`, `s`, `m`, `h`:
`"250ms"`, `"30s"`, `"5m"`, `"1h"`, `"1m30s"`, `"1.5s"`. A bare number is
seconds (`90` = `"90s"`). Negative durations, other units (`"5 minutes"`,
`"2d"`), booleans, `nan`, `inf` and anything longer than 7 days (`"168h"`:
longer than any CI job runs, so surely a typo) are refused.

### Booleans

`records` and `allow_rollback` take the TOML booleans `true` and `false`
only. A string or a number (`records = "yes"`, `allow_rollback = 1`,
`"false"`) is a configuration error naming the key
(`gate.records: must be true or false ...`), never interpreted.

### `${VAR}` substitution

`${NAME}` in any string value, anywhere in the file, is replaced by the
environment variable `NAME`, by lockstep itself: no shell ever sees the value,
so quotes, `$(...)` or `;` in it stay literal. Substitution happens before
validation, so a variable can hold any value type written as a string (a
duration, a URL, a number inside `tracker = "OWNER/REPO#${ISSUE}"`), except a
boolean: a substituted value is a string, and booleans must be `true` or
`false`.

* An unset variable is a configuration error naming the key and the variable
  (`services[0].health_url: environment variable API_STAGING_URL is not set`);
  a variable set to the empty string is substituted as empty.
* Only `${NAME}` with braces is substituted (`NAME` is letters, digits and
  `_`, not starting with a digit); `$NAME` and `${1}` stay as written. There is
  no escape: a literal `${NAME}` cannot be written.
* Keys are never substituted, only values.
* In GitHub Actions pass each variable through the step's `env:` (see the
  [GitHub Actions guide](github-actions.md#secrets-and-variables)).

### Names

A **name** (`[gate] name`, service and check names) is 1 to 100 characters,
letters, digits, `.`, `_` and `-`, starting with a letter or digit. A
**variable name** (`token_env`, the keys of a check's `env`) is letters,
digits and `_`, not starting with a digit.

### URLs

`health_url`, `version_url` and `runbook_url` must be `http://` or `https://`
URLs with a host (after `${VAR}` substitution).

Any URL in the config (these, a git forge `repo`, a check's argument) may hold
credentials, `https://user:password@host/...`: the password is registered as a
secret and never shown. Every output, report and record writes
`https://user:***@host/...` (a user name alone, `https://TOKEN@host`, becomes
`https://***@host`), and under GitHub Actions the password is masked
(`::add-mask::`) before anything is printed. Probes never send credentials to
staging. The value of a token variable (`GITHUB_TOKEN`, `GH_TOKEN` or any
`token_env`) inside `health_url`, `version_url` or `runbook_url`, in the
userinfo, path or query, is refused before anything is contacted (exit 2, one
line naming the key and the variable).
"""

# A config with mistakes, and lines of what lockstep says about it (a test checks that
# each line is really produced for this config).
VALIDATION_EXAMPLE_CONFIG = """\
[gate]
name = "bs lml"
health_timeout = "5 minutes"
colour = "blue"

[[services]]
name = "api"
repo = "api.git"
health_url = "ftp://staging/health"
version_url = "https://staging.example.org/version"
"""

VALIDATION_EXAMPLE_LINES: tuple[str, ...] = (
    "lockstep.toml: gate.name: contains characters that are not allowed "
    "(use letters, digits, '.', '_' or '-')",
    "lockstep.toml: gate.health_timeout: not a duration such as \"30s\", \"5m\" or \"1h\"",
    "lockstep.toml: gate.colour: unknown key",
    "lockstep.toml: services[0].health_url: must be an http:// or https:// URL",
)

DEFAULTS = """\
## Defaults

Everything but `[gate] name`, per service `name`, `repo`, `health_url` and
`version_url`, and per check `name` and one of `run`, `commit_status` and
`check_run` has a default (the tables above), and `[bypass]`, `[recovery]` and
`[[checks]]` may be left out entirely. The defaults give: the
git forge; `main` promoted to `prod`; health polled every 5s for up to 5m; a
10s limit per request; a lock file outside Actions and none inside; promotion
records on; no bypass (no tracker); a split reported, never rolled back; each
check limited to 20m.
"""


def _validation(rules: tuple[str, ...]) -> str:
    cross = "\n".join(f"* {rule}" for rule in rules)
    examples = "\n".join(f"lockstep: {line}" for line in VALIDATION_EXAMPLE_LINES)
    return f"""\
## Validation

A config is checked completely before anything is touched. Each mistake is one
line on stderr naming the file and the key path, and the exit code is 2:

```text
{examples}
```

* Unknown keys are errors (a typo never silently falls back to a default).
* Types are strict: `health_timeout = "5m"` or `300`, not `"five"`; `run` is an
  array, never a string.
* Unset `${{VAR}}`s are reported first, all of them; the other mistakes are
  listed together once every variable is set.
* Rules that involve several keys:
{_indent(cross)}

Some problems can only be seen with the environment and are also exit 2,
found before any request: for the github forge, an unset `GITHUB_TOKEN` (or
`GH_TOKEN`) or `token_env` variable, a `repo` that is not `OWNER/NAME`, an
invalid branch name, a `GITHUB_API_URL` that is not a plain http(s) URL; a
check whose `run` or `env` would spell out a token's value; a bypass without
a `[bypass] tracker` or by an actor not in `allowed_actors`.
`lockstep validate` reports all of these, plus check programs missing from
`PATH` and local repositories that do not exist, without running anything.
"""


def _indent(text: str) -> str:
    return "\n".join(("  " + line) if line else line for line in text.splitlines())


def _table_section(table: Table) -> str:
    if table.array:
        qualifier = "Required, at least one." if table.required else "Optional, any number."
    else:
        qualifier = "Required." if table.required else "Optional."
    intro = f"*{qualifier}* {TABLE_INTROS.get(table.key, '')}"
    lines = [f"## `{table.header}`", "", intro, ""]
    lines += ["| key | type | default | description |", "| --- | --- | --- | --- |"]
    for key in keys(table):
        description = (key.description or "").replace("|", "\\|").replace("\n", " ")
        lines.append(f"| `{key.name}` | {key.type} | {key.default} | {description} |")
    return "\n".join(lines) + "\n"


def render() -> str:
    """The whole of ``docs/configuration.md``; raises DocgenError if a key is undocumented."""
    missing = missing_descriptions()
    if missing:
        raise DocgenError(
            "no description for: " + ", ".join(missing) + ". Add Field(description=...) in "
            "src/lockstep/config.py (or a TABLE_INTROS entry in "
            "tools/docgen.py), then run `uv run python -m tools.docgen --write`."
        )
    found = tables()
    contents = " · ".join(f"[`{t.header}`](#{t.key})" for t in found)
    parts = [
        HEADER + " " + contents + " · [value types](#value-types) · [defaults](#defaults) · "
        "[validation](#validation)\n",
        "## A minimal config\n\n"
        "Two services in local git repositories (the `git` forge, the default), "
        "promoted from `main` to `prod` after one check:\n\n"
        f"```toml\n{MINIMAL_CONFIG}```\n\n"
        "A GitHub gate with two services, a bypass tracker and two checks is in "
        "[`examples/github/lockstep.toml`](../examples/github/lockstep.toml).\n",
        *(_table_section(t) for t in found),
        VALUE_TYPES,
        DEFAULTS,
        _validation(CROSS_KEY_RULES),
    ]
    text = "\n".join(parts)
    return re.sub(r"\n{3,}", "\n\n", text)


# --------------------------------------------------------------------------- command line


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.docgen",
        description="Generate the configuration reference from lockstep's config models.",
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--write", action="store_true",
                      help=f"write {OUTPUT} (relative to the current directory)")
    mode.add_argument("--check", action="store_true",
                      help=f"exit 1 if {OUTPUT} differs from the output")
    parser.add_argument("--output", type=Path, default=OUTPUT,
                        help=f"file for --write/--check (default {OUTPUT})")
    args = parser.parse_args(argv)
    try:
        text = render()
    except DocgenError as exc:
        print(f"tools.docgen: {exc}", file=sys.stderr)
        return 1
    if args.write:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(text, encoding="utf-8")
        print(f"wrote {args.output}", file=sys.stderr)
        return 0
    if args.check:
        try:
            current = args.output.read_text(encoding="utf-8")
        except OSError as exc:
            print(f"tools.docgen: cannot read {args.output}: {exc.strerror}", file=sys.stderr)
            return 1
        if current != text:
            print(f"tools.docgen: {args.output} is stale; run `uv run python -m tools.docgen --write`",
                  file=sys.stderr)
            return 1
        return 0
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

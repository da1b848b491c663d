"""``lockstep.toml`` → a validated, immutable :class:`Config`.

Every problem becomes a :class:`ConfigError` whose lines name the key path
(``services[1].health_url``) or the environment variable to fix, so that a bad
config stops the run before anything is touched.
"""

from __future__ import annotations

import math
import os
import re
import stat
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    ValidationError,
    model_validator,
)

from lockstep import redact
from lockstep.errors import ConfigError
from lockstep.model import service_slug

DEFAULT_CONFIG = "lockstep.toml"
MAX_CONFIG_BYTES = 1024 * 1024  # a real config is a few KiB; anything bigger is a wrong path

_VAR_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


MAX_DURATION = 7 * 24 * 3600.0  # longer than any CI job runs: a longer value is a typo


def parse_duration(value: object) -> float:
    """Parse ``"5m"``, ``"30s"``, ``"1m30s"``, ``"250ms"`` or a number of seconds."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as \"30s\" or \"5m\"")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip().replace(" ", "")
        pos, seconds = 0, 0.0
        for match in _DURATION_RE.finditer(text):
            if match.start() != pos:
                break
            seconds += float(match.group(1)) * _UNITS[match.group(2)]
            pos = match.end()
        if not text or pos != len(text):
            raise ValueError("not a duration such as \"30s\", \"5m\" or \"1h\"")
    else:
        raise ValueError("expected a duration such as \"30s\" or \"5m\"")
    if math.isnan(seconds):
        raise ValueError("not a duration such as \"30s\", \"5m\" or \"1h\"")
    if seconds < 0:
        raise ValueError("a duration cannot be negative")
    if seconds > MAX_DURATION:
        # inf, 1e400 or "99999999h" would wait forever, or overflow the event loop's clock
        raise ValueError("a duration cannot be longer than 7 days (\"168h\")")
    return seconds


def _check_http_url(value: object) -> object:
    if isinstance(value, str):
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            # the value is not echoed: it may hold a substituted ${VAR} (a token in the wrong field)
            raise ValueError("must be an http:// or https:// URL")
    return value


Duration = Annotated[float, BeforeValidator(parse_duration)]
HttpUrl = Annotated[str, BeforeValidator(_check_http_url)]
Name = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")]
EnvName = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class GateConfig(_Strict):
    name: Annotated[
        Name,
        Field(description=(
            'Names the gate: the summary title, the lock (`<name>.lock`, or the ref `lockstep-'
            'lock/<name>`), the promotion records (`refs/lockstep/<name>/records`, or the deployment '
            "environment `<name>/<target>` on GitHub) and, with `lockstep init`, the workflow's "
            'concurrency group `lockstep-<name>`.'
        )),
    ]
    forge: Annotated[
        Literal["git", "github"],
        Field(description=(
            '`git`: any git remote through the `git` command line (a path relative to this file, '
            '`file://`, ssh or https). `github`: the REST API; `repo` is `OWNER/NAME`, reads and '
            "audit comments use `$GITHUB_TOKEN` (else `$GH_TOKEN`), each push its service's "
            '`token_env`, and the API root is `$GITHUB_API_URL` (default `https://api.github.com`).'
        )),
    ] = "git"
    runbook_url: Annotated[
        HttpUrl | None,
        Field(description=(
            'Linked from the split and possible-split callouts in the summary.'
        )),
    ] = None
    health_timeout: Annotated[
        Duration,
        Field(description=(
            'How long to wait, overall, for every `health_url` to answer HTTP 200 (all services are '
            'polled at once). When it runs out the gate blocks (exit 1).'
        )),
    ] = 300.0
    health_interval: Annotated[
        Duration,
        Field(description=(
            'Pause between two health requests to the same service.'
        )),
    ] = 5.0
    request_timeout: Annotated[
        Duration,
        Field(description=(
            'Limit for one HTTP request (health, version, GitHub API) or one git command; the git '
            'forge never uses less than 30s.'
        )),
    ] = 10.0
    lock: Annotated[
        Literal["auto", "local", "ref", "none"],
        Field(description=(
            "`auto`: `local` outside GitHub Actions and `none` inside, where the workflow's "
            '`concurrency` group is the lock. `local`: a lock file '
            '`$XDG_STATE_HOME/lockstep/locks/<name>.lock` (default under `~/.local/state`), one run '
            'per gate on this machine; the kernel releases it if the run dies. `ref` (github forge '
            "only): the branch `lockstep-lock/<name>`, created atomically in the first service's "
            'repository, so coordinators on different machines exclude each other. `none`: no lock.'
        )),
    ] = "auto"
    lock_timeout: Annotated[
        Duration,
        Field(description=(
            'How long a second run waits for the lock (logging who holds it) before giving up (exit '
            '1). Once it has the lock it resolves every head fresh.'
        )),
    ] = 1800.0
    lock_stale_after: Annotated[
        Duration,
        Field(description=(
            '`ref` lock only: after watching a held lock for this long the run gives up (exit 1), '
            'saying the lock is probably stale and printing the command that deletes it. lockstep '
            'never deletes a lock it does not hold.'
        )),
    ] = 7200.0
    records: Annotated[
        StrictBool,
        Field(description=(
            'Keep promotion records: a `started` record before the first push and a `finished` one '
            'after the re-read. `lockstep status` verdicts and `lockstep reconcile` need them; a '
            'record that cannot be written is a warning, never a failure. git: `records.jsonl` on '
            "`refs/lockstep/<name>/records` in the first service's repository. github: see "
            '`records_store`.'
        )),
    ] = True
    records_store: Annotated[
        Literal["branch", "deployments"],
        Field(description=(
            'github: where the records go. `"branch"`: the file `<name>.json` on the branch '
            '`records_branch` of `records_repo`, one write per record whatever the number of '
            'services, in no service repository. `"deployments"`: one deployment per service '
            "repository, shown on each repository's page, at 2 writes per service per run; creating "
            'them sends `deployment` and `deployment_status` events, which start every `on: '
            'deployment` workflow of those repositories.'
        )),
    ] = "branch"
    records_repo: Annotated[
        str | None,
        Field(description=(
            'github: the repository (`OWNER/REPO`) that keeps the promotion records, on its branch '
            '`records_branch`. Unset: the repository of `bypass.tracker`. The read token writes '
            'there, so it needs `Contents: write` on it (the `GITHUB_TOKEN` of a workflow in that '
            'repository, with `contents: write`, starts no workflow by writing).'
        )),
    ] = None
    records_branch: Annotated[
        str,
        Field(description=(
            'github: the branch of `records_repo` that keeps the records (created on first use as '
            'a branch of its own, sharing no history). A `push` workflow in that repository sees '
            'each record write unless it ignores this branch (`branches-ignore`).'
        )),
    ] = "lockstep/records"


class BypassConfig(_Strict):
    tracker: Annotated[
        str | None,
        Field(description=(
            'Where audit records go, each stored before any push. github: `OWNER/REPO#N`, an issue '
            'that receives one comment per record. git: a file, relative to this file, that receives '
            'a markdown section per record (plus one JSON line in `<file>.jsonl`); its directory must'
            ' exist, and the file and its `.jsonl` twin, once they exist, must be regular files, '
            'never symbolic links (a link is not followed: `validate` and, before anything happens, '
            'any `run` or `reconcile` that would write a record refuse it, exit 2). Unset: `--skip-'
            'gate`, `reconcile --justification` and `on_split = "rollback"` are refused.'
        )),
    ] = None
    allowed_actors: Annotated[
        tuple[str, ...],
        Field(description=(
            'Who may bypass. Under GitHub Actions the actor is the account GitHub names '
            '(`$GITHUB_TRIGGERING_ACTOR`, else `$GITHUB_ACTOR`); a different `--actor` is refused. '
            'Elsewhere it is self-declared (`--actor`, else the local user name): there the list '
            'guards against mistakes, not against someone who holds the push tokens. Empty: anyone '
            'who can start a run.'
        )),
    ] = ()


class RecoveryConfig(_Strict):
    allow_rollback: Annotated[
        StrictBool,
        Field(description=(
            'Allow `lockstep reconcile --rollback`, the only command that moves a target backwards '
            '(to the old sha recorded by the run it undoes).'
        )),
    ] = False
    on_split: Annotated[
        Literal["report", "rollback"],
        Field(description=(
            'What `run` does when it leaves a split. `report`: stop, exit 3, print the `reconcile` '
            'command. `rollback`: immediately move the advanced targets back, with an audit record; '
            'exit 1 if every target was restored, 3 if not. Needs `allow_rollback = true` and '
            '`[bypass] tracker`.'
        )),
    ] = "report"


class ServiceConfig(_Strict):
    name: Annotated[
        Name,
        Field(description=(
            'Names the service in the summary, in `LOCKSTEP_<NAME>_SHA` (upper-cased, every run of '
            'other characters `_`) and in the Actions outputs (`<slug>_did_push`, lower-cased). '
            'Unique, ignoring case, in both forms.'
        )),
    ]
    repo: Annotated[
        str,
        Field(min_length=1, description=(
            'github: `OWNER/NAME`. git: a path (relative to this file), a `file://`, ssh or https '
            'URL.'
        )),
    ]
    source: Annotated[
        str,
        Field(min_length=1, description=(
            'The branch promoted from. Its head, read fresh by every run, is the only sha the target '
            'is ever moved to. A missing source branch is an error.'
        )),
    ] = "main"
    target: Annotated[
        str,
        Field(min_length=1, description=(
            'The branch promoted to, fast-forward only and compare-and-swap on the head this run '
            'read. A missing target branch is created (seeded) at the source sha.'
        )),
    ] = "prod"
    token_env: Annotated[
        EnvName | None,
        Field(description=(
            'The environment variable holding a token that may push this repository. Required for the'
            ' github forge (fine-grained token: *Contents: read and write*, plus *Deployments: read '
            'and write* with `records_store = "deployments"`). Whatever the forge, the variable is '
            "removed from every check's "
            'environment and its value is shown as `***` in every output, report and record.'
        )),
    ] = None
    health_url: Annotated[
        HttpUrl,
        Field(description=(
            'Polled until it answers HTTP 200, every `health_interval`, up to `health_timeout`.'
        )),
    ]
    version_url: Annotated[
        HttpUrl,
        Field(description=(
            'Fetched once, after health passes; the value at `version_field` in its JSON must equal '
            'the resolved source sha exactly (a short sha is a mismatch). Bodies over 64 KiB are '
            'refused.'
        )),
    ]
    version_field: Annotated[
        str,
        Field(pattern=r"^[^.\s]+(\.[^.\s]+)*$", description=(
            'Dotted path into the `/version` JSON, e.g. `build.commit` for `{"build": {"commit": '
            '"…"}}`.'
        )),
    ] = "sha"

    @property
    def slug(self) -> str:
        """The upper-case identifier used in ``LOCKSTEP_<SLUG>_SHA``."""
        return service_slug(self.name)

    @property
    def output_slug(self) -> str:
        """The lower-case identifier used for Actions output names."""
        return self.slug.lower()


def _check_external_name(value: object) -> object:
    """A status context or check run name: GitHub allows spaces, ``/`` and ``:``, not control characters."""
    if isinstance(value, str):
        if not value.strip():
            raise ValueError("must not be empty")
        if len(value) > 255:
            raise ValueError("must be at most 255 characters")
        if any(ord(ch) < 0x20 or 0x7F <= ord(ch) <= 0x9F for ch in value):
            raise ValueError("must not contain control characters")
    return value


ExternalName = Annotated[str, BeforeValidator(_check_external_name)]
_CHECK_KINDS = ("run", "commit_status", "check_run")


class CheckConfig(_Strict):
    """One gate check: a command (``run``) or, on GitHub, a required commit status / check run.

    Exactly one of ``run``, ``commit_status`` and ``check_run`` is given.
    ``run`` is ``()`` for an external check, so code that only handles
    commands must ask :attr:`external` first.
    """

    name: Annotated[
        Name,
        Field(description=(
            'Names the check in the log (each output line is prefixed `[name]`) and in the report. '
            'Unique, ignoring case.'
        )),
    ]
    run: Annotated[
        tuple[Annotated[str, Field(min_length=1)], ...],
        Field(min_length=1, description=(
            "A command check: the argv array, run directly, never by a shell, in this file's "
            'directory; `run[0]` is found on `PATH`, or relative to that directory when it contains a'
            ' `/`. Exit 0 passes. Each check has exactly one of `run`, `commit_status` and '
            '`check_run`.'
        )),
    ] = ()
    commit_status: Annotated[
        ExternalName | None,
        Field(description=(
            'An external check (github forge): the context of a GitHub commit status that must be '
            "`success` on each service's source sha resolved in this run. Polled until conclusive: "
            '`failure` or `error` fails at once; pending or missing keeps polling until `timeout`. '
            'The read token also needs *Commit statuses: read*.'
        )),
    ] = None
    check_run: Annotated[
        ExternalName | None,
        Field(description=(
            'An external check (github forge): the name of a GitHub check run that must have '
            "concluded `success` on each service's source sha (the newest run of that name counts, so"
            ' a re-run supersedes a failure). Any other conclusion, `neutral` and `skipped` included,'
            ' fails. The read token also needs *Checks: read*.'
        )),
    ] = None
    services: Annotated[
        Annotated[tuple[Name, ...], Field(min_length=1)] | None,
        Field(description=(
            '`commit_status` / `check_run` only: the services whose source shas must carry the result'
            ' (names from `[[services]]`). Not set: every service.'
        )),
    ] = None
    env: Annotated[
        Mapping[EnvName, str],
        Field(description=(
            "`run` checks only: variables added to the check's environment, which is lockstep's own "
            'minus every token variable, plus `LOCKSTEP_<SERVICE>_SHA` for each service.'
        )),
    ] = Field(default_factory=dict)
    timeout: Annotated[
        Duration,
        Field(description=(
            "`run`: after this long the check's whole process group is killed. `commit_status` / "
            '`check_run`: how long to wait for a conclusive result. Either way the gate then blocks.'
        )),
    ] = 1200.0
    interval: Annotated[
        Duration,
        Field(description=(
            '`commit_status` / `check_run` only: pause between two polls while a result is pending or'
            ' missing (more than 0s).'
        )),
    ] = 10.0

    @model_validator(mode="after")
    def _one_kind(self) -> CheckConfig:
        given = [k for k in _CHECK_KINDS if k in self.model_fields_set]
        if len(given) != 1:
            found = f"got {' and '.join(given)}" if given else "got none"
            raise ValueError(f"needs exactly one of run, commit_status or check_run ({found})")
        if self.external is None:
            for key in ("services", "interval"):
                if key in self.model_fields_set:
                    raise ValueError(f"{key} applies only to commit_status / check_run checks")
        else:
            if "env" in self.model_fields_set:
                raise ValueError("env applies only to run checks (an external check runs no command)")
            if self.interval <= 0:
                raise ValueError("interval must be more than 0s")
        return self

    @property
    def external(self) -> Literal["commit_status", "check_run"] | None:
        """Which GitHub record this check waits for, or None for a command."""
        if self.commit_status is not None:
            return "commit_status"
        if self.check_run is not None:
            return "check_run"
        return None

    @property
    def external_name(self) -> str:
        """The status context or check run name ("" for a command)."""
        return self.commit_status or self.check_run or ""


class Config(_Strict):
    gate: GateConfig
    bypass: BypassConfig = BypassConfig()
    services: Annotated[tuple[ServiceConfig, ...], Field(min_length=1)]
    checks: tuple[CheckConfig, ...] = ()
    recovery: RecoveryConfig = RecoveryConfig()
    base_dir: Path = Path(".")

    @model_validator(mode="after")
    def _unique(self) -> Config:
        for what, names in (
            ("services", [s.name for s in self.services]),
            ("services (as LOCKSTEP_<NAME>_SHA)", [s.slug for s in self.services]),
            ("checks", [c.name for c in self.checks]),
        ):
            seen: set[str] = set()
            for n in names:
                if n.lower() in seen:
                    raise ValueError(f"duplicate name {n!r} in {what}")
                seen.add(n.lower())
        known = {s.name for s in self.services}
        for i, check in enumerate(self.checks):
            if check.external is None:
                continue
            where = f"checks[{i}] ({check.name}).{check.external}"
            if self.gate.forge != "github":
                raise ValueError(
                    f'{where}: needs forge = "github" (commit statuses and check runs are read from GitHub)'
                )
            unknown = [n for n in check.services or () if n not in known]
            if unknown:
                raise ValueError(
                    f"checks[{i}] ({check.name}).services: unknown service {unknown[0]!r} "
                    f"(services are: {', '.join(sorted(known))})"
                )
        self._records_place()
        if self.gate.lock == "ref" and self.gate.forge != "github":
            raise ValueError('gate.lock = "ref" needs forge = "github" (the git forge uses "local")')
        if self.recovery.on_split == "rollback":
            if not self.recovery.allow_rollback:
                raise ValueError('recovery.on_split = "rollback" needs recovery.allow_rollback = true')
            if not self.bypass.tracker:
                raise ValueError('recovery.on_split = "rollback" needs bypass.tracker for its audit record')
        return self

    def _records_place(self) -> None:
        """Where the records go must be knowable from the config alone (``validate`` says so)."""
        gate = self.gate
        if gate.forge == "github":
            placed = gate.records_repo or self.bypass.tracker
            if gate.records and gate.records_store == "branch" and not placed:
                raise ValueError(
                    "gate.records_repo: not set, and there is no bypass.tracker to keep the records "
                    'beside: name the repository (OWNER/REPO) that keeps the promotion records, or set '
                    'records_store = "deployments" or records = false'
                )
            return
        if gate.records_store != "branch" or gate.records_repo is not None:
            raise ValueError(
                'gate.records_store and gate.records_repo need forge = "github" (the git forge keeps its '
                "records on a ref of the first service's repository)"
            )

    def tracker_path(self) -> Path | None:
        """The git forge's audit file, relative to the config's directory.

        Only its directory is resolved: resolving the file itself would follow
        a symbolic link planted there, which the audit sink refuses.
        """
        if not self.bypass.tracker:
            return None
        path = self.base_dir / self.bypass.tracker
        return path.parent.resolve() / path.name


_NAMES_KEY = re.compile(r"(gate|bypass|recovery|services|checks)[.\[]")


def _loc(parts: tuple[int | str, ...]) -> str:
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + part
    return out or "(top level)"


def _substitute(value: Any, env: Mapping[str, str], path: tuple[int | str, ...], errors: list[str]) -> Any:
    if isinstance(value, str):
        def repl(m: re.Match[str]) -> str:
            var = m.group(1)
            if var not in env:
                errors.append(f"{_loc(path)}: environment variable {var} is not set")
                return ""
            return env[var]

        return _VAR_RE.sub(repl, value)
    if isinstance(value, list):
        return [_substitute(v, env, (*path, i), errors) for i, v in enumerate(value)]
    if isinstance(value, dict):
        return {k: _substitute(v, env, (*path, k), errors) for k, v in value.items()}
    return value


def _describe(err: Mapping[str, Any]) -> str:
    loc = _loc(tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-"))))
    kind = err["type"]
    if kind == "extra_forbidden":
        return f"{loc}: unknown key"
    if kind == "missing":
        return f"{loc}: required key is missing"
    msg = str(err["msg"]).removeprefix("Value error, ")
    if kind == "string_pattern_mismatch":
        msg = "contains characters that are not allowed (use letters, digits, '.', '_' or '-')"
        if loc.endswith("version_field"):
            msg = "must be a dotted path such as \"sha\" or \"build.commit\""
        if loc.endswith("token_env"):
            msg = "must be an environment variable name"
    if kind == "literal_error":
        msg = f"must be one of {err['ctx']['expected']}"
    if kind == "bool_type":  # StrictBool: "yes", 1 or "true" used to pass as true
        msg = "must be true or false (a TOML boolean, not a string or a number)"
    if loc == _loc(()) and _NAMES_KEY.match(msg):
        return msg  # a check across tables already names its key ("gate.records_repo: ...")
    return f"{loc}: {msg}"


def parse_config(text: str, *, env: Mapping[str, str], source: str, base_dir: Path) -> Config:
    """Parse and validate config text; raise :class:`ConfigError` listing every problem."""
    try:
        return _parse_config(text, env=env, source=source, base_dir=base_dir)
    except RecursionError:  # tomllib, the substitution and pydantic all recurse into nested values
        raise ConfigError(f"{source}: arrays or tables nested too deeply to read") from None


def _parse_config(text: str, *, env: Mapping[str, str], source: str, base_dir: Path) -> Config:
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML: {exc}") from None
    errors: list[str] = []
    raw = _substitute(raw, env, (), errors)
    if errors:
        raise ConfigError("\n".join(f"{source}: {e}" for e in errors))
    raw["base_dir"] = base_dir
    try:
        return Config.model_validate(raw)
    except ValidationError as exc:
        details = exc.errors(include_url=False)
        # a list whose items failed also reports "too short"; the item errors already say it all
        item_locs = {tuple(e["loc"][:1]) for e in details if len(e["loc"]) > 1}
        details = [e for e in details if not (e["type"] == "too_short" and tuple(e["loc"]) in item_locs)]
        lines = [f"{source}: {_describe(e)}" for e in details]
        raise ConfigError("\n".join(lines)) from None


def config_path(explicit: str | None, env: Mapping[str, str]) -> Path:
    return Path(explicit or env.get("LOCKSTEP_CONFIG") or DEFAULT_CONFIG)


def load_config(path: Path, env: Mapping[str, str] | None = None) -> Config:
    """Read ``path`` and validate it against ``env`` (default: the process environment).

    The secrets the config brings (token variables' values, URL passwords) are
    registered with :mod:`lockstep.redact` at once, so no later output can show them.
    """
    env = os.environ if env is None else env
    config = parse_config(read_config_text(path), env=env, source=str(path), base_dir=path.resolve().parent)
    redact.register_config(config, env)
    return config


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"


def read_config_text(path: Path) -> str:
    """The config's text, read only from a regular file of at most :data:`MAX_CONFIG_BYTES`.

    ``--config /dev/zero`` used to grow without bound (ignoring Ctrl-C) and a
    FIFO blocked forever: the file is opened non-blocking and checked with
    ``fstat`` before a byte is read, and reading stops one byte past the limit
    in case it grows meanwhile.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise ConfigError(
            f"{path}: config file not found (pass --config PATH or set LOCKSTEP_CONFIG)"
        ) from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config: {exc.strerror or exc}") from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise ConfigError(f"{path}: the config must be a regular file, this is {_kind(mode)}")
    with os.fdopen(fd, "rb") as handle:
        try:
            data = handle.read(MAX_CONFIG_BYTES + 1)
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read config: {exc.strerror or exc}") from None
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{path}: the config is larger than {MAX_CONFIG_BYTES // 1024 // 1024} MiB")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: cannot read config: {exc}") from None
    return text.replace("\r\n", "\n").replace("\r", "\n")  # as text-mode reading did

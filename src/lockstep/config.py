"""``lockstep.toml`` → a validated, immutable :class:`Config`.

Every problem becomes a :class:`ConfigError` whose lines name the key path
(``services[1].health_url``) or the environment variable to fix, so that a bad
config stops the run before anything is touched.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from lockstep.errors import ConfigError

DEFAULT_CONFIG = "lockstep.toml"

_VAR_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


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
            raise ValueError(f"{value!r} is not a duration such as \"30s\", \"5m\" or \"1h\"")
    else:
        raise ValueError("expected a duration such as \"30s\" or \"5m\"")
    if seconds < 0:
        raise ValueError("a duration cannot be negative")
    return seconds


def _check_http_url(value: object) -> object:
    if isinstance(value, str):
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"must be an http:// or https:// URL, got {value!r:.80}")
    return value


Duration = Annotated[float, BeforeValidator(parse_duration)]
HttpUrl = Annotated[str, BeforeValidator(_check_http_url)]
Name = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")]
EnvName = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class GateConfig(_Strict):
    name: Name
    forge: Literal["git", "github"] = "git"
    runbook_url: HttpUrl | None = None
    health_timeout: Duration = 300.0
    health_interval: Duration = 5.0
    request_timeout: Duration = 10.0
    lock: Literal["auto", "local", "ref", "none"] = "auto"
    lock_timeout: Duration = 1800.0
    lock_stale_after: Duration = 7200.0
    records: bool = True


class BypassConfig(_Strict):
    tracker: str | None = None
    allowed_actors: tuple[str, ...] = ()


class RecoveryConfig(_Strict):
    allow_rollback: bool = False
    on_split: Literal["report", "rollback"] = "report"


class ServiceConfig(_Strict):
    name: Name
    repo: Annotated[str, Field(min_length=1)]
    source: Annotated[str, Field(min_length=1)] = "main"
    target: Annotated[str, Field(min_length=1)] = "prod"
    token_env: EnvName | None = None
    health_url: HttpUrl
    version_url: HttpUrl
    version_field: Annotated[str, Field(pattern=r"^[^.\s]+(\.[^.\s]+)*$")] = "sha"

    @property
    def slug(self) -> str:
        """The upper-case identifier used in ``LOCKSTEP_<SLUG>_SHA``."""
        return re.sub(r"[^A-Z0-9]+", "_", self.name.upper()).strip("_")

    @property
    def output_slug(self) -> str:
        """The lower-case identifier used for Actions output names."""
        return self.slug.lower()


class CheckConfig(_Strict):
    name: Name
    run: Annotated[tuple[Annotated[str, Field(min_length=1)], ...], Field(min_length=1)]
    env: Mapping[EnvName, str] = Field(default_factory=dict)
    timeout: Duration = 1200.0


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
        if self.recovery.on_split == "rollback":
            if not self.recovery.allow_rollback:
                raise ValueError('recovery.on_split = "rollback" needs recovery.allow_rollback = true')
            if not self.bypass.tracker:
                raise ValueError('recovery.on_split = "rollback" needs bypass.tracker for its audit record')
        return self

    def tracker_path(self) -> Path | None:
        """The git forge's audit file, relative to the config's directory."""
        if not self.bypass.tracker:
            return None
        return (self.base_dir / self.bypass.tracker).resolve()


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
    return f"{loc}: {msg}"


def parse_config(text: str, *, env: Mapping[str, str], source: str, base_dir: Path) -> Config:
    """Parse and validate config text; raise :class:`ConfigError` listing every problem."""
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
        lines = [f"{source}: {_describe(e)}" for e in exc.errors(include_url=False)]
        raise ConfigError("\n".join(lines)) from None


def config_path(explicit: str | None, env: Mapping[str, str]) -> Path:
    return Path(explicit or env.get("LOCKSTEP_CONFIG") or DEFAULT_CONFIG)


def load_config(path: Path, env: Mapping[str, str] | None = None) -> Config:
    """Read ``path`` and validate it against ``env`` (default: the process environment)."""
    env = os.environ if env is None else env
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"{path}: config file not found (pass --config PATH or set LOCKSTEP_CONFIG)"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read config: {exc}") from None
    return parse_config(text, env=env, source=str(path), base_dir=path.resolve().parent)

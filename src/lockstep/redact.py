"""Making text safe to show: the one place that knows lockstep's secrets and hides them.

Every path that prints, reports, records or raises text goes through :func:`scrub`
(log lines, the progress view, the summary, the JSON report, ``$GITHUB_OUTPUT``,
the step summary and annotations, promotion and audit records, ``status``,
``plan`` and ``validate`` output, CLI errors), so a secret only has to be known
here to be hidden everywhere.  Two kinds of secret are hidden, each as ``***``:

* **registered values**: the value of every token variable (:func:`token_vars`),
  every password in a URL the config holds (:func:`register_config`), and the
  value of any variable whose name looks secret (:func:`register_environment`:
  a ``${VAR}`` may have put it anywhere before lockstep knew what it was);
* **any URL userinfo** in any text, registered or not:
  ``https://user:pass@host`` becomes ``https://user:***@host`` and
  ``https://token@host`` becomes ``https://***@host`` (git, httpx and servers
  echo URLs back).  A lone user name is kept for ssh, where it is a login.

:func:`clean_text` is the one sanitiser for text lockstep does not control (a
server's message, git's stderr, an exception from a library): scrubbed, one
printable line, bounded.  Values shorter than :data:`MIN_SECRET` are never
registered: hiding them would mangle ordinary words and protect nothing.
"""

from __future__ import annotations

import dataclasses
import re
import unicodedata
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import unquote

if TYPE_CHECKING:
    from lockstep.config import Config

__all__ = [
    "MASK",
    "MIN_SECRET",
    "READ_TOKEN_VARS",
    "UNSAFE_CATEGORIES",
    "Secrets",
    "add",
    "clean_text",
    "config_url_secrets",
    "register_config",
    "register_environment",
    "scrub",
    "scrub_data",
    "token_vars",
    "url_secrets",
]

MASK = "***"
MIN_SECRET = 4
#: Where lockstep reads the read token from, in this order (the github forge, ``dispatch``).
READ_TOKEN_VARS = ("GITHUB_TOKEN", "GH_TOKEN")
#: Characters :func:`clean_text` drops: controls, format (bidi, zero-width), surrogates,
#: private use, unassigned, line and paragraph separators (all that ``str.isprintable``
#: refuses, except spaces, which become one plain space).
UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})
DEFAULT_LIMIT = 300

_NAMED_SECRET = re.compile(r"TOKEN|SECRET|PASSW|PRIVATE|CREDENTIAL|(^|_)KEY($|_)|(^|_)PAT($|_)")
_NAMED_SECRET_MIN = 8  # a guess from a name: short values ("true", "1") are not worth hiding
# scheme://userinfo@ : the userinfo runs to the authority's last "@" (as urlsplit reads it);
# the scheme is bounded so a long run of letters costs linear time, not quadratic.
_USERINFO_RE = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]{0,31})://(?P<userinfo>[^\s/?#<>\"`{}|\\^]*)@")
_LOGIN_SCHEMES = frozenset({"ssh", "sftp"})  # also as part of git+ssh, ssh+git
_MAX_PASSES = 64

T = TypeVar("T")


def _userinfo_secret(scheme: str, userinfo: str) -> str | None:
    """The secret part of a URL's userinfo: the password, else a user name that may be a token."""
    user, colon, password = userinfo.partition(":")
    if colon:
        return password
    if _LOGIN_SCHEMES.intersection(scheme.lower().split("+")):
        return None
    return user


def _mask_userinfo(match: re.Match[str]) -> str:
    scheme, userinfo = match["scheme"], match["userinfo"]
    secret = _userinfo_secret(scheme, userinfo)
    if not secret:
        return match.group(0)
    user, colon, _ = userinfo.partition(":")
    return f"{scheme}://{user}:{MASK}@" if colon else f"{scheme}://{MASK}@"


class Secrets:
    """A set of values to hide and the scrubber that hides them (and every URL's userinfo).

    lockstep uses one process-wide instance through the module functions; a
    separate instance is only for code that must not touch it (tests).
    """

    def __init__(self) -> None:
        self._values: set[str] = set()
        self._longest_first: tuple[str, ...] = ()

    def add(self, *values: str, min_len: int = MIN_SECRET) -> None:
        """Hide these values from now on (those shorter than ``min_len`` are ignored)."""
        new = {v for v in values if len(v) >= max(min_len, MIN_SECRET)} - self._values
        if new:
            self._values |= new
            self._longest_first = tuple(sorted(self._values, key=len, reverse=True))

    def scrub(self, text: str) -> str:
        """``text`` with every registered value and every URL userinfo secret replaced by ``***``.

        Repeated until nothing changes: a replacement can join two pieces into a
        secret again, and text that cannot be settled is hidden entirely.
        """
        for _ in range(_MAX_PASSES):
            before = text
            for value in self._longest_first:
                if value in text:
                    text = text.replace(value, MASK)
            if "://" in text and "@" in text:
                text = _USERINFO_RE.sub(_mask_userinfo, text)
            if text == before:
                return text
        return MASK


_registry = Secrets()


def add(*values: str) -> None:
    """Register values that must never be shown (tokens, passwords)."""
    _registry.add(*values)


def scrub(text: str) -> str:
    """``text`` without any registered secret or URL userinfo secret (see the module docstring)."""
    return _registry.scrub(text)


def scrub_data(value: T) -> T:
    """A copy of ``value`` (strings, dicts, lists, tuples, dataclasses) with every string scrubbed.

    For structured output (JSON, records): scrubbing the serialised text would miss
    a secret that serialisation escaped (a quote, a backslash, non-ASCII).
    """
    return _scrub_any(value)  # type: ignore[no-any-return]


def _scrub_any(value: Any) -> Any:
    if isinstance(value, str):
        cleaned = scrub(value)
        return value if cleaned == value else cleaned  # keeps Sha and StrEnum values as they are
    if isinstance(value, dict):
        return {_scrub_any(k): _scrub_any(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub_any(v) for v in value]
    if isinstance(value, tuple):
        items = [_scrub_any(v) for v in value]
        return type(value)(*items) if hasattr(value, "_fields") else tuple(items)  # a NamedTuple
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        changes = {
            f.name: _scrub_any(getattr(value, f.name)) for f in dataclasses.fields(value) if f.init
        }
        return dataclasses.replace(value, **changes)
    return value


def clean_text(text: str, limit: int = DEFAULT_LIMIT) -> str:
    """One printable line of untrusted text, secrets hidden, at most ``limit`` characters.

    Every run of whitespace (line breaks included) becomes one space and
    :data:`UNSAFE_CATEGORIES` characters are dropped, so a server or a child
    process cannot forge a log line, hide text with bidi controls or emit a
    workflow command.  Secrets are hidden before anything is cut, so no prefix
    of one survives.
    """
    line = scrub(" ".join("".join(_printable(scrub(text))).split()))
    if len(line) > limit:
        line = line[: max(limit - 1, 0)].rstrip() + "…"
    return line


def _printable(line: str) -> Iterator[str]:
    for ch in line:
        if ch.isspace():
            yield " "
        elif unicodedata.category(ch) not in UNSAFE_CATEGORIES:
            yield ch


def url_secrets(texts: Iterable[str]) -> list[str]:
    """Every URL userinfo secret (see :func:`scrub`) of at least :data:`MIN_SECRET` characters
    in ``texts``, as written and percent-decoded (a library may show either)."""
    found: dict[str, None] = {}
    for text in texts:
        for match in _USERINFO_RE.finditer(text):
            secret = _userinfo_secret(match["scheme"], match["userinfo"]) or ""
            for form in (secret, unquote(secret)):
                if len(form) >= MIN_SECRET:
                    found[form] = None
    return list(found)


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list | tuple):
        for v in value:
            yield from _strings(v)


def config_url_secrets(config: Config) -> list[str]:
    """The URL userinfo secrets anywhere in ``config`` (repo, staging URLs, check arguments...)."""
    return url_secrets(_strings(config.model_dump()))


def token_vars(config: Config, *, read: bool = True) -> tuple[str, ...]:
    """The variables holding a token for ``config``: the read token's (unless ``read`` is
    false), then each service's push token (``token_env``)."""
    push = (s.token_env for s in config.services if s.token_env)
    return tuple(dict.fromkeys((*(READ_TOKEN_VARS if read else ()), *push)))


def check_secret_vars(config: Config) -> frozenset[str]:
    """The token variables removed from (and refused in) checks: each push token, and the read
    token on the github forge. On the git forge ``GITHUB_TOKEN``/``GH_TOKEN`` are not lockstep's
    tokens, so a check that needs one (``gh``, an API call) still gets it."""
    return frozenset(token_vars(config, read=config.gate.forge == "github"))


def register_config(config: Config, env: Mapping[str, str]) -> None:
    """Hide the token variables' values and the URL passwords in ``config`` from every output."""
    values = [env.get(name, "") for name in token_vars(config)]
    add(*values, *(value.strip() for value in values), *config_url_secrets(config))


def register_environment(env: Mapping[str, str]) -> None:
    """Hide the value of every variable whose name looks secret (``*TOKEN*``, ``*PASSWORD*``, ``*_KEY``...).

    A config error may quote a value that ``${VAR}`` filled in before lockstep
    knew which variables hold tokens; registering these first covers that.
    """
    _registry.add(
        *(value for name, value in env.items() if _NAMED_SECRET.search(name.upper())),
        min_len=_NAMED_SECRET_MIN,
    )

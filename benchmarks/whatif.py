"""Run the real ``lockstep`` CLI with one or more *what-if* patches applied first (benchmark helper).

Each patch imitates a change recommended in docs/performance.md without
touching ``src/``, so its effect can be measured on the same world:

``sniffio``
    Make ``import sniffio`` succeed (a stub that answers "asyncio", exactly
    what httpcore assumes when the import fails).  httpcore 1.0.9 retries the
    failed import on every lock/event set-up (encode/httpcore#1103): the fix
    is to depend on ``sniffio``.
``httpx-cli``
    Keep ``httpx`` from importing its command line (``httpx._main`` pulls in
    click, rich.console, rich.progress and pygments whenever they are
    installed, which lockstep's own dependencies guarantee).
``ssl-once``
    Build the default TLS context once and share it (httpx builds one per
    client and loads the CA bundle each time; lockstep builds three clients).
``fast-exit``
    Flush and ``os._exit`` after the command instead of tearing down the
    interpreter (how much the teardown costs).

Usage: ``python -m benchmarks.whatif [--patch NAME]... -- <lockstep arguments>``.
"""

from __future__ import annotations

import functools
import os
import sys
import types
from typing import Any

PATCHES = ("sniffio", "httpx-cli", "ssl-once", "fast-exit")


def apply(patches: set[str]) -> None:
    if "sniffio" in patches and "sniffio" not in sys.modules:
        stub = types.ModuleType("sniffio")
        stub.current_async_library = lambda: "asyncio"  # type: ignore[attr-defined]
        sys.modules["sniffio"] = stub
    if "httpx-cli" in patches:
        sys.modules["httpx._main"] = None  # type: ignore[assignment]  # httpx then defines a stub main
    if "ssl-once" in patches:
        import httpx._transports.default as default

        original = default.create_ssl_context  # type: ignore[attr-defined]

        @functools.cache
        def _default_context(trust_env: bool) -> Any:
            return original(verify=True, cert=None, trust_env=trust_env)

        def shared(verify: Any = True, cert: Any = None, trust_env: bool = True) -> Any:
            if verify is True and cert is None:
                return _default_context(trust_env)
            return original(verify=verify, cert=cert, trust_env=trust_env)

        default.create_ssl_context = shared  # type: ignore[attr-defined]


def main() -> None:
    args = sys.argv[1:]
    patches: set[str] = set()
    while args[:1] == ["--patch"]:
        name = args[1]
        if name not in PATCHES:
            raise SystemExit(f"whatif: unknown patch {name!r} (known: {', '.join(PATCHES)})")
        patches.add(name)
        args = args[2:]
    if args[:1] == ["--"]:
        args = args[1:]
    apply(patches)
    sys.argv = ["lockstep", *args]
    from lockstep.cli import main as cli_main

    try:
        cli_main()
    except SystemExit as exc:
        if "fast-exit" not in patches:
            raise
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


if __name__ == "__main__":
    main()

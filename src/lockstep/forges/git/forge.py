"""The git forge: any git remote (path, ``file://``, ssh, https) through the git CLI.

Heads are read with ``git ls-remote`` (exact ref names, never a pattern
match).  Ancestry needs the objects, so each remote gets a bare cache
repository that fetches the two branches; pushes go from that cache with
``--force-with-lease=<ref>:<old sha>`` so the remote refuses unless the target
is still exactly where this run read it.  The lease alone would allow a
non-fast-forward, so ``advance`` re-checks ancestry on the exact shas first:
with the lease pinned to ``old`` and ``old`` an ancestor of ``new``, the update
is a fast-forward by construction.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import re
import signal
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from lockstep import log
from lockstep.config import ServiceConfig
from lockstep.errors import ForgeError
from lockstep.model import Heads, PushResult, PushStatus, Sha, TargetCheck
from lockstep.redact import clean_text

_GIT_ENV = {
    "GIT_TERMINAL_PROMPT": "0",  # never hang on a credential prompt
    "GIT_ASKPASS": "",
    "SSH_ASKPASS": "",
    "GCM_INTERACTIVE": "never",
    "LC_ALL": "C",
    "GIT_OPTIONAL_LOCKS": "0",
}


class GitResult:
    __slots__ = ("code", "err", "out")

    def __init__(self, code: int, out: str, err: str) -> None:
        self.code, self.out, self.err = code, out, err


def _message(stderr: str) -> str:
    """git's stderr as one line: its lines joined with "; " (they are separate messages), cleaned."""
    return clean_text("; ".join(line.strip() for line in stderr.splitlines() if line.strip()))


class GitForge:
    """Forge over the git CLI, with one bare object cache per remote."""

    def __init__(
        self,
        *,
        base_dir: Path,
        cache_dir: Path | None = None,
        timeout: float = 60.0,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self._base_dir = base_dir
        self._own_tmp: tempfile.TemporaryDirectory[str] | None = None
        if cache_dir is None:
            self._own_tmp = tempfile.TemporaryDirectory(prefix="lockstep-git-")
            cache_dir = Path(self._own_tmp.name)
        self._cache_dir = cache_dir
        self._timeout = timeout
        self._env = {**(os.environ if env is None else env), **_GIT_ENV}
        self._cache_locks: dict[str, asyncio.Lock] = {}
        self._ready: set[str] = set()
        self._ancestry: dict[tuple[str, str, str], bool] = {}
        self._present: set[tuple[Path, str]] = set()

    # -- plumbing -------------------------------------------------------------

    def remote(self, service: ServiceConfig) -> str:
        """The remote as git should see it: relative paths are relative to the config."""
        repo = service.repo
        if re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", repo) or re.match(r"^[^/]+@[^:/]+:", repo):
            return repo
        return str((self._base_dir / repo).resolve())

    async def run_git(
        self, args: Sequence[str], *, cwd: Path | None = None, input: bytes | None = None
    ) -> GitResult:
        """Run git with this forge's environment (never a prompt, C locale) in its own session, so a
        signal to lockstep's terminal never reaches it; the records store shares it."""
        proc = await asyncio.create_subprocess_exec(
            "git",
            *args,
            cwd=cwd,
            env=self._env,
            stdin=asyncio.subprocess.DEVNULL if input is None else asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
        try:
            out, err = await asyncio.wait_for(proc.communicate(input), self._timeout)
        except (TimeoutError, asyncio.CancelledError):
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)  # git and its helpers (ssh, receive-pack)
                await proc.wait()
            raise
        assert proc.returncode is not None
        return GitResult(proc.returncode, out.decode("utf-8", "replace"), err.decode("utf-8", "replace"))

    async def _ls_remote(self, service: ServiceConfig, branches: Sequence[str]) -> dict[str, Sha]:
        refs = [f"refs/heads/{b}" for b in branches]
        try:
            res = await self.run_git(["ls-remote", "--", self.remote(service), *refs])
        except TimeoutError:
            raise ForgeError(
                f"{service.repo}: reading {', '.join(branches)} timed out after {self._timeout:.0f}s",
                transient=True,
            ) from None
        if res.code != 0:
            raise ForgeError(f"{service.repo}: cannot read branches: {_message(res.err)}")
        found: dict[str, Sha] = {}
        for line in res.out.splitlines():
            sha, _, ref = line.partition("\t")
            if ref in refs:  # exact names only; ls-remote patterns also match suffixes
                try:
                    found[ref.removeprefix("refs/heads/")] = Sha(sha)
                except ValueError:
                    raise ForgeError(f"{service.repo}: {ref} has an invalid sha {sha!r:.50}") from None
        return found

    # -- Forge protocol -------------------------------------------------------

    async def read_heads(self, service: ServiceConfig) -> Heads:
        found = await self._ls_remote(service, [service.source, service.target])
        if service.source not in found:
            raise ForgeError(f"{service.repo}: source branch '{service.source}' not found")
        return Heads(source=found[service.source], target=found.get(service.target))

    async def read_target(self, service: ServiceConfig) -> Sha | None:
        return (await self._ls_remote(service, [service.target])).get(service.target)

    async def object_cache(self, service: ServiceConfig) -> Path:
        """The bare repository this run fetches ``service``'s remote into (one per remote)."""
        remote = self.remote(service)
        key = hashlib.sha256(remote.encode()).hexdigest()[:16]
        path = self._cache_dir / key
        lock = self._cache_locks.setdefault(key, asyncio.Lock())
        async with lock:
            if key not in self._ready:
                if not (path / "HEAD").exists():
                    path.mkdir(parents=True, exist_ok=True)
                    res = await self.run_git(["init", "--quiet", "--bare", str(path)])
                    if res.code != 0:
                        raise ForgeError(f"cannot create git cache {path}: {_message(res.err)}")
                self._ready.add(key)
        return path

    async def _fetch(self, service: ServiceConfig, shas: Sequence[Sha]) -> Path:
        """Make sure the cache has every sha, fetching the service's two branches if not."""
        cache = await self.object_cache(service)
        if await self._have(cache, shas):
            return cache
        ns = f"refs/lockstep/{hashlib.sha256(service.name.encode()).hexdigest()[:12]}"
        specs = [f"+refs/heads/{b}:{ns}/{b}" for b in (service.source, service.target)]
        res = await self.run_git(
            ["fetch", "--quiet", "--no-tags", "--no-write-fetch-head", "--", self.remote(service), *specs],
            cwd=cache,
        )
        if res.code != 0 and "couldn't find remote ref" in res.err:
            # the target may not exist (seed): fetch the source alone
            res = await self.run_git(
                [
                    "fetch",
                    "--quiet",
                    "--no-tags",
                    "--no-write-fetch-head",
                    "--",
                    self.remote(service),
                    specs[0],
                ],
                cwd=cache,
            )
        if res.code != 0:
            raise ForgeError(f"{service.repo}: fetch failed: {_message(res.err)}")
        if not await self._have(cache, shas):
            missing = ", ".join(s.short for s in shas)
            raise ForgeError(
                f"{service.repo}: commits {missing} are no longer on "
                f"'{service.source}' or '{service.target}' (the branches moved during the run)"
            )
        return cache

    async def _have(self, cache: Path, shas: Sequence[Sha]) -> bool:
        """Whether the cache holds every commit (a commit once fetched stays: remembered)."""
        for sha in shas:
            if (cache, sha) in self._present:
                continue
            res = await self.run_git(["cat-file", "-e", f"{sha}^{{commit}}"], cwd=cache)
            if res.code != 0:
                return False
            self._present.add((cache, sha))
        return True

    async def is_ancestor(self, service: ServiceConfig, ancestor: Sha, descendant: Sha) -> bool:
        """Ancestry of two commits never changes, so each answer is kept: the preflight's check
        makes ``advance``'s own check free, and no git process runs between two pushes for it."""
        if ancestor == descendant:
            return True
        key = (self.remote(service), ancestor, descendant)
        if key not in self._ancestry:
            cache = await self._fetch(service, [ancestor, descendant])
            res = await self.run_git(["merge-base", "--is-ancestor", ancestor, descendant], cwd=cache)
            if res.code not in (0, 1):
                raise ForgeError(f"{service.repo}: ancestry check failed: {_message(res.err)}")
            self._ancestry[key] = res.code == 0
        return self._ancestry[key]

    async def reserve_writes(self, pushes: Sequence[ServiceConfig], others: int) -> None:
        """No write limits to plan for."""

    async def check_target(self, service: ServiceConfig, new: Sha) -> TargetCheck:
        current = await self.read_target(service)
        if current is None:
            return TargetCheck(None, True)
        return TargetCheck(current, await self.is_ancestor(service, current, new))

    async def advance(self, service: ServiceConfig, old: Sha, new: Sha) -> PushResult:
        if not await self.is_ancestor(service, old, new):
            return PushResult(
                PushStatus.REJECTED,
                f"{service.repo}: '{service.target}' at {old.short} is not an ancestor of {new.short}",
            )
        return await self._push(service, old, new)

    async def create(self, service: ServiceConfig, new: Sha) -> PushResult:
        await self._fetch(service, [new])
        return await self._push(service, None, new)

    async def rewind(self, service: ServiceConfig, current: Sha, to: Sha) -> PushResult:
        """Move the target *backwards* from ``current`` to ``to`` (rollback only), leased on ``current``."""
        await self._fetch(service, [current, to])
        return await self._push(service, current, to)

    async def _push(self, service: ServiceConfig, old: Sha | None, new: Sha) -> PushResult:
        cache = await self._fetch(service, [new])
        ref = f"refs/heads/{service.target}"
        lease = f"--force-with-lease={ref}:{old or ''}"
        try:
            res = await self.run_git(
                ["push", "--porcelain", "--quiet", lease, "--", self.remote(service), f"{new}:{ref}"],
                cwd=cache,
            )
        except TimeoutError:
            log.warn(f"{service.repo}: push timed out; re-reading '{service.target}'")
            return await self._classify_after(service, old, new, "push timed out", unclear=True)
        if res.code == 0:
            return PushResult(PushStatus.LANDED)
        reason = _message(res.err or res.out)
        return await self._classify_after(service, old, new, reason)

    async def _classify_after(
        self, service: ServiceConfig, old: Sha | None, new: Sha, reason: str, *, unclear: bool = False
    ) -> PushResult:
        """After a failed or unclear push, the ref's real position decides."""
        try:
            now = await self.read_target(service)
        except ForgeError as exc:
            return PushResult(PushStatus.UNKNOWN, f"{reason}; re-read failed: {exc}")
        if now == new:
            return PushResult(PushStatus.LANDED, f"landed despite: {reason}")
        if now == old and unclear:
            return PushResult(
                PushStatus.UNKNOWN,
                f"{service.repo}: {reason}; '{service.target}' still at the old sha, "
                "but the push may still land",
            )
        if now == old:
            return PushResult(
                PushStatus.REJECTED, f"{service.repo}: push to '{service.target}' rejected: {reason}"
            )
        where = now.short if now else "missing"
        return PushResult(
            PushStatus.CONCURRENT,
            f"{service.repo}: '{service.target}' moved to {where} during the run ({reason})",
        )

    async def aclose(self) -> None:
        if self._own_tmp is not None:
            self._own_tmp.cleanup()
            self._own_tmp = None

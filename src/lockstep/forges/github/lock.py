"""A gate lock for runs outside Actions: a ref created atomically in the first service's repo.

The ref lock is ``refs/heads/lockstep-lock/<gate>``,
created atomically with ``POST git/refs`` (422 if it exists) and deleted on
exit.  GitHub keeps no creation time for a ref and lockstep cannot create a
commit to hold one (the fake and the contract cover only the endpoints in
``docs/github-api.md``), so a lock's age is unknowable: lockstep waits (polling) up to
``lock_timeout``; if it has watched the lock for ``lock_stale_after`` it says
the lock is probably stale.  It never breaks a lock by itself: deleting a
live run's lock is worse than asking a person to delete a dead one.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from types import TracebackType
from urllib.parse import quote

from lockstep import log
from lockstep.config import Config, ServiceConfig
from lockstep.errors import ForgeError, LockError
from lockstep.forges.github.forge import LOCK_PREFIX, GitHubForge, check_branch, ref_path
from lockstep.model import Sha


class GitHubRefLock:
    """``refs/heads/lockstep-lock/<gate>`` in a service's repo, held for one run.

    Created with ``POST git/refs`` (atomic: 422 when it exists) pointing at
    the service's source head, which is any existing commit; deleted on exit
    with the same service's push token.  A service rather than a bare repo is
    taken because the lock needs both a commit to point at and a token that
    may write.  See the module docstring for why the lock's age is unknown.
    """

    def __init__(
        self,
        forge: GitHubForge,
        service: ServiceConfig,
        gate_name: str,
        stale_after: float,
        *,
        timeout: float = 1800.0,
        poll_interval: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._forge = forge
        self._service = service
        self.branch = check_branch(LOCK_PREFIX + gate_name, "gate.name (as a lock ref)")
        self.ref = f"refs/heads/{self.branch}"
        self.repo = forge.repo_of(service)
        self.stale_after = stale_after
        self.timeout = timeout
        self.poll_interval = poll_interval
        self._clock = clock
        self._owns_forge = False
        self.held = False

    @classmethod
    def for_config(
        cls, config: Config, env: Mapping[str, str], *, poll_interval: float = 5.0
    ) -> GitHubRefLock:
        """A lock with its own forge (closed on exit), for use before the run's forge exists.

        Taken in the first service's repo, timed by ``[gate] lock_timeout`` and
        ``lock_stale_after``; UsageError (no request made) for a bad setup.
        """
        return cls.in_first_service(GitHubForge.from_env(config, env), config,
                                    poll_interval=poll_interval, owns_forge=True)

    @classmethod
    def in_first_service(
        cls, forge: GitHubForge, config: Config, *, poll_interval: float = 5.0, owns_forge: bool = False
    ) -> GitHubRefLock:
        """The gate's lock in the first service's repo, timed by ``[gate]``, on ``forge``."""
        lock = cls(
            forge,
            config.services[0],
            config.gate.name,
            config.gate.lock_stale_after,
            timeout=config.gate.lock_timeout,
            poll_interval=poll_interval,
        )
        lock._owns_forge = owns_forge
        return lock

    def __repr__(self) -> str:
        return f"GitHubRefLock({self.ref!r} in {'/'.join(self.repo)})"

    @property
    def _full(self) -> str:
        return "/".join(self.repo)

    def _held_message(self, watched: float) -> str:
        owner, name = self.repo
        return (
            f"lock held: {self.ref} in {self._full} exists (watched for {watched:.0f}s); "
            f"delete it if no lockstep run is active "
            f"(gh api -X DELETE repos/{owner}/{name}/git/refs/heads/{self.branch})"
        )

    async def _holder(self) -> Sha | None:
        try:
            return await self._forge.read_branch(self.repo, self.branch, "lock")
        except ForgeError as exc:
            raise LockError(f"cannot read the lock {self.ref}: {exc}") from None

    async def acquire(self) -> None:
        forge, http = self._forge, self._forge.http
        owner, name = self.repo
        path = f"/repos/{quote(owner)}/{quote(name)}/git/refs"
        start = self._clock()
        first_seen: float | None = None
        vanished = 0
        while True:
            try:
                sha = await forge.read_branch(self.repo, self._service.source, "source branch")
            except ForgeError as exc:
                raise LockError(f"cannot take the lock {self.ref}: {exc}") from None
            if sha is None:
                raise LockError(
                    f"cannot take the lock {self.ref}: {self._full} has no branch "
                    f"'{self._service.source}' to point it at"
                )
            reply = await http.send(
                "POST",
                path,
                token=forge.push_token(self._service),
                json_body={"ref": self.ref, "sha": str(sha)},
            )
            if reply.status == 201:
                self.held = True
                log.info(f"lock taken: {self.ref} in {self._full}")
                return
            outcome = reply.describe()
            holder = await self._holder()
            refused = reply.status is not None and reply.status < 500
            if holder is None and refused:
                # A 422 with no lock to be seen may be a holder releasing between our POST
                # and our read: try again, a bounded number of times.
                vanished += 1
                if reply.status != 422 or vanished >= 3:
                    raise LockError(f"cannot create the lock {self.ref} in {self._full}: {outcome}")
                continue
            if holder is not None and not refused:
                # It may be ours (the answer was lost) or another run's: nobody can tell.
                raise LockError(
                    f"cannot confirm who holds the lock {self.ref} in {self._full} after {outcome}; "
                    f"delete it if no lockstep run is active"
                )
            if holder is not None:
                now = self._clock()
                first_seen = now if first_seen is None else first_seen
                watched = now - first_seen
                if watched >= self.stale_after:
                    raise LockError(
                        self._held_message(watched)
                        + f"; it has existed for longer than lock_stale_after ({self.stale_after:g}s), "
                        f"so it is probably stale"
                    )
                if watched == 0:
                    log.info(f"waiting for the lock {self.ref} in {self._full} (another run holds it)")
            if self._clock() - start >= self.timeout:
                if holder is None:
                    raise LockError(f"cannot create the lock {self.ref} in {self._full}: {outcome}")
                raise LockError(
                    self._held_message(self._clock() - (start if first_seen is None else first_seen))
                    + f"; gave up after lock_timeout ({self.timeout:g}s)"
                )
            # Never sleep past the deadline: one last attempt is made right at it, so a
            # short lock_timeout is honoured instead of overrun by a whole poll interval.
            remaining = self.timeout - (self._clock() - start)
            await asyncio.sleep(max(0.0, min(self.poll_interval, remaining)))

    async def release(self) -> None:
        """Delete the lock; failures are warnings (the run's result stands) with the fix."""
        if not self.held:
            return
        self.held = False
        forge, http = self._forge, self._forge.http
        owner, name = self.repo
        reply = await http.send(
            "DELETE", ref_path(owner, name, self.branch), token=forge.push_token(self._service)
        )
        if reply.status == 204:
            log.info(f"lock released: {self.ref} in {self._full}")
            return
        outcome = reply.describe()
        try:
            gone = await forge.read_branch(self.repo, self.branch, "lock") is None
        except ForgeError:
            gone = False  # unknown: warn as if it were still there
        if gone:
            log.info(f"lock released: {self.ref} in {self._full} is gone ({outcome})")
            return
        log.warn(
            f"could not delete the lock {self.ref} in {self._full} ({outcome}); the next run will wait "
            f"for it: gh api -X DELETE repos/{owner}/{name}/git/refs/heads/{self.branch}"
        )

    async def __aenter__(self) -> GitHubRefLock:
        try:
            await self.acquire()
        except BaseException:
            if self._owns_forge:
                await self._forge.aclose()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            await self.release()
        finally:
            if self._owns_forge:
                await self._forge.aclose()

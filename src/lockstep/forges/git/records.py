"""Promotion records for the git forge: a JSON-lines file on a ref in the remote itself.

The file ``records.jsonl`` lives in a commit on ``refs/lockstep/<gate>/records``
of the first service's repository, so any clone with read access can run
``lockstep status``.  Appends are compare-and-swap: the new commit is pushed
with ``--force-with-lease`` on the commit it was built on, and retried from a
fresh read when another writer won.
"""

from __future__ import annotations

from lockstep.config import ServiceConfig
from lockstep.errors import ForgeError
from lockstep.forges.git.forge import GitForge
from lockstep.model import Sha
from lockstep.records import PromotionRecord, parse_lines
from lockstep.redact import clean_text

FILE = "records.jsonl"
_IDENTITY = ["-c", "user.name=lockstep", "-c", "user.email=lockstep@localhost"]


class GitRecordStore:
    """Reads and appends promotion records on a ref of ``service``'s repository."""

    def __init__(self, forge: GitForge, service: ServiceConfig, gate: str, *, attempts: int = 5) -> None:
        self._forge = forge
        self._service = service
        self.ref = f"refs/lockstep/{gate}/records"
        self._local = f"refs/lockstep-records/{gate}"
        self._attempts = attempts

    @property
    def location(self) -> str:
        return f"{self._service.repo} {self.ref}"

    async def _read(self) -> tuple[Sha | None, str]:
        forge, service = self._forge, self._service
        res = await forge.run_git(["ls-remote", "--", forge.remote(service), self.ref])
        if res.code != 0:
            raise ForgeError(f"{service.repo}: cannot read {self.ref}: {clean_text(res.err)}")
        head = next(
            (line.split("\t")[0] for line in res.out.splitlines() if line.endswith("\t" + self.ref)), None
        )
        if head is None:
            return None, ""
        cache = await forge.object_cache(service)
        res = await forge.run_git(
            [
                "fetch",
                "--quiet",
                "--no-tags",
                "--no-write-fetch-head",
                "--",
                forge.remote(service),
                f"+{self.ref}:{self._local}",
            ],
            cwd=cache,
        )
        if res.code != 0:
            raise ForgeError(f"{service.repo}: cannot fetch {self.ref}: {clean_text(res.err)}")
        res = await forge.run_git(["cat-file", "blob", f"{head}:{FILE}"], cwd=cache)
        if res.code != 0:
            raise ForgeError(f"{service.repo}: {self.ref} has no {FILE}: {clean_text(res.err)}")
        return Sha(head), res.out

    async def read_all(self) -> list[PromotionRecord]:
        """Every record, oldest first."""
        _, text = await self._read()
        return parse_lines(text)

    async def read_recent(self) -> list[PromotionRecord]:
        """The same as :meth:`read_all`: one ref holds every record."""
        return await self.read_all()

    async def write(self, record: PromotionRecord) -> str:
        """Append one record; raise ForgeError when it could not be stored."""
        forge, service = self._forge, self._service
        cache = await forge.object_cache(service)
        for _ in range(self._attempts):
            head, text = await self._read()
            if text and not text.endswith("\n"):
                text += "\n"
            text += record.dumps() + "\n"
            blob = await forge.run_git(["hash-object", "-w", "--stdin"], cwd=cache, input=text.encode())
            tree = await forge.run_git(
                ["mktree"], cwd=cache, input=f"100644 blob {blob.out.strip()}\t{FILE}\n".encode()
            )
            parents = ["-p", head] if head else []
            commit = await forge.run_git(
                [
                    *_IDENTITY,
                    "commit-tree",
                    tree.out.strip(),
                    *parents,
                    "-m",
                    f"lockstep record {record.run_id}",
                ],
                cwd=cache,
            )
            if any(r.code != 0 for r in (blob, tree, commit)):
                raise ForgeError(
                    f"cannot build the record commit: {clean_text(blob.err + tree.err + commit.err)}"
                )
            push = await forge.run_git(
                [
                    "push",
                    "--porcelain",
                    "--quiet",
                    f"--force-with-lease={self.ref}:{head or ''}",
                    "--",
                    forge.remote(service),
                    f"{commit.out.strip()}:{self.ref}",
                ],
                cwd=cache,
            )
            if push.code == 0:
                return self.location
            if "stale info" not in push.out + push.err and "fetch first" not in push.out + push.err:
                raise ForgeError(
                    f"{service.repo}: cannot write {self.ref}: {clean_text(push.err or push.out)}"
                )
        raise ForgeError(
            f"{service.repo}: {self.ref} kept changing; record not written after {self._attempts} tries"
        )

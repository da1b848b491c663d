"""In-memory repositories for the fake GitHub: commit graph, refs, issues, tokens.

Nothing here is thread-safe on its own; :class:`~tests.support.fakegithub.server.FakeGitHub`
holds one lock around every read and write so each HTTP request is atomic, the
way a single ref update on GitHub is.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

SHA_RE = re.compile(r"[0-9a-f]{40}")
_ABBREV_RE = re.compile(r"[0-9a-f]{7,39}")
_BAD_REF_CHARS = re.compile(r"[\x00-\x20\x7f~^:?*\[\\]")
_EPOCH = datetime(2024, 1, 1, tzinfo=UTC)


def new_sha() -> str:
    """A random 40-hex object id: tests must never depend on content hashing."""
    return secrets.token_hex(20)


def blob_sha(data: bytes) -> str:
    """The git blob id of ``data``, as GitHub reports it in ``sha`` fields."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()


def tree_sha(files: dict[str, bytes]) -> str:
    """A stable id for a set of files (not git's tree encoding: nothing here depends on it)."""
    digest = hashlib.sha1(b"fake-tree", usedforsecurity=False)
    for path in sorted(files):
        digest.update(path.encode() + b"\0" + blob_sha(files[path]).encode())
    return digest.hexdigest()


def iso(moment: datetime) -> str:
    """GitHub's timestamp format (UTC, seconds, trailing Z)."""
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def ref_name_problem(ref: str) -> str | None:
    """Why GitHub would reject ``ref`` as a new reference name, or None if it is fine.

    Mirrors ``git check-ref-format`` plus GitHub's "refs/ and two slashes" rule, so
    a client that builds ``heads/x`` or ``refs/heads/`` fails here as it would there.
    """
    if not ref.startswith("refs/") or ref.count("/") < 2:
        return "Reference name must contain at least three slash-separated components."
    parts = ref.split("/")
    bad = (
        any(not p or p.startswith(".") or p.endswith(".lock") for p in parts)
        or ".." in ref
        or "@{" in ref
        or ref.endswith(".")
        or _BAD_REF_CHARS.search(ref) is not None
    )
    return f"{ref} is not a valid ref name." if bad else None


@dataclass
class Commit:
    """One node of the graph; ``seq`` is creation order, hence a topological order."""

    sha: str
    parents: tuple[str, ...]
    message: str
    date: str
    seq: int
    files: dict[str, bytes] = field(default_factory=dict)  # path -> content (the Contents API)


@dataclass
class Issue:
    """An issue that can receive comments (the bypass audit tracker)."""

    number: int
    locked: bool = False
    comments: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Deployment:
    """A deployment (``GET .../deployments`` shape in ``body``) and its statuses, newest last."""

    body: dict[str, Any]
    statuses: list[dict[str, Any]] = field(default_factory=list)

    @property
    def id(self) -> int:
        return int(self.body["id"])


@dataclass(frozen=True)
class Comparison:
    """``base...head`` as GitHub reports it, over REST (``compare``) and GraphQL (``Ref.compare``) alike.

    ``ahead`` lists head's commits that base lacks, oldest first (REST pages through them);
    ``behind_by`` counts base's commits that head lacks.
    """

    status: Literal["ahead", "behind", "diverged", "identical"]
    ahead: tuple[str, ...]
    behind_by: int
    merge_base: str


@dataclass
class Repo:
    """A repository: commits, refs by full name (``refs/heads/main``), issues, deployments."""

    full_name: str
    default_branch: str = "main"
    commits: dict[str, Commit] = field(default_factory=dict)
    refs: dict[str, str] = field(default_factory=dict)
    renamed: dict[str, str] = field(default_factory=dict)
    protected: dict[str, str] = field(default_factory=dict)
    issues: dict[int, Issue] = field(default_factory=dict)
    issues_enabled: bool = True
    dispatches: list[dict[str, Any]] = field(default_factory=list)
    deployments: dict[int, Deployment] = field(default_factory=dict)  # by id, creation order
    statuses: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # commit statuses by sha, oldest first
    check_runs: list[dict[str, Any]] = field(default_factory=list)  # oldest first
    trees: dict[str, dict[str, bytes]] = field(default_factory=dict)  # POST git/trees, by id
    blobs: dict[str, bytes] = field(default_factory=dict)  # every file content seen, by blob id
    repo_id: int = field(default_factory=lambda: secrets.randbelow(10**8) + 10**8)

    @property
    def empty(self) -> bool:
        """GitHub calls a repository without commits "empty" and answers 409."""
        return not self.commits

    def add_commit(
        self, parents: tuple[str, ...], message: str | None, files: dict[str, bytes] | None = None
    ) -> str:
        """Append a commit whose parents must already exist in this repository.

        Without ``files`` it holds its first parent's files (a test helper's commit changes none)."""
        for parent in parents:
            if parent not in self.commits:
                raise ValueError(f"{self.full_name}: unknown parent commit {parent}")
        sha = new_sha()
        seq = len(self.commits)
        if files is None:
            files = dict(self.commits[parents[0]].files) if parents else {}
        self.commits[sha] = Commit(
            sha=sha,
            parents=tuple(parents),
            message=message or f"commit {seq}",
            date=iso(_EPOCH + timedelta(minutes=seq)),
            seq=seq,
            files=dict(files),
        )
        self.remember(files)
        return sha

    def add_tree(self, files: dict[str, bytes]) -> str:
        """Store a tree (``POST git/trees``) and return its id."""
        sha = tree_sha(files)
        self.trees[sha] = dict(files)
        self.remember(files)
        return sha

    def remember(self, files: dict[str, bytes]) -> None:
        """Keep every content by blob id, so a tree entry may name a blob by ``sha``."""
        for data in files.values():
            self.blobs[blob_sha(data)] = data

    def ancestors(self, sha: str) -> set[str]:
        """Every commit reachable from ``sha``, itself included."""
        seen: set[str] = set()
        stack = [sha]
        while stack:
            current = stack.pop()
            if current in seen:
                continue
            seen.add(current)
            stack.extend(self.commits[current].parents)
        return seen

    def is_ancestor(self, ancestor: str, descendant: str) -> bool:
        """True iff moving a ref from ``ancestor`` to ``descendant`` is a fast-forward."""
        return ancestor in self.ancestors(descendant)

    def merge_base(self, a: str, b: str) -> str | None:
        """A best common ancestor: the newest one has no common descendant above it."""
        common = self.ancestors(a) & self.ancestors(b)
        return max(common, key=lambda s: self.commits[s].seq) if common else None

    def compare(self, base: str, head: str) -> Comparison | None:
        """Compare two known commits; None when they share no ancestor (GitHub cannot compare them)."""
        merge_base = self.merge_base(base, head)
        if merge_base is None:
            return None
        head_anc, base_anc = self.ancestors(head), self.ancestors(base)
        ahead = tuple(sorted(head_anc - base_anc, key=lambda s: self.commits[s].seq))
        behind_by = len(base_anc - head_anc)
        status: Literal["ahead", "behind", "diverged", "identical"]
        if base == head:
            status = "identical"
        elif not behind_by:
            status = "ahead"
        elif not ahead:
            status = "behind"
        else:
            status = "diverged"
        return Comparison(status, ahead, behind_by, merge_base)

    def resolve(self, rev: str) -> str | None:
        """Resolve a compare endpoint: full sha, ref, tag, branch, then unique short sha."""
        if SHA_RE.fullmatch(rev):
            return rev if rev in self.commits else None
        for candidate in (rev, f"refs/{rev}", f"refs/tags/{rev}", f"refs/heads/{rev}"):
            if candidate.startswith("refs/") and candidate in self.refs:
                return self.refs[candidate]
        if _ABBREV_RE.fullmatch(rev):
            hits = [s for s in self.commits if s.startswith(rev)]
            if len(hits) == 1:
                return hits[0]
        return None

    def ref_conflict(self, ref: str) -> bool:
        """Git cannot hold both ``refs/heads/a`` and ``refs/heads/a/b`` (directory/file clash)."""
        return any(existing.startswith(ref + "/") or ref.startswith(existing + "/") for existing in self.refs)


@dataclass(frozen=True)
class Token:
    """A credential with per-repository permissions (keys are lower-case full names)."""

    value: str
    read: frozenset[str]
    write: frozenset[str]
    login: str
    user_id: int
    kind: Literal["pat", "integration"] = "pat"

    def can_read(self, repo_key: str) -> bool:
        """Write implies read, as with GitHub's contents permission."""
        return repo_key in self.read or repo_key in self.write

    def can_write(self, repo_key: str) -> bool:
        """Contents/issues write on that repository."""
        return repo_key in self.write

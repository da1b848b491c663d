"""The GitHub forge: branch heads and fast-forward pushes over the REST API.

Choices, and why:

* **Heads are read with** ``GET /repos/{o}/{r}/branches/{b}``, not
  ``git/ref/heads/{b}``: for a renamed branch GitHub answers 301 with the new
  name, which lockstep reports as an error naming both (a 404 from the refs
  endpoint would instead look like "missing, seed it" and create a stray
  branch).  Redirects are never followed.  Branch names are checked against
  git's ref-name rules when the forge is built and percent-quoted with ``/``
  kept as a separator, the form GitHub routes.
* **Classification is by status code**: 404 on a target means seed, 404 on a
  source is an error, everything else is an error naming repo, branch, status
  and GitHub's (sanitised, bounded) message.  A 404 on a target is only
  trusted because the source of the same repo was read successfully in the
  same call: a repository the token cannot see 404s both.
* **Writes are never retried blindly** (see :meth:`GitHubForge.advance`): after
  an unclear answer the target is re-read; at ``new`` → landed, at the old
  position → one more attempt, anywhere else → a concurrent writer.
* **Tokens**: reads and the audit comment use ``$GITHUB_TOKEN`` (else
  ``$GH_TOKEN``); each push uses its service's ``token_env``.  All are checked
  in :meth:`GitHubForge.from_env` before any request and registered with
  :mod:`lockstep.redact`, so no output shows them.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Literal
from urllib.parse import quote, unquote, urlsplit

import httpx

from lockstep import log
from lockstep.config import Config, ServiceConfig
from lockstep.errors import ForgeError, UsageError
from lockstep.forges.github.budget import MINUTE_WAIT
from lockstep.forges.github.heads import FileRead, FileSeen, HeadsBatch, Observed
from lockstep.forges.github.http import (
    GitHubHttp,
    Reply,
    RetryPolicy,
    Secret,
    api_url,
    is_rate_limited,
)
from lockstep.model import Heads, PushResult, PushStatus, Sha, TargetCheck
from lockstep.redact import READ_TOKEN_VARS, clean_text

__all__ = [
    "GitHubForge",
    "RetryPolicy",
    "parse_repo",
    "parse_tracker",
]

LOCK_PREFIX = "lockstep-lock/"

_NAME = r"[A-Za-z0-9_.-]+"
_REPO_RE = re.compile(rf"({_NAME})/({_NAME})")
_TRACKER_RE = re.compile(rf"({_NAME})/({_NAME})#([1-9][0-9]{{0,9}})")
_TOKEN_RE = re.compile(r"[\x21-\x7e]+")  # what an HTTP header value can carry unmangled
_BAD_REF_CHARS = re.compile(r"[\x00-\x20\x7f~^:?*\[\\]")

Role = Literal["source", "target"]


def parse_repo(repo: str, where: str = "repo") -> tuple[str, str]:
    """``owner/name`` → (owner, name); UsageError naming ``where`` otherwise."""
    match = _REPO_RE.fullmatch(repo)
    if not match or any(part in (".", "..") for part in match.groups()):
        raise UsageError(f"{where}: expected a GitHub repository as OWNER/NAME, got {repo!r:.80}")
    return match.group(1), match.group(2)


def parse_tracker(tracker: str) -> tuple[str, str, int]:
    """``owner/repo#N`` → (owner, repo, N); UsageError otherwise."""
    match = _TRACKER_RE.fullmatch(tracker.strip())
    if not match or any(part in (".", "..") for part in match.groups()[:2]):
        raise UsageError(
            f"bypass.tracker: expected an issue as OWNER/REPO#NUMBER for the github forge, "
            f"got {tracker!r:.80}"
        )
    return match.group(1), match.group(2), int(match.group(3))


def check_branch(name: str, where: str) -> str:
    """Reject names git would refuse (and that could escape a URL path segment)."""
    bad = (
        not name
        or _BAD_REF_CHARS.search(name) is not None
        or ".." in name
        or "@{" in name
        or "//" in name
        or name in ("@", "HEAD")
        or name.startswith(("/", "-", "refs/"))
        or name.endswith(("/", ".", ".lock"))
        or any(part.startswith(".") for part in name.split("/"))
    )
    if bad:
        raise UsageError(f"{where}: {name!r:.80} is not a valid branch name")
    return name


def _branch_path(owner: str, name: str, branch: str) -> str:
    return f"/repos/{quote(owner)}/{quote(name)}/branches/{quote(branch, safe='/')}"


def ref_path(owner: str, name: str, branch: str) -> str:
    return f"/repos/{quote(owner)}/{quote(name)}/git/refs/heads/{quote(branch, safe='/')}"


def _short(sha: Sha | None) -> str:
    return "(missing)" if sha is None else sha.short


def _read_token(env: Mapping[str, str]) -> Secret:
    for var in READ_TOKEN_VARS:
        value = env.get(var, "").strip()
        if value:
            return _checked_token(value, var)
    raise UsageError(
        "environment variable GITHUB_TOKEN (or GH_TOKEN) is not set: the github forge reads "
        "branches and posts the bypass audit comment with it"
    )


def _checked_token(value: str, var: str) -> Secret:
    if not _TOKEN_RE.fullmatch(value):
        # An illegal header value would make the HTTP library raise with the value in its text.
        raise UsageError(f"environment variable {var} holds characters a token cannot contain")
    return Secret(value, var)


class GitHubForge:
    """Forge over GitHub's REST API with one pooled client per run.

    Build it with :meth:`from_env`; the constructor trusts its arguments.
    """

    def __init__(
        self,
        http: GitHubHttp,
        *,
        read_token: Secret,
        push_tokens: Mapping[str, Secret],
        repos: Mapping[str, tuple[str, str]],
    ) -> None:
        self.http = http
        self.read_token = read_token
        self._push_tokens = dict(push_tokens)
        self._repos = dict(repos)
        self._batch = HeadsBatch(http, read_token, self._repo)
        # (repo, ancestor, descendant) -> whether it is one: a fact about two fixed commits never
        # changes, so what a heads query's compare said answers later questions without a request
        self._ancestry: dict[tuple[str, Sha, Sha], bool] = {}

    @classmethod
    def from_env(
        cls,
        config: Config,
        env: Mapping[str, str],
        *,
        retry: RetryPolicy | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> GitHubForge:
        """Check every token, repo and branch name, then build the forge (no request made).

        Raises :class:`UsageError` naming the variable or key at fault, so a
        bad setup stops the run before anything is touched (exit 2).
        """
        read_token = _read_token(env)
        push_tokens: dict[str, Secret] = {}
        repos: dict[str, tuple[str, str]] = {}
        for i, service in enumerate(config.services):
            where = f"services[{i}] ({service.name})"
            repos[service.name] = parse_repo(service.repo, f"{where}.repo")
            check_branch(service.source, f"{where}.source")
            check_branch(service.target, f"{where}.target")
            if not service.token_env:
                raise UsageError(
                    f"{where}.token_env: required for the github forge (the environment variable "
                    f"holding a token that may push {service.repo})"
                )
            value = env.get(service.token_env, "").strip()
            if not value:
                raise UsageError(
                    f"environment variable {service.token_env} is not set "
                    f"({where}.token_env: the token that pushes {service.repo})"
                )
            push_tokens[service.name] = _checked_token(value, service.token_env)
        http = GitHubHttp(
            api_url(env),
            timeout=config.gate.request_timeout,
            retry=retry or RetryPolicy(),
            transport=transport,
            sleep=sleep,
        )
        return cls(http, read_token=read_token, push_tokens=push_tokens, repos=repos)

    def __repr__(self) -> str:
        return f"GitHubForge({self.http.api_url!r}, repos={sorted(self._repos.values())!r})"

    async def aclose(self) -> None:
        await self._batch.aclose()
        await self.http.aclose()

    # -- reads ----------------------------------------------------------------------

    def _repo(self, service: ServiceConfig) -> tuple[str, str]:
        found = self._repos.get(service.name)
        return found if found is not None else parse_repo(service.repo)

    async def read_branch(self, repo: tuple[str, str], branch: str, label: str) -> Sha | None:
        """A branch head, None on 404; ForgeError on anything else (after retries).

        ``label`` names the branch's role in messages ("source branch").
        """
        owner, name = repo
        full = f"{owner}/{name}"
        what = f"{full}: reading {label} '{branch}'"
        reply = await self.http.get(_branch_path(owner, name, branch), token=self.read_token, what=what)
        status = reply.status
        if status == 200:
            body = reply.json_object() or {}
            commit = body.get("commit")
            sha = commit.get("sha") if isinstance(commit, dict) else None
            try:
                return Sha(str(sha))
            except ValueError:
                raise ForgeError(
                    f"{full}: unexpected answer for {label} '{branch}' (HTTP 200 without a valid commit sha)",
                    status=200,
                ) from None
        if status == 404:
            return None
        if status is not None and 300 <= status < 400:
            raise ForgeError(self._redirect_message(full, branch, label, reply), status=status)
        detail = reply.describe()
        if reply.gave_up:
            detail += f" ({reply.gave_up})"
        transient = status is None or status >= 500 or status == 429
        raise ForgeError(
            f"{full}: cannot read {label} '{branch}': {detail}", status=status, transient=transient
        )

    def _redirect_message(self, full: str, branch: str, label: str, reply: Reply) -> str:
        location = reply.header("location") or ""
        path = urlsplit(location).path
        marker = "/branches/"
        if marker in path:
            renamed = unquote(path.split(marker, 1)[1])
            to = f"branch {clean_text(renamed, 120)!r}"
        else:
            to = clean_text(location, 200) or "(no Location header)"
        return (
            f"{full}: {label} '{branch}' answered HTTP {reply.status}, a redirect to {to}; "
            f"lockstep never follows redirects on head lookups (was '{branch}' renamed? "
            f"update the config)"
        )

    async def _read(self, service: ServiceConfig, role: Role) -> Sha | None:
        branch = service.source if role == "source" else service.target
        return await self.read_branch(self._repo(service), branch, f"{role} branch")

    async def _observe(self, service: ServiceConfig) -> Observed | None:
        """This service's heads from the phase's one GraphQL query, its compare remembered."""
        seen = await self._batch.observe(service)
        if seen is not None and seen.source is not None and seen.target is not None and seen.status:
            key = service.repo.lower()
            forward = seen.status in ("AHEAD", "IDENTICAL")  # the target is an ancestor of the source
            backward = seen.status in ("BEHIND", "IDENTICAL")
            self._ancestry[(key, seen.target, seen.source)] = forward
            self._ancestry[(key, seen.source, seen.target)] = backward
        return seen

    async def read_file(self, file: FileRead) -> FileSeen | None:
        """A file in the phase's GraphQL query (the promotion records); None: read it over REST."""
        return await self._batch.read_file(file)

    async def read_heads(self, service: ServiceConfig) -> Heads:
        """Both heads from the phase's GraphQL query; a ref it does not find is read over REST, where
        a target 404 is a seed and a source 404 (or a 301 for either: renamed) an error."""
        seen = await self._observe(service)
        if seen is None:
            return await self._rest_heads(service)
        if seen.source is None:  # REST says why: missing, or renamed
            source = await self._read(service, "source")
            if source is None:
                raise ForgeError(
                    f"{service.repo}: source branch '{service.source}' not found (HTTP 404)", status=404
                )
            return Heads(source=source, target=seen.target)  # GraphQL saw no such source a moment ago
        target = seen.target if seen.target is not None else await self._read(service, "target")
        return Heads(source=seen.source, target=target)

    async def _rest_heads(self, service: ServiceConfig) -> Heads:
        """Source and target concurrently; a target 404 is a seed, a source 404 an error."""
        source, target = await asyncio.gather(
            self._read(service, "source"), self._read(service, "target"), return_exceptions=True
        )
        for result in (source, target):
            if isinstance(result, BaseException):
                raise result
        if source is None:
            raise ForgeError(
                f"{service.repo}: source branch '{service.source}' not found (HTTP 404)", status=404
            )
        assert isinstance(source, Sha) and (target is None or isinstance(target, Sha))
        return Heads(source=source, target=target)

    async def read_target(self, service: ServiceConfig) -> Sha | None:
        seen = await self._observe(service)
        if seen is not None and seen.target is not None:
            return seen.target
        return await self._read(service, "target")

    async def _compare(self, service: ServiceConfig, base: str, head: Sha, doing: str) -> Reply:
        """``GET compare/{base}...{head}`` with one commit per page: only its status and
        ``base_commit`` are read, and GitHub's commit list would cost time and bytes."""
        owner, name = self._repo(service)
        return await self.http.get(
            f"/repos/{quote(owner)}/{quote(name)}/compare/{base}...{quote(head)}",
            token=self.read_token,
            what=f"{service.repo}: {doing}",
            params={"per_page": "1"},
        )

    async def is_ancestor(self, service: ServiceConfig, ancestor: Sha, descendant: Sha) -> bool:
        """Known from a heads query's compare, else ``compare/{ancestor}...{descendant}``: ancestor iff
        the status is ahead or identical."""
        if ancestor == descendant:
            return True
        known = self._ancestry.get((service.repo.lower(), ancestor, descendant))
        if known is not None:
            return known
        label = f"{ancestor.short}...{descendant.short}"
        reply = await self._compare(service, quote(ancestor), descendant, f"comparing {label}")
        if reply.status == 200:
            status = (reply.json_object() or {}).get("status")
            if status in ("ahead", "identical"):
                return True
            if status in ("behind", "diverged"):
                return False
            raise ForgeError(
                f"{service.repo}: unexpected compare status "
                f"{clean_text(str(status), 40)!r} for {label}",
                status=200,
            )
        detail = reply.describe() + (f" ({reply.gave_up})" if reply.gave_up else "")
        raise ForgeError(
            f"{service.repo}: cannot compare {label} (for '{service.target}'): {detail}",
            status=reply.status,
            transient=reply.status is None or reply.status >= 500,
        )

    async def check_target(self, service: ServiceConfig, new: Sha) -> TargetCheck:
        """The target from the phase's GraphQL query, and whether ``new`` fast-forwards it (known from
        that query's compare or an earlier one; else asked). Without a GraphQL answer: REST's
        ``compare/{target branch}...{new}``, one request for both."""
        seen = await self._observe(service)
        if seen is None:
            return await self._rest_check_target(service, new)
        current = seen.target if seen.target is not None else await self._read(service, "target")
        if current is None:
            return TargetCheck(None, True)
        return TargetCheck(current, await self.is_ancestor(service, current, new))

    async def _rest_check_target(self, service: ServiceConfig, new: Sha) -> TargetCheck:
        """``compare/{target branch}...{new}``: the target's current sha (``base_commit``) and whether
        ``new`` fast-forwards it, in one request. A 404 (target missing, or no common history) is
        settled with the exact branch read."""
        branch = quote(service.target, safe="/")
        reply = await self._compare(service, branch, new, f"re-reading '{service.target}'")
        if reply.status == 404:
            current = await self.read_target(service)
            if current is None:
                return TargetCheck(None, True)
            return TargetCheck(current, await self.is_ancestor(service, current, new))
        body = (reply.json_object() or {}) if reply.status == 200 else {}
        base = body.get("base_commit")
        status = body.get("status")
        sha = base.get("sha") if isinstance(base, dict) else None
        known = ("ahead", "identical", "behind", "diverged")
        if reply.status == 200 and isinstance(sha, str) and status in known:
            try:
                return TargetCheck(Sha(sha), status in ("ahead", "identical"))
            except ValueError:
                pass
        detail = reply.describe() + (f" ({reply.gave_up})" if reply.gave_up else "")
        raise ForgeError(
            f"{service.repo}: cannot re-read '{service.target}' before pushing: {detail}",
            status=reply.status,
            transient=reply.status is None or reply.status >= 500,
        )

    # -- writes ---------------------------------------------------------------------

    async def reserve_writes(self, pushes: Sequence[ServiceConfig], others: int) -> None:
        """Wait now, before the pre-push re-read, when the run's writes would pass GitHub's write
        limits mid-push (see :mod:`lockstep.forges.github.budget`)."""
        needs = [(self._push_tokens[s.name], 1) for s in pushes] + [(self.read_token, others)]
        plan = self.http.budget.plan(needs)
        if not plan.fits:
            log.warn(
                f"{plan.why}: GitHub will refuse some pushes for up to a minute and prod stays split "
                "while lockstep waits (docs/github-api.md, 'At scale'); give the services tokens of "
                "their own, or split the gate"
            )
        if plan.wait <= 0:
            return
        longest = max(self.http.retry.max_wait, MINUTE_WAIT)  # a minute's window is always waited out
        if plan.wait > longest:
            raise ForgeError(
                f"{plan.why}; the wait for room ({plan.wait:.0f}s) is longer than lockstep waits "
                f"({longest:g}s): nothing was pushed, run again later"
            )
        log.warn(f"waiting {plan.wait:.0f}s before the pre-push re-read: {plan.why}, and a wait "
                 "between two pushes would split prod")
        await self.http.sleep(plan.wait)

    async def advance(self, service: ServiceConfig, old: Sha, new: Sha) -> PushResult:
        """Fast-forward the target from ``old`` to ``new`` with ``PATCH git/refs`` (``force: false``).

        GitHub's PATCH has no "expected old sha" parameter, so compare-and-swap
        is approximated: the gate re-reads every target (``check_target``, all at
        once) right before the first push and blocks unless each is still at
        ``old``; the PATCHes then go out back to back, so the split window is one
        round trip per service. The residual window between that read and a
        PATCH is closed only partly by ``force: false``: a writer that moves the
        target *forward* to a commit that is an ancestor of ``new`` in that
        window is overtaken (no commit is lost, the target still only moves to
        this run's ``new``); any other move makes GitHub refuse the PATCH as not
        a fast-forward, and the re-read after it reports the truth.
        """
        return await self._patch(service, old, new, force=False)

    async def rewind(self, service: ServiceConfig, current: Sha, to: Sha) -> PushResult:
        """Move the target back to ``to`` (``reconcile --rollback`` only): the one ``force: true`` PATCH.

        Guarded like ``advance``: nothing is sent unless the target is still at ``current``.
        """
        where = f"{service.repo}: '{service.target}'"
        try:
            now = await self.read_target(service)  # a target that moved is never rewound
        except ForgeError as exc:
            return PushResult(PushStatus.REJECTED, f"{exc}; no push was sent")
        if now != current:
            return PushResult(
                PushStatus.CONCURRENT,
                f"{where} is at {_short(now)}, not {current.short} as read earlier in this run: "
                f"another writer moved it; no push was sent",
            )
        return await self._patch(service, current, to, force=True)

    async def _patch(self, service: ServiceConfig, old: Sha, new: Sha, *, force: bool) -> PushResult:
        owner, name = self._repo(service)
        return await self._write(
            service,
            "PATCH",
            ref_path(owner, name, service.target),
            {"sha": str(new), "force": force},
            before=old,
            new=new,
            ok=200,
        )

    async def create(self, service: ServiceConfig, new: Sha) -> PushResult:
        """Seed the missing target with ``POST git/refs``: atomic, 422 if it exists by now."""
        owner, name = self._repo(service)
        return await self._write(
            service,
            "POST",
            f"/repos/{quote(owner)}/{quote(name)}/git/refs",
            {"ref": f"refs/heads/{service.target}", "sha": str(new)},
            before=None,
            new=new,
            ok=201,
        )

    async def _write(
        self,
        service: ServiceConfig,
        method: str,
        path: str,
        body: Mapping[str, object],
        *,
        before: Sha | None,
        new: Sha,
        ok: int,
    ) -> PushResult:
        """Send one write; on anything but a clean success, re-read and classify.

        A 3xx/4xx is a refusal (nothing applied); a 5xx, a timeout or a dropped
        connection is unclear (it may have applied), so the ref is re-read and
        the write is repeated once only if the target is provably still at
        ``before``.
        """
        token = self._push_tokens[service.name]
        target = service.target
        verb = "advance" if before is not None else "create"
        where = f"{service.repo}: {verb} '{target}'"
        outcome = ""
        in_flight = False  # an attempt went out and got no answer: it may still be applied later
        for attempt in (1, 2):
            reply = await self.http.send(method, path, token=token, json_body=body)
            in_flight = in_flight or (reply.response is None and not reply.not_sent)
            if reply.status == ok and self._body_sha(reply) in (new, None):
                return PushResult(PushStatus.LANDED, f"{where} → {new.short}")
            if attempt == 1 and is_rate_limited(reply):
                # GitHub refuses a rate-limited request before applying it: waiting and
                # sending it again is safe, and turns a wait into a promotion, not a split.
                wait, why, _ = self.http.wait_for(reply, attempt)
                if wait <= self.http.retry.max_wait:
                    log.warn(f"{where}: rate limited ({why}); not applied; retrying once in {wait:.0f}s")
                    await self.http.sleep(wait)
                    continue
            outcome = reply.describe()
            refused = reply.status is not None and 300 <= reply.status < 500 and reply.status != ok
            log.warn(
                f"{where}: {method} {'refused' if refused else 'gave no clear answer'} "
                f"({outcome}); re-reading '{target}'"
            )
            try:
                now = await self.read_target(service)
            except ForgeError as exc:
                if refused:
                    return PushResult(
                        PushStatus.REJECTED, f"{where} refused ({outcome}); re-read also failed: {exc}"
                    )
                return PushResult(PushStatus.UNKNOWN, f"{where}: {outcome}; cannot re-read to confirm: {exc}")
            if now == new:
                return PushResult(
                    PushStatus.LANDED, f"{where} → {new.short} (confirmed by re-read after {outcome})"
                )
            if now != before:
                return PushResult(
                    PushStatus.CONCURRENT,
                    f"{where}: {outcome}; '{target}' is now at {_short(now)}, neither "
                    f"{_short(before)} nor {new.short}: another writer moved it",
                )
            if refused and not in_flight:
                return PushResult(
                    PushStatus.REJECTED,
                    f"{where} rejected ({outcome}); '{target}' unchanged at {_short(now)}",
                )
            if refused:
                break  # the unanswered first attempt may still land: not "nothing was pushed"
            if attempt == 1:
                log.warn(f"{where}: did not land ('{target}' still at {_short(now)}); retrying once")
        if in_flight:
            # An attempt got no answer at all (a timeout, a connection lost after sending): it may
            # still be applied after the re-read, so a target still at the old sha proves nothing.
            return PushResult(
                PushStatus.UNKNOWN,
                f"{where}: an attempt got no answer ({outcome}); '{target}' was still at "
                f"{_short(before)} when re-read, but that write may still land",
            )
        return PushResult(
            PushStatus.REJECTED,
            f"{where} did not land after 2 attempts ({outcome}); '{target}' unchanged at {_short(before)}",
        )

    @staticmethod
    def _body_sha(reply: Reply) -> str | None:
        """The ref's sha in a write's answer; None when the body does not say."""
        obj = (reply.json_object() or {}).get("object")
        sha = obj.get("sha") if isinstance(obj, dict) else None
        return sha if isinstance(sha, str) else None

    # -- what the audit sink, the lock and the record store share ---------------------

    def push_token(self, service: ServiceConfig) -> Secret:
        return self._push_tokens[service.name]

    def repo_of(self, service: ServiceConfig) -> tuple[str, str]:
        return self._repo(service)

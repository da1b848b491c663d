"""The world one chaos scenario runs in, one class per forge: the fake GitHub or bare git
repositories with hooks, built as the scenario says, and read back for the invariants."""

from __future__ import annotations

import json
import random
import shutil
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lockstep.demo import git
from tests.chaos.scenario import (
    GATE,
    OWNER,
    REQUEST_TIMEOUT,
    TRACKER_ISSUE,
    TRACKER_REPO,
    FaultPlan,
    Scenario,
    ServicePlan,
)
from tests.support.fakegithub.graphql import repositories_read
from tests.support.gitworld import install_hook, read_ref, write_ref
from tests.support.staging import Staging

# ------------------------------------------------------------------------------------ worlds


class LoggedStaging(Staging):
    """A staging stub that logs (monotonic, wall, path, status) per answer.

    ``health_ready_after`` counts from the first health request, so "slow" and
    "late" do not depend on how long the run took to get there.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.log: list[tuple[float, float, str, int]] = []
        self._first_health = True

    def _handle(self, h: Any) -> None:
        path = h.path.split("?", 1)[0]
        if path in ("/health", "/healthcheck") and self._first_health:
            self._first_health = False
            self.restart_clock()
        original = h.send_response

        def send_response(code: int, message: str | None = None) -> None:
            self.log.append((time.monotonic(), time.time(), path, code))
            original(code, message)

        h.send_response = send_response
        super()._handle(h)


def version_setup(plan: ServicePlan, src: str, other: str) -> tuple[dict[str, Any], str]:
    """Staging keyword arguments and the config's version_field for one service."""
    field_name = "build.commit" if plan.version == "nested" else "sha"
    kw: dict[str, Any] = {}
    if plan.version == "ok":
        kw["version_body"] = {"sha": src}
    elif plan.version == "nested":
        kw["version_body"] = {"build": {"commit": src}}
    elif plan.version == "mismatch":
        kw["version_body"] = {"sha": other}
    else:
        kind = plan.version.split(":", 1)[1]
        big = b'{"sha": "' + b"a" * 100_000 + b'"}'
        bodies: dict[str, Any] = {
            "notjson": b"<html>oops</html>",
            "empty": b"",
            "truncated": b'{"sha": "' + src.encode()[:20],
            "wrongtype": {"sha": 12345},
            "null": {"sha": None},
            "array": [src],
            "upper": {"sha": src.upper()},
            "short": {"sha": src[:7]},
            "padded": {"sha": " " + src + "\n"},
            "missingfield": {"version": src},
            "huge": big,
            "huge-nolength": big,
            "status500": {"sha": src},
            "redirect": {"sha": src},
            "trickle": {"sha": src},
            "deep": b"[" * 60_000,
            "bidi": {"sha": "\u202e" + src},
            "nan": b'{"sha": NaN}',
            "bigint": b'{"sha": 1' + b"0" * 5000 + b"}",
            "gzip-bomb": None,
        }
        kw["version_body"] = bodies[kind]
        if kind == "huge-nolength":
            kw["version_content_length"] = False
        elif kind == "status500":
            kw["version_status"] = 500
        elif kind == "redirect":
            kw["version_status"] = 302
            kw["version_headers"] = {"Location": "http://127.0.0.1:9/version"}
        elif kind == "trickle":
            kw["trickle"] = 0.03
        elif kind == "gzip-bomb":
            import gzip

            kw["version_body"] = gzip.compress(b'{"sha": "' + b"0" * 20_000_000 + b'"}', 9)
            kw["version_headers"] = {"Content-Encoding": "gzip"}
    return kw, field_name



@dataclass
class Write:
    """One attempt to move a target, as the forge saw it (applied or not)."""

    service: int
    order: int  # position in the forge's log
    mono: float | None
    wall: float | None
    sha: str | None
    force: bool
    audit_size: int = -1  # git: audit file size when the push arrived
    kind: str = "forward"  # forward (to the source sha) | rewind (back to the start sha: rollback)


def _place(start: str, chain: list[str], side: str, behind_by: int) -> tuple[str, str | None]:
    """(source head, start target) for a start state."""
    if start == "equal":
        return chain[-1], chain[-1]
    if start == "behind":
        return chain[-1], chain[-1 - behind_by]
    if start == "missing":
        return chain[-1], None
    if start == "diverged":
        return chain[-1], side
    return chain[-2], chain[-1]  # ahead: the target is a descendant of the source


class Tokens:
    """Planted secrets, unique per scenario, that must never show up anywhere."""

    def __init__(self, rng: random.Random, n: int) -> None:
        def make(prefix: str) -> str:
            return prefix + "".join(rng.choice("ABCDEFGHJKLMNPQRSTUVWXYZ23456789") for _ in range(24))

        self.read = make("ghp_CHAOSREAD")
        self.push = [make(f"github_pat_CHAOSPUSH{k}x") for k in range(n)]

    @property
    def all(self) -> list[str]:
        return [self.read, *self.push]


def _fake_fault(fp: FaultPlan) -> Any:
    """The fake GitHub's fault for a planned one."""
    from tests.support.fakegithub import Fault

    if fp.kind.startswith("http-"):
        code = int(fp.kind[5:])
        if code == 403:
            return Fault.status(403, "Resource not accessible by personal access token",
                                {"X-Accepted-GitHub-Permissions": "contents=write"})
        if code == 401:
            return Fault.status(401, "Bad credentials")
        return Fault.status(code)
    if fp.kind.startswith("rate-limit"):
        return Fault.rate_limit(fp.limit, fp.status, fp.retry_after, fp.reset_in)  # type: ignore[arg-type]
    if fp.kind in ("timeout", "latency"):
        return Fault.delay(fp.seconds)
    if fp.kind == "drop-before":
        return Fault.drop_before()
    return Fault.drop_after()


class GitHubWorld:
    clock = "mono"

    def __init__(self, sc: Scenario, root: Path, tokens: Tokens) -> None:
        from tests.support.fakegithub import FakeGitHub

        self.sc, self.tokens = sc, tokens
        self.gh = FakeGitHub().start()
        self.start: list[str | None] = []
        self.source: list[str] = []
        self.other: list[str] = []
        self.outsider: list[str | None] = []
        for k, plan in enumerate(sc.services):
            self._add_service(k, plan)
        self._outsider_done: dict[int, tuple[int, str | None]] = {}
        if any(o is not None for o in self.outsider):
            self._install_outsider()
        self._add_tracker()
        self._add_tokens()
        self.injections = [
            (fp, self.gh.inject(_fake_fault(fp), method=fp.method, path=fp.path, nth=fp.nth, times=fp.times))
            for fp in sc.faults
        ]

    def _add_service(self, k: int, plan: ServicePlan) -> None:
        """Service k's repository: its commits, main and prod at the plan's start state, protection,
        and the commit another writer will move prod to (if any)."""
        gh, repo = self.gh, self.repo(k)
        gh.add_repo(repo)
        chain = [gh.commit(repo, message=f"{plan.name} 0")]
        for i in range(1, plan.chain):
            chain.append(gh.commit(repo, parents=(chain[-1],), message=f"{plan.name} {i}"))
        side = gh.commit(repo, parents=(chain[0],), message=f"{plan.name} side")
        src, s0 = _place(plan.start, chain, side, plan.behind_by)
        gh.set_branch(repo, "main", src)
        if s0 is not None:
            gh.set_branch(repo, "prod", s0)
        if plan.protected:
            gh.protect(repo, "prod")
        self.start.append(s0)
        self.source.append(src)
        self.other.append(s0 if s0 not in (None, src) else chain[0] if chain[0] != src else side)
        outside: str | None = None
        if plan.outsider == "between" and plan.start == "behind" and plan.behind_by >= 2:
            outside = chain[-plan.behind_by]  # strictly between start and source
        elif plan.outsider != "none":
            outside = gh.commit(repo, parents=(src,), message=f"{plan.name} hotfix pushed by hand")
        self.outsider.append(outside)

    def _add_tracker(self) -> None:
        """The bypass tracker issue, as the scenario's audit plan wants it (missing, locked, disabled)."""
        gh, audit = self.gh, self.sc.audit
        if audit == "missing-issue":
            gh.add_issue(TRACKER_REPO, TRACKER_ISSUE + 1)
        else:
            gh.add_issue(TRACKER_REPO, TRACKER_ISSUE, locked=audit == "locked")
        gh.set_branch(TRACKER_REPO, "main", gh.commit(TRACKER_REPO, message="ops: the gate's workflow"))
        if audit == "disabled":
            gh.disable_issues(TRACKER_REPO)

    def _add_tokens(self) -> None:
        """The read token (unless unknown) and each service's push token (unless unknown)."""
        sc, gh, tokens = self.sc, self.gh, self.tokens
        readable = [self.repo(k) for k, p in enumerate(sc.services) if p.readable]
        if sc.read_token_ok:
            gh.add_token(tokens.read, read=readable, write=[TRACKER_REPO])
        for k, plan in enumerate(sc.services):
            repo = self.repo(k)
            if plan.push_token == "ok":
                gh.add_token(tokens.push[k], read=[repo], write=[repo])
            elif plan.push_token == "read-only":
                gh.add_token(tokens.push[k], read=[repo])

    def _install_outsider(self) -> None:
        """Another writer moves a target right after lockstep's nth successful read of it (a branch read
        or a compare against it; answered, not yet sent): invisible to that read, visible to later ones."""
        gh, original = self.gh, self.gh._dispatch
        counts: Counter[int] = Counter()
        guard = threading.Lock()

        def dispatch(method: str, target: str, headers: Any, body: bytes, connection: int) -> Any:
            began = time.monotonic()
            reply = original(method, target, headers, body, connection)
            path = target.split("?", 1)[0]
            if reply.response is None or reply.response.status != 200:
                return reply  # lockstep must have seen the target before another writer moves it
            if time.monotonic() - began >= REQUEST_TIMEOUT * 0.9:
                return reply  # answered after lockstep gave up waiting: lockstep never saw it
            queried = repositories_read(body) if method == "POST" and path == "/graphql" else set()
            for k, plan in enumerate(self.sc.services):
                reads = (f"/repos/{OWNER}/s{k}/branches/prod", f"/repos/{OWNER}/s{k}/compare/prod...")
                rest_read = method == "GET" and path.startswith(reads)
                if self.outsider[k] is None or not (rest_read or self.repo(k) in queried):
                    continue
                with guard:
                    counts[k] += 1
                    if counts[k] != plan.outsider_after or k in self._outsider_done:
                        continue
                    self._outsider_done[k] = (len(gh.requests), gh.branch(self.repo(k), "prod"))
                    gh.set_branch(self.repo(k), "prod", self.outsider[k] or "")
            return reply

        gh._dispatch = dispatch  # type: ignore[method-assign]

    def outsider_before(self) -> list[str | None]:
        """Where each target was when another writer moved it (None: no outside move happened)."""
        out: list[str | None] = [None] * len(self.sc.services)
        for k, (_, before) in self._outsider_done.items():
            out[k] = before
        return out

    def final_seen(self, truth: list[str | None]) -> list[str | None]:
        """The positions lockstep could know: an outside move after its last read of a target is invisible."""
        seen = list(truth)
        requests = self.gh.requests
        for k, (index, before) in self._outsider_done.items():
            read = f"/repos/{OWNER}/s{k}/branches/prod"
            patch, post = f"/repos/{OWNER}/s{k}/git/refs/heads/prod", f"/repos/{OWNER}/s{k}/git/refs"
            learned = any(
                (r.method == "GET" and r.path == read and r.status == 200)
                or (r.path == "/graphql" and r.status == 200 and self.repo(k) in repositories_read(r.body))
                or (r.method == "PATCH" and r.path == patch and r.status == 200)
                or (r.method == "POST" and r.path == post and r.status == 201
                    and isinstance(r.json, dict) and r.json.get("ref") == "refs/heads/prod")
                for r in requests[index:]
            )
            if not learned:  # lockstep neither read nor wrote the target after the move
                seen[k] = before
        return seen

    def env(self) -> dict[str, str]:
        env = {"GITHUB_API_URL": self.gh.url, "GITHUB_TOKEN": self.tokens.read}
        for k in range(len(self.sc.services)):
            if self.sc.setup_error == "missing-token-env" and k == len(self.sc.services) - 1:
                continue
            env[f"CHAOS_PUSH_{k}"] = self.tokens.push[k]
        return env

    def repo(self, k: int) -> str:
        return f"{OWNER}/s{k}"

    def tracker(self) -> str:
        return f"{TRACKER_REPO}#{TRACKER_ISSUE}"

    def first_request_seen(self) -> bool:
        return bool(self.gh.requests)

    def settle(self) -> None:
        """Wait until every delayed request has been handled (a late write lands before we look)."""
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline:
            if all(r.status is not None for r in self.gh.requests if r.fault == "delay"):
                return
            time.sleep(0.01)

    def final(self) -> list[str | None]:
        return [self.gh.branch(self.repo(k), "prod") for k in range(len(self.sc.services))]

    def writes(self) -> list[Write]:
        out = []
        for i, r in enumerate(self.gh.requests):
            body = r.json if isinstance(r.json, dict) else {}
            for k in range(len(self.sc.services)):
                base = f"/repos/{OWNER}/s{k}/git/refs"
                if r.method == "PATCH" and r.path == base + "/heads/prod":
                    force = body.get("force") is not False
                    kind = "rewind" if force and body.get("sha") == self.start[k] else "forward"
                    out.append(Write(k, i, r.at, None, body.get("sha"), force, kind=kind))
                elif r.method == "POST" and r.path == base and body.get("ref") == "refs/heads/prod":
                    out.append(Write(k, i, r.at, None, body.get("sha"), False))
        return out

    def audit_before(self, order: int) -> bool:
        """Was an audit comment stored by a request logged before position ``order``?"""
        path = f"/repos/{TRACKER_REPO}/issues/{TRACKER_ISSUE}/comments"
        for r in self.gh.requests[:order]:
            if r.method == "POST" and r.path == path and (r.status == 201 or r.fault == "drop_after"):
                return bool(self.audit_records())
        return False

    def audit_between(self, after: int, before: int) -> bool:
        """Was an audit comment stored by a request logged strictly between two positions?"""
        path = f"/repos/{TRACKER_REPO}/issues/{TRACKER_ISSUE}/comments"
        return any(
            r.method == "POST" and r.path == path and (r.status == 201 or r.fault == "drop_after")
            for r in self.gh.requests[after + 1 : before]
        )

    def audit_records(self) -> list[str]:
        try:
            return [c["body"] for c in self.gh.comments(TRACKER_REPO, TRACKER_ISSUE)]
        except KeyError:
            return []

    def lock_left(self) -> bool:
        return self.gh.branch(self.repo(0), f"lockstep-lock/{GATE}") is not None

    def leak_texts(self) -> list[tuple[str, str]]:
        """Everything lockstep sent to the forge except the Authorization headers."""
        out = []
        for r in self.gh.requests:
            out.append((f"request body {r.method} {r.path}", r.body.decode("utf-8", "replace")))
            out.append((f"request path {r.method}", r.path + json.dumps(r.query)))
            for name, value in r.headers.items():
                if name != "authorization":
                    out.append((f"request header {name}", value))
        return out

    def faulted_service(self, k: int) -> bool:
        """Did any injected fault (or token problem) hit a request about service k?"""
        prefix = f"/repos/{OWNER}/s{k}/"
        return any(r.fault and r.path.startswith(prefix) for r in self.gh.requests)

    def fired(self) -> Counter[str]:
        c: Counter[str] = Counter()
        for fp, inj in self.injections:
            if inj.fired:
                c[fp.kind] += inj.fired
        return c

    def close(self) -> None:
        self.gh.stop()


class GitWorld:
    clock = "wall"

    def __init__(self, sc: Scenario, root: Path, tokens: Tokens) -> None:
        self.sc, self.root, self.tokens = sc, root, tokens
        self.start: list[str | None] = []
        self.source: list[str] = []
        self.other: list[str] = []
        self.outsider: list[str | None] = [None] * len(sc.services)
        self.hook_log = root / "pushes.log"
        self.audit_path = root / ("nodir/audit.md" if sc.audit == "no-dir" else "audit.md")
        for k, plan in enumerate(sc.services):
            bare = root / f"s{k}.git"
            shas = _template_repo(plan, bare)
            chain = [shas[i + 1] for i in range(plan.chain)]
            side = shas[100]
            src, s0 = _place(plan.start, chain, side, plan.behind_by)
            write_ref(bare, "main", src)
            if s0 is not None:
                write_ref(bare, "prod", s0)
            self.start.append(s0)
            self.source.append(src)
            self.other.append(s0 if s0 not in (None, src) else chain[0] if chain[0] != src else side)
            reject = "exit 1" if plan.hook == "reject" else "exit 0"
            install_hook(bare, "pre-receive", (
                f'size=0; [ -f "{self.audit_path}" ] && size=$(wc -c < "{self.audit_path}")\n'
                'while read old new ref; do\n'
                f'  echo "$(date +%s.%N) {k} $old $new $ref $size" >> "{self.hook_log}"\n'
                'done\n'
                + ('echo "chaos: pushes to this repository are refused" >&2\n' if plan.hook == "reject" else "")
                + reject
            ))
            if plan.hook == "vanish":
                install_hook(bare, "post-receive", 'mv "$PWD" "$PWD.gone"\n')
            if plan.missing_repo:
                shutil.move(str(bare), str(root / f"s{k}.missing"))

    def env(self) -> dict[str, str]:
        env = {}
        for k in range(len(self.sc.services)):
            env[f"CHAOS_PUSH_{k}"] = self.tokens.push[k]
        return env

    def repo(self, k: int) -> str:
        return f"s{k}.git"

    def tracker(self) -> str:
        return str(self.audit_path.relative_to(self.root))

    def first_request_seen(self) -> bool:
        return True

    def settle(self) -> None:
        pass

    def _bare(self, k: int) -> Path:
        bare = self.root / f"s{k}.git"
        gone = self.root / f"s{k}.git.gone"
        missing = self.root / f"s{k}.missing"
        if not bare.exists() and gone.exists():
            gone.rename(bare)
        if not bare.exists() and missing.exists():
            missing.rename(bare)
        return bare

    def final(self) -> list[str | None]:
        return [read_ref(self._bare(k), "prod") for k in range(len(self.sc.services))]

    def final_seen(self, truth: list[str | None]) -> list[str | None]:
        return list(truth)

    def outsider_before(self) -> list[str | None]:
        return [None] * len(self.sc.services)

    def writes(self) -> list[Write]:
        out: list[Write] = []
        if not self.hook_log.exists():
            return out
        for i, line in enumerate(self.hook_log.read_text().splitlines()):
            wall, k, _old, new, ref, size = line.split()
            if ref == "refs/heads/prod":
                kind = "rewind" if new == self.start[int(k)] else "forward"
                out.append(Write(int(k), i, None, float(wall), new, False, int(size), kind=kind))
        return out

    def audit_before(self, order: int) -> bool:
        writes = [w for w in self.writes() if w.order <= order]
        return bool(writes) and writes[-1].audit_size > 0 and bool(self.audit_records())

    def audit_between(self, after: int, before: int) -> bool:
        writes = {w.order: w for w in self.writes()}
        return before in writes and after in writes and writes[before].audit_size > writes[after].audit_size

    def audit_records(self) -> list[str]:
        jsonl = self.audit_path.with_name(self.audit_path.name + ".jsonl")
        if not jsonl.exists():
            return []
        return jsonl.read_text().splitlines()

    def lock_left(self) -> bool:
        return False

    def leak_texts(self) -> list[tuple[str, str]]:
        out = []
        for path in (self.audit_path, self.audit_path.with_name(self.audit_path.name + ".jsonl")):
            if path.exists():
                out.append((f"audit file {path.name}", path.read_text(errors="replace")))
        return out

    def faulted_service(self, k: int) -> bool:
        plan = self.sc.services[k]
        return plan.hook != "none" or plan.missing_repo

    def fired(self) -> Counter[str]:
        return Counter()

    def close(self) -> None:
        pass


_TEMPLATES: dict[tuple[str, int], tuple[Path, dict[int, str]]] = {}


def _template_repo(plan: ServicePlan, dest: Path) -> dict[int, str]:
    """Copy a bare repository holding the plan's commits into ``dest``; return mark -> sha.

    Each worker builds one template per (service name, chain length) with
    ``git fast-import`` and copies it afterwards: no git process per scenario.
    """
    key = (plan.name, plan.chain)
    if key not in _TEMPLATES:
        base = Path(tempfile.mkdtemp(prefix="chaos-template-"))
        bare = base / "t.git"
        git("init", "--quiet", "--bare", str(bare))
        marks = base / "marks"
        git("--git-dir", str(bare), "fast-import", "--quiet", f"--export-marks={marks}",
             input=_fast_import_stream(plan))
        shas = {}
        for line in marks.read_text().splitlines():
            mark, sha = line.split()
            shas[int(mark[1:])] = sha
        for sample in (bare / "hooks").glob("*.sample"):
            sample.unlink()
        _TEMPLATES[key] = (bare, shas)
    template, shas = _TEMPLATES[key]
    shutil.copytree(template, dest, symlinks=True)
    return shas


def _fast_import_stream(plan: ServicePlan) -> str:
    """Commits ``:1..:chain`` in a line and ``:100`` off ``:1``, named after the service."""
    out: list[str] = []

    def commit(ref: str, mark: int, parent: int | None, text: str) -> None:
        content = f"{plan.name}: {text}\n"
        out.extend([f"commit {ref}", f"mark :{mark}", f"committer Chaos <c@chaos.invalid> {1700000000 + mark} +0000",
                    f"data {len(text.encode())}", text])
        if parent is not None:
            out.append(f"from :{parent}")
        out.extend(["M 644 inline f", f"data {len(content.encode())}", content])

    for i in range(plan.chain):
        commit("refs/chaos/chain", i + 1, i if i else None, f"{plan.name} {i}")
    commit("refs/chaos/side", 100, 1, f"{plan.name} side")
    return "\n".join(out) + "\n"



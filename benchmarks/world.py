"""The benchmark world: the fake GitHub with N repositories, staging for each, a config.

Every repository ``bench/svc-<i>`` holds ``c1`` (prod) → ``c2`` (main); staging
reports ``c2``; :meth:`BenchWorld.reset` puts every prod back on ``c1`` so each
run has N real fast-forwards to do.  Both lockstep and the baseline run as
child processes against it (:func:`run_child` measures wall time, CPU time and
peak memory from the child's rusage), and :func:`forge_metrics` reads the
fake's request log for request counts, connections and the split window.
"""

from __future__ import annotations

import math
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tests.support.fakegithub import FakeGitHub, RecordedRequest
from tests.support.fakegithub.limits import is_mutation

from benchmarks.staging import MultiStaging
from lockstep.loopback import Served

READ_TOKEN = "ghp_benchREAD" + "r" * 28
PUSH_TOKEN = "github_pat_benchPUSH" + "p" * 30


def push_token(i: int) -> str:
    """Service i's own push token (GitHub's write limits count per token: see docs/github-api.md)."""
    return f"{PUSH_TOKEN[:-6]}{i:06d}"
OWNER = "bench"
RECORDS_REPO = f"{OWNER}/ops"
TARGET = "prod"
_TARGET_WRITE = re.compile(rf"/repos/{OWNER}/[^/]+/git/refs(/heads/{TARGET})?")
WRITE_METHODS = frozenset({"POST", "PATCH", "PUT", "DELETE"})
ROOT = Path(__file__).resolve().parent.parent


def service_name(i: int) -> str:
    return f"svc-{i:02d}"


@dataclass(frozen=True)
class ChildRun:
    """One child process: exit code, wall seconds, CPU seconds (user+sys), peak RSS in MiB."""

    code: int
    wall: float
    cpu: float
    maxrss_mib: float
    stdout: str
    stderr: str
    started: float = 0.0  # time.monotonic() just before the child was spawned
    ended: float = 0.0  # time.monotonic() once it was reaped


@dataclass(frozen=True)
class ForgeMetrics:
    """What the fake GitHub saw during one run."""

    reads: int
    writes: int
    connections: int
    target_writes: int
    split_window: float  # seconds between the first and the last target write (0 when < 2)
    by_endpoint: dict[str, int]
    first_at: float = math.nan  # arrival of the first request (time.monotonic())
    last_at: float = math.nan  # arrival of the last request


def run_child(argv: Sequence[str], env: dict[str, str], cwd: Path, timeout: float = 600.0) -> ChildRun:
    """Run ``argv``; measure wall time and the child's own rusage (os.wait4)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.monotonic()
        start = time.perf_counter()
        proc = subprocess.Popen(list(argv), env=env, cwd=cwd, stdout=out, stderr=err)
        deadline = start + timeout
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() > deadline:
                proc.kill()
                pid, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.0005)
        wall = time.perf_counter() - start
        ended = time.monotonic()
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return ChildRun(
            code=proc.returncode,
            wall=wall,
            cpu=usage.ru_utime + usage.ru_stime,
            maxrss_mib=usage.ru_maxrss / 1024,  # KiB on Linux
            stdout=out.read().decode("utf-8", "replace"),
            stderr=err.read().decode("utf-8", "replace"),
            started=started,
            ended=ended,
        )


_KINDS = (
    (re.compile(r"/repos/[^/]+/[^/]+/branches/.+"), "branches"),
    (re.compile(r"/repos/[^/]+/[^/]+/compare/.+"), "compare"),
    (re.compile(r"/repos/[^/]+/[^/]+/git/refs?(/.*)?"), "git/refs"),
    (re.compile(r"/repos/[^/]+/[^/]+/issues/\d+/comments"), "issue comments"),
    (re.compile(r"/repos/[^/]+/[^/]+/deployments/\d+/statuses"), "deployment statuses"),
    (re.compile(r"/repos/[^/]+/[^/]+/deployments"), "deployments"),
    (re.compile(r"/repos/[^/]+/[^/]+/(commits|statuses)/.+"), "commit statuses/checks"),
)


def _endpoint(req: RecordedRequest) -> str:
    for pattern, kind in _KINDS:
        if pattern.fullmatch(req.path):
            return f"{req.method} {kind}"
    parts = req.path.split("/")
    return f"{req.method} {'/'.join(parts[4:5]) or req.path}"


def forge_metrics(requests: Sequence[RecordedRequest]) -> ForgeMetrics:
    writes = [r for r in requests if r.method in WRITE_METHODS
              and (r.path != "/graphql" or is_mutation(r.body))]  # a GraphQL query is a read
    targets = [r for r in writes if r.method in ("PATCH", "POST") and _TARGET_WRITE.fullmatch(r.path)]
    by_endpoint: dict[str, int] = {}
    for r in requests:
        key = _endpoint(r)
        by_endpoint[key] = by_endpoint.get(key, 0) + 1
    split = (targets[-1].at - targets[0].at) if len(targets) >= 2 else 0.0
    return ForgeMetrics(
        reads=len(requests) - len(writes),
        writes=len(writes),
        connections=len({r.connection for r in requests}),
        target_writes=len(targets),
        split_window=split,
        by_endpoint=by_endpoint,
        first_at=requests[0].at if requests else math.nan,
        last_at=requests[-1].at if requests else math.nan,
    )


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


class BenchWorld(Served):
    """``with BenchWorld(n=10, latency=0.025) as w: w.reset(); w.run_lockstep()``."""

    def __init__(
        self,
        n: int,
        latency: float,
        *,
        check: bool = True,
        health_interval: float = 5.0,
        health_timeout: float = 300.0,
    ) -> None:
        self.n = n
        self.latency = latency
        self.check = check
        self.health_interval = health_interval
        self.health_timeout = health_timeout
        self.gh = FakeGitHub()
        self.staging = MultiStaging()
        self._tmp = tempfile.TemporaryDirectory(prefix="lockstep-bench-")
        self.dir = Path(self._tmp.name)
        self.config = self.dir / "lockstep.toml"
        self.report = self.dir / "report.json"
        self.c1: dict[str, str] = {}
        self.c2: dict[str, str] = {}

    # -- lifecycle -----------------------------------------------------------------

    def start(self) -> BenchWorld:
        self.gh.start()
        self.staging.start()
        repos = []
        for i in range(self.n):
            name = service_name(i)
            repo = f"{OWNER}/{name}"
            repos.append(repo)
            self.gh.add_repo(repo)
            c1 = self.gh.commit(repo)
            c2 = self.gh.commit(repo, parents=(c1,))
            self.c1[name], self.c2[name] = c1, c2
            self.gh.set_branch(repo, "main", c2)
            self.staging.set(name, c2)
        self.gh.add_repo(RECORDS_REPO)  # where the promotion records live (a branch of its own)
        self.gh.set_branch(RECORDS_REPO, "main", self.gh.commit(RECORDS_REPO))
        self.gh.add_token(READ_TOKEN, read=repos, write=[RECORDS_REPO])
        for i, repo in enumerate(repos):  # one token per service, as the setup guide asks
            self.gh.add_token(push_token(i), read=[repo], write=[repo])
        self.write_config()
        self.set_latency(self.latency)
        self.reset()
        return self

    def stop(self) -> None:
        self.staging.stop()
        self.gh.stop()
        self._tmp.cleanup()

    def set_latency(self, latency: float) -> None:
        self.latency = latency
        self.gh.latency = latency
        self.staging.latency = latency

    def write_config(self) -> None:
        lines = [
            "[gate]",
            'name = "bench"',
            'forge = "github"',
            f'health_interval = "{self.health_interval:g}s"',
            f'health_timeout = "{self.health_timeout:g}s"',
            f'records_repo = "{RECORDS_REPO}"',
            "",
        ]
        for i in range(self.n):
            name = service_name(i)
            lines += [
                "[[services]]",
                f'name = "{name}"',
                f'repo = "{OWNER}/{name}"',
                'source = "main"',
                f'target = "{TARGET}"',
                f'token_env = "BENCH_PUSH_TOKEN_{i}"',
                f'health_url = "${{BENCH_STAGING}}/{name}/health"',
                f'version_url = "${{BENCH_STAGING}}/{name}/version"',
                "",
            ]
        if self.check:
            lines += ["[[checks]]", 'name = "noop"', 'run = ["true"]', 'timeout = "1m"', ""]
        self.config.write_text("\n".join(lines), encoding="utf-8")

    def env(self) -> dict[str, str]:
        keep = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR")}
        return keep | {
            "GITHUB_TOKEN": READ_TOKEN,
            **{f"BENCH_PUSH_TOKEN_{i}": push_token(i) for i in range(self.n)},
            "GITHUB_API_URL": self.gh.url,
            "BENCH_STAGING": self.staging.url,
            "XDG_STATE_HOME": str(self.dir / "state"),
            "NO_COLOR": "1",
        }

    # -- state ---------------------------------------------------------------------

    def reset(self) -> None:
        """Every prod back on c1 (main stays on c2): the next run promotes all N."""
        for i in range(self.n):
            name = service_name(i)
            self.gh.set_branch(f"{OWNER}/{name}", TARGET, self.c1[name])
            self.staging.set(name, self.c2[name])
        self.gh.clear_requests()
        self.gh.rate_limit_remaining = 1_000_000  # measure lockstep, not the fake's 5000/h budget
        self.gh.graphql.remaining = 1_000_000
        # each measured run starts with GitHub's secondary-limit windows empty, as a run an hour after
        # the last would (back-to-back runs of N = 50 would otherwise share one minute's 80 writes)
        self.gh.limits.advance(3600)
        self.staging.clear()

    def all_promoted(self) -> bool:
        return all(
            self.gh.branch(f"{OWNER}/{service_name(i)}", TARGET) == self.c2[service_name(i)]
            for i in range(self.n)
        )

    # -- runs ----------------------------------------------------------------------

    def lockstep_argv(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "lockstep", *args]

    def run_lockstep(self) -> ChildRun:
        argv = self.lockstep_argv("run", "--config", str(self.config), "--report", str(self.report))
        return run_child(argv, self.env(), self.dir)

    def run_baseline(self) -> ChildRun:
        argv = [sys.executable, "-m", "benchmarks.baseline", "--config", str(self.config)]
        return run_child(argv, self.env(), ROOT)

    def metrics(self) -> ForgeMetrics:
        return forge_metrics(self.gh.requests)

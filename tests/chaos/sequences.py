"""Chaos sequences: 2–4 commands per scenario (runs, re-runs, bypasses, reconciles) under refusals.

One scenario is one integer seed, drawn with ``random.Random(seed)`` like the single-run
harness in :mod:`tests.chaos.harness`: a forge (bare git repositories with a pre-receive hook,
or the fake GitHub with branch protection), a first ``lockstep run`` with one service's prod
refused, then up to three more commands, with events between them that a real team causes:
the refusal lifted or moved to another service, a new commit on a service's ``main`` (with its
staging deployed to it).  Refusals persist across commands, as a protected branch does.

After every command, ``lockstep status --json`` runs, and the truth is read from the forge.
The oracle knows every set of shas a promotion meant (the prods before the first run and the
mains at each ``run``): the targets are consistent exactly when they are all at one of those
sets.  The invariants:

* ``status`` says ``split`` (exit 3) exactly when the true refs are split, else ``consistent``;
* a ``run`` or ``reconcile`` that ends with the targets split exits 3 and reports ``split``;
  one that ends consistent never exits 3;
* a usage error (exit 2) moves nothing;
* every target is only ever at one of the recorded promotion shas of its own service.
"""

from __future__ import annotations

import contextlib
import json
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.chaos.runners import run_inprocess
from tests.support.githubworld import REPOS, GitHubWorld
from tests.support.githubworld import build_world as build_github_world
from tests.support.gitworld import GitWorld
from tests.support.gitworld import build_world as build_git_world

COMMANDS = ("run", "run", "bypass", "forward", "forward-recheck", "rollback")
REFUSE_HOOK = (
    'while read o n r; do [ "$r" = refs/heads/prod ] && { echo "protected branch" >&2; exit 1; }; '
    "done; exit 0"
)


@dataclass(frozen=True)
class Step:
    """One command, with the events that happen just before it."""

    command: str  # run | bypass | forward | forward-recheck | rollback
    refuse: int | None = None  # the service whose prod refuses pushes from now on (None: no change)
    lift: bool = False  # lift every refusal
    advance: int | None = None  # a new commit on this service's main, deployed to its staging


@dataclass(frozen=True)
class Sequence:
    seed: int
    forge: str  # git | github
    allow_rollback: bool
    steps: tuple[Step, ...]

    def describe(self) -> str:
        parts = []
        for s in self.steps:
            events = [f"refuse {s.refuse}"] if s.refuse is not None else []
            events += ["lift"] if s.lift else []
            events += [f"advance {s.advance}"] if s.advance is not None else []
            parts.append((f"[{', '.join(events)}] " if events else "") + s.command)
        return f"seed {self.seed} {self.forge} allow_rollback={self.allow_rollback}: " + " → ".join(parts)


def generate(seed: int) -> Sequence:
    rng = random.Random(seed)
    steps = [Step("run", refuse=rng.choice((1, 1, 0)))]
    for _ in range(rng.randint(1, 3)):
        roll = rng.random()
        steps.append(Step(
            rng.choice(COMMANDS),
            refuse=rng.randrange(2) if roll < 0.15 else None,
            lift=0.15 <= roll < 0.5,
            advance=rng.randrange(2) if rng.random() < 0.25 else None,
        ))
    return Sequence(seed, rng.choice(("git", "github")), rng.random() < 0.85, tuple(steps))


def _argv(command: str, config: Path, report: Path) -> list[str]:
    base = ["--config", str(config)]
    if command == "run":
        return ["run", *base, "--report", str(report), "--no-progress"]
    if command == "bypass":
        return ["run", *base, "--report", str(report), "--no-progress", "--skip-gate",
                "--justification", "chaos sequence: ship it"]
    if command == "forward-recheck":
        return ["reconcile", "--forward", "--recheck", *base, "--report", str(report)]
    return ["reconcile", f"--{command}", *base, "--report", str(report), "--justification",
            "chaos sequence: repair"]


class _Forge:
    """What the sequence needs from a world: refuse, lift, advance, read the truth."""

    def __init__(self, world: GitWorld | GitHubWorld) -> None:
        self.world = world
        self.names = list(world.names)

    def refuse(self, k: int) -> None:
        w = self.world
        if isinstance(w, GitWorld):
            w.hook(self.names[k], "pre-receive", REFUSE_HOOK)
        else:
            w.gh.protect(REPOS[self.names[k]], "prod")

    def lift(self) -> None:
        w = self.world
        for name in self.names:
            if isinstance(w, GitWorld):
                (w.repos[name] / "hooks" / "pre-receive").unlink(missing_ok=True)
            else:
                w.gh.unprotect(REPOS[name], "prod")

    def advance(self, k: int) -> None:
        w, name = self.world, self.names[k]
        if isinstance(w, GitWorld):
            new = w.commit_on(name, "main")
        else:
            repo = REPOS[name]
            main = w.gh.branch(repo, "main")
            assert main is not None
            new = w.gh.commit(repo, parents=(main,), message=f"{name}: more")
            w.gh.set_branch(repo, "main", new)
        w.staging[name].version_body = {"sha": new}

    def branch(self, name: str, branch: str) -> str | None:
        w = self.world
        return w.sha(name, branch) if isinstance(w, GitWorld) else w.gh.branch(REPOS[name], branch)

    def truth(self, branch: str) -> tuple[str | None, ...]:
        return tuple(self.branch(n, branch) for n in self.names)


@contextlib.contextmanager
def _world(seq: Sequence, root: Path) -> Iterator[tuple[_Forge, Path, dict[str, str]]]:
    rollback = f"\n[recovery]\nallow_rollback = {'true' if seq.allow_rollback else 'false'}\n"
    if seq.forge == "git":
        for gw in build_git_world(root):
            config = gw.config(extra=rollback)
            yield _Forge(gw), config, gw.env()
    else:
        for hw in build_github_world(root):
            config = hw.config(checks=rollback)
            yield _Forge(hw), config, hw.env()


@dataclass
class SequenceResult:
    sequence: Sequence
    violations: list[str] = field(default_factory=list)
    log: list[str] = field(default_factory=list)


def _check_command(
    step: Step, code: int | None, report: dict[str, Any] | None, before: tuple[str | None, ...],
    after: tuple[str | None, ...], split: bool,
) -> list[str]:
    problems = []
    if code == 2 and after != before:
        problems.append(f"{step.command}: usage error (exit 2) but the targets moved {before} → {after}")
    if code is None or code not in (0, 1, 2, 3):
        problems.append(f"{step.command}: exit {code}")
    if split and code not in (2, 3):
        problems.append(f"{step.command}: the targets are split but it exited {code}")
    if split and code == 3 and (report is None or report.get("result") != "split"):
        problems.append(f"{step.command}: split, but the report says {report and report.get('result')}")
    if not split and code == 3:
        problems.append(f"{step.command}: exit 3 but the targets are consistent")
    return problems


def _check_status(out: str, code: int | None, split: bool) -> list[str]:
    try:
        verdict = json.loads(out)["verdict"]
    except (ValueError, KeyError):
        return [f"status printed no JSON verdict (exit {code}): {out[:200]!r}"]
    want = ("split", 3) if split else ("consistent", 0)
    if (verdict, code) != want:
        return [f"status said {verdict} (exit {code}); the truth is {want[0]}"]
    return []


def run_sequence(seq: Sequence, root: Path) -> SequenceResult:
    """Run every step of ``seq`` in-process against a fresh world under ``root``."""
    result = SequenceResult(seq)
    report_path = root / "report.json"
    (root / "world").mkdir(parents=True, exist_ok=True)
    with _world(seq, root / "world") as (forge, config, env):
        points = {forge.truth("prod")}  # every set of shas a promotion meant, the start included
        allowed: list[set[str | None]] = [{sha} for sha in forge.truth("prod")]
        for step in seq.steps:
            if step.lift:
                forge.lift()
            if step.refuse is not None:
                forge.refuse(step.refuse)
            if step.advance is not None:
                forge.advance(step.advance)
            if step.command in ("run", "bypass"):
                points.add(forge.truth("main"))
                for shas, sha in zip(allowed, forge.truth("main"), strict=True):
                    shas.add(sha)
            before = forge.truth("prod")
            report_path.unlink(missing_ok=True)
            out = run_inprocess(_argv(step.command, config, report_path), env)
            after = forge.truth("prod")
            report = json.loads(report_path.read_text()) if report_path.exists() else None
            split = after not in points  # not all at one promotion's shas
            result.log.append(f"{step.command}: exit {out.code}, refs {before} → {after}, split={split}")
            if out.exception:
                result.violations.append(f"{step.command}: crashed: {out.exception.splitlines()[-1]}")
            result.violations += _check_command(step, out.code, report, before, after, split)
            for name, sha, shas in zip(forge.names, after, allowed, strict=True):
                if sha not in shas:
                    result.violations.append(f"{step.command}: {name} prod at {sha}, never a promotion sha")
            status = run_inprocess(["status", "--json", "--config", str(config)], env)
            result.violations += _check_status(status.stdout, status.code, split)
            if result.violations:
                result.log.append(out.stdout[-3000:] + out.stderr[-3000:])
                break
    return result

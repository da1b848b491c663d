"""What one chaos run left behind (:class:`Observation`) and the rules it must satisfy, one
function per invariant, each with a docstring that states it; docs/reliability.md lists them."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from tests.chaos.runners import RunOutput
from tests.chaos.scenario import CANCEL_LIMIT, INPROC_LIMIT, SUBPROC_LIMIT, Scenario
from tests.chaos.worlds import Write
from tests.support.outputs import parse_output_file


@dataclass
class Observation:
    """Everything known after one run, for the invariant checks."""

    sc: Scenario
    run: RunOutput
    start: list[str | None]
    source: list[str]
    final: list[str | None]  # after every in-flight request was handled
    final_at_exit: list[str | None]  # when lockstep exited
    final_seen: list[str | None]  # what lockstep could have seen (outside moves after its last read hidden)
    outsider: list[str | None]
    outsider_before: list[str | None]  # the position another writer moved the target away from
    writes: list[Write]
    report: dict[str, Any] | None
    report_text: str
    summary: str
    outputs: str
    staging: list[list[tuple[float, float, str, int]]]
    markers: dict[str, list[dict[str, Any]]]
    audit_records: list[str]
    audit_before_first: bool
    audit_before_rewind: bool
    lock_left: bool
    leak_texts: list[tuple[str, str]]
    faulted: list[bool]
    tokens: list[str]
    clock: str


# ------------------------------------------------------------------------------------ invariants

_TRACEBACK_RE = re.compile(r"Traceback \(most recent call last\)|^\s+File \".*\", line \d+", re.M)


def _outputs_of(obs: Observation) -> list[tuple[str, str]]:
    stderr = "\n".join(
        line for line in obs.run.stderr.splitlines() if not line.startswith("::add-mask::")
    ) if obs.sc.actions else obs.run.stderr
    texts = [("stdout", obs.run.stdout), ("stderr", stderr), ("report", obs.report_text),
             ("step summary", obs.summary), ("GITHUB_OUTPUT", obs.outputs)]
    return texts


@dataclass(frozen=True)
class Facts:
    """What the invariants derive from one observation, computed once by :meth:`of`.

    Positions are those lockstep could know at exit (``obs.final_seen``): a move by another
    writer after lockstep's last read of a target is not held against it.
    """

    n: int
    names: tuple[str, ...]
    start: tuple[str | None, ...]
    source: tuple[str, ...]
    outsider: tuple[str | None, ...]  # where another writer moved each target (None: nobody)
    final: tuple[str | None, ...]  # what lockstep could know at exit; obs.final adds writes that landed later
    ff: tuple[bool, ...]  # the target may move to its source: missing, equal or behind
    pending: tuple[int, ...]  # targets not at their source at the start
    ours: tuple[int, ...]  # pending targets moved by this run, and still there
    advanced: frozenset[int]  # ... or moved there by this run before another writer (or the rollback) moved them on
    code: int | None
    report: dict[str, Any] | None
    killed: bool  # by a signal (negative exit code)
    # A signal that lands before lockstep installs its handlers ends the process early
    # (killed by it, or click's "Aborted!"): fine as long as nothing was written.
    interrupted_early: bool
    rollback_report: dict[str, Any] | None
    rolled_back: frozenset[int]  # services the report's rollback says it rolled back
    forward: tuple[Write, ...]  # writes to the source sha
    rewinds: tuple[Write, ...]  # writes back to the start sha (the rollback)
    truly_split: bool  # this run moved some target and left another pending one off its source
    any_unknown: bool  # the report calls some (not rolled back) service unknown

    @classmethod
    def of(cls, obs: Observation) -> Facts:
        sc, run, report = obs.sc, obs.run, obs.report
        n = len(sc.services)
        names = tuple(s.name for s in sc.services)
        start, source, final = tuple(obs.start), tuple(obs.source), tuple(obs.final_seen)
        pending = tuple(k for k in range(n) if start[k] != source[k])
        ours = tuple(k for k in pending if final[k] == source[k])
        rollback_report = report.get("rollback") if report else None
        rolled_back = frozenset(
            k for k in range(n) if _reported(rollback_report, names[k]).get("outcome") == "rolled back"
        )
        return cls(
            n=n,
            names=names,
            start=start,
            source=source,
            outsider=tuple(obs.outsider),
            final=final,
            ff=tuple(start[k] is None or sc.services[k].start in ("equal", "behind") for k in range(n)),
            pending=pending,
            ours=ours,
            advanced=frozenset(ours) | {k for k in pending if obs.outsider_before[k] == source[k]},
            code=run.code,
            report=report,
            killed=run.code is not None and run.code < 0,
            interrupted_early=run.signal_sent is not None and report is None and run.code in (1, 130, -2, -15),
            rollback_report=rollback_report,
            rolled_back=rolled_back,
            forward=tuple(w for w in obs.writes if w.kind == "forward"),
            rewinds=tuple(w for w in obs.writes if w.kind == "rewind"),
            truly_split=bool(ours) and any(final[k] != source[k] for k in pending),
            any_unknown=report is not None and any(
                k not in rolled_back and _reported(report, names[k]).get("outcome") == "unknown" for k in range(n)
            ),
        )


# Each invariant takes the observation and its facts and returns its violations, one line each.


def no_crash_or_hang(obs: Observation, f: Facts) -> list[str]:
    """The run finishes in time, no exception escapes the CLI, and no output holds a traceback
    (except Python's own start-up interrupted by a SIGINT) or an "internal error" line."""
    sc, run = obs.sc, obs.run
    v = []
    if run.hung:
        v.append(f"hang: the run did not finish within {INPROC_LIMIT if sc.runner == 'inproc' else SUBPROC_LIMIT}s")
    if run.exception:
        v.append("exception escaped the CLI: " + run.exception.strip().splitlines()[-1][:300])
    for where, text in _outputs_of(obs):
        if _TRACEBACK_RE.search(text):
            if interpreter_startup_interrupt(run, text):
                continue  # Python's own start-up, before any lockstep code: nothing lockstep can catch
            kind = " (KeyboardInterrupt)" if "KeyboardInterrupt" in text else ""
            v.append(f"traceback in {where}{kind}")
        if "internal error" in text and where in ("stdout", "stderr"):
            line = next(ln for ln in text.splitlines() if "internal error" in ln)
            v.append(f"internal error in {where}: {line[:300]}")
    return v


def no_token_leaks(obs: Observation, f: Facts) -> list[str]:
    """No planted token appears in any output, in anything sent to the forge but the Authorization
    header, in the audit record, or in a check's environment or argv."""
    leaks = list(_outputs_of(obs)) + obs.leak_texts
    for check_name, entries in obs.markers.items():
        for entry in entries:
            leaks.append((f"check {check_name} environment/argv", json.dumps([entry["env"], entry["argv"]])))
    return [f"token leak: a planted token appears in {where}"
            for where, text in leaks if any(token in text for token in obs.tokens)]


def late_writes_reported_unknown(obs: Observation, f: Facts) -> list[str]:
    """A write still in flight when lockstep exited (a timed-out request the forge applied later)
    only moves a target the report calls "unknown"."""
    v = []
    for k in range(f.n):
        if obs.final[k] != obs.final_at_exit[k] and obs.final[k] != f.outsider[k]:
            said = _reported(f.report, f.names[k]).get("outcome")
            if said != "unknown":
                v.append(f"late write: {f.names[k]}'s target moved {_s(f.final[k])} -> {_s(obs.final[k])} after the "
                         f"run ended (a timed-out write landed), yet it was reported {said!r} with exit {f.code}")
    return v


def targets_only_reach_their_source(obs: Observation, f: Facts) -> list[str]:
    """A target is only ever at its start, its source sha resolved in this run, or where another
    writer put it; and it reaches its source only by a fast-forward (from missing, equal or behind)."""
    names, start, source, outsider = f.names, f.start, f.source, f.outsider
    v = []
    for k in range(f.n):
        for truth in {obs.final_at_exit[k], obs.final[k]}:
            if truth in (start[k], source[k]) or (outsider[k] is not None and truth == outsider[k]):
                continue
            v.append(f"moved elsewhere: {names[k]} {_s(start[k])} -> {_s(truth)} (source {_s(source[k])})")
        if obs.final[k] == source[k] != start[k] and not f.ff[k]:
            v.append(f"not a fast-forward: {names[k]} moved from its {obs.sc.services[k].start} start {_s(start[k])}")
    return v


def writes_carry_the_source_sha(obs: Observation, f: Facts) -> list[str]:
    """Every forward write carries the source sha resolved in this run, is not forced, and goes to
    a target that was not already at its source."""
    v = []
    for w in f.forward:
        name = f.names[w.service]
        if w.sha != f.source[w.service]:
            v.append(f"write of a sha not resolved in this run: {name} -> {w.sha}")
        if w.force:
            v.append(f"forced write to {name}")
        if f.start[w.service] == f.source[w.service]:
            v.append(f"write to a target already at its source: {name}")
    return v


def rollback_only_rewinds_own_advances(obs: Observation, f: Facts) -> list[str]:
    """A target moves back to its start only with ``on_split = "rollback"`` configured, after the
    forward writes ended, only if this run advanced it, and only once its audit record is stored;
    a report holds a rollback only when rollback is configured."""
    sc, rewinds, forward = obs.sc, f.rewinds, f.forward
    v = []
    if rewinds:
        if not sc.rollback:
            v.append("a target was moved back to its start although rollback is not configured")
        if forward and rewinds[0].order < forward[-1].order:
            v.append("a rewind was sent before the forward writes had ended")
        for w in rewinds:
            if not any(fw.service == w.service for fw in forward):
                v.append(f"rewind of {f.names[w.service]}, which this run never advanced")
        if not obs.audit_before_rewind:
            v.append("rollback rewrote a target without storing its audit record first")
    if f.rollback_report is not None and not sc.rollback:
        v.append("the report holds a rollback although rollback is not configured")
    return v


def writes_follow_gate_or_audit(obs: Observation, f: Facts) -> list[str]:
    """No write in a run with a usage error; a bypassing run writes only after its audit record was
    stored; any other run writes only with a valid (no) bypass, a gate that could pass, and the
    gate's evidence (health 200, /version answered, checks passed) before the first write."""
    sc = obs.sc
    if not f.forward:
        return []
    if sc.usage_error:
        return [f"write despite a usage error ({sc.usage_error})"]
    if sc.bypassing:
        return [] if obs.audit_before_first else ["write without an audit record stored first"]
    v = []
    if sc.bypass != "none":
        v.append("write in a run whose bypass was invalid")
    if sc.gate_expectation() == "fail":
        v.append("write although a gate step had to fail")
    missing = _gate_evidence_missing(obs, f.forward[0])
    if missing:
        v.append("write without gate evidence: " + "; ".join(missing))
    return v


def bypass_skips_the_gate(obs: Observation, f: Facts) -> list[str]:
    """A bypassing run neither probes staging nor runs checks."""
    v = []
    if obs.sc.bypassing and any(obs.staging):
        v.append("bypass run probed staging")
    if obs.sc.bypassing and any(obs.markers.values()):
        v.append("bypass run ran checks")
    return v


def audit_record_only_for_bypass(obs: Observation, f: Facts) -> list[str]:
    """An audit record is stored only by a valid bypass with something to promote (or by a
    rollback), and a bypass's record names every service's new sha."""
    sc = obs.sc
    v = []
    if obs.audit_records and (not sc.bypassing or not f.pending) and not f.rewinds and f.rollback_report is None:
        v.append("audit record stored although no (needed) bypass was requested")
    if obs.audit_records and sc.bypassing:
        record = obs.audit_records[0]
        for k in range(f.n):
            if f.source[k] not in record:
                v.append(f"audit record does not name {f.names[k]}'s new sha")
    return v


def writes_follow_config_order(obs: Observation, f: Facts) -> list[str]:
    """A service is written only after every earlier pending service landed (or was rewound) and
    that service's last write had finished (request-log order)."""
    names, advanced = f.names, f.advanced
    rewound = {w.service for w in f.rewinds}
    first_of: dict[int, int] = {}
    last_of: dict[int, int] = {}
    for w in f.forward:
        first_of.setdefault(w.service, w.order)
        last_of[w.service] = w.order
    v = []
    for j in first_of:
        for i in f.pending:
            if i >= j:
                continue
            if i not in advanced and i not in rewound:
                v.append(f"{names[j]} written although earlier {names[i]} did not land")
            elif i in last_of and last_of[i] > first_of[j]:
                v.append(f"{names[j]} written before {names[i]}'s write finished")
    return v


def report_exit_code_matches_process(obs: Observation, f: Facts) -> list[str]:
    """The report's ``exit_code`` is the process's exit code (unless killed by a signal)."""
    report, code = f.report, f.code
    if report is not None and code is not None and not f.killed and report.get("exit_code") != code:
        return [f"report exit_code {report.get('exit_code')} but the process exited {code}"]
    return []


def report_services_match_truth(obs: Observation, f: Facts) -> list[str]:
    """The report has an entry per service whose outcome, ``did_push``, ``source_sha``,
    ``old_target_sha`` and ``final_target_sha`` equal the truth; "unknown" only for a service a
    fault touched; "rolled back" only for a target back at its start."""
    if f.report is None:
        return []
    v = []
    for k in range(f.n):
        rs = _reported(f.report, f.names[k])
        if not rs:
            v.append(f"report has no entry for {f.names[k]}")
        elif k in f.rolled_back:
            v += _rolled_back_entry_problems(f, k, rs)
        elif rs.get("outcome") == "unknown":
            if not obs.faulted[k]:
                v.append(f"{f.names[k]} reported unknown although no fault touched it")
        else:
            v += _entry_sha_problems(obs, f, k, rs) + _entry_outcome_problems(f, k, rs)
    return v


def _rolled_back_entry_problems(f: Facts, k: int, rs: dict[str, Any]) -> list[str]:
    """A service reported rolled back is at its start, and its final_target_sha (if any) says so."""
    name, final, start = f.names[k], f.final, f.start
    v = []
    if final[k] != start[k]:
        v.append(f"{name}: reported rolled back but its target is at {_s(final[k])}, "
                 f"not its start {_s(start[k])}")
    if rs.get("final_target_sha") not in (None, final[k]):
        v.append(f"{name}: report final_target_sha {_s(rs.get('final_target_sha'))} but the "
                 f"target is at {_s(final[k])}")
    return v


def _entry_sha_problems(obs: Observation, f: Facts, k: int, rs: dict[str, Any]) -> list[str]:
    """A service entry's shas: its source, its old target and (when readable) its final target."""
    name, source, start, final = f.names[k], f.source, f.start, f.final
    v = []
    if rs.get("source_sha") not in (None, source[k]):
        v.append(f"{name}: report source_sha {rs.get('source_sha')} != {source[k]}")
    if rs.get("source_sha") is not None and rs.get("old_target_sha") != start[k]:
        v.append(f"{name}: report old_target_sha {rs.get('old_target_sha')} != {start[k]}")
    reported_final = rs.get("final_target_sha")
    if f.rollback_report is not None and final[k] is None and reported_final is not None:
        v.append(f"rollback reports a missing target at a sha: {name}'s prod does not exist, "
                 f"the report says {_s(reported_final)}")
    elif reported_final is not None and reported_final != final[k]:
        v.append(f"{name}: report final_target_sha {_s(reported_final)} but the target is at {_s(final[k])}")
    readable = final[k] is not None and not obs.faulted[k]
    if reported_final is None and readable and rs.get("source_sha") is not None:
        if f.rollback_report is not None:
            v.append(f"rollback erased a verified position: {name}'s final_target_sha is null, "
                     f"the target is at {_s(final[k])}")
        else:
            v.append(f"{name}: report final_target_sha missing although the target is readable")
    return v


def _entry_outcome_problems(f: Facts, k: int, rs: dict[str, Any]) -> list[str]:
    """A service entry's did_push and outcome agree with whether this run moved it."""
    name, outcome, by_us = f.names[k], rs.get("outcome"), k in f.advanced
    v = []
    if bool(rs.get("did_push")) != by_us:
        v.append(f"{name}: report did_push={rs.get('did_push')} but this run moved it: {by_us}")
    if outcome == "advanced" and not by_us:
        v.append(f"{name}: reported advanced but this run did not move it to its source")
    if outcome and outcome.startswith("unchanged") and f.start[k] != f.source[k]:
        v.append(f"{name}: reported '{outcome}' but the target was not at its source")
    if outcome in ("failed", "skipped (earlier step failed)", "cancelled") and by_us:
        v.append(f"{name}: reported '{outcome}' but this run moved it")
    return v


def report_result_matches_truth(obs: Observation, f: Facts) -> list[str]:
    """The report's ``result`` matches the positions: promoted ⇒ every target at its source (a
    move by another writer is not a promotion); noop ⇒ nothing was pending; blocked ⇒ this run
    moved nothing; split ⇔ truly split (unless rolled back); unknown ⇒ some service is unknown;
    a rollback reported complete leaves none of this run's advances in place."""
    if f.report is None:
        return []
    names, final, source, outsider, ours = f.names, f.final, f.source, f.outsider, f.ours
    result = f.report.get("result")
    off = [k for k in range(f.n) if final[k] != source[k]]
    v = []
    if result == "promoted" and off and all(outsider[k] is not None and final[k] == outsider[k] for k in off):
        v.append("outside move reported as promoted: " + ", ".join(names[k] for k in off)
                 + " moved by another writer during the run, yet the result is promoted (exit 0)")
    elif result == "promoted" and off:
        v.append("result promoted but not every target is at its source")
    if result == "noop" and f.pending:
        v.append("result noop but some target was not at its source")
    if result == "blocked" and ours:
        v.append("result blocked but this run moved " + ", ".join(names[k] for k in ours))
    if result == "split" and not f.truly_split and f.rollback_report is None:
        v.append("result split but the targets are not split")
    if f.rollback_report is not None and f.rollback_report.get("result") == "promoted" and ours:
        seeded = all(f.start[k] is None for k in ours)
        v.append(("rollback left a seeded target in place, yet reported complete: " if seeded else
                  "rollback reported complete but this run's advances remain: ")
                 + ", ".join(names[k] for k in ours))
    if result == "unknown" and not f.any_unknown:
        v.append("result unknown but no service is reported unknown")
    if f.truly_split and result not in ("split", "unknown"):
        v.append(f"targets are split but the result is {result}")
    return v


def json_output_equals_report(obs: Observation, f: Facts) -> list[str]:
    """With ``--json``, stdout is JSON equal to the ``--report`` file (not for exit 2 or a kill)."""
    if f.report is None or not obs.sc.json_out or f.code in (None, 2) or f.killed:
        return []
    try:
        if json.loads(obs.run.stdout) != f.report:
            return ["--json stdout differs from the --report file"]
    except ValueError:
        return ["--json stdout is not JSON"]
    return []


def summary_matches_truth(obs: Observation, f: Facts) -> list[str]:
    """The printed summary (stderr with ``--json``) has the split headline exactly when the result
    is split, and its table shows every target's true position."""
    if f.report is None or f.killed:
        return []
    summary = obs.run.stderr if obs.sc.json_out else obs.run.stdout
    v = []
    if ("🚨 split" in summary) != (f.report.get("result") == "split"):
        v.append("summary split headline does not match the result")
    for problem in _summary_table_problems(summary, f.names, f.final):
        if f.rollback_report is not None and problem.endswith("but it is at (missing)"):
            continue  # reported by report_services_match_truth: "rollback reports a missing target at a sha"
        if f.rollback_report is not None and problem.startswith("summary says"):
            problem = "rollback erased a verified position: " + problem
        v.append(problem)
    return v


def github_output_matches_report(obs: Observation, f: Facts) -> list[str]:
    """Under Actions, ``$GITHUB_OUTPUT``'s ``result`` is the report's (exit 0, 1 or 3)."""
    if f.report is None or not (obs.sc.actions and obs.outputs and f.code in (0, 1, 3)):
        return []
    result = f.report.get("result")
    try:
        outs = parse_output_file(obs.outputs, unique=True)  # as the runner reads it, strictly
    except AssertionError as exc:
        return [f"GITHUB_OUTPUT cannot be read as the runner reads it: {exc}"]
    if outs.get("result") != result:
        return [f"GITHUB_OUTPUT result={outs.get('result')} but the report says {result}"]
    return []


def report_is_written(obs: Observation, f: Facts) -> list[str]:
    """Exit 0 or 3, or any write, comes with a report (a signal before the handlers excepted only
    when nothing was written)."""
    run, code = obs.run, f.code
    v = []
    if f.report is None and code in (0, 3) and not run.hung and not run.exception:
        v.append(f"exit {code} without a report")
    elif f.report is None and code == 1 and obs.writes:
        v.append("exit 1 without a report after writes")
    if f.interrupted_early and obs.writes:
        v.append(f"interrupted without a report (exit {code}) after writes")
    return v


def exit_code_matches_truth(obs: Observation, f: Facts) -> list[str]:
    """0 ⇒ every target at its source (or where another writer put it); 1 ⇒ nothing this run moved
    remains (a seeded target a rollback could not remove excepted); 3 ⇒ really split or a service
    reported unknown."""
    code, final, source, outsider, ours = f.code, f.final, f.source, f.outsider, f.ours
    v = []
    if code == 0 and not all(final[k] == source[k] or (outsider[k] is not None and final[k] == outsider[k])
                             for k in range(f.n)):
        v.append("exit 0 but some target is not at its source")
    if code == 1 and ours and not (f.rollback_report is not None and all(f.start[k] is None for k in ours)):
        v.append("exit 1 (blocked, every target unchanged) but this run moved " + ", ".join(f.names[k] for k in ours))
    if code == 3 and not f.truly_split and not f.any_unknown:
        v.append("exit 3 but the targets are neither split nor reported unknown")
    return v


def usage_error_exits_2(obs: Observation, f: Facts) -> list[str]:
    """Exit 2 ⇔ a usage error the scenario planted (unless interrupted early or hung), and exit 2
    leaves no side effect: no write, no audit record."""
    sc, run, code = obs.sc, obs.run, f.code
    v = []
    if code == 2:
        if obs.writes or obs.audit_records:
            v.append("exit 2 after a side effect")
        if not sc.usage_error:
            v.append("exit 2 without a usage error in the scenario: " + _last_line(run.stderr))
    elif sc.usage_error and not f.interrupted_early and not run.hung:
        v.append(f"usage error {sc.usage_error} not reported with exit 2 (exit {code})")
    return v


def exit_is_explained(obs: Observation, f: Facts) -> list[str]:
    """The exit code is 0–3, or a kill by the signal the scenario sent (with a report if it came
    after writes); exit 1 without a report says why on a ``lockstep:`` line."""
    sc, run, code, killed, report = obs.sc, obs.run, f.code, f.killed, f.report
    v = []
    if killed and obs.writes and report is None:
        v.append(f"killed by signal {-code} after writes, without a report")  # type: ignore[operator]
    if code == 1 and report is None and not f.interrupted_early and sc.usage_error is None \
            and "lockstep: " not in run.stderr:
        v.append("exit 1 without a report or a 'lockstep:' error line")
    if code is not None and not killed and code not in (0, 1, 2, 3):
        v.append(f"unexpected exit code {code}")
    if killed and sc.signal is None:
        v.append(f"killed by signal {-code} without one being sent")  # type: ignore[operator]
    return v


def noop_touches_nothing(obs: Observation, f: Facts) -> list[str]:
    """A run with nothing to promote that exits 0 probes no staging, runs no check, writes nothing
    and stores no audit record."""
    if not f.pending and f.code == 0 and (any(obs.staging) or any(obs.markers.values()) or obs.writes
                                          or obs.audit_records):
        return ["noop run probed staging, ran checks, wrote or stored an audit record"]
    return []


def cancellation_is_prompt(obs: Observation, f: Facts) -> list[str]:
    """A signalled run exits within CANCEL_LIMIT seconds of the signal."""
    run, sc = obs.run, obs.sc
    if run.signal_sent is not None and run.exited is not None and run.exited - run.signal_sent > CANCEL_LIMIT:
        return [f"exited {run.exited - run.signal_sent:.1f}s after {sc.signal.name if sc.signal else 'signal'}"]
    return []


def lock_released_or_explained(obs: Observation, f: Facts) -> list[str]:
    """The ref lock is released, or stderr names it (``lockstep-lock/``) to say why not."""
    if obs.lock_left and "lockstep-lock/" not in obs.run.stderr:
        return ["the ref lock was left behind without a word"]
    return []


def liveness(obs: Observation, f: Facts) -> list[str]:
    """A fault-free run whose targets can fast-forward and whose gate must pass (or that bypasses)
    exits 0 with every target at its source."""
    sc, code = obs.sc, f.code
    fault_free = _clean(sc) and all(f.ff) and (sc.bypassing or sc.gate_expectation() == "pass")
    if fault_free and (code != 0 or any(f.final[k] != f.source[k] for k in range(f.n))):
        return [f"liveness: a fault-free run did not promote (exit {code}): "
                + _last_line(obs.run.stdout + obs.run.stderr)]
    return []


Invariant = Callable[[Observation, Facts], list[str]]

INVARIANTS: tuple[Invariant, ...] = (
    no_crash_or_hang,
    no_token_leaks,
    late_writes_reported_unknown,
    targets_only_reach_their_source,
    writes_carry_the_source_sha,
    rollback_only_rewinds_own_advances,
    writes_follow_gate_or_audit,
    bypass_skips_the_gate,
    audit_record_only_for_bypass,
    writes_follow_config_order,
    report_exit_code_matches_process,
    report_services_match_truth,
    report_result_matches_truth,
    json_output_equals_report,
    summary_matches_truth,
    github_output_matches_report,
    report_is_written,
    exit_code_matches_truth,
    usage_error_exits_2,
    exit_is_explained,
    noop_touches_nothing,
    cancellation_is_prompt,
    lock_released_or_explained,
    liveness,
)
"""Every invariant, in the order :func:`check_invariants` runs them (docs/reliability.md lists them)."""


def check_invariants(obs: Observation) -> list[str]:
    """Every violated rule, as one line each; empty when the run told the truth and broke nothing."""
    facts = Facts.of(obs)
    return [violation for invariant in INVARIANTS for violation in invariant(obs, facts)]


def interpreter_startup_interrupt(run: RunOutput, text: str) -> bool:
    """A SIGINT that hit the interpreter while it was importing runpy/site, before ``lockstep``."""
    return (
        run.signal_sent is not None
        and "KeyboardInterrupt" in text
        and "lockstep" not in text
        and ("Could not import runpy module" in text or "<frozen site>" in text)
    )


def _s(sha: str | None) -> str:
    return sha[:7] if sha else "(missing)"


def _reported(report: dict[str, Any] | None, name: str) -> dict[str, Any]:
    if report is None:
        return {}
    return next((s for s in report.get("services", []) if s.get("name") == name), {})


def _summary_table_problems(summary: str, names: Sequence[str], final: Sequence[str | None]) -> list[str]:
    """The summary's "new target" column must show each target's true position (or "unknown")."""
    out = []
    for k, name in enumerate(names):
        row = next((ln for ln in summary.splitlines() if ln.startswith(f"| `{name}` (")), None)
        if row is None:
            out.append(f"summary has no row for {name}")
            continue
        cells = [c.strip() for c in row.strip().strip("|").split("|")]
        if len(cells) < 4:
            continue
        shown = cells[2].strip("`")
        if shown == "(missing)" and final[k] is not None:
            out.append(f"summary says {name}'s target is missing, but it is at {_s(final[k])}")
        elif re.fullmatch(r"[0-9a-f]{7}", shown) and shown != _s(final[k]):
            out.append(f"summary shows {name}'s target at {shown}, but it is at {_s(final[k])}")
    return out


def _last_line(text: str) -> str:
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1][:300] if lines else ""


def _clean(sc: Scenario) -> bool:
    """No fault of any kind: the run has every reason to promote."""
    if sc.faults or sc.signal or sc.usage_error or not sc.read_token_ok:
        return False
    if any(s.push_token != "ok" or not s.readable or s.protected or s.hook != "none" or s.missing_repo
           or s.outsider != "none" for s in sc.services):
        return False
    return not (sc.bypassing and sc.audit != "ok")


def _gate_evidence_missing(obs: Observation, first: Write) -> list[str]:
    """What a passed gate would have produced before the first write but did not."""
    sc = obs.sc
    at = first.mono if obs.clock == "mono" else first.wall
    mono = obs.clock == "mono"
    missing = []
    assert at is not None
    for k, plan in enumerate(sc.services):
        log = [(e[0] if mono else e[1], e[2], e[3]) for e in obs.staging[k]]
        if not any(t < at and path == plan.health_path and code == 200 for t, path, code in log):
            missing.append(f"{plan.name} health never answered 200 before the write")
        if not any(t < at and path == "/version" and code == 200 for t, path, code in log):
            missing.append(f"{plan.name} /version never answered before the write")
    key = "mono" if obs.clock == "mono" else "wall"
    for check in sc.checks:
        if not any(m["ok"] and m[key] < at for m in obs.markers.get(check.name, [])):
            missing.append(f"check {check.name} did not pass before the write")
    return missing



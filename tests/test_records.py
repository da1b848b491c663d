"""Verdicts from promotion records and current heads: consistent, split, drifted, unknown."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from lockstep.model import Outcome
from lockstep.records import PromotionRecord, RecordService, assess, latest_run, parse_lines

A_OLD, A_NEW, B_OLD, B_NEW, OTHER = ("a" * 40, "b" * 40, "c" * 40, "d" * 40, "e" * 40)


def record(run_id: str = "r1", phase: str = "finished") -> PromotionRecord:
    return PromotionRecord(
        gate="g", run_id=run_id, time="2026-11-27T00:00:00Z", actor="me", mode="gate", phase=phase,  # type: ignore[arg-type]
        services=(RecordService("a", "ra", "prod", A_OLD, A_NEW), RecordService("b", "rb", "prod", B_OLD, B_NEW)),
    )


def test_never_promoted_is_consistent() -> None:
    assert assess(None, {"a": A_OLD, "b": None}).verdict == "consistent"


def test_all_at_record_is_consistent_and_none_moved_is_consistent() -> None:
    assert assess(record(), {"a": A_NEW, "b": B_NEW}).verdict == "consistent"
    assert assess(record(), {"a": A_OLD, "b": B_OLD}).verdict == "consistent"


def test_some_advanced_some_not_is_split_naming_both() -> None:
    a = assess(record(), {"a": A_NEW, "b": B_OLD})
    assert a.verdict == "split"
    assert (a.advanced, a.behind) == (["a"], ["b"])


def test_moved_outside_lockstep_is_drifted_unless_every_target_equals_its_source() -> None:
    assert assess(record(), {"a": A_NEW, "b": OTHER}).verdict == "drifted"
    in_step = assess(record(), {"a": A_NEW, "b": OTHER}, sources={"a": A_NEW, "b": OTHER})
    assert in_step.verdict == "consistent" and "moved outside lockstep" in in_step.explanation


def test_unreadable_target_is_unknown() -> None:
    assert assess(record(), {"a": A_NEW, "b": None}, unreadable=["b"]).verdict == "unknown"


def test_latest_run_prefers_finished_record_of_the_newest_run() -> None:
    started, finished, newer = record("r1", "started"), record("r1"), record("r2", "started")
    assert latest_run([started, finished]) == finished
    assert latest_run([started, finished, newer]) == newer
    assert latest_run([]) is None


@given(st.lists(st.one_of(st.text(max_size=50), st.just(record().dumps()), st.just(json.dumps({"kind": "x"})))))
def test_parse_lines_keeps_records_and_skips_anything_else(lines: list[str]) -> None:
    text = "\n".join(line.replace("\n", " ").replace("\r", " ") for line in lines)
    parsed = parse_lines(text)
    assert all(isinstance(r, PromotionRecord) for r in parsed)
    assert len(parsed) == sum(1 for line in lines if line == record().dumps())


def _stored(outcomes: dict[str, str], run_id: str = "r1") -> PromotionRecord:
    """A finished record as a forge stores it, with each service's outcome spelled ``outcomes``."""
    data = record(run_id).to_json()
    for svc in data["services"]:
        svc["outcome"] = outcomes[svc["name"]]
    return PromotionRecord.from_json(json.loads(json.dumps(data)))


def test_records_from_before_typed_outcomes_read_as_the_same_outcomes() -> None:
    # lockstep once stored the summary's words; a record of a split left then must still be one
    old = _stored({"a": "advanced", "b": "skipped (earlier step failed)"})
    assert [s.outcome for s in old.services] == [Outcome.ADVANCED, Outcome.SKIPPED]
    assert _stored({"a": "unchanged (already at main)", "b": "rolled back"}).services[0].outcome == Outcome.UNCHANGED
    newer_noop = _stored({"a": "unchanged (already at main)", "b": "skipped (earlier step failed)"}, "r2")
    assert latest_run([old, newer_noop]) == old  # a run that moved nothing is never the one judged against


def test_stored_outcomes_are_identifiers_and_round_trip() -> None:
    done = _stored({"a": Outcome.ADVANCED, "b": Outcome.SKIPPED})
    assert [s["outcome"] for s in done.to_json()["services"]] == ["advanced", "skipped"]
    assert PromotionRecord.from_json(json.loads(done.dumps())) == done


@given(st.text(max_size=30).filter(lambda t: t not in {o.value for o in Outcome} | {"pending"}))
def test_an_outcome_this_version_does_not_know_counts_as_may_have_moved(text: str) -> None:
    if text in ("unchanged (already at main)", "skipped (earlier step failed)"):
        return
    future = _stored({"a": text, "b": text}, "r2")
    assert {s.outcome for s in future.services} == {Outcome.UNKNOWN}
    assert latest_run([record("r1"), future]) == future

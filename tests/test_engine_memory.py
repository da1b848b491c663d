"""The engine in-process on the in-memory forge: the re-run semantics in milliseconds.

The same properties the subprocess tests check against real git and the fake GitHub
(tests/test_recovery_reruns.py), here without a process or a socket, so the engine's
logic can be explored quickly: a re-run while split stays split (result and record), a
rollback goes back to the last consistent set, and the verdict agrees with the refs.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from lockstep.audit import FileAuditSink
from lockstep.config import Config, parse_config
from lockstep.engine.gate import Gate, RunOptions
from lockstep.engine.reconcile import Repair
from lockstep.model import Report, Result, Sha
from lockstep.records import assess, latest_run
from tests.support.memory_forge import MemoryForge, MemoryRecords, MemoryRepo

NAMES = ("alpha", "beta")


def _config(root: Path) -> Config:
    text = '[gate]\nname = "mem"\nforge = "git"\n[bypass]\ntracker = "audit.md"\n'
    for name in NAMES:
        text += (f'\n[[services]]\nname = "{name}"\nrepo = "{name}.git"\n'
                 'health_url = "http://127.0.0.1:9/health"\nversion_url = "http://127.0.0.1:9/version"\n')
    return parse_config(text, env={}, source="mem.toml", base_dir=root)


def _world() -> tuple[MemoryForge, dict[str, tuple[Sha, Sha]]]:
    forge = MemoryForge()
    shas = {}
    for name in NAMES:
        repo = MemoryRepo()
        old = repo.commit()
        new = repo.commit(old)
        repo.branches.update(prod=old, main=new)
        forge.repos[f"{name}.git"] = repo
        shas[name] = (old, new)
    return forge, shas


def _run(config: Config, forge: MemoryForge, records: MemoryRecords, root: Path,
         repair: Repair | None = None) -> Report:
    gate = Gate(config, forge, env={}, audit_sink=lambda: FileAuditSink(root / "audit.md"),
                records=records, repair=repair)
    options = RunOptions(skip_gate=True, justification="in-memory test", actor="tester",
                         mode=f"reconcile-{repair.direction}" if repair else None)
    return asyncio.run(gate.run(options))


def _prods(forge: MemoryForge) -> dict[str, str | None]:
    return {n: forge.repos[f"{n}.git"].branches.get("prod") for n in NAMES}


def _verdict(forge: MemoryForge, records: MemoryRecords) -> str:
    return assess(latest_run(records.records), _prods(forge)).verdict


def test_reruns_while_split_stay_split_and_the_rollback_restores_the_start(tmp_path: Path) -> None:
    config, (forge, shas), records = _config(tmp_path), _world(), MemoryRecords()
    forge.repos["beta.git"].refuse_pushes = True
    first = _run(config, forge, records, tmp_path)
    assert first.result == Result.SPLIT and _prods(forge) == {"alpha": shas["alpha"][1], "beta": shas["beta"][0]}
    for _ in range(3):
        again = _run(config, forge, records, tmp_path)
        assert again.result == Result.SPLIT and again.exit_code == 3
        assert _verdict(forge, records) == "split"
    # every re-run restated the split run's old shas: its record still describes the whole promotion
    newest = latest_run(records.records)
    assert newest is not None
    assert {s.name: (s.old_sha, s.new_sha) for s in newest.services} == shas
    back = _run(config, forge, records, tmp_path, Repair("rollback", newest))
    assert back.result == Result.PROMOTED
    assert _prods(forge) == {n: shas[n][0] for n in NAMES}
    assert _verdict(forge, records) == "consistent"


def test_a_rerun_after_the_cause_is_fixed_promotes_and_is_consistent(tmp_path: Path) -> None:
    config, (forge, shas), records = _config(tmp_path), _world(), MemoryRecords()
    forge.repos["beta.git"].refuse_pushes = True
    assert _run(config, forge, records, tmp_path).result == Result.SPLIT
    forge.repos["beta.git"].refuse_pushes = False
    done = _run(config, forge, records, tmp_path)
    assert done.result == Result.PROMOTED and done.exit_code == 0
    assert _prods(forge) == {n: shas[n][1] for n in NAMES}
    assert _verdict(forge, records) == "consistent"
    # only the refused service was written by the re-run: alpha was already there
    assert [w[0] for w in forge.writes] == ["alpha.git", "beta.git"]

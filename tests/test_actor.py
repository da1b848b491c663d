"""Who the actor is: under GitHub Actions the account GitHub names, never one a flag claims."""

from __future__ import annotations

from tests.support.cli import CliResult
from tests.support.gitworld import GitWorld


def _bypass_in_actions(world: GitWorld, *flags: str, actor: str) -> CliResult:
    world.config()
    text = (world.root / "lockstep.toml").read_text().replace(
        '[bypass]\ntracker = "audit.md"\n', '[bypass]\ntracker = "audit.md"\nallowed_actors = ["alice"]\n')
    (world.root / "lockstep.toml").write_text(text)
    event = world.root / "event.json"
    event.write_text("{}")
    env = world.env(GITHUB_ACTIONS="true", GITHUB_ACTOR=actor, GITHUB_EVENT_NAME="workflow_dispatch",
                    GITHUB_EVENT_PATH=str(event))
    return world.run("run", "--skip-gate", "--justification", "urgent fix", *flags, env=env)


def test_under_actions_a_different_actor_flag_is_refused_and_nothing_moves(world: GitWorld) -> None:
    before = {n: world.sha(n, "prod") for n in world.names}
    res = _bypass_in_actions(world, "--actor", "alice", actor="mallory")
    assert res.code == 2, res.out + res.err
    assert "--actor 'alice' differs" in res.err and "mallory" in res.err
    assert len(res.err.strip().splitlines()) == 1 and "Traceback" not in res.err
    assert {n: world.sha(n, "prod") for n in world.names} == before
    assert not (world.root / "audit.md").exists()


def test_under_actions_the_audit_names_the_account_github_names(world: GitWorld) -> None:
    res = _bypass_in_actions(world, "--actor", "alice", actor="alice")
    assert res.code == 0, res.out + res.err
    assert "alice" in (world.root / "audit.md").read_text()
    refused = _bypass_in_actions(world, actor="mallory")  # no flag: mallory is not allowed
    assert refused.code == 2 and "mallory" in refused.err

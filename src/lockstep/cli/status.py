"""``lockstep status``: where every target stands, from the heads and the promotion records."""

from __future__ import annotations

import os
from pathlib import Path

import click

from lockstep.cli.common import config_option, errors, load


@click.command(epilog="Exit codes: 0 consistent; 3 split, drifted or unknown; 2 configuration error.")
@config_option
@click.option("--json", "json_out", is_flag=True, help="Machine-readable output.")
@errors(internal_code=1)
def status(config_path: Path | None, json_out: bool) -> int:
    """Show where every target stands and whether they form one promoted set.

    Per service: source and target heads and the target's relation to its
    source (equal, behind, diverged, missing). Then one verdict, from the
    promotion records lockstep keeps in the forge:

    \b
      consistent  every target is at the shas of one recorded promotion
                  (or lockstep never promoted this gate)
      split       a promotion advanced some targets but not others; the
                  exact `lockstep reconcile` command is printed
      drifted     a target moved outside lockstep since the last record
      unknown     a head or the records could not be read
    """
    import asyncio
    import json

    from lockstep.engine.prepare import build_forge, protect_secrets
    from lockstep.plan import build_status, render_status
    from lockstep.redact import scrub, scrub_data

    config = load(config_path)
    protect_secrets(config, os.environ)
    wiring = build_forge(config, os.environ)
    result = asyncio.run(build_status(config, wiring.forge, wiring.records))
    a = result.assessment
    if json_out:
        click.echo(json.dumps(scrub_data({
            "gate": config.gate.name,
            "verdict": a.verdict,
            "explanation": a.explanation,
            "record": a.record.to_json() if a.record else None,
            "services": [{
                "name": r.service.name, "repo": r.service.repo,
                "source": r.service.source, "target": r.service.target,
                "source_sha": r.heads.source if r.heads else None,
                "target_sha": r.heads.target if r.heads else None,
                "relation": r.relation, "error": r.error,
                "position": next(s.position for s in a.standings if s.name == r.service.name),
            } for r in result.rows],
        }), indent=2))
    else:
        click.echo(scrub(render_status(result, config, str(config_path or "lockstep.toml"))))
    return 0 if a.verdict == "consistent" else 3

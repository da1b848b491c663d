"""``lockstep demo``: a real gate in a throwaway sandbox."""

from __future__ import annotations

from pathlib import Path

import click

from lockstep.cli.common import errors


@click.command()
@click.option("--dir", "directory", type=click.Path(file_okay=False, path_type=Path),
              help="Build the sandbox here (default: a new temporary directory).")
@click.option("--scenario", type=click.Choice(["promote", "noop", "version-mismatch", "bypass", "split"]),
              default="promote", show_default=True, help="Which story to show.")
@errors(internal_code=1)
def demo(directory: Path | None, scenario: str) -> int:
    """Build a throwaway sandbox and run a real gate in it.

    The sandbox holds two bare git repositories (main ahead of prod), two
    real staging HTTP services on 127.0.0.1 serving /health and /version,
    a lockstep.toml and one passing check. Nothing outside it is touched.

    \b
    Scenarios:
      promote           staging is good: both prods advance together (exit 0)
      noop              prod already equals main: nothing happens (exit 0)
      version-mismatch  staging runs an older commit: the gate blocks (exit 1)
      bypass            --skip-gate with a justification: audit record, then push
      split             the second push is refused: one prod moved, one did not (exit 3)
    """
    from lockstep.demo import run_demo

    return run_demo(directory, scenario)

"""The ``lockstep`` command line: the group and one module per command.

Heavy modules (httpx, pydantic, the gate) are imported inside the commands so
``lockstep --version`` and ``--help`` stay fast.  Every LockstepError becomes
one line on stderr and its exit code; nothing prints a traceback unless
``LOCKSTEP_DEBUG=1``.
"""

from __future__ import annotations

import sys

import click

from lockstep import __version__

# httpx imports its own command line (click, rich, pygments) at import time unless that
# import fails; lockstep never uses it, and skipping it saves ~60 ms of every run's start-up.
sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]

@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="lockstep")
def cli() -> None:
    """Promote several repositories' production branches together, and only
    after their staging deployments run the exact commits being promoted and
    have passed your checks.

    \b
    Start here:
      lockstep demo                 a real gate in a throwaway sandbox
      lockstep plan                 what `run` would do, without doing it
      lockstep run                  one gate run
      lockstep status               where every target stands (consistent / split / drifted)
      lockstep reconcile            finish or undo a split promotion
    """


def _add_commands() -> None:
    from lockstep.cli import demo, dispatch, init, plan, reconcile, run, status, validate

    for module, name in ((run, "run"), (plan, "plan"), (status, "status"), (reconcile, "reconcile"),
                         (demo, "demo"), (init, "init"), (validate, "validate"), (dispatch, "dispatch")):
        cli.add_command(getattr(module, name))


_add_commands()


def main() -> None:
    cli(prog_name="lockstep")


if __name__ == "__main__":
    main()

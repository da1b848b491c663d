"""The ``lockstep`` script and ``python -m lockstep``.

Importing the CLI is deferred into :func:`main` so that a Ctrl-C (or the
Actions runner's SIGINT) that arrives while modules are still loading ends in
one line and exit 1, never a traceback: nothing has been done yet.
"""

import sys


def main() -> None:
    try:
        from lockstep.cli import main as cli_main

        cli_main()
    except KeyboardInterrupt:
        sys.stderr.write("lockstep: interrupted before anything was done\n")
        sys.exit(1)


if __name__ == "__main__":
    main()

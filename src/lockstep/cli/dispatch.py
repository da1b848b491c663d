"""``lockstep dispatch``: send a repository_dispatch event (what staging deploy jobs call)."""

from __future__ import annotations

import os

import click

from lockstep.cli.common import errors

DISPATCH_EPILOG = """\b
Examples:
  GITHUB_TOKEN=... lockstep dispatch --repo OWNER/gate-repo --event staging-deployed \\
      --field repo=OWNER/Backend-Service --field sha="$GITHUB_SHA"

\b
Exit codes: 0 sent (HTTP 204); 1 GitHub refused it (404, 422, 401, 403, ...)
or could not be reached; 2 a bad argument or missing token (nothing sent).
"""



@click.command(epilog=DISPATCH_EPILOG)
@click.option("--repo", required=True, metavar="OWNER/REPO",
              help="The repository that receives the event.")
@click.option("--event", "event_type", required=True, metavar="TYPE",
              help="event_type (1 to 100 characters), e.g. staging-deployed.")
@click.option("--field", "fields", multiple=True, metavar="KEY=VALUE",
              help="A client_payload field, sent as a string (at most 10).")
@click.option("--timeout", default=30.0, show_default=True, type=click.FloatRange(min=0.1),
              help="Seconds to wait for GitHub.")
@errors(internal_code=1)
def dispatch(repo: str, event_type: str, fields: tuple[str, ...], timeout: float) -> int:
    """Send a repository_dispatch event to a repository (what staging deploy jobs call).

    POSTs /repos/OWNER/REPO/dispatches with {"event_type": TYPE,
    "client_payload": {KEY: VALUE, ...}} using the token in $GITHUB_TOKEN
    (or $GH_TOKEN), which needs Contents: read and write on that
    repository. The API root is $GITHUB_API_URL (default
    https://api.github.com). Sent once, never retried.
    """
    from lockstep.forges.github.dispatch import build_request, send_dispatch
    from lockstep.redact import scrub

    request = build_request(repo, event_type, fields)
    click.echo(scrub(send_dispatch(request, os.environ, timeout=timeout)))
    return 0

"""Every text that tells people which token permissions to grant lists all that lockstep uses.

Issue 10 item 9: ``init --forge github`` named only "Contents: read and write"
for the push tokens, while the promotion records it turns on (the default)
write deployments with them.  The needs are not written down here: they are
**derived** from the requests that the config ``init`` writes really makes
against the fake GitHub (a gated run, a bypass with its audit comment,
``status`` and ``plan``), each classified by the permission GitHub asks for
that endpoint.  Then every permission list found in init's output, the files
it writes, the README, ``docs/`` and ``examples/github/`` must grant them.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.fakegithub.limits import is_mutation
from tests.support.githubworld import REPOS, TRACKER, TRACKER_REPO, GitHubWorld, build_world

ROOT = Path(__file__).resolve().parents[1]
DISPATCH_TOKEN = "github_pat_DISPATCH0123456789abcdef0123456789"

# Fine-grained token permission per REST endpoint (the path after /repos/{owner}/{repo}),
# as GitHub's "permissions required for fine-grained personal access tokens" lists them.
_ENDPOINTS = [
    (re.compile(r"/deployments(/.*)?"), "Deployments"),
    (re.compile(r"/issues/.*"), "Issues"),
    (re.compile(r"/statuses/.*|/commits/[^/]+/status(es)?"), "Commit statuses"),
    (re.compile(r"/check-runs(/.*)?|/commits/[^/]+/check-runs"), "Checks"),
    (re.compile(r"/(branches|git|compare|commits|contents|dispatches)(/.*)?"), "Contents"),
    (re.compile(r""), "Metadata"),  # GET /repos/{o}/{r}: every fine-grained token has it
]
_NAMES = "Contents|Deployments|Issues|Commit statuses|Checks"
_WORKFLOW_KEYS = {"Contents": "contents", "Deployments": "deployments", "Issues": "issues",
                  "Commit statuses": "statuses", "Checks": "checks"}
_ROLES = {"push": re.compile(r"PROD_PUSH_TOKEN|push token|token_env"),
          "read": re.compile(r"LOCKSTEP_READ_TOKEN|read token"),
          "dispatch": re.compile(r"LOCKSTEP_DISPATCH_TOKEN|dispatch token")}
# "The read token also needs Checks: read" names an extra for an optional key, not the whole list.
_ADDITIVE = re.compile(r"\balso needs\b|\bbesides\b")
Needs = dict[str, dict[str, str]]  # role -> permission -> "read" | "read and write"


def permission_of(path: str) -> str:
    match = re.fullmatch(r"/repos/[^/]+/[^/]+(.*)", path)
    assert match, f"not a repository endpoint: {path}"
    for pattern, permission in _ENDPOINTS:
        if pattern.fullmatch(match.group(1)):
            return permission
    raise AssertionError(f"no permission known for {path}: add it to _ENDPOINTS")


def derive_needs(world: GitHubWorld) -> Needs:
    """What each token really used, from the fake's request log (Metadata is always granted)."""
    roles = {world.read_token: "read", DISPATCH_TOKEN: "dispatch",
             **{t: "push" for t in world.push_tokens.values()}}
    needs: Needs = {role: {} for role in _ROLES}
    for request in world.gh.requests:
        auth = request.headers.get("authorization", "")
        role = roles.get(auth.partition(" ")[2])
        assert role is not None, f"{request.method} {request.path} sent without a known token"
        if request.path == "/graphql":  # lockstep sends only queries of refs: Contents, read
            assert not is_mutation(request.body), "a GraphQL mutation: classify what it needs"
            permission, access = "Contents", "read"
        else:
            permission = permission_of(request.path)
            access = "read" if request.method in ("GET", "HEAD") else "read and write"
        if permission == "Metadata":
            continue
        if needs[role].get(permission) != "read and write":
            needs[role][permission] = access
    return needs


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Needs, dict[str, str]]]:
    """``init --forge github`` for the fake's two repositories, its outputs, and what it needed:
    its config's gated run, bypass, status and plan, and the dispatch that the job init prints sends."""
    root = tmp_path_factory.mktemp("permissions")
    for world in build_world(root):
        args = ["init", "--non-interactive", "--name", "bs-lml", "--forge", "github", "--tracker", TRACKER]
        for name, repo in REPOS.items():
            args += ["--service", f"{name}={repo}", "--staging-url", f"{name}={world.staging[name].url}"]
        init = subprocess.run([sys.executable, "-m", "lockstep", *args], cwd=root, env=world.env(),
                              capture_output=True, text=True, timeout=60, check=False)
        assert init.returncode == 0, init.stderr
        texts = {
            "init output": init.stdout,
            "lockstep.toml": (root / "lockstep.toml").read_text(encoding="utf-8"),
            "the generated workflow": (root / ".github" / "workflows" / "lockstep.yml").read_text(),
        }
        config = str(root / "lockstep.toml")
        gated = world.run("run")
        assert gated.code == 0, gated.err
        for name, repo in REPOS.items():  # back to the old prod: a bypass has something to promote
            world.gh.set_branch(repo, "prod", world.prods[name])
        bypass = world.run("run", "--skip-gate", "--justification", "INC-1: staging is down")
        assert bypass.code == 0, bypass.err
        assert world.comments(), "the bypass posted no audit comment"
        for command in ("status", "plan"):
            result = world.run(command, "--config", config)
            assert result.code == 0, result.out + result.err
        world.gh.add_token(DISPATCH_TOKEN, write=[TRACKER_REPO], login="staging-deployer")
        dispatch = world.run("dispatch", "--repo", TRACKER_REPO, "--event", "staging-deployed",
                             "--field", "repo=acme/backend", env=world.env(GITHUB_TOKEN=DISPATCH_TOKEN))
        assert dispatch.code == 0, dispatch.err
        yield derive_needs(world), texts


def test_the_derivation_sees_what_the_generated_config_uses(generated: tuple[Needs, dict[str, str]]) -> None:
    needs, _ = generated
    assert needs["push"] == {"Contents": "read and write"}
    # Contents write: the records file on the tracker repository's lockstep/records branch
    assert needs["read"] == {"Contents": "read and write", "Issues": "read and write"}
    assert needs["dispatch"] == {"Contents": "read and write"}


# --------------------------------------------------------------------------- finding the lists


def _without_quoted_messages(text: str) -> str:
    """Code spans that name a permission quote an error (``needs Checks: read on ...``): one
    missing permission, not a list.  Other code spans (`PROD_PUSH_TOKEN_BS`) stay, as text."""
    def span(match: re.Match[str]) -> str:
        return "" if re.search(rf"\b({_NAMES}):", match.group(2)) else match.group(2)

    return re.sub(r"(`+)(?!`)(.*?)(?<!`)\1(?!`)", span, text)


def segments(text: str, markdown: bool) -> Iterator[str]:
    """Paragraphs, list items and table rows (markdown); lines and comment blocks (anything else,
    and markdown's fenced code blocks)."""
    if markdown:
        parts = re.split(r"^(```[^\n]*\n.*?^```)$", text, flags=re.M | re.S)
        for i, part in enumerate(parts):
            if i % 2:
                yield from segments(part.split("\n", 1)[1].rsplit("```", 1)[0], markdown=False)
            else:
                yield from _blocks(_without_quoted_messages(part), markdown=True)
    else:
        yield from _blocks(text, markdown=False)


def _blocks(text: str, markdown: bool) -> Iterator[str]:
    current: list[str] = []
    for line in text.splitlines():
        stripped = line.strip()
        if markdown:
            starts = not stripped or stripped.startswith("|") or bool(re.match(r"([*-]|\d+\.) ", stripped))
        else:
            starts = not (stripped.startswith("#") and current and current[-1].strip().startswith("#"))
        if starts and current:
            yield "\n".join(current)
            current = []
        if stripped:
            current.append(line)
    if current:
        yield "\n".join(current)


def permission_lists(text: str, markdown: bool) -> Iterator[tuple[str, str]]:
    """(role, piece) for each piece of a segment that names a permission for the push or read token.

    A segment is cut at each mention of a token; a piece runs from one mention
    to the next (the text before the first mention belongs to it too).
    """
    for segment in segments(text, markdown):
        flat = " ".join(segment.replace("*", "").split())
        marks = sorted((m.start(), role) for role, rx in _ROLES.items() for m in rx.finditer(flat))
        for i, (start, role) in enumerate(marks):
            begin = 0 if i == 0 else start
            end = marks[i + 1][0] if i + 1 < len(marks) else len(flat)
            piece = flat[begin:end]
            if re.search(rf"\b({_NAMES})(:| read| write| and )", piece) and not _ADDITIVE.search(piece):
                yield role, piece


def missing(piece: str, needed: dict[str, str]) -> list[str]:
    return [f"{name}: {access}" for name, access in needed.items() if f"{name}: {access}" not in piece]


def workflow_permissions(text: str) -> Iterator[dict[str, str]]:
    """Each gate-workflow ``permissions:`` block, YAML or inline ``{contents: read, ...}``."""
    for block in re.findall(r"^permissions:\n((?:  \w+: \w+\n)+)", text, re.M):
        yield dict(re.findall(r"(\w+): (\w+)", block))
    for inline in re.findall(r"permissions: \{([^}]*)\}", text):
        yield dict(re.findall(r"(\w+): (\w+)", inline))


def _sources(texts: dict[str, str]) -> dict[str, tuple[str, bool]]:
    files = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), *sorted((ROOT / "examples").rglob("*"))]
    found = {name: (text, False) for name, text in texts.items()}
    for path in files:
        if path.is_file() and path.suffix in (".md", ".yml", ".toml"):
            found[str(path.relative_to(ROOT))] = (path.read_text(encoding="utf-8"), path.suffix == ".md")
    return found


# Where a list must be found, so that rewording a text cannot make this test pass by finding none.
EXPECTED = {
    "init output": {"push", "read", "dispatch"},
    "lockstep.toml": {"push"},
    "the generated workflow": {"read"},
    "README.md": {"push", "read"},
    "docs/github-actions.md": {"push", "read", "dispatch"},
    "docs/setup.md": {"push", "read", "dispatch"},
    "docs/configuration.md": {"push"},
    "examples/github/README.md": {"push", "read", "dispatch"},
    "examples/github/lockstep.yml": {"read"},
}
GATE_WORKFLOWS = ("the generated workflow", "examples/github/lockstep.yml", "docs/setup.md",
                  "docs/github-actions.md")


def test_every_permission_list_grants_what_the_tokens_use(generated: tuple[Needs, dict[str, str]]) -> None:
    needs, texts = generated
    problems: list[str] = []
    seen: dict[str, set[str]] = {name: set() for name in EXPECTED}
    for name, (text, markdown) in _sources(texts).items():
        for role, piece in permission_lists(text, markdown):
            seen.setdefault(name, set()).add(role)
            lacking = missing(piece, needs[role])
            if lacking:
                problems.append(f"{name}: the {role} token's list lacks {', '.join(lacking)}: {piece!r}")
    for name, roles in EXPECTED.items():
        if not roles <= seen[name]:
            problems.append(f"{name}: no permission list found for the {', '.join(roles - seen[name])} token")
    assert not problems, "\n".join(problems)


def test_the_gate_workflow_token_may_stand_in_for_the_read_token(
        generated: tuple[Needs, dict[str, str]]) -> None:
    """`secrets.LOCKSTEP_READ_TOKEN || github.token`: the workflow token must grant the read needs."""
    needs, texts = generated
    sources = _sources(texts)
    wanted = {_WORKFLOW_KEYS[name]: "write" if access == "read and write" else "read"
              for name, access in needs["read"].items()}
    for name in GATE_WORKFLOWS:
        blocks = list(workflow_permissions(sources[name][0]))
        assert blocks, f"{name}: no permissions block found"
        for block in blocks:
            assert block == wanted, f"{name}: permissions {block}, needs {wanted}"


def test_permission_list_finder() -> None:
    readme_item = ("1. Create one token per service with **Contents: write** (it can push refs);\n"
                   "   store them as secrets (`PROD_PUSH_TOKEN_BS`, …).")
    assert [r for r, _ in permission_lists(readme_item, markdown=True)] == ["push"]
    comment = ("# LOCKSTEP_READ_TOKEN (a PAT: Contents read on each service repository).\n"
               "# Prod pushes never use it: each service has its own PROD_PUSH_TOKEN_*.\n")
    [(role, piece)] = permission_lists(comment, markdown=False)
    assert role == "read" and missing(piece, {"Contents": "read"}) == ["Contents: read"]
    quoted = "| 403 | fails | ``cannot read (the read token needs Checks: read on o/r)`` |"
    assert list(permission_lists(quoted, markdown=True)) == []
    assert list(permission_lists("Checks receive the environment minus every push token.", True)) == []

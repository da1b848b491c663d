"""How the Actions runner reads ``$GITHUB_OUTPUT``, for tests that check what lockstep wrote."""

from __future__ import annotations


def parse_output_file(text: str, *, unique: bool = False) -> dict[str, str]:
    """The runner's reading of $GITHUB_OUTPUT (Linux: lines end at "\\n").

    ``NAME=VALUE`` when ``=`` comes first; ``NAME<<DELIM`` then lines up to one
    equal to DELIM, joined with "\\n"; empty lines between commands are skipped.
    """
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    out: dict[str, str] = {}
    i = 0
    while i < len(lines):
        line = lines[i]
        i += 1
        if not line:
            continue
        eq, heredoc = line.find("="), line.find("<<")
        if eq >= 0 and (heredoc < 0 or eq < heredoc):
            name, value = line.split("=", 1)
        elif heredoc >= 0:
            name, delimiter = line.split("<<", 1)
            body: list[str] = []
            while True:
                if i >= len(lines):
                    raise AssertionError(f"delimiter {delimiter!r} not found")
                nxt = lines[i]
                i += 1
                if nxt == delimiter:
                    break
                body.append(nxt)
            value = "\n".join(body)
        else:
            raise AssertionError(f"invalid line {line!r}")
        assert name, "empty name"
        assert not (unique and name in out), f"output {name!r} written twice"
        out[name] = value
    return out

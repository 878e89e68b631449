"""Write the Debian package descriptions on this machine as (anchor, positive) pairs.

Each installed package's one-line summary is the query, its long description the passage: a
second data set with short queries and long passages (much of a step's padding), for
`scripts/bench_step.py` or any run:

    python scripts/debian_pairs.py outputs/debian_pairs.jsonl
    python -m pipeline data=files data.path=outputs/debian_pairs.jsonl

Packages without a long description are left out, and so is a summary already taken (several
library packages share one), so every query has one passage.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def descriptions(status: str) -> list[dict[str, str]]:
    """(summary, long description) of every package stanza in a dpkg status file's text."""
    pairs, seen = [], set()
    for stanza in status.split("\n\n"):
        lines = stanza.splitlines()
        start = next((i for i, line in enumerate(lines) if line.startswith("Description:")), None)
        if start is None:
            continue
        summary = lines[start].removeprefix("Description:").strip()
        body = []
        for line in lines[start + 1:]:
            if not line.startswith(" "):  # the next field
                break
            body.append("\n" if line.strip() == "." else line.strip())  # " ." is an empty line
        passage = " ".join(body).replace(" \n ", "\n").strip()
        if summary and passage and summary not in seen:
            seen.add(summary)
            pairs.append({"anchor": summary, "positive": passage})
    return pairs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="the jsonl file to write")
    parser.add_argument("--status", type=Path, default=Path("/var/lib/dpkg/status"),
                        help="dpkg status file (default: this machine's)")
    args = parser.parse_args()
    pairs = descriptions(args.status.read_text(encoding="utf-8", errors="replace"))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("".join(json.dumps(pair) + "\n" for pair in pairs))
    print(f"{len(pairs)} pairs from {args.status} -> {args.out}")


if __name__ == "__main__":
    main()

"""Summarise a py-spy ``--format raw`` profile: where the samples are, self and inclusive.

    .venv/bin/python -m benchmarks.profile_summary benchmarks/results/tmp/<run>.pyspy.txt
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

FRAME = re.compile(r"^(?P<func>[^ ]+) \((?P<file>[^:]+)(?::\d+)?\)$")


def summarise(path: Path, top: int = 25) -> str:
    """Self and inclusive shares of the busiest functions (idle loop waits left out)."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = [_name(f) for f in stack.split(";") if f]
        if not frames or "select (selectors.py)" in frames[-1] or "poll" in frames[-1]:
            continue  # the event loop waiting for I/O: not a cost
        n = int(count)
        total += n
        own[frames[-1]] += n
        for f in set(frames):
            inclusive[f] += n
    lines = [f"{total} busy samples", "", "self %  function"]
    lines += [f"{100 * n / total:5.1f}  {f}" for f, n in own.most_common(top)]
    lines += ["", "incl %  function"]
    lines += [f"{100 * n / total:5.1f}  {f}" for f, n in inclusive.most_common(top * 2)]
    return "\n".join(lines)


def _name(frame: str) -> str:
    m = FRAME.match(frame.strip())
    if not m:
        return frame.strip()
    return f"{m['func']} ({Path(m['file']).name})"


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("profile", type=Path)
    print(summarise(parser.parse_args().profile))

"""Incremental reparse: one-character edits in a 5,000-line Python file.

    python benchmarks/bench_reparse.py [--lines 5000] [--edits 500]

The file is built from the standard library's own sources (not code we wrote). Two scenarios,
each edit going through `SyntaxTree.edit` (Tree.edit + incremental parse) the way the language
server applies didChange, with a full parse timed for comparison:
- random: a character typed at a random place, then deleted again (so damage does not pile up);
- typing: a new function typed character by character into the middle of the file.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sysconfig
import time
from pathlib import Path

from engine.syntax import SyntaxTree


def stdlib_source(lines: int) -> str:
    out: list[str] = []
    for path in sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py")):
        out += path.read_text(errors="replace").splitlines()
        if len(out) >= lines:
            break
    return "\n".join(out[:lines]) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lines", type=int, default=5000)
    parser.add_argument("--edits", type=int, default=500)
    args = parser.parse_args()
    text = stdlib_source(args.lines)
    started = time.perf_counter()
    doc = SyntaxTree(text, "python")
    full_ms = (time.perf_counter() - started) * 1000
    rng = random.Random(0)
    random_times = []
    for _ in range(args.edits // 2):
        at = rng.randrange(len(doc.text))
        for start, end, new in ((at, at, rng.choice("abc_ (=:\n")), (at, at + 1, "")):
            started = time.perf_counter()
            doc.edit(start, end, new)
            random_times.append((time.perf_counter() - started) * 1000)
    typed = "def moving_average(values, width):\n    out = []\n    for i in range(len(values) - width + 1):\n" \
            "        out.append(sum(values[i:i + width]) / width)\n    return out\n\n"
    at = doc.text.index("\ndef ", len(doc.text) // 2) + 1
    typing_times = []
    for i, char in enumerate(typed):
        started = time.perf_counter()
        doc.edit(at + i, at + i, char)
        typing_times.append((time.perf_counter() - started) * 1000)
    print(f"file: {args.lines} lines, {len(text):,} chars; full parse {full_ms:.1f} ms")
    for name, times in (("random", random_times), ("typing", typing_times)):
        times.sort()
        print(f"{name}: {len(times)} one-character edits + incremental reparse: p50 {statistics.median(times):.2f} ms, "
              f"p95 {times[int(0.95 * len(times))]:.2f} ms, max {times[-1]:.2f} ms")


if __name__ == "__main__":
    main()

"""What one keystroke costs the event loop in a large open document (issue 12's bound: ≤ 5 ms).

    python benchmarks/bench_edit.py [--chars 2000000] [--edits 200]

Opens a Python document of about --chars characters (real source, repeated) in the server's
DocumentStore and applies single-character didChange edits at random places, as an editor sends
them; prints the per-edit time (p50, p95, max) and checks the text against a plain reference.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lsp_server.documents import DocumentStore


def change(line: int, character: int, text: str) -> SimpleNamespace:
    position = SimpleNamespace(line=line, character=character)
    return SimpleNamespace(range=SimpleNamespace(start=position, end=position), text=text)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--chars", type=int, default=1_990_000, help="stays under the 2 M parse cap")
    parser.add_argument("--edits", type=int, default=200)
    parser.add_argument("--ascii", action="store_true", help="drop the source's few non-ASCII characters")
    parser.add_argument("--where", choices=("random", "typing"), default="random",
                        help="random: each edit at a new random place; typing: one after another at one place")
    args = parser.parse_args()
    source = (Path(__file__).resolve().parent.parent / "engine" / "postprocess.py").read_text()
    if args.ascii:
        source = source.encode("ascii", "ignore").decode()
    text = (source * (args.chars // len(source) + 1))[: args.chars]
    text = text[: text.rfind("\n") + 1]
    store = DocumentStore()
    started = time.perf_counter()
    opened = store.open("file:///big.py", "python", 0, text)
    assert opened is not None and (opened.syntax.tree is not None) == opened.syntax.parsed  # parsed, as after a request
    open_ms = (time.perf_counter() - started) * 1000
    lines = text.split("\n")
    rng = random.Random(0)
    times = []
    line = rng.randrange(len(lines) - 1)
    character = rng.randrange(len(lines[line]) + 1)
    for version in range(1, args.edits + 1):
        if args.where == "random":
            line = rng.randrange(len(lines) - 1)
            character = rng.randrange(len(lines[line]) + 1)
        else:
            character += 1 if version > 1 else 0
        started = time.perf_counter()
        store.change("file:///big.py", version, [change(line, character, "x")], "utf-16")
        times.append((time.perf_counter() - started) * 1000)
        lines[line] = lines[line][:character] + "x" + lines[line][character:]
    doc = store.get("file:///big.py")
    assert doc is not None and doc.text == "\n".join(lines), "the document drifted from the reference"
    times.sort()
    kind = "ASCII" if text.isascii() else "not ASCII"
    print(f"document: {len(text):,} chars ({kind}), {len(lines):,} lines, parsed: {doc.syntax.tree is not None}; "
          f"open {open_ms:.0f} ms")
    print(f"per edit ({args.edits} one-character edits, {args.where}): p50 {statistics.median(times):.2f} ms, "
          f"p95 {times[int(len(times) * 0.95) - 1]:.2f} ms, max {times[-1]:.2f} ms")


if __name__ == "__main__":
    main()

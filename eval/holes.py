"""Where the cursor sits in an infilling hole, and multi-line holes cut from HumanEval.

The published infilling sets put the cursor at column 0 of the hole's first line. An editor user
is rarely there: after Enter the editor has auto-indented the new line, or part of the line is
typed. `place_cursor` turns a task into the document an editor would hold for each of these:

- `line-start`: the hole's first line is empty, the cursor at its column 0;
- `after-indent`: that line holds the hole's indentation and the cursor sits after it;
- `mid-line`: the first k characters of the hole are typed (k drawn per task from a seeded
  generator, at least one past the indentation and at least one before the line's end).

In every mode the rest of the file follows on the lines below, and
`before + expected + after == prompt + canonical_solution + suffix`.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from typing import Any

from engine.text import split_lines

CURSOR_MODES = ("line-start", "after-indent", "mid-line")


@dataclass(frozen=True)
class Hole:
    before: str  # the document's text before the cursor
    after: str  # the document's text after the cursor
    expected: str  # what a perfect completion inserts

    @property
    def document(self) -> str:
        return self.before + self.after

    def program(self, completion: str) -> str:
        """The file with `completion` inserted at the cursor."""
        return self.before + completion + self.after


def _typed_length(first_line: str, cursor: str, rng: random.Random) -> int:
    indent = len(first_line) - len(first_line.lstrip())
    if cursor == "line-start":
        return 0
    if cursor == "after-indent" or len(first_line) - indent < 2:
        return indent
    return rng.randint(indent + 1, len(first_line) - 1)


def place_cursor(problem: dict[str, Any], cursor: str = "line-start", seed: int = 0) -> Hole:
    """The document, cursor and expected middle of an infilling task for a cursor mode."""
    if cursor not in CURSOR_MODES:
        raise ValueError(f"unknown cursor mode {cursor!r}; use one of {', '.join(CURSOR_MODES)}")
    prefix, suffix = problem["prompt"], problem.get("suffix", "")
    hole = problem.get("canonical_solution", "")
    if not (prefix.endswith("\n") or not prefix) or not hole.endswith("\n"):
        # Not a whole-line hole: the cursor can only be where the set put it.
        return Hole(prefix, suffix, hole)
    first_line = hole.split("\n", 1)[0]
    # The generator is seeded per task, so a task's cursor does not depend on which others run.
    typed = _typed_length(first_line, cursor, random.Random(f"{seed}:{problem['task_id']}"))
    # The hole's last newline ends the cursor's line; it stays in the document.
    return Hole(prefix + hole[:typed], "\n" + suffix, hole[typed:-1])


# ---------------------------------------------------------------------------------------------
# Multi-line holes: spans of whole lines of a canonical solution.

_HEADER = re.compile(r":\s*(#.*)?$")


def multiline_holes(problems: list[dict[str, Any]], seed: int = 0, min_lines: int = 2,
                    max_lines: int = 6) -> list[dict[str, Any]]:
    """One multi-line hole per problem (where its solution has enough lines), in the infilling format.

    The hole is the body of a block of the solution when it has one of `min_lines`..`max_lines`
    lines (what a user who pressed Enter after `for …:` wants), else a span of that many
    consecutive lines; the choice is seeded per task. The prompt keeps the docstring, so the
    task is what HumanEval asks, with part of the solution given around the hole.
    """
    holes = []
    for problem in problems:
        lines = split_lines(problem["canonical_solution"])
        if lines and lines[-1] == "":
            lines.pop()
        rng = random.Random(f"{seed}:{problem['task_id']}")
        spans = _block_bodies(lines, min_lines, max_lines)
        if not spans:
            spans = [(i, i + n) for n in range(min_lines, max_lines + 1) for i in range(len(lines) - n + 1)
                     if lines[i].strip() and lines[i + n - 1].strip()]
        if not spans:
            continue
        start, end = rng.choice(spans)
        head, body, tail = lines[:start], lines[start:end], lines[end:]
        holes.append({
            "task_id": f"{problem['task_id']}/multi",
            "entry_point": problem["entry_point"],
            "prompt": problem["prompt"] + "".join(line + "\n" for line in head),
            "canonical_solution": "".join(line + "\n" for line in body),
            "suffix": "".join(line + "\n" for line in tail),
            "test": problem["test"],
        })
    return holes


def _block_bodies(lines: list[str], min_lines: int, max_lines: int) -> list[tuple[int, int]]:
    """(start, end) of the bodies of `…:` blocks with min..max lines."""
    spans = []
    for i, line in enumerate(lines):
        if not _HEADER.search(line) or line.strip().startswith("#"):
            continue
        level = len(line) - len(line.lstrip())
        end = i + 1
        while end < len(lines) and (not lines[end].strip() or len(lines[end]) - len(lines[end].lstrip()) > level):
            end += 1
        start = i + 1
        while start < end and not lines[start].strip():
            start += 1
        while end > start and not lines[end - 1].strip():
            end -= 1
        if min_lines <= end - start <= max_lines:
            spans.append((start, end))
    return spans

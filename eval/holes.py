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
        lines = _solution_lines(problem)
        rng = random.Random(f"{seed}:{problem['task_id']}")
        spans = _block_bodies(lines, min_lines, max_lines) or _line_spans(lines, min_lines, max_lines)
        if spans:
            start, end = rng.choice(spans)
            holes.append(_lines_hole(problem, lines, start, end, "multi"))
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


def line_run_holes(problems: list[dict[str, Any]], seed: int = 0, min_lines: int = 1,
                   max_lines: int = 16) -> list[dict[str, Any]]:
    """One hole per problem: any run of `min_lines`..`max_lines` whole lines of its solution (the
    first and last not blank), not only a block's body — harder than `multiline_holes`: the run
    often starts or ends inside a block, and the code after it depends on what it defined."""
    holes = []
    for problem in problems:
        lines = _solution_lines(problem)
        rng = random.Random(f"lines:{seed}:{problem['task_id']}")
        spans = _line_spans(lines, min_lines, max_lines)
        if spans:
            start, end = rng.choice(spans)
            holes.append(_lines_hole(problem, lines, start, end, "lines"))
    return holes


def body_holes(problems: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """HumanEval as an editor user meets it: the prompt (signature and docstring), the cursor on
    the empty body's first line, nothing below; the hole is the whole solution."""
    return [{"task_id": f"{p['task_id']}/body", "entry_point": p["entry_point"], "prompt": p["prompt"],
             "canonical_solution": p["canonical_solution"] if p["canonical_solution"].endswith("\n")
             else p["canonical_solution"] + "\n", "suffix": "", "test": p["test"]} for p in problems]


def span_holes(problems: list[dict[str, Any]], seed: int = 0, max_lines: int = 3) -> list[dict[str, Any]]:
    """Random spans: from a character inside a line of the solution (past its indentation) to a
    character inside the same line or one up to `max_lines` - 1 lines below. The cursor sits at
    the span's start: the file is broken there until the answer mends it (an editor user in the
    middle of an edit). Not whole lines: `place_cursor` leaves them where they are."""
    holes = []
    for problem in problems:
        solution = problem["canonical_solution"]
        lines = split_lines(solution)
        rng = random.Random(f"span:{seed}:{problem['task_id']}")
        starts = []
        offset = 0
        for row, line in enumerate(lines):
            indent = len(line) - len(line.lstrip())
            if len(line.strip()) >= 2:
                starts += [(row, offset + c) for c in range(indent + 1, len(line))]
            offset += len(line) + 1
        if not starts:
            continue
        row, start = rng.choice(starts)
        last_row = min(len(lines) - 1, row + rng.randrange(max_lines))
        line_start = sum(len(line) + 1 for line in lines[:last_row])
        stops = [line_start + c for c in range(1, len(lines[last_row]) + 1) if line_start + c > start]
        end = rng.choice(stops) if stops else start + 1
        holes.append({"task_id": f"{problem['task_id']}/span", "entry_point": problem["entry_point"],
                      "prompt": problem["prompt"] + solution[:start], "canonical_solution": solution[start:end],
                      "suffix": solution[end:], "test": problem["test"]})
    return holes


def _solution_lines(problem: dict[str, Any]) -> list[str]:
    lines = split_lines(problem["canonical_solution"])
    if lines and lines[-1] == "":
        lines.pop()
    return lines


def _line_spans(lines: list[str], min_lines: int, max_lines: int) -> list[tuple[int, int]]:
    """(start, end) of every run of min..max lines whose first and last lines are not blank."""
    return [(i, i + n) for n in range(min_lines, max_lines + 1) for i in range(len(lines) - n + 1)
            if lines[i].strip() and lines[i + n - 1].strip()]


def _lines_hole(problem: dict[str, Any], lines: list[str], start: int, end: int, kind: str) -> dict[str, Any]:
    head, body, tail = lines[:start], lines[start:end], lines[end:]
    return {"task_id": f"{problem['task_id']}/{kind}", "entry_point": problem["entry_point"],
            "prompt": problem["prompt"] + "".join(line + "\n" for line in head),
            "canonical_solution": "".join(line + "\n" for line in body),
            "suffix": "".join(line + "\n" for line in tail), "test": problem["test"]}

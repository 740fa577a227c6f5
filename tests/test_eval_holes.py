"""eval/holes.py: where the cursor sits in a hole, and the multi-line holes cut from HumanEval."""

from __future__ import annotations

import pytest

from eval.data import load_problems
from eval.holes import CURSOR_MODES, multiline_holes, place_cursor

SINGLE_LINE = pytest.importorskip("conftest").SHARED_DATA / "human-eval-infilling" / \
    "HumanEval-SingleLineInfilling.jsonl.gz"


@pytest.fixture(scope="module")
def single_line():
    if not SINGLE_LINE.exists():
        pytest.skip(f"{SINGLE_LINE} is not there")
    return load_problems(SINGLE_LINE)


@pytest.fixture(scope="module")
def multi_line():
    return multiline_holes(load_problems(), seed=0)


@pytest.mark.parametrize("cursor", CURSOR_MODES)
def test_every_transform_keeps_the_file(single_line, multi_line, cursor):
    for problem in single_line + multi_line:
        hole = place_cursor(problem, cursor, seed=3)
        original = problem["prompt"] + problem["canonical_solution"] + problem["suffix"]
        assert hole.before + hole.expected + hole.after == original, problem["task_id"]
        assert hole.after.startswith("\n")  # the rest of the file is on the lines below
        assert "\n" not in hole.before[len(problem["prompt"]):]  # what is typed is on the cursor's line


def test_where_each_mode_puts_the_cursor(single_line):
    for problem in single_line:
        first = problem["canonical_solution"].split("\n")[0]
        indent = first[: len(first) - len(first.lstrip())]
        typed = {c: place_cursor(problem, c, seed=0).before[len(problem["prompt"]):] for c in CURSOR_MODES}
        assert typed["line-start"] == ""
        assert typed["after-indent"] == indent
        if len(first.strip()) >= 2:
            assert indent < typed["mid-line"] and len(indent) < len(typed["mid-line"]) < len(first)
            assert first.startswith(typed["mid-line"])


def test_mid_line_draws_are_seeded_per_task(single_line):
    some = single_line[:50]
    first = [place_cursor(p, "mid-line", seed=1).before for p in some]
    assert first == [place_cursor(p, "mid-line", seed=1).before for p in reversed(some)][::-1]
    assert first != [place_cursor(p, "mid-line", seed=2).before for p in some]


def test_multi_line_holes_are_whole_lines_of_the_solution(multi_line):
    assert len(multi_line) > 100
    for hole in multi_line:
        lines = hole["canonical_solution"].split("\n")[:-1]
        assert 2 <= len(lines) <= 6 and lines[0].strip() and lines[-1].strip()
        assert hole["prompt"].endswith("\n") and hole["canonical_solution"].endswith("\n")
        assert {"task_id", "prompt", "suffix", "canonical_solution", "test", "entry_point"} <= set(hole)

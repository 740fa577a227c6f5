"""Golden tests for the postprocessing rules: data/postprocess/cases.json, one case a row."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.context import analyze_cursor
from engine.postprocess import RULES, Site, left_block, postprocess
from engine.syntax import SyntaxTree

CASES = json.loads((Path(__file__).parent / "data" / "postprocess" / "cases.json").read_text())


def site_for(source: str, language: str) -> Site:
    offset = source.index("|")
    text = source.replace("|", "", 1)
    tree = SyntaxTree(text, language)
    return Site(text[:offset], text[offset:], analyze_cursor(tree, offset), tree.spec)


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_rule_golden(case):
    outcome = postprocess(case["candidate"], site_for(case["source"], case["language"]))
    assert outcome.text == case["expected"]
    if case["rule"]:
        assert case["rule"] in outcome.fired
    else:
        assert outcome.fired == []
    if not case["expected"]:
        assert outcome.emptied_by == case["rule"]


def test_every_rule_has_a_golden_case():
    assert {name for name, _ in RULES} <= {c["rule"] for c in CASES}


def test_streaming_stops_once_the_block_is_left():
    site = site_for("def f(xs):\n    |\n    return 1\n", "python")
    assert not left_block("for x in xs:\n        print(x)\n", site)
    assert left_block("for x in xs:\n        print(x)\ndef g():\n", site)
    assert not left_block("for x in xs:\n        print(x)\nde", site)  # an unfinished line is not judged


def test_unfinished_answers_are_the_first_line_or_a_header_without_body():
    from engine.postprocess import unfinished

    site = site_for("def f(xs):\n    |\n", "python")
    assert unfinished("total = su", site)  # the first line is not done
    assert unfinished("for x in xs:\n", site)  # a header, its body not begun
    assert unfinished("total = 0\n    for x in xs:\n\n", site)
    assert not unfinished("total = 0\n", site)
    assert not unfinished("for x in xs:\n        total += x\n", site)

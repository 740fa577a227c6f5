import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.syntax import SUPPORTED_LANGUAGES, SyntaxTree, error_count, get_language, parse


@pytest.mark.parametrize("language", SUPPORTED_LANGUAGES)
def test_every_grammar_loads_and_parses(language):
    spec = get_language(language)
    assert spec is not None
    tree = parse(spec, "x = 1\n")
    assert tree.root_node.end_byte == 6


def test_unknown_language_takes_the_plain_text_path():
    assert get_language("cobol-2077") is None
    doc = SyntaxTree("IDENTIFICATION DIVISION.\n", "cobol-2077")
    assert doc.tree is None
    doc.edit(0, 0, "* ")
    assert doc.text == "* IDENTIFICATION DIVISION.\n"


def test_error_count_sees_errors_and_missing_nodes():
    spec = get_language("python")
    assert error_count(parse(spec, "def f(x):\n    return x\n")) == 0
    assert error_count(parse(spec, "def f(x:\n    return x\n")) > 0


SOURCE = 'def greet(name):\n    """Say hi — 😀."""\n    return f"hi {name}"\n\nprint(greet("you"))\n'


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 5), st.text(max_size=6), st.booleans()),
                max_size=12))
def test_incremental_edits_give_the_same_tree_as_a_fresh_parse(edits):
    doc = SyntaxTree(SOURCE, "python")
    doc.CHECKPOINT_EVERY = 8  # checkpoints every few characters, so edits count from them
    assert doc.tree is not None  # parsed: the edits below go through tree-sitter's incremental path
    for pos, length, new, read in edits:
        start = pos % (len(doc.text) + 1)
        end = min(len(doc.text), start + length)
        doc.edit(start, end, new)
        if read:  # parsed in between, through a snapshot (as the worker does), or not
            assert doc.snapshot().tree.root_node.end_byte == len(doc.text.encode("utf-8", errors="surrogatepass"))
    fresh = SyntaxTree(doc.text, "python")
    assert str(doc.tree.root_node) == str(fresh.tree.root_node)
    assert doc.tree.root_node.end_byte == len(doc.text.encode("utf-8", errors="surrogatepass"))


def test_incremental_edit_in_a_big_file():
    lines = [f"def f{i}(x):\n    return x + {i}\n" for i in range(2500)]
    doc = SyntaxTree("".join(lines), "python")
    assert doc.tree is not None
    rng = random.Random(1)
    for _ in range(20):
        at = rng.randrange(len(doc.text))
        doc.edit(at, at, "#")
    assert str(doc.tree.root_node) == str(SyntaxTree(doc.text, "python").tree.root_node)

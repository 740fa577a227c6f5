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


def test_typing_and_deleting_at_one_place_keeps_the_checkpoints_few_and_true():
    """A character typed and deleted again and again at one place (a user correcting a letter)
    once doubled the checkpoints at each insertion: a point at the edit kept and shifted both —
    2**n entries, a server killed for memory after ~30 corrections."""
    doc = SyntaxTree(SOURCE * 20, "python")
    doc.CHECKPOINT_EVERY = 8
    assert doc.tree is not None
    at = len(SOURCE) * 10 + 7
    doc.edit(0, 0, "")
    seeded = len(doc._checkpoints or ())
    for i in range(60):
        doc.edit(at, at, "é")  # typed
        doc.edit(at, at + 1, "")  # deleted
        doc.edit(at, at, "😀\n" if i % 2 else "x")  # typed again, sometimes a line
        assert len(doc._checkpoints or ()) <= max(seeded, doc.MAX_CHECKPOINTS) + 4, i  # (2**60 would not fit)
    points = doc._checkpoints
    assert points is not None
    assert len({p[0] for p in points}) == len(points)  # one point an offset
    for offset, byte, row in points:  # each says what the text before it holds
        assert byte == len(doc.text[:offset].encode("utf-8", errors="surrogatepass"))
        assert row == doc.text.count("\n", 0, offset)
    assert str(doc.tree.root_node) == str(SyntaxTree(doc.text, "python").tree.root_node)


def test_a_long_session_of_keystrokes_keeps_the_checkpoints_bounded():
    doc = SyntaxTree(SOURCE * 40, "python")
    doc.CHECKPOINT_EVERY = 64
    assert doc.tree is not None
    rng = random.Random(3)
    for _ in range(3000):  # each edit at a new place adds a checkpoint: thinned past MAX_CHECKPOINTS
        at = rng.randrange(len(doc.text))
        doc.edit(at, at, "a") if rng.random() < 0.6 else doc.edit(at, min(at + 1, len(doc.text)), "")
    points = doc._checkpoints or []
    assert 2 <= len(points) <= doc.MAX_CHECKPOINTS + 1
    assert points[0] == (0, 0, 0)
    for offset, byte, row in points:
        assert byte == len(doc.text[:offset].encode("utf-8", errors="surrogatepass"))
        assert row == doc.text.count("\n", 0, offset)
    assert str(doc.tree.root_node) == str(SyntaxTree(doc.text, "python").tree.root_node)


def test_incremental_edit_in_a_big_file():
    lines = [f"def f{i}(x):\n    return x + {i}\n" for i in range(2500)]
    doc = SyntaxTree("".join(lines), "python")
    assert doc.tree is not None
    rng = random.Random(1)
    for _ in range(20):
        at = rng.randrange(len(doc.text))
        doc.edit(at, at, "#")
    assert str(doc.tree.root_node) == str(SyntaxTree(doc.text, "python").tree.root_node)

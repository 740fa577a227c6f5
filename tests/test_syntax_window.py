"""A large document's tree covers a window around the place being worked on (engine/syntax_window.py):
the nodes there are those a whole parse gives, edits keep it and its bounds true, and a parse that
finishes after the document was edited is still taken up."""

import random
from pathlib import Path

from engine.anchor import HeadCheck
from engine.context import ancestors
from engine.syntax import SyntaxTree, get_language
from engine.syntax_window import WHOLE_PARSE_MAX, WINDOW_ABOVE, WINDOW_BELOW, Window, move_starts

SOURCE = (Path(__file__).resolve().parent.parent / "engine" / "postprocess.py").read_text()  # not ASCII


def big(text: str, size: int = WHOLE_PARSE_MAX + 100_000) -> str:
    text = (text * (size // len(text) + 1))[:size]
    return text[: text.rfind("\n") + 1]


def path_at(tree: SyntaxTree, offset: int) -> list[tuple]:
    """The nodes around code point `offset`, innermost first, not the root."""
    byte = len(tree.text[:offset].encode("utf-8", errors="surrogatepass"))
    return [(n.type, n.start_point, n.end_point, n.start_byte, n.end_byte) for n in ancestors(tree, byte)[:-1]]


def whole_path(text: str, offset: int) -> list[tuple]:
    parsed = get_language("python").parser().parse(text.encode("utf-8", errors="surrogatepass"))
    holder = type("Whole", (), {"tree": parsed, "text": text})()
    byte = len(text[:offset].encode("utf-8", errors="surrogatepass"))
    return [(n.type, n.start_point, n.end_point, n.start_byte, n.end_byte) for n in ancestors(holder, byte)[:-1]]


def test_a_large_document_is_parsed_around_the_cursor_with_the_nodes_a_whole_parse_gives():
    doc = SyntaxTree(big(SOURCE), "python")
    whole_top = get_language("python").parser().parse(doc.text.encode()).root_node.child_count
    rng = random.Random(5)
    identifier = [m for m in range(len(doc.text) - 1) if doc.text[m : m + 2] == "= "]
    for _ in range(12):
        at = rng.choice(identifier) - 1  # the end of a name before ` = `: typing keeps the file valid
        snapshot = doc.snapshot()
        snapshot.focus(at)
        assert snapshot.tree is not None  # parsed: the window is chosen then
        window = snapshot.window
        assert window is not None and window.start <= at <= window.end
        assert snapshot.tree.root_node.child_count < whole_top // 2  # not the whole file
        assert path_at(snapshot, at) == whole_path(doc.text, at)
        for ch in "ab":  # typed there, then read again: an incremental reparse of the window
            doc.edit(at, at, ch)
            at += 1
        snapshot = doc.snapshot()
        snapshot.focus(at)
        assert path_at(snapshot, at) == whole_path(doc.text, at)
        identifier = [m + 2 if m > at - 2 else m for m in identifier]


def test_window_bounds_fall_at_statement_starts_not_inside_a_string():
    """Column-0 lines inside a module-level string look like code; a bound there once turned the
    window inside out (strings parsed as code and code as strings)."""
    block = ('"""Notes.\ndef not_code(x):\nreturn x\n"""\n\n'
             + "".join(f"def f{i}(x):\n    return x + {i}\n\n" for i in range(40)))
    text = big(block)
    doc = SyntaxTree(text, "python")
    rng = random.Random(2)
    for _ in range(10):
        at = text.find("return x + ", rng.randrange(len(text) - 100_000)) + 4
        snapshot = doc.snapshot()
        snapshot.focus(at)
        assert snapshot.tree is not None  # parsed: the window is chosen then
        window = snapshot.window
        assert window is not None
        assert text.startswith(('"""', "def "), window.start)
        assert path_at(snapshot, at) == whole_path(text, at)


def test_a_minified_line_gets_a_bounded_window():
    line = " ".join(s.strip() for s in SOURCE.split("\n") if s.strip())
    text = (line * (WHOLE_PARSE_MAX // len(line) + 3))[: WHOLE_PARSE_MAX + 50_000] + "\n"
    doc = SyntaxTree(text, "python")
    snapshot = doc.snapshot()
    snapshot.focus(len(text) - 1)
    assert snapshot.tree is not None
    window = snapshot.window
    assert window is not None and window.end - window.start <= WINDOW_ABOVE + WINDOW_BELOW + 2
    assert window.start > 0 and path_at(snapshot, len(text) - 1)  # parsed there


def test_a_parse_that_ends_after_edits_is_taken_up_with_the_edits_replayed():
    doc = SyntaxTree(big(SOURCE), "python")
    at = len(doc.text) - 200
    snapshot = doc.snapshot()
    snapshot.focus(at)
    for ch in "xyz":  # the user types on while the worker parses
        doc.edit(at, at, ch)
        at += 1
    assert snapshot.tree is not None
    window = doc.window
    assert window is not None  # taken up: the document now keeps a tree and its window
    assert window.end == snapshot.window.end + 3 and window.start == snapshot.window.start
    again = doc.snapshot()
    again.focus(at)
    assert again.window == window  # no new window: the next parse is incremental
    assert path_at(again, at) == whole_path(doc.text, at)


def test_window_edits_shift_grow_or_drop_it():
    w = Window(head_end=100, start=1000, end=2000)
    assert w.after_edit(10, 10, 5) == Window(105, 1005, 2005)  # in the head
    assert w.after_edit(500, 510, 0) == Window(100, 990, 1990)  # between head and window
    assert w.after_edit(1500, 1500, 3) == Window(100, 1000, 2003)  # inside
    assert w.after_edit(2500, 2501, 0) == w  # below it
    assert w.after_edit(95, 105, 0) is None and w.after_edit(990, 1010, 0) is None  # straddling a bound
    assert move_starts([0, 50, 100, 200], 50, 120, 5) == [0, 50, 135]  # 100 was inside the edit


def test_unchanged_before_answers_from_the_edits_and_says_when_it_does_not_know():
    doc = SyntaxTree("x = 1\n" * 100, "python")
    mark = doc.mark()
    doc.edit(300, 300, "y")
    assert doc.unchanged_before(300, mark) is True and doc.unchanged_before(301, mark) is False
    ahead = doc.snapshot()
    assert ahead.unchanged_before(300, mark) is True  # a snapshot shares the history
    ahead.edit(0, 0, "z")  # an edited snapshot is a text of its own
    assert ahead.unchanged_before(0, mark) is None
    doc.EDITS_KEPT = 3
    for _ in range(5):
        doc.edit(500, 500, "w")
    assert doc.unchanged_before(300, mark) is None  # more edits than are kept


def test_a_head_check_follows_typing_past_the_edits_kept():
    """An anchor's head is checked from the edits, its mark moved on at each check; the hash
    (O(document)) only where the edits cannot say."""
    doc = SyntaxTree(big(SOURCE), "python")
    doc.EDITS_KEPT = 4
    at = len(doc.text) - 50
    check = HeadCheck(doc, at - 10)
    for i in range(12):  # three times the edits kept, checked after each
        doc.edit(at + i, at + i, "q")
        assert check.holds(doc.snapshot()) and check.mark == doc.mark()
    doc.edit(0, 0, "#")  # above the anchor
    assert not check.holds(doc.snapshot())
    doc.edit(0, 1, "")  # undone: the edits cannot say, the hash can
    assert check.holds(doc.snapshot())


def test_explain_finds_the_function_around_a_line_far_down_a_large_file():
    from engine.explain import target

    text = big("".join(f"def f{i}(x):\n    y = x + {i}\n    return y\n\n\n" for i in range(50)))
    lines = text.split("\n")
    line = max(i for i, s in enumerate(lines[:-3]) if s.startswith("    y = x"))  # in the last whole function
    code = target(text, line, line, SyntaxTree(text, "python"))
    assert code.startswith("def f") and code.rstrip().endswith("return y")  # the function, not the line

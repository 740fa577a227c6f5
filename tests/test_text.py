import pytest

from engine.errors import PositionError
from engine.text import offset_at, position_at, utf16_len

TEXT = "a😀b\r\nμx\n\nlast"


@pytest.mark.parametrize(
    ("encoding", "character", "offset"),
    [("utf-16", 3, 2), ("utf-8", 5, 2), ("utf-32", 2, 2), ("utf-16", 4, 3)],
)
def test_characters_count_in_the_negotiated_units(encoding, character, offset):
    assert offset_at(TEXT, 0, character, encoding) == offset


def test_crlf_ends_a_line_and_past_the_end_clamps_to_the_line():
    assert offset_at(TEXT, 1, 0) == TEXT.index("μ")
    assert offset_at(TEXT, 0, 99) == TEXT.index("\r")
    assert offset_at(TEXT, 2, 5) == TEXT.index("\n\n") + 1


def test_line_past_the_end_clamps_or_raises():
    assert offset_at(TEXT, 99, 0) == len(TEXT)
    with pytest.raises(PositionError, match="past the end"):
        offset_at(TEXT, 99, 0, strict=True)
    with pytest.raises(PositionError):
        offset_at(TEXT, -1, 0)


@pytest.mark.parametrize("encoding", ["utf-16", "utf-8", "utf-32"])
def test_position_round_trips(encoding):
    for offset in range(len(TEXT) + 1):
        if TEXT[offset - 1 : offset + 1] == "\r\n":
            continue  # between \r and \n is not a position a client can name
        pos = position_at(TEXT, offset, encoding)
        assert offset_at(TEXT, pos.line, pos.character, encoding) == offset


def test_utf16_len_counts_surrogate_pairs():
    assert utf16_len("😀a") == 3


# -- LineIndex: line starts kept by edits --------------------------------------------------------

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from engine.text import LineIndex, line_starts  # noqa: E402

pieces = st.lists(st.sampled_from(["a", "bc", "\n", "\r", "\r\n", "é", "😀", ""]), max_size=8).map("".join)


@settings(max_examples=300, deadline=None)
@given(pieces, st.lists(st.tuples(st.integers(0, 12), st.integers(0, 6), st.integers(0, 12), st.integers(0, 6),
                                  pieces, st.booleans()), max_size=40))
def test_the_line_index_follows_edits_like_a_full_rescan(text, edits):
    index = LineIndex(text)
    for sl, sc, el, ec, new, told in edits:  # (told the inserted text: typing in one line reads nothing)
        start = index.offset(text, sl, sc, "utf-16")
        end = index.offset(text, el, ec, "utf-16")
        assert start == offset_at(text, sl, sc, "utf-16") and end == offset_at(text, el, ec, "utf-16")
        if end < start:
            start, end = end, start
            sl, el = el, sl
        count = len(index)
        first, last = min(sl, count - 1), min(el, count - 1)
        text = text[:start] + new + text[end:]
        index.edit(text, first, last, len(new), end - start, new if told else None)
        assert [index.start(i) for i in range(len(index))] == line_starts(text)


def _reference_units(char: str, encoding: str) -> int:
    code = ord(char)
    if encoding == "utf-32":
        return 1
    if encoding == "utf-16":
        return 2 if code > 0xFFFF else 1
    return 1 if code < 0x80 else 2 if code < 0x800 else 3 if code < 0x10000 else 4


def _reference_offset(text: str, line: int, character: int, encoding: str) -> int:
    """The character-by-character conversion the fast one replaced."""
    import re

    starts = [0, *(m.end() for m in re.finditer(r"\r\n|\r|\n", text))]
    if line >= len(starts):
        return len(text)
    offset = starts[line]
    end = starts[line + 1] if line + 1 < len(starts) else len(text)
    if end > offset and text[end - 1] == "\n":
        end -= 1
    if end > offset and text[end - 1] == "\r":
        end -= 1
    units = 0
    while offset < end and units < character:
        units += _reference_units(text[offset], encoding)
        offset += 1
    return offset


def test_positions_convert_in_c_as_they_did_character_by_character():
    import random

    from engine.text import LineIndex, offset_at, position_at, units_len

    rng = random.Random(7)
    alphabet = ["a", " ", "é", "中", "😀", "\ud800", "\n", "\r", "\r\n", "\t"]
    for _ in range(300):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 40)))
        index = LineIndex(text)
        for encoding in ("utf-16", "utf-8", "utf-32"):
            for _ in range(10):
                line, character = rng.randrange(0, 6), rng.randrange(0, 12)
                expected = _reference_offset(text, line, character, encoding)
                assert offset_at(text, line, character, encoding) == expected, (text, line, character, encoding)
                assert index.offset(text, line, character, encoding) == expected
            offset = rng.randrange(0, len(text) + 1)
            position = position_at(text, offset, encoding)
            assert index.position(text, offset, encoding) == position
            starts = [0] + [i + 1 for i, c in enumerate(text) if c == "\n" or (c == "\r" and text[i + 1:i + 2] != "\n")]
            row = max(r for r, s in enumerate(starts) if s <= offset)
            assert (position.line, position.character) == (row, sum(_reference_units(c, encoding)
                                                                     for c in text[starts[row]:offset])), (text, offset)
            assert units_len(text, encoding) == sum(_reference_units(c, encoding) for c in text)


def test_line_breaks_found_by_find_are_the_regexs():
    import random
    import re

    from engine.text import _line_breaks

    rng = random.Random(3)
    for _ in range(500):
        text = "".join(rng.choice(["a", "\n", "\r", "\r\n", "é"]) for _ in range(rng.randrange(0, 30)))
        start = rng.randrange(0, len(text) + 1)
        end = rng.randrange(start, len(text) + 1)
        expected = [m.end() for m in re.compile(r"\r\n|\r|\n").finditer(text, start, end)]  # as LineIndex had it
        assert _line_breaks(text, start, end) == expected, (text, start, end)


def test_an_index_keeps_converting_after_edits_ascii_or_not():
    from engine.text import LineIndex, offset_at

    text = "abc\nde\r\nf"
    index = LineIndex(text)
    assert index.ascii and index.offset(text, 1, 1, "utf-16") == 5
    text = text[:5] + "😀" + text[5:]
    index.edit(text, 1, 1, 1, 0, "😀")
    assert not index.ascii and not index.narrow
    for line, character in ((1, 1), (1, 2), (1, 3), (1, 9), (2, 1)):
        assert index.offset(text, line, character, "utf-16") == offset_at(text, line, character, "utf-16")


@pytest.mark.parametrize("text, edit, new", [
    ("a\rb\nc", (1, 0, 1, 1), ""),  # the line between a lone \r and a \n emptied: one \r\n, a line gone
    ("a\rbc\nd", (1, 1, 1, 2), ""),  # part of it: the lines stay
    ("a\rb\nc", (1, 0, 1, 1), "xy"),  # replaced
    ("x" * 50 + "\ny", (0, 10, 0, 10), "typed"),  # typed in a long line: the line below moves
])
def test_an_edit_inside_one_line_keeps_the_line_index_right(text, edit, new):
    index = LineIndex(text)
    start, end = (index.offset(text, line, char, "utf-16") for line, char in (edit[:2], edit[2:]))
    text = text[:start] + new + text[end:]
    index.edit(text, edit[0], edit[2], len(new), end - start, new)
    assert [index.start(i) for i in range(len(index))] == line_starts(text)

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
                                  pieces), max_size=40))
def test_the_line_index_follows_edits_like_a_full_rescan(text, edits):
    index = LineIndex(text)
    for sl, sc, el, ec, new in edits:
        start = index.offset(text, sl, sc, "utf-16")
        end = index.offset(text, el, ec, "utf-16")
        assert start == offset_at(text, sl, sc, "utf-16") and end == offset_at(text, el, ec, "utf-16")
        if end < start:
            start, end = end, start
            sl, el = el, sl
        count = len(index)
        first, last = min(sl, count - 1), min(el, count - 1)
        text = text[:start] + new + text[end:]
        index.edit(text, first, last, len(new), end - start)
        assert [index.start(i) for i in range(len(index))] == line_starts(text)

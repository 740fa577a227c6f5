"""Positions in text: LSP line/character in utf-16, utf-8 or utf-32 units, to and from offsets.

LSP counts characters in UTF-16 code units by default; Python strings index code points. Every
conversion goes through here so that an emoji or a CJK character never shifts a completion.
A line is ended by \\n, \\r\\n or \\r, as LSP says.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass

from .errors import PositionError

ENCODINGS = ("utf-16", "utf-8", "utf-32")
_NEWLINE = re.compile(r"\r\n|\r|\n")


def split_lines(text: str) -> list[str]:
    """The lines of a text as the engine counts them: split at \\n only. A \\r before it stays on
    its line, so `"\\n".join` gives the text back exactly and rows agree with tree-sitter's;
    `str.splitlines` is not used anywhere (it also breaks at \\f, \\x1c, \\u2028 …). Editor
    positions, where a lone \\r ends a line too, go through `LineIndex` and `offset_at`."""
    return text.split("\n")


def line_starts(text: str) -> list[int]:
    """Offsets (code points) at which each line begins."""
    return [0, *(m.end() for m in _NEWLINE.finditer(text))]


def _joins_break(text: str, line_start: int) -> bool:
    """The line starting at `line_start` is now empty between a lone \r and a \n: they are one
    \r\n, and the line is gone (what deleting all of such a line does)."""
    return line_start > 0 and text[line_start - 1] == "\r" and text.startswith("\n", line_start)


def _line_breaks(text: str, start: int, end: int) -> list[int]:
    """Where each line that begins in text[start:end] after a break begins: what `_NEWLINE`'s
    matches there end at, found with str.find (C) — a 2 M-character line with no break in it is
    passed over at memchr speed, not a regex's."""
    out: list[int] = []
    newline, ret = text.find("\n", start, end), text.find("\r", start, end)
    while newline >= 0 or ret >= 0:
        if ret >= 0 and (newline < 0 or ret < newline):
            if ret + 1 == newline:  # \r\n: one break
                out.append(ret + 2)
                newline = text.find("\n", ret + 2, end)
                ret = text.find("\r", ret + 2, end)
            else:
                out.append(ret + 1)
                ret = text.find("\r", ret + 1, end)
        else:
            out.append(newline + 1)
            newline = text.find("\n", newline + 1, end)
    return out


class LineIndex:
    """Where each line of a changing text starts, kept current by edits in O(lines edited).

    After an edit the starts of the lines below it are off by the edit's length; instead of
    rewriting all of them (a 2 MB file has 50,000 lines), the index records a mark "lines from L
    on are off by D" and applies the marks when asked. When marks pile up they are folded in.
    """

    MAX_MARKS = 128

    def __init__(self, text: str) -> None:
        self._starts = line_starts(text)
        self._marks: list[tuple[int, int]] = []  # (first line, shift), sorted by line
        # An all-ASCII text (most code) converts a position by adding: no line is read, however
        # long; so does one with no character past U+FFFF for UTF-16 positions (one unit each).
        # Kept by edits; once something else is typed, positions are counted (in C).
        self.ascii = text.isascii()
        self.narrow = self.ascii or max(text) <= "\uffff"

    def __len__(self) -> int:
        return len(self._starts)

    def _shift(self, line: int) -> int:
        return sum(shift for first, shift in self._marks if first <= line)

    def start(self, line: int) -> int:
        return self._starts[line] + self._shift(line)

    def offset(self, text: str, line: int, character: int, encoding: str) -> int:
        """`offset_at` for the text this index describes, without scanning it."""
        if line < 0 or character < 0:
            raise PositionError(f"position {line}:{character} is negative")
        if line >= len(self._starts):
            return len(text)
        start = self.start(line)
        end = self.start(line + 1) if line + 1 < len(self._starts) else len(text)
        if end > start and text[end - 1] == "\n":
            end -= 1
        if end > start and text[end - 1] == "\r":
            end -= 1
        if self._simple(encoding):
            return min(start + character, end)
        return advance(text, start, end, character, encoding)

    def _simple(self, encoding: str) -> bool:
        """Are this text's `encoding` units its code points?"""
        return encoding == "utf-32" or self.ascii or (encoding == "utf-16" and self.narrow)

    def position(self, text: str, offset: int, encoding: str) -> Position:
        """`position_at` for the text this index describes: the line by bisection, the character
        by adding (ASCII) or counting that line's start (in C)."""
        offset = max(0, min(offset, len(text)))
        # (between \r and \n: still on the \r's line, as position_at has it)
        head = offset - 1 if offset and text[offset - 1] == "\r" and text.startswith("\n", offset) else offset
        low, high = 0, len(self._starts) - 1
        while low < high:  # the last line starting at or before the offset
            middle = (low + high + 1) // 2
            if self.start(middle) <= head:
                low = middle
            else:
                high = middle - 1
        start = self.start(low)
        return Position(low, offset - start if self._simple(encoding) else units_len(text[start:offset], encoding))

    def edit(self, new_text: str, first_line: int, last_line: int, inserted: int, removed: int,
             inserted_text: str | None = None) -> None:
        """`new_text` is the text after replacing `removed` code points, which began on `first_line`
        and ended on `last_line`, with `inserted` code points (`inserted_text`, when the caller has it)."""
        if inserted_text is None or not inserted_text.isascii():
            self.ascii = False
            self.narrow = self.narrow and inserted_text is not None and max(inserted_text) <= "\uffff"
        count = len(self._starts)
        delta = inserted - removed
        if first_line == last_line and inserted_text is not None and "\n" not in inserted_text \
                and "\r" not in inserted_text and not _joins_break(new_text, self.start(first_line)):
            # Typed inside one line: no line begins or ends (a range on one line holds no break),
            # the lines below only move. The line is not read again: on a 2 M-character line
            # that read was the rest of a keystroke's cost.
            if first_line + 1 < count and delta:
                bisect.insort(self._marks, (first_line + 1, delta))
                if len(self._marks) > self.MAX_MARKS:
                    self._fold()
            return
        # Lines first_line - 1 … last_line + 1 are read again (a \r\n may have formed or split at
        # either end); every line below them only moved.
        top = max(first_line - 1, 0)
        bottom = min(last_line + 2, count)  # the first line not read again
        region_start = self.start(top)
        region_end = self.start(bottom) + delta if bottom < count else len(new_text)
        fresh = [region_start, *_line_breaks(new_text, region_start, region_end)]
        if bottom < count and fresh[-1] == region_end:
            fresh.pop()  # the start of line `bottom`, which is kept below
        base = self._shift(top)
        inner = sum(shift for first, shift in self._marks if top < first < bottom)
        self._starts[top:bottom] = [start - base for start in fresh]
        moved = len(fresh) - (bottom - top)
        marks = [(first, shift) for first, shift in self._marks if first <= top]
        marks += [(first + moved, shift) for first, shift in self._marks if first >= bottom]
        if bottom < count and (inner + delta):
            marks.append((top + len(fresh), inner + delta))
        self._marks = sorted(marks)
        if len(self._marks) > self.MAX_MARKS:
            self._fold()

    def _fold(self) -> None:
        starts, marks = self._starts, self._marks
        bounds = [first for first, _ in marks] + [len(starts)]
        total = 0
        for (first, shift), end in zip(marks, bounds[1:], strict=True):
            total += shift
            starts[first:end] = [start + total for start in starts[first:end]]
        self._marks = []


_CODECS = {"utf-16": "utf-16-le", "utf-8": "utf-8"}


def units_len(text: str, encoding: str) -> int:
    """How many code units of `encoding` `text` is (a lone surrogate as surrogatepass writes it).
    In C, not a loop over characters: a 2 M-character line is measured in milliseconds."""
    if encoding == "utf-32" or text.isascii():
        return len(text)
    size = len(text.encode(_CODECS[encoding], "surrogatepass"))
    return size // 2 if encoding == "utf-16" else size


def advance(text: str, start: int, end: int, units: int, encoding: str) -> int:
    """The offset `units` code units of `encoding` after `start`, at most `end`; a position inside
    a character rounds up past it. Only the next `units` characters are looked at."""
    stop = min(start + units, end)
    if encoding == "utf-32" or text[start:stop].isascii():
        return stop
    encoded = text[start:stop].encode(_CODECS[encoding], "surrogatepass")
    cut = min(units * (2 if encoding == "utf-16" else 1), len(encoded))
    inside = False  # the position falls inside a character: it rounds up past it
    if encoding == "utf-16":
        if cut < len(encoded) and 0xD8 <= encoded[cut - 1] <= 0xDB and 0xDC <= encoded[cut + 1] <= 0xDF:
            cut, inside = cut - 2, True  # half a surrogate pair
    else:
        while cut < len(encoded) and encoded[cut] & 0xC0 == 0x80:
            cut, inside = cut - 1, True  # inside a multi-byte sequence
    return start + len(encoded[:cut].decode(_CODECS[encoding], "surrogatepass")) + inside


def _line_end(text: str, start: int) -> int:
    """Where the line starting at `start` ends (before its \n, \r\n or lone \r): found in C."""
    newline = text.find("\n", start)
    end = len(text) if newline < 0 else newline
    ret = text.find("\r", start, end)
    return end if ret < 0 else ret


def offset_at(text: str, line: int, character: int, encoding: str = "utf-16", *, strict: bool = False) -> int:
    """Code-point offset of an LSP position.

    A character past the end of its line means the end of the line (as LSP asks). A line past the
    end of the text is clamped to the end, or raises PositionError when `strict`.
    """
    if encoding not in ENCODINGS:
        raise PositionError(f"unknown position encoding {encoding!r}; use one of {', '.join(ENCODINGS)}")
    if line < 0 or character < 0:
        raise PositionError(f"position {line}:{character} is negative")
    start, seen = 0, 0
    if line > 0:
        for match in _NEWLINE.finditer(text):  # up to the line only, not the whole text
            seen += 1
            if seen == line:
                start = match.end()
                break
        else:
            if strict:
                raise PositionError(f"line {line} is past the end of the document ({seen + 1} lines)")
            return len(text)
    return advance(text, start, _line_end(text, start), character, encoding)


@dataclass(frozen=True)
class Position:
    line: int
    character: int

    def as_dict(self) -> dict[str, int]:
        return {"line": self.line, "character": self.character}


def position_at(text: str, offset: int, encoding: str = "utf-16") -> Position:
    """The LSP position of a code-point offset."""
    offset = max(0, min(offset, len(text)))
    # Breaks before the offset, counted in C: \n, \r\n and a lone \r each end a line (a \r
    # right before the offset whose \n is at it ends nothing yet: the pair ends after the \n).
    head = offset - 1 if offset and text[offset - 1] == "\r" and text.startswith("\n", offset) else offset
    line = text.count("\n", 0, head) + text.count("\r", 0, head) - text.count("\r\n", 0, head)
    start = max(text.rfind("\n", 0, head), text.rfind("\r", 0, head)) + 1
    return Position(line, units_len(text[start:offset], encoding))


def utf16_len(text: str) -> int:
    return units_len(text, "utf-16")

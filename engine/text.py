"""Positions in text: LSP line/character in utf-16, utf-8 or utf-32 units, to and from offsets.

LSP counts characters in UTF-16 code units by default; Python strings index code points. Every
conversion goes through here so that an emoji or a CJK character never shifts a completion.
A line is ended by \\n, \\r\\n or \\r, as LSP says.
"""

from __future__ import annotations

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
        if encoding == "utf-32":
            return min(start + character, end)
        offset, units = start, 0
        while offset < end and units < character:
            units += _units(text[offset], encoding)
            offset += 1
        return offset

    def edit(self, new_text: str, first_line: int, last_line: int, inserted: int, removed: int) -> None:
        """`new_text` is the text after replacing `removed` code points, which began on `first_line`
        and ended on `last_line`, with `inserted` code points."""
        count = len(self._starts)
        # Lines first_line - 1 … last_line + 1 are read again (a \r\n may have formed or split at
        # either end); every line below them only moved.
        top = max(first_line - 1, 0)
        bottom = min(last_line + 2, count)  # the first line not read again
        region_start = self.start(top)
        delta = inserted - removed
        region_end = self.start(bottom) + delta if bottom < count else len(new_text)
        fresh = [region_start, *(m.end() for m in _NEWLINE.finditer(new_text, region_start, region_end))]
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


def _units(char: str, encoding: str) -> int:
    if encoding == "utf-32":
        return 1
    code = ord(char)
    if encoding == "utf-16":
        return 2 if code > 0xFFFF else 1
    if code < 0x80:
        return 1
    if code < 0x800:
        return 2
    if 0xD800 <= code <= 0xDFFF:
        return 3  # a lone surrogate, as surrogatepass would write it
    return 3 if code < 0x10000 else 4


def _line_end(text: str, starts: list[int], line: int) -> int:
    """Offset of the end of `line`'s content (before its line break)."""
    end = starts[line + 1] if line + 1 < len(starts) else len(text)
    if end > starts[line] and text[end - 1] == "\n":
        end -= 1
    if end > starts[line] and text[end - 1] == "\r":
        end -= 1
    return end


def offset_at(text: str, line: int, character: int, encoding: str = "utf-16", *, strict: bool = False) -> int:
    """Code-point offset of an LSP position.

    A character past the end of its line means the end of the line (as LSP asks). A line past the
    end of the text is clamped to the end, or raises PositionError when `strict`.
    """
    if encoding not in ENCODINGS:
        raise PositionError(f"unknown position encoding {encoding!r}; use one of {', '.join(ENCODINGS)}")
    if line < 0 or character < 0:
        raise PositionError(f"position {line}:{character} is negative")
    starts = line_starts(text)
    if line >= len(starts):
        if strict:
            raise PositionError(f"line {line} is past the end of the document ({len(starts)} lines)")
        return len(text)
    offset, end = starts[line], _line_end(text, starts, line)
    if encoding == "utf-32":
        return min(offset + character, end)
    units = 0
    while offset < end and units < character:
        units += _units(text[offset], encoding)
        offset += 1
    return offset


@dataclass(frozen=True)
class Position:
    line: int
    character: int

    def as_dict(self) -> dict[str, int]:
        return {"line": self.line, "character": self.character}


def position_at(text: str, offset: int, encoding: str = "utf-16") -> Position:
    """The LSP position of a code-point offset."""
    offset = max(0, min(offset, len(text)))
    starts = line_starts(text)
    # bisect by hand keeps this dependency-free and obvious
    lo, hi = 0, len(starts) - 1
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if starts[mid] <= offset:
            lo = mid
        else:
            hi = mid - 1
    start = starts[lo]
    character = sum(_units(c, encoding) for c in text[start:offset])
    return Position(lo, character)


def utf16_len(text: str) -> int:
    return sum(_units(c, "utf-16") for c in text)

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


def line_starts(text: str) -> list[int]:
    """Offsets (code points) at which each line begins."""
    return [0, *(m.end() for m in _NEWLINE.finditer(text))]


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

"""A large text's tree covers a window around the place being worked on: what is parsed, and
how edits move it (engine/syntax.py `SyntaxTree` keeps one per document).

Over WHOLE_PARSE_MAX code points a document's tree covers a window around the place being
worked on, and the file's head (imports), not the whole text: tree-sitter's incremental reparse
still visits every top-level node, ~10-15 ms with the GIL held for a 2 MB file at every request
(the language server's event loop waited for it), where a window's takes under 1 ms. Node
positions stay those of the whole text (tree-sitter's included ranges).
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import Any

WHOLE_PARSE_MAX = 1 << 18
WINDOW_ABOVE = 1 << 15  # code points kept above the focus
WINDOW_BELOW = 1 << 13  # and below it
HEAD = 1 << 13  # the file's head, kept as well
MARGIN_ABOVE = 1 << 13  # a focus nearer the window's top than this moves the window
MARGIN_BELOW = 1 << 10
STARTS_KEPT = 256  # top-level statement starts remembered for choosing windows (see statement_starts)


@dataclass(frozen=True)
class Window:
    """The parsed part of a large text, in code points: [0, head_end) and [start, end)."""

    head_end: int
    start: int
    end: int

    def covers(self, offset: int, length: int) -> bool:
        return ((self.start == 0 or offset >= self.start + MARGIN_ABOVE)
                and (self.end == length or offset <= self.end - MARGIN_BELOW)
                and self.start <= offset <= self.end)

    def after_edit(self, start: int, end: int, inserted: int) -> Window | None:
        """The same window after text[start:end] became `inserted` code points; None when the
        edit straddles one of its bounds (a new window is chosen at the next parse)."""
        delta = inserted - (end - start)
        if start < self.head_end:
            return None if end > self.head_end else Window(self.head_end + delta, self.start + delta, self.end + delta)
        if end <= self.start and start < self.start:
            return Window(self.head_end, self.start + delta, self.end + delta)
        if self.start <= start and end <= self.end:
            return Window(self.head_end, self.start, self.end + delta)
        return self if start > self.end else None

    @staticmethod
    def around(text: str, focus: int, starts: list[int]) -> Window:
        """Bounds at top-level statement starts, so that the parser sees whole statements (a bound
        chosen by the look of a line can fall inside a string and turn the window inside out)."""
        start = _bound(text, starts, focus - WINDOW_ABOVE, before=True)
        end = _bound(text, starts, focus + WINDOW_BELOW, before=False)
        head_end = _bound(text, starts, HEAD, before=False)
        return Window(0, 0, end) if start <= head_end else Window(head_end, start, end)


# A window bound falls at a statement start at most this far beyond where it was asked for; with
# none that near (one huge statement or class, a minified line), at a line start or at that place.
SLACK = 1 << 15


def _bound(text: str, starts: list[int], at: int, *, before: bool) -> int:
    if at <= 0 or at >= len(text):
        return max(0, min(at, len(text)))
    if before:
        i = bisect.bisect_right(starts, at) - 1
        if i >= 0 and at - starts[i] <= SLACK:
            return starts[i]
        newline = text.rfind("\n", max(0, at - SLACK), at)
        return newline + 1 if newline >= 0 else at
    j = bisect.bisect_left(starts, at)
    if j < len(starts) and starts[j] - at <= SLACK:
        return starts[j]
    newline = text.find("\n", at, at + SLACK)
    return newline + 1 if newline >= 0 else at


def statement_starts(tree: Any, text: str) -> list[int]:
    """Where top-level statements start (code points), at most about STARTS_KEPT of them, spread out."""
    data = text.encode("utf-8", errors="surrogatepass")
    spacing = max(1, len(data) // STARTS_KEPT)
    starts: list[int] = []
    offset = last_byte = 0
    for child in tree.root_node.children:
        byte = child.start_byte
        if child.is_error or (starts and byte - last_byte < spacing):
            continue
        offset += len(data[last_byte:byte].decode("utf-8", errors="surrogatepass"))
        starts.append(offset)
        last_byte = byte
    return starts


@dataclass(frozen=True)
class TreeEdit:
    """One edit, in code points and as tree-sitter's `Tree.edit` arguments."""

    start: int
    end: int
    inserted: int
    args: dict[str, Any]

    def apply(self, tree: Any, window: Window | None, starts: list[int] | None,
              ) -> tuple[Any, Window | None, list[int] | None]:
        """(tree, window, starts) after this edit; the tree is dropped with a window it straddles."""
        if starts is not None:
            starts = move_starts(starts, self.start, self.end, self.inserted)
        if window is not None:
            window = window.after_edit(self.start, self.end, self.inserted)
            if window is None:
                tree = None
        if tree is not None:
            tree.edit(**self.args)
        return tree, window, starts


def move_starts(starts: list[int], start: int, end: int, inserted: int) -> list[int]:
    """Statement starts after text[start:end] became `inserted` code points: those inside the
    edit are gone; one at an insertion's place stays before it."""
    delta = inserted - (end - start)
    return [p if p <= start else p + delta for p in starts if p <= start or p >= end]

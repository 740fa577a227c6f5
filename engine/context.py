"""What goes into the prompt besides the text around the cursor, and how much to ask for.

- `analyze_cursor`: from the syntax at the cursor, whether to ask for several lines, the rest of
  the line, or one line (inside a string or comment).
- `pinned_lines`: the file's imports and the headers of the enclosing definitions, kept in the
  prompt even when the token budget cuts the prefix below them.
- `extra_snippets`: definitions from the other open documents of names used near the cursor, and
  regions edited recently, in a stable order so the KV cache survives keystrokes.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .syntax import (
    COMMENT_TYPES,
    DEFINITION_TYPES,
    IMPORT_TYPES,
    STRING_TYPES,
    SyntaxTree,
)
from .text import split_lines

MULTI, LINE = "multi", "line"
BLOCK_OPENERS = {"indent": (":",), "brace": ("{", "(", "[", "=>"), "keyword": ("do", "then", "{", "(", "else")}


@dataclass(frozen=True)
class CursorInfo:
    mode: str  # MULTI or LINE
    why: str  # which syntax decided it, for fimble/status and tests
    indent: str  # indentation of the line the completion continues


def line_at(text: str, offset: int) -> tuple[str, str]:
    """The cursor's line, split at `offset`: (before it, after it)."""
    start = text.rfind("\n", 0, offset) + 1
    end = text.find("\n", offset)
    return text[start:offset], text[offset : len(text) if end < 0 else end]


# Ancestors farther up than this are not looked at: a file nested 50,000 deep still answers.
MAX_DEPTH = 2000


def ancestors(tree: SyntaxTree, byte: int) -> list[Any]:
    """The nodes holding bytes [byte - 1, byte], innermost first, at most MAX_DEPTH of them.

    Walked down from the root with a cursor: tree-sitter's `node.parent` searches from the root
    each time, so climbing with it costs depth² (minutes at depth 50,000).
    """
    if tree.tree is None:
        return []
    low, high = max(byte - 1, 0), byte
    cursor = tree.tree.walk()
    path = [cursor.node]
    while cursor.goto_first_child_for_byte(low) is not None:
        node = cursor.node
        if node.start_byte > low or node.end_byte < high:
            break
        path.append(node)
    return path[::-1][:MAX_DEPTH]


def _enclosing(tree: SyntaxTree, offset: int, types: frozenset[str], *, inclusive_end: bool) -> Any:
    """The innermost node of one of `types` that holds the cursor, or None."""
    byte = tree.byte_at(offset)
    for node in ancestors(tree, byte):
        inside = node.start_byte < byte < node.end_byte or (inclusive_end and node.start_byte < byte == node.end_byte)
        if node.type in types and inside:
            return node
    return None


def analyze_cursor(tree: SyntaxTree, offset: int, mode: str = "auto") -> CursorInfo:
    before, after = line_at(tree.text, offset)
    indent = before[: len(before) - len(before.lstrip())]
    if mode == "always":
        return CursorInfo(MULTI, "option", indent)
    if mode == "never":
        return CursorInfo(LINE, "option", indent)
    if _enclosing(tree, offset, STRING_TYPES, inclusive_end=False) is not None:
        return CursorInfo(LINE, "in_string", indent)
    if _enclosing(tree, offset, COMMENT_TYPES, inclusive_end=True) is not None:
        return CursorInfo(LINE, "in_comment", indent)
    if after.strip():
        return CursorInfo(LINE, "mid_line", indent)
    if not before.strip():
        return CursorInfo(MULTI, "blank_line", indent)
    style = tree.spec.block_style if tree.spec else "brace"
    stripped = before.rstrip()
    if any(stripped.endswith(o) for o in BLOCK_OPENERS[style]):
        return CursorInfo(MULTI, "block_header", indent)
    return CursorInfo(LINE, "end_of_line", indent)


# An enclosing definition's header (a signature over several lines) is pinned up to this many lines.
HEADER_MAX_LINES = 12


# An enclosing definition's docstring (Python) is pinned in a short window up to this many lines.
DOCSTRING_MAX_LINES = 12


def pinned_lines(tree: SyntaxTree, offset: int, first_line: int, *, imports: bool = True,
                 docstring: bool = False) -> list[int]:
    """Line numbers above `first_line` to keep: imports and enclosing definition headers; with
    `docstring`, the innermost definition's docstring too (a short window keeps what says what the
    code at the cursor is for before the imports)."""
    if tree.tree is None or first_line <= 0:
        return []
    rows: set[int] = set()
    if imports:
        for child in tree.tree.root_node.children:
            if child.type in IMPORT_TYPES and child.start_point[0] < first_line:
                rows.update(range(child.start_point[0], min(child.end_point[0], first_line - 1) + 1))
    byte = tree.byte_at(offset)
    for node in ancestors(tree, byte)[:-1]:  # not the root: Python's is a `module` too
        if node.type in DEFINITION_TYPES and node.start_byte < byte <= node.end_byte:
            body = node.child_by_field_name("body")
            header_end = body.start_point[0] if body is not None else node.start_point[0]
            if body is not None and body.start_point[0] > node.start_point[0] and body.start_point[1] > 0:
                header_end -= 1  # the body starts on its own line: the header ends above it
            if header_end - node.start_point[0] >= HEADER_MAX_LINES:
                # Not a header: a body the parser could not place (an empty block being typed,
                # `if x:` then a blank indented line) ends up in it. Its first line is the header.
                header_end = node.start_point[0]
            rows.update(r for r in range(node.start_point[0], header_end + 1) if r < first_line)
            if docstring and body is not None and (string := _docstring(body)) is not None:
                start, end = string.start_point[0], string.end_point[0]
                if end - start < DOCSTRING_MAX_LINES and end < first_line:  # whole or not at all: half a
                    rows.update(range(start, end + 1))                      # string opens one
                docstring = False  # the innermost definition's docstring only
    return sorted(rows)


def _docstring(body: Any) -> Any:
    """A block's docstring node: its first statement when that is a bare string."""
    first = body.named_children[0] if body.named_children else None
    if first is not None and first.type == "expression_statement" and first.named_child_count == 1 \
            and first.named_children[0].type == "string":
        return first
    return None


# ---------------------------------------------------------------------------------------------
# Extra context from other open documents.


@dataclass
class OpenDocument:
    """Another document the editor has open, as the context builder sees it."""

    path: str
    tree: SyntaxTree
    recent_lines: Sequence[int] = field(default_factory=tuple)  # lines edited lately, newest first


@dataclass(frozen=True)
class Snippet:
    path: str
    start_line: int
    text: str
    why: str  # "definition:<name>" or "recent_edit"


_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
SNIPPET_MAX_LINES = 12


def names_near(text: str, offset: int, radius_lines: int = 12) -> set[str]:
    """Identifiers within a few lines of the cursor."""
    start = offset
    for _ in range(radius_lines):
        start = text.rfind("\n", 0, start - 1) if start > 0 else 0
        if start <= 0:
            start = 0
            break
    end = offset
    for _ in range(radius_lines // 3):
        found = text.find("\n", end + 1)
        if found < 0:
            end = len(text)
            break
        end = found
    return set(_WORD.findall(text[start:end]))


def _definition_name(node: Any) -> str | None:
    target = node
    if node.type == "decorated_definition":
        target = node.child_by_field_name("definition") or node
    name = target.child_by_field_name("name")
    if name is None and target.type == "lexical_declaration":
        declarator = target.named_children[0] if target.named_children else None
        name = declarator.child_by_field_name("name") if declarator is not None else None
    return name.text.decode("utf-8", errors="replace") if name is not None and name.text else None


def definitions(tree: SyntaxTree, depth: int = 2) -> list[tuple[str, int, int]]:
    """(name, first line, last line) of definitions at the top level and one level down (a
    definition's depth: the definitions around it, the root counted as Ruby's `module` is).
    One walk that does not go below `depth`: asking each node for its parents was cubic in the
    nesting (400 nested JavaScript functions: 1.5 s)."""
    if tree.tree is None:
        return []
    key = (id(tree.text), depth)  # a document's snapshots share its text until it is edited
    with _DEFINITIONS_LOCK:
        cached = _DEFINITIONS.get(key)
    if cached is not None and cached[0] is tree.text:
        return cached[1]
    found: list[tuple[str, int, int]] = []
    cursor = tree.tree.root_node.walk()
    inside = [0]  # definitions around the nodes at the cursor's level
    while True:
        node = cursor.node
        is_definition = node.type in DEFINITION_TYPES
        if is_definition and inside[-1] <= depth and (name := _definition_name(node)):
            found.append((name, node.start_point[0], node.end_point[0]))
        below = inside[-1] + is_definition
        if below <= depth and cursor.goto_first_child():
            inside.append(below)
            continue
        while not cursor.goto_next_sibling():
            if not cursor.goto_parent():
                with _DEFINITIONS_LOCK:  # once per edit of the document, not per request
                    _DEFINITIONS[key] = (tree.text, found)
                    while len(_DEFINITIONS) > DEFINITIONS_KEPT:
                        _DEFINITIONS.pop(next(iter(_DEFINITIONS)))
                return found
            inside.pop()


# Definitions found per document text (the text kept with them: an id is reused once freed).
DEFINITIONS_KEPT = 32
_DEFINITIONS: dict[tuple[int, int], tuple[str, list[tuple[str, int, int]]]] = {}
_DEFINITIONS_LOCK = threading.Lock()


def _near_duplicate(snippet: str, window: str, threshold: float = 0.8) -> bool:
    lines = [line.strip() for line in split_lines(snippet) if line.strip()]
    if not lines:
        return True
    present = {line.strip() for line in split_lines(window)}
    return sum(line in present for line in lines) / len(lines) >= threshold


def extra_snippets(
    names: set[str],
    others: Sequence[OpenDocument],
    window_text: str,
    budget: int,
    count: Callable[[str], int],
) -> list[Snippet]:
    """Snippets from `others` within `budget` tokens, in a stable (path, line) order."""
    candidates: list[Snippet] = []
    for doc in others:
        lines = split_lines(doc.tree.text)
        for name, first, last in definitions(doc.tree):
            if name in names:
                end = min(last, first + SNIPPET_MAX_LINES - 1)
                candidates.append(Snippet(doc.path, first, "\n".join(lines[first : end + 1]), f"definition:{name}"))
        for line in list(doc.recent_lines)[:2]:
            first = max(0, line - 3)
            candidates.append(Snippet(doc.path, first, "\n".join(lines[first : line + 4]), "recent_edit"))
    chosen: list[Snippet] = []
    used = 0
    seen: set[tuple[str, int]] = set()
    # Definitions first (they answer "what is this name"), then recent edits; within each, by place.
    for snippet in sorted(candidates, key=lambda s: (s.why == "recent_edit", s.path, s.start_line)):
        key = (snippet.path, snippet.start_line)
        if key in seen or _near_duplicate(snippet.text, window_text):
            continue
        cost = count(snippet.text) + 8
        if used + cost > budget:
            continue
        used += cost
        seen.add(key)
        chosen.append(snippet)
    return sorted(chosen, key=lambda s: (s.path, s.start_line))

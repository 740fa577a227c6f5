"""tree-sitter: the grammars we ship, parsing, incremental edits, error counting.

Grammars come from the official per-language packages (`tree-sitter-python`, …), imported the
first time a language is used. A language we have no grammar for is `None` here, and everything
downstream takes the plain-text path: no parse, no crash.
"""

from __future__ import annotations

import bisect
import importlib
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import PurePath
from typing import Any

from .syntax_window import WHOLE_PARSE_MAX, TreeEdit, Window, statement_starts

# LSP languageId → (grammar module, function returning the language pointer, block style).
# Block style says how a block ends: by indentation, by a closing brace, or by a keyword.
_GRAMMARS: dict[str, tuple[str, str, str]] = {
    "python": ("tree_sitter_python", "language", "indent"),
    "javascript": ("tree_sitter_javascript", "language", "brace"),
    "javascriptreact": ("tree_sitter_javascript", "language", "brace"),
    "typescript": ("tree_sitter_typescript", "language_typescript", "brace"),
    "typescriptreact": ("tree_sitter_typescript", "language_tsx", "brace"),
    "go": ("tree_sitter_go", "language", "brace"),
    "rust": ("tree_sitter_rust", "language", "brace"),
    "java": ("tree_sitter_java", "language", "brace"),
    "c": ("tree_sitter_c", "language", "brace"),
    "cpp": ("tree_sitter_cpp", "language", "brace"),
    "csharp": ("tree_sitter_c_sharp", "language", "brace"),
    "ruby": ("tree_sitter_ruby", "language", "keyword"),
    "php": ("tree_sitter_php", "language_php", "brace"),
    "lua": ("tree_sitter_lua", "language", "keyword"),
    "shellscript": ("tree_sitter_bash", "language", "keyword"),
}
_ALIASES = {"py": "python", "js": "javascript", "ts": "typescript", "tsx": "typescriptreact", "c++": "cpp",
            "cs": "csharp", "c#": "csharp", "rb": "ruby", "sh": "shellscript", "bash": "shellscript"}

SUPPORTED_LANGUAGES = tuple(_GRAMMARS)
# A file's suffix → its LSP languageId, for callers without an editor to say it (the CLI, the eval).
LANGUAGE_BY_SUFFIX = {
    ".py": "python", ".pyi": "python", ".js": "javascript", ".mjs": "javascript", ".cjs": "javascript",
    ".jsx": "javascript", ".ts": "typescript", ".tsx": "typescriptreact", ".go": "go", ".rs": "rust",
    ".java": "java", ".c": "c", ".h": "c", ".cc": "cpp", ".cpp": "cpp", ".cxx": "cpp", ".hpp": "cpp",
    ".cs": "csharp", ".rb": "ruby", ".php": "php", ".lua": "lua", ".sh": "shellscript", ".bash": "shellscript",
}


def language_for_path(path: str | PurePath) -> str:
    return LANGUAGE_BY_SUFFIX.get(PurePath(path).suffix.lower(), "plaintext")

# Node types (over all grammars) that hold text the model should not break out of.
STRING_TYPES = frozenset({
    "string", "string_content", "string_fragment", "template_string", "raw_string_literal", "string_literal",
    "interpreted_string_literal", "char_literal", "character_literal", "heredoc_body", "encapsed_string",
    "verbatim_string_literal", "interpolated_string_expression", "raw_string",
})
COMMENT_TYPES = frozenset({"comment", "line_comment", "block_comment", "doc_comment"})
# Definitions whose header we keep in the prompt, and whose names we look up in other files.
DEFINITION_TYPES = frozenset({
    "function_definition", "class_definition", "decorated_definition", "function_declaration", "class_declaration",
    "method_definition", "method_declaration", "function_item", "impl_item", "struct_item", "enum_item",
    "trait_item", "interface_declaration", "type_declaration", "struct_specifier", "class_specifier",
    "method", "class", "module", "function_signature", "lexical_declaration", "arrow_function",
    "generator_function_declaration",
    "namespace_definition", "constructor_declaration", "local_function", "function_definition_statement",
})
IMPORT_TYPES = frozenset({
    "import_statement", "import_from_statement", "future_import_statement", "import_declaration",
    "use_declaration", "preproc_include", "using_directive", "namespace_use_declaration", "extern_crate_declaration",
})


def canonical_language(language_id: str | None) -> str:
    lang = (language_id or "plaintext").lower()
    return _ALIASES.get(lang, lang)


@dataclass(frozen=True)
class LanguageSpec:
    name: str
    language: Any  # tree_sitter.Language
    block_style: str

    def parser(self) -> Any:
        import tree_sitter

        return tree_sitter.Parser(self.language)


@cache
def get_language(language_id: str | None) -> LanguageSpec | None:
    """The grammar for an LSP languageId, or None (plain text) when we have none."""
    name = canonical_language(language_id)
    entry = _GRAMMARS.get(name)
    if entry is None:
        return None
    module_name, attribute, style = entry
    try:
        import tree_sitter

        module = importlib.import_module(module_name)
        language = tree_sitter.Language(getattr(module, attribute)())
    except (ImportError, AttributeError, ValueError):
        return None  # a grammar that is missing or built for another ABI: plain text, not a crash
    return LanguageSpec(name, language, style)


def parse(spec: LanguageSpec, text: str) -> Any:
    return spec.parser().parse(text.encode("utf-8", errors="surrogatepass"))


# Bytes handed to tree-sitter per read while it parses (see parse_yielding).
READ_CHUNK = 1 << 16


def parse_yielding(parser: Any, text: str, old: Any = None, spans: Sequence[tuple[int, int, int]] = ()) -> Any:
    """`parser.parse(text as UTF-8, old)`, letting other threads run while it parses.

    tree-sitter's parse of bytes holds the GIL throughout (18-120 ms for a 2 MB document on the
    model worker), and the language server's event loop waited for it whenever it gave the GIL
    up. Given a read callback and a progress callback, the parse calls back into Python every
    chunk and every hundred parser operations, and the interpreter hands the GIL over there when
    another thread has waited a switch interval. An ASCII text (a byte is a character) is
    encoded a chunk at a time as the parser reads it — an incremental parse reads little of
    it — instead of 2 MB at once with the GIL held. The tree is the same.

    `spans` (first byte, start, end in code points) are the parts the parser's included ranges
    cover: a text that is not ASCII is then encoded only there."""
    if text.isascii():  # (O(1): CPython knows)
        def read(byte: int, point: Any) -> bytes:
            return text[byte : byte + READ_CHUNK].encode("ascii")
    elif spans:
        pieces = [(first, text[start:end].encode("utf-8", errors="surrogatepass")) for first, start, end in spans]
        everything: list[bytes] = []

        def read(byte: int, point: Any) -> bytes:
            for first, data in pieces:
                if first <= byte < first + len(data):
                    return data[byte - first : byte - first + READ_CHUNK]
            if byte == pieces[-1][0] + len(pieces[-1][1]):
                return b""  # the end of the last range: the end of the input, for the parser
            if not everything:  # (not seen in practice: reads stay inside the ranges)
                everything.append(text.encode("utf-8", errors="surrogatepass"))
            return everything[0][byte : byte + READ_CHUNK]
    else:
        data = text.encode("utf-8", errors="surrogatepass")

        def read(byte: int, point: Any) -> bytes:
            # bytes, not a memoryview: Node.text reads a callable-parsed tree through this too, as bytes
            return data[byte : byte + READ_CHUNK]

    if old is None:
        return parser.parse(read, progress_callback=_go_on)
    return parser.parse(read, old, progress_callback=_go_on)


def _go_on(byte: int, has_error: bool) -> bool:
    FOREGROUND.wait_turn()
    return False  # (True would cancel the parse)


class Foreground:
    """Work that must answer at once (the language server's event loop handling a message) keeps
    background Python out while it runs: a long parse on the model worker waits at its next
    progress callback (`wait_turn`) instead of taking turns at the GIL with it. Taking turns, each
    side got the interpreter for a switch interval at a time, and a keystroke's 0.5 ms of work on
    the loop took several times that."""

    # At most this long a wait: a foreground that never ends its turn must not stop the parse.
    MOST_WAIT_S = 0.05

    def __init__(self) -> None:
        self._free = threading.Event()
        self._free.set()
        self._holder: int | None = None

    def __enter__(self) -> Foreground:
        self._holder = threading.get_ident()
        self._free.clear()
        return self

    def __exit__(self, *exc: object) -> None:
        self._holder = None
        self._free.set()

    def wait_turn(self) -> None:
        """On a background thread: wait while the foreground works (never on the holder's own)."""
        if not self._free.is_set() and self._holder != threading.get_ident():
            self._free.wait(self.MOST_WAIT_S)


FOREGROUND = Foreground()


def iter_nodes(node: Any) -> Iterator[Any]:
    """Every node under `node`, depth first, without recursion (deep trees stay safe)."""
    cursor = node.walk()
    while True:
        yield cursor.node
        if cursor.goto_first_child():
            continue
        while not cursor.goto_next_sibling():
            if not cursor.goto_parent():
                return


def error_count(tree: Any) -> int:
    """ERROR and MISSING nodes in a tree: what a completion must not add to."""
    root = tree.root_node
    if not root.has_error:
        return 0
    return sum(1 for n in iter_nodes(root) if n.is_error or n.is_missing)


class SyntaxTree:
    """A document's text and its tree, kept in step by incremental edits.

    `edit()` takes code-point offsets (what LSP positions become) and describes the change to
    tree-sitter in bytes and points; it does not parse. The tree is parsed again, incrementally,
    when it is next read — on the model worker, through a `snapshot()` — so a keystroke in a
    large file costs the event loop microseconds, not the tens of milliseconds a reparse of a
    2 MB file takes. A snapshot's fresh tree is handed back to the document it came from, so the
    next parse starts from it; edits made meanwhile (the last EDITS_KEPT) are replayed on it.

    A text over WHOLE_PARSE_MAX code points is parsed in a `Window` around its focus (`focus()`,
    else the last edit) and its head; node positions stay those of the whole text.
    """

    def __init__(self, text: str, language_id: str | None, *, parse: bool = True) -> None:
        self.spec = get_language(language_id) if parse else None
        self.text = text
        self._parser: Any = None
        self._tree: Any = None
        self._stale = self.spec is not None  # parsed on first use
        self._lock = threading.Lock()  # edits (event loop) against adopting a parse (worker)
        self._origin: SyntaxTree | None = None
        self._checkpoints: list[tuple[int, int, int]] | None = None  # see _byte_and_row
        self._window: Window | None = None  # what the tree covers, for a text over WHOLE_PARSE_MAX
        self._focus = 0  # where the next window goes: focus() or the last edit
        self._starts: list[int] | None = None  # top-level statement starts, for the window's bounds
        self._version = 0  # edits so far
        self._edits: list[TreeEdit] = []  # the last EDITS_KEPT of them (see _adopt, unchanged_before)
        self._lineage = object()  # this text's history: shared with its snapshots, until one is edited

    @property
    def window(self) -> Window | None:
        """The part of the text the tree covers, or None: all of it."""
        return self._window if len(self.text) > WHOLE_PARSE_MAX else None

    def focus(self, offset: int) -> None:
        """Say where the tree is about to be read. A text over WHOLE_PARSE_MAX is then parsed in a
        window around `offset` (a new one when `offset` is near the current one's edge)."""
        if self.spec is None or len(self.text) <= WHOLE_PARSE_MAX:
            return
        with self._lock:
            self._focus = offset
            if self._window is None or not self._window.covers(offset, len(self.text)):
                self._window, self._tree, self._stale = None, None, True

    def byte_at(self, offset: int) -> int:
        """The UTF-8 byte offset of code point `offset`, counted from a checkpoint near it."""
        return offset if self.text.isascii() else self._byte_and_row(self.text, offset)[0]

    @property
    def parsed(self) -> bool:
        """Whether this text has (or will have, on first use) a syntax tree."""
        return self.spec is not None

    @property
    def tree(self) -> Any:
        if self._stale:
            self._reparse()
        return self._tree

    @staticmethod
    def _bytes(text: str) -> bytes:
        return text.encode("utf-8", errors="surrogatepass")

    def _reparse(self) -> None:
        assert self.spec is not None
        if self._parser is None:
            self._parser = self.spec.parser()
        text, old = self.text, self._tree
        spans: list[tuple[int, int, int]] = []
        if len(text) > WHOLE_PARSE_MAX:
            if self._window is None:
                if self._starts is None:  # once: the whole text, for where its statements start
                    self._starts = statement_starts(parse_yielding(self.spec.parser(), text, old), text)
                self._window = Window.around(text, self._focus, self._starts)
                old, self._parser = None, self.spec.parser()
            ranges = self._ranges(text, self._window)
            self._parser.included_ranges = [r for r, _, _ in ranges]
            spans = [(r.start_byte, start, end) for r, start, end in ranges]
        elif self._window is not None:  # shrunk back under the bound: the whole text, afresh
            self._window, self._starts, old, self._parser = None, None, None, self.spec.parser()
        tree = parse_yielding(self._parser, text, old, spans)
        self._tree, self._stale = tree, False
        if self._origin is not None:
            self._origin._adopt(tree, self._window, self._starts, self._version, text)

    def _ranges(self, text: str, window: Window) -> list[tuple[Any, int, int]]:
        """The window as tree-sitter ranges, each with its (start, end) in code points."""
        import tree_sitter

        spans = [(0, window.head_end), (window.start, window.end)] if window.head_end else [(0, window.end)]
        ranges = []
        for start, end in spans:
            (start_byte, start_point), (end_byte, end_point) = self._point(text, start), self._point(text, end)
            ranges.append((tree_sitter.Range(tree_sitter.Point(*start_point), tree_sitter.Point(*end_point),
                                             start_byte, end_byte), start, end))
        return ranges

    def _point(self, text: str, offset: int) -> tuple[int, tuple[int, int]]:
        """Code point `offset` as tree-sitter counts it: (byte, (row, column in bytes))."""
        byte, row = self._byte_and_row(text, offset)
        line_start = self._line_start(text, offset, row)
        # The column in bytes: by subtraction, not by encoding the line up to the offset (on a
        # 2 M-character line that was the cost of a keystroke).
        column = offset - line_start if text.isascii() else byte - self._byte_and_row(text, line_start)[0]
        return byte, (row, column)

    def _line_start(self, text: str, offset: int, row: int) -> int:
        """Where the line holding `offset` (on `row`) starts, looked for between the checkpoints
        around it: not a search back along the line (~1 ms a keystroke on a 2 M-character line)."""
        points = self._checkpoints
        assert points is not None  # (_byte_and_row made them)
        below = bisect.bisect_right(points, (offset, float("inf"), float("inf")))  # points[:below] are at or before it
        first = bisect.bisect_left(points, row, 0, below, key=lambda point: point[2])  # the first on its row
        if first == 0:
            return 0  # (row 0)
        end = points[first][0] if first < below else offset
        return text.rfind("\n", points[first - 1][0], end) + 1

    def edit(self, start: int, end: int, new_text: str) -> None:
        """Replace text[start:end] (code points) with new_text; the tree is told now, parsed later."""
        with self._lock:
            old = self.text
            # The head is copied once: CPython grows a string that nothing else holds in place
            # (`+=`), where a join copied the sliced head a second time and `a + b + c` a third.
            text = old[:start]
            text += new_text
            text += old[end:]
            self.text = text
            self._focus = start + len(new_text)
            if self._origin is not None:  # an edited snapshot is a text of its own from here
                self._origin, self._lineage, self._edits = None, object(), []
            if self.spec is None:
                self._version += 1
                self._edits = []  # (no log without a parse: unchanged_before says it does not know)
                return
            start_byte, start_point = self._point(old, start)
            old_end_byte = start_byte + len(self._bytes(old[start:end]))
            new_end_byte = start_byte + len(self._bytes(new_text))
            change = TreeEdit(start, end, len(new_text), {
                "start_byte": start_byte, "old_end_byte": old_end_byte, "new_end_byte": new_end_byte,
                "start_point": start_point, "old_end_point": _advance(start_point, old[start:end]),
                "new_end_point": _advance(start_point, new_text)})
            self._tree, self._window, self._starts = change.apply(self._tree, self._window, self._starts)
            self._stale = True
            self._version += 1
            self._edits.append(change)
            if len(self._edits) > self.EDITS_KEPT:
                del self._edits[0]
            self._move_checkpoints(start, end, len(new_text), start_byte, old_end_byte, new_end_byte,
                                   start_point[0], old.count("\n", start, end), new_text.count("\n"))

    def mark(self) -> tuple[object, int]:
        """This text's place in its history, for `unchanged_before`."""
        return self._lineage, self._version

    def unchanged_before(self, offset: int, mark: tuple[object, int]) -> bool | None:
        """Whether text[:offset] is as it was at `mark`: every edit since began at or after
        `offset`. O(edits), not O(text). None when the edits are not known (another history,
        or more of them than are kept)."""
        lineage, version = mark
        behind = self._version - version
        if lineage is not self._lineage or behind < 0 or behind > len(self._edits):
            return None
        return all(change.start >= offset for change in self._edits[len(self._edits) - behind:])

    # A parse on the worker can take long enough (the first of a 2 MB file: ~250 ms) for the
    # document to be edited meanwhile; its tree is still adopted, these edits replayed on it.
    EDITS_KEPT = 256

    def _adopt(self, tree: Any, window: Window | None, starts: list[int] | None, version: int, text: str) -> None:
        """Take a snapshot's fresh parse (of `text`, this tree's text at `version`)."""
        with self._lock:
            if self.text is text and self._stale:
                self._tree, self._stale, self._window, self._starts = tree.copy(), False, window, starts
                return
            behind = self._version - version
            if behind > len(self._edits) or (self._tree is not None and self._starts is not None):
                return  # (this tree was parsed since, or too many edits to replay)
            take_tree = self._tree is None
            mine = tree.copy() if take_tree else None
            window = window if take_tree else None
            for change in self._edits[len(self._edits) - behind:]:
                mine, window, starts = change.apply(mine, window, starts)
            if take_tree and mine is not None:
                self._tree, self._window = mine, window
            if self._starts is None:
                self._starts = starts

    # Checkpoints (offset, byte, row) into the current text, so that an edit finds its byte offset
    # and tree-sitter row by counting from a nearby one instead of from the top: O(distance).
    CHECKPOINT_EVERY = 1 << 16
    MAX_CHECKPOINTS = 256

    def _byte_and_row(self, text: str, offset: int) -> tuple[int, int]:
        if self._checkpoints is None:
            self._checkpoints = self._seed_checkpoints(text)
        points = self._checkpoints
        i = bisect.bisect_right(points, (offset, float("inf"), float("inf"))) - 1
        mark, byte, row = points[i]
        ascii_only = text.isascii()  # O(1): then a byte is a code point
        between = offset - mark if ascii_only else len(self._bytes(text[mark:offset]))
        found = (offset, byte + between, row + text.count("\n", mark, offset))
        if offset - mark > self.CHECKPOINT_EVERY // 4 and len(points) < self.MAX_CHECKPOINTS:
            points.insert(i + 1, found)
        return found[1], found[2]

    def _seed_checkpoints(self, text: str) -> list[tuple[int, int, int]]:
        """One pass over the text (the first edit pays it): a checkpoint every CHECKPOINT_EVERY."""
        points, byte, row = [(0, 0, 0)], 0, 0
        step = self.CHECKPOINT_EVERY
        for start in range(0, len(text) - step, step):
            chunk = text[start : start + step]
            byte += step if chunk.isascii() else len(self._bytes(chunk))
            row += chunk.count("\n")
            points.append((start + step, byte, row))
        return points

    def _move_checkpoints(self, start: int, end: int, inserted: int, start_byte: int, old_end_byte: int,
                          new_end_byte: int, row: int, rows_removed: int, rows_inserted: int) -> None:
        """Keep the checkpoints true for the edited text: those after the edit move with it."""
        if self._checkpoints is None:
            return
        shift = (inserted - (end - start), new_end_byte - old_end_byte, rows_inserted - rows_removed)
        # One point an offset: a point at `start` of an insertion is before it and stays; one at
        # `end` of a deletion moves to `start`. (Kept and moved both, a point at an insertion's
        # place doubled at each keystroke there: 2**n points after n corrections of a letter.)
        points = {p[0]: p for p in self._checkpoints if p[0] <= start}
        points[start] = (start, start_byte, row)
        points.update((p[0] + shift[0], (p[0] + shift[0], p[1] + shift[1], p[2] + shift[2]))
                      for p in self._checkpoints if p[0] >= end and p[0] > start)
        ordered = sorted(points.values())
        if len(ordered) > self.MAX_CHECKPOINTS:  # each edit adds one: thin them out, keep the top and this edit's
            spacing, thinned = self.CHECKPOINT_EVERY // 4, [ordered[0]]
            for point in ordered[1:]:
                if point[0] - thinned[-1][0] >= spacing or point[0] == start:
                    thinned.append(point)
            ordered = thinned
        self._checkpoints = ordered

    def snapshot(self) -> SyntaxTree:
        """A frozen copy for another thread: edits to this one will not reach it. It parses on use."""
        with self._lock:
            copy = SyntaxTree.__new__(SyntaxTree)
            copy.spec, copy.text, copy._parser, copy._lock = self.spec, self.text, None, threading.Lock()
            copy._tree = self._tree.copy() if self._tree is not None else None
            copy._stale, copy._origin = self._stale, self
            copy._checkpoints = list(self._checkpoints) if self._checkpoints is not None else None
            copy._window, copy._focus, copy._starts = self._window, self._focus, self._starts
            copy._version, copy._edits, copy._lineage = self._version, list(self._edits), self._lineage
        return copy


def _advance(point: tuple[int, int], text: str) -> tuple[int, int]:
    row, column = point
    newlines = text.count("\n")
    if not newlines:
        return row, column + len(text.encode("utf-8", errors="surrogatepass"))
    tail = text[text.rfind("\n") + 1 :]
    return row + newlines, len(tail.encode("utf-8", errors="surrogatepass"))

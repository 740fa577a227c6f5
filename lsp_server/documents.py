"""Open documents: text, one tree-sitter tree each, kept in step by incremental edits.

Positions arrive in the negotiated encoding (utf-16 unless the client chose otherwise) and are
turned into code-point offsets here, through a line index kept by the edits: a keystroke costs
O(lines edited), not O(file). A position past the end is clamped rather than refused: an editor
that is one keystroke ahead of us must not lose the document's state.

Bounds: a document over MAX_PARSED_CHARS keeps its text (edits still apply, in either direction
across the line) but has no tree and gets no completions; all documents together stay under
MAX_TOTAL_CHARS — the one whose open or edit would pass it is not tracked, and says so.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pygls.uris import to_fs_path

from engine.context import OpenDocument
from engine.request import CompletionRequest
from engine.session import DocumentSession
from engine.syntax import SyntaxTree
from engine.text import LineIndex

# Above this size a document is kept as plain text: no tree (parsing would stall the server)
# and no completions in it.
MAX_PARSED_CHARS = 2_000_000
# All open documents together (code points; a few bytes each in memory).
MAX_TOTAL_CHARS = 64_000_000
RECENT_EDITS = 8


@dataclass
class Document:
    uri: str
    language_id: str
    version: int
    syntax: SyntaxTree
    binary: bool = False
    recent_lines: deque[int] = field(default_factory=lambda: deque(maxlen=RECENT_EDITS))
    lines: LineIndex | None = None
    capped: bool = False  # over MAX_PARSED_CHARS: text only
    # The last didChange's edits as (start, end, inserted length) in offsets, in order (acceptance.py).
    last_edits: list[tuple[int, int, int]] = field(default_factory=list)

    session: DocumentSession = field(init=False)  # what is kept between keystrokes (engine/session.py)

    def __post_init__(self) -> None:
        self.session = DocumentSession(self.uri)
        if self.lines is None:
            self.lines = LineIndex(self.text)
        self.capped = len(self.text) > MAX_PARSED_CHARS

    @property
    def text(self) -> str:
        return self.syntax.text

    @property
    def line_count(self) -> int:
        """Lines as the editor counts them (a lone \\r ends one too)."""
        assert self.lines is not None
        return len(self.lines)

    @property
    def path(self) -> str:
        return path_of(self.uri)

    def request_at(self, offset: int, encoding: str, others: Sequence[OpenDocument], **options: Any,
                   ) -> CompletionRequest:
        """A completion request at `offset`, its position in `encoding` worked out once, here."""
        assert self.lines is not None
        at = self.lines.position(self.text, offset, encoding)
        return CompletionRequest(self.text, at.line, at.character, encoding, self.language_id, self.path,
                                 tree=self.syntax.snapshot(), others=others, offset=offset,
                                 memory=self.session.prompts, **options)

    def as_context(self) -> OpenDocument:
        # A snapshot: the worker parses and reads it while the event loop edits the document.
        return OpenDocument(self.path, self.syntax.snapshot(), tuple(self.recent_lines))


def path_of(uri: str) -> str:
    """A document's file path (percent-decoded, as pygls reads file URIs); a URI that names no
    file (`untitled:`) stands for itself: it is only a key and a label in the prompt."""
    return to_fs_path(uri) or uri


def _looks_binary(text: str) -> bool:
    return "\x00" in text[:8192]


def _syntax_for(text: str, language_id: str) -> SyntaxTree:
    return SyntaxTree(text, language_id, parse=len(text) <= MAX_PARSED_CHARS and not _looks_binary(text))


class DocumentStore:
    def __init__(self, max_total_chars: int = MAX_TOTAL_CHARS) -> None:
        self._docs: dict[str, Document] = {}
        self.max_total_chars = max_total_chars
        self.total_chars = 0
        self.refused: dict[str, str] = {}  # uri → why it is not tracked (bounded like the documents)

    def __contains__(self, uri: str) -> bool:
        return uri in self._docs

    def __len__(self) -> int:
        return len(self._docs)

    def get(self, uri: str) -> Document | None:
        return self._docs.get(uri)

    def prompts_kept(self) -> int:
        """Documents whose session keeps a prompt anchor or a repository context (fimble/status)."""
        return sum(doc.session.prompts.kept for doc in self._docs.values())

    def others(self, uri: str, limit: int = 8) -> list[OpenDocument]:
        """Other parsed documents, most recently opened or edited last."""
        docs = [d for d in self._docs.values() if d.uri != uri and not d.binary and d.syntax.parsed]
        return [d.as_context() for d in docs[-limit:]]

    def _refuse(self, uri: str, size: int) -> None:
        self._docs.pop(uri, None)
        if len(self.refused) >= 1000:
            self.refused.pop(next(iter(self.refused)))
        self.refused[uri] = (f"fimble keeps at most {self.max_total_chars // 1_000_000} million characters of open "
                             f"documents; {uri} ({size:,}) is not tracked: close some documents and reopen it")

    def open(self, uri: str, language_id: str, version: int, text: str) -> Document | None:
        """The new document, or None when it does not fit under the total bound (see `refused`)."""
        self.close(uri)
        if self.total_chars + len(text) > self.max_total_chars:
            self._refuse(uri, len(text))
            return None
        doc = Document(uri, language_id or "plaintext", version, _syntax_for(text, language_id), _looks_binary(text))
        self._docs[uri] = doc
        self.total_chars += len(text)
        return doc

    def close(self, uri: str) -> None:
        self.refused.pop(uri, None)
        doc = self._docs.pop(uri, None)
        if doc is not None:
            self.total_chars -= len(doc.text)

    def change(self, uri: str, version: int, changes: list[Any], encoding: str) -> Document | None:
        """Apply LSP content changes in order; ranged ones incrementally."""
        doc = self._docs.get(uri)
        if doc is None:
            return None
        before = len(doc.text)
        doc.last_edits = []
        for change in changes:
            change_range = getattr(change, "range", None)
            if change_range is None:
                doc.last_edits.append((0, len(doc.text), len(change.text)))
                doc.capped = len(change.text) > MAX_PARSED_CHARS
                doc.syntax = _syntax_for(change.text, doc.language_id)
                doc.binary = _looks_binary(change.text)
                doc.lines = LineIndex(change.text)
                continue
            text, lines = doc.text, doc.lines
            assert lines is not None
            start_pos, end_pos = change_range.start, change_range.end
            start = lines.offset(text, start_pos.line, start_pos.character, encoding)
            end = lines.offset(text, end_pos.line, end_pos.character, encoding)
            if end < start:
                start, end = end, start
                start_pos, end_pos = end_pos, start_pos
            last = len(lines) - 1
            doc.last_edits.append((start, end, len(change.text)))
            doc.syntax.edit(start, end, change.text)
            lines.edit(doc.text, min(start_pos.line, last), min(end_pos.line, last), len(change.text), end - start,
                       change.text)
            doc.session.edited(start + len(change.text), change.text)
            line = start_pos.line
            if line in doc.recent_lines:
                doc.recent_lines.remove(line)
            doc.recent_lines.appendleft(line)
        size = len(doc.text)
        if doc.capped != (size > MAX_PARSED_CHARS):  # crossed the size cap, one way or the other
            doc.capped = size > MAX_PARSED_CHARS
            doc.syntax = _syntax_for(doc.text, doc.language_id)
        doc.version = version
        self.total_chars += size - before
        if self.total_chars > self.max_total_chars:
            self.total_chars -= size
            self._refuse(uri, size)
            return None
        # Move the document to the end: "recently used" order for extra context.
        self._docs[uri] = self._docs.pop(uri)
        return doc

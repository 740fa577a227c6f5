"""Open documents: text, one tree-sitter tree each, kept in step by incremental edits.

Positions arrive in the negotiated encoding (utf-16 unless the client chose otherwise) and are
turned into code-point offsets here. A position past the end is clamped rather than refused:
an editor that is one keystroke ahead of us must not lose the document's state.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from engine.context import OpenDocument
from engine.syntax import SyntaxTree
from engine.text import offset_at

# Above this size a document is kept as plain text: no tree (parsing would stall the server)
# and no completions from it beyond the plain-text path.
MAX_PARSED_CHARS = 2_000_000
RECENT_EDITS = 8


@dataclass
class Document:
    uri: str
    language_id: str
    version: int
    syntax: SyntaxTree
    binary: bool = False
    recent_lines: deque[int] = field(default_factory=lambda: deque(maxlen=RECENT_EDITS))
    request_serial: int = 0  # bumped by every completion request: a newer one supersedes
    last_edit: int = -1  # offset just after the last edit's inserted text: where the user is
    last_inserted: str = ""  # the text the last edit inserted
    last_shown: str = ""  # the last suggestion shown in this document

    @property
    def text(self) -> str:
        return self.syntax.text

    @property
    def path(self) -> str:
        return self.uri.removeprefix("file://")

    def as_context(self) -> OpenDocument:
        return OpenDocument(self.path, self.syntax, tuple(self.recent_lines))


def _looks_binary(text: str) -> bool:
    return "\x00" in text[:8192]


def _syntax_for(text: str, language_id: str) -> SyntaxTree:
    if len(text) > MAX_PARSED_CHARS or _looks_binary(text):
        return SyntaxTree(text, None)
    return SyntaxTree(text, language_id)


class DocumentStore:
    def __init__(self) -> None:
        self._docs: dict[str, Document] = {}

    def __contains__(self, uri: str) -> bool:
        return uri in self._docs

    def __len__(self) -> int:
        return len(self._docs)

    def get(self, uri: str) -> Document | None:
        return self._docs.get(uri)

    def others(self, uri: str, limit: int = 8) -> list[OpenDocument]:
        """Other parsed documents, most recently opened or edited last."""
        docs = [d for d in self._docs.values() if d.uri != uri and not d.binary and d.syntax.tree is not None]
        return [d.as_context() for d in docs[-limit:]]

    def open(self, uri: str, language_id: str, version: int, text: str) -> Document:
        doc = Document(uri, language_id or "plaintext", version, _syntax_for(text, language_id), _looks_binary(text))
        self._docs[uri] = doc
        return doc

    def close(self, uri: str) -> None:
        self._docs.pop(uri, None)

    def change(self, uri: str, version: int, changes: list[Any], encoding: str) -> Document | None:
        """Apply LSP content changes in order; ranged ones incrementally."""
        doc = self._docs.get(uri)
        if doc is None:
            return None
        for change in changes:
            change_range = getattr(change, "range", None)
            if change_range is None:
                doc.syntax = _syntax_for(change.text, doc.language_id)
                doc.binary = _looks_binary(change.text)
                continue
            text = doc.text
            start = offset_at(text, change_range.start.line, change_range.start.character, encoding)
            end = offset_at(text, change_range.end.line, change_range.end.character, encoding)
            if end < start:
                start, end = end, start
            doc.syntax.edit(start, end, change.text)
            doc.last_edit, doc.last_inserted = start + len(change.text), change.text
            line = change_range.start.line
            if line in doc.recent_lines:
                doc.recent_lines.remove(line)
            doc.recent_lines.appendleft(line)
        doc.version = version
        # Move the document to the end: "recently used" order for extra context.
        self._docs[uri] = self._docs.pop(uri)
        return doc

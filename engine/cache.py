"""Completion caches: exact (LRU keyed by the prompt) and type-through.

Type-through is what makes a suggestion feel instant: after a suggestion is shown, the user
often types its first characters. Each keystroke would otherwise be a new model call; instead,
when the text before the cursor is the old text plus a prefix of the suggestion, and the text
after the cursor has not changed, the rest of the suggestion is the answer.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

# How much of the text around the cursor identifies "the same place" for type-through.
_CONTEXT_CHARS = 4000


class LRUCache:
    def __init__(self, capacity: int = 256) -> None:
        self.capacity = capacity
        self._items: OrderedDict[str, tuple[str, str]] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: str) -> tuple[str, str] | None:
        with self._lock:
            value = self._items.get(key)
            if value is None:
                self.misses += 1
                return None
            self._items.move_to_end(key)
            self.hits += 1
            return value

    def put(self, key: str, text: str, reason: str) -> None:
        with self._lock:
            self._items[key] = (text, reason)
            self._items.move_to_end(key)
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)


@dataclass(frozen=True)
class ShownSuggestion:
    prefix_tail: str
    suffix_head: str
    text: str


class TypeThrough:
    """The last suggestion shown per document, and whether the user is typing it."""

    def __init__(self) -> None:
        self._shown: dict[str, ShownSuggestion] = {}
        self._lock = threading.Lock()
        self.hits = 0

    def remember(self, key: str, prefix: str, suffix: str, text: str) -> None:
        with self._lock:
            if text:
                self._shown[key] = ShownSuggestion(prefix[-_CONTEXT_CHARS:], suffix[:_CONTEXT_CHARS], text)
            else:
                self._shown.pop(key, None)

    def forget(self, key: str) -> None:
        with self._lock:
            self._shown.pop(key, None)

    def lookup(self, key: str, prefix: str, suffix: str, *, count: bool = True) -> str | None:
        """The rest of the shown suggestion if the user typed a (non-empty) start of it (a hit,
        counted unless not `count`)."""
        with self._lock:
            shown = self._shown.get(key)
        if shown is None or suffix[:_CONTEXT_CHARS] != shown.suffix_head:
            return None
        for typed_len in range(1, len(shown.text)):
            # Compare only the ends: the typed characters, and the old prefix just before them
            # (in place: a copy of a 2 MB prefix per length tried was the cost of a keystroke).
            typed = shown.text[:typed_len]
            if prefix.endswith(typed) and prefix.endswith(shown.prefix_tail, 0, len(prefix) - typed_len):
                if count:
                    with self._lock:
                        self.hits += 1
                return shown.text[typed_len:]
        return None

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
    """A suggestion shown at a place, with the text around the place that identifies it. Frozen:
    a document's session swaps in a new one whole, so the event loop reads it while the model
    worker replaces it."""

    prefix_tail: str
    suffix_head: str
    text: str

    @classmethod
    def at(cls, text: str, offset: int, suggestion: str) -> ShownSuggestion | None:
        """`suggestion` shown at `offset` of `text` (None for an empty one: nothing to type through)."""
        if not suggestion:
            return None
        return cls(text[max(0, offset - _CONTEXT_CHARS):offset], text[offset:offset + _CONTEXT_CHARS], suggestion)

    def rest(self, text: str, offset: int) -> str | None:
        """The rest of the suggestion if the text before `offset` is the old text plus a
        (non-empty) start of it and the text after is unchanged. Compared in place, O(the
        suggestion and its context): a copy of a 2 MB prefix per check was the cost of a keystroke."""
        if len(self.suffix_head) != min(len(text) - offset, _CONTEXT_CHARS) \
                or not text.startswith(self.suffix_head, offset):
            return None
        for typed_len in range(1, len(self.text)):
            typed = self.text[:typed_len]
            if text.endswith(typed, 0, offset) and text.endswith(self.prefix_tail, 0, offset - typed_len):
                return self.text[typed_len:]
        return None

    def typed_whole(self, text: str, offset: int) -> bool:
        """Whether the text before `offset` is the old text plus the whole suggestion (accepted
        to its end) and the text after is unchanged."""
        return (len(self.suffix_head) == min(len(text) - offset, _CONTEXT_CHARS)
                and text.startswith(self.suffix_head, offset) and text.endswith(self.text, 0, offset)
                and text.endswith(self.prefix_tail, 0, offset - len(self.text)))

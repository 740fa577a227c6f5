"""What goes into the completion pipeline and what comes out of it (engine/service.py).

A CompletionRequest is a document, a cursor and how the caller waits; a CompletionResult is the
text to insert, its range and why it ended. An answer given early carries its Unfinished rest:
the caller keeps it (the language server, in the document's FINISH idle job, lsp_server/idle.py)
and asks for the rest when idle (`CompletionService.rest_of_answer`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from .anchor import Heal, PromptMemory
from .context import OpenDocument
from .postprocess import Site, left_block, unfinished
from .prompt import Prompt, Text
from .syntax import SyntaxTree
from .text import offset_at, position_at


@dataclass
class CompletionRequest:
    text: str
    line: int
    character: int
    encoding: str = "utf-16"
    language: str = "plaintext"
    path: str = ""
    cancel: threading.Event = field(default_factory=threading.Event)
    # The document's parsed tree, when the caller keeps one (the language server does); its
    # text must equal `text`. Without it the service parses `text` itself.
    tree: SyntaxTree | None = None
    # The other open documents, for extra context.
    others: Sequence[OpenDocument] = ()
    # Skip postprocessing and caches: the raw output cut only at stop tokens (for measuring).
    raw: bool = False
    # Use the caches (exact prompt, type-through, and KV cells moved from other places or
    # restored: engine/backends/kv_reuse.py); the eval harness turns them off, so that an answer
    # does not depend on the tasks before it.
    use_cache: bool = True
    # An editor is waiting (the language server asks for this; the CLI and the eval harness wait
    # for the whole window and the whole answer):
    # - a new place the cache does not hold starts from a window cut to what evaluates in
    #   settings.new_place_ms, widened when idle (`widen`);
    # - a long answer is answered early, its first usable lines after settings.first_answer_ms of
    #   decoding, and the rest is decoded when idle (`rest_of_answer`); so is one the time budget cut.
    interactive: bool = False
    # Idle work after an interactive answer from a short window (`refine`): the answer the
    # pipeline gives with time — the whole window (a short anchor is replaced), the whole decode,
    # no time budget — which the editor is then offered in its place.
    refine: bool = False
    # What is kept for the document between its prompts (engine/anchor.py): the language server
    # passes its session's; None: the service keeps one per path (the CLI, the eval harness).
    memory: PromptMemory | None = None
    # The cursor's code-point offset, when the caller has it (the language server converts the
    # position once, with the document's LineIndex); line/character are then that offset's
    # position, as the answer's range gives it.
    offset: int | None = None

    def place(self) -> tuple[int, SyntaxTree]:
        """The cursor's offset in the text, and the text's tree (the caller's, or parsed now)."""
        offset = self.cursor_offset()
        if self.tree is None:
            return offset, SyntaxTree(self.text, self.language)
        self.tree.focus(offset)  # (a large text is parsed around the cursor)
        return offset, self.tree

    def cursor_offset(self) -> int:
        if self.offset is not None:
            return max(0, min(self.offset, len(self.text)))
        return offset_at(self.text, self.line, self.character, self.encoding)

    def cursor_position(self, offset: int) -> dict[str, int]:
        if self.offset is not None:
            return {"line": self.line, "character": self.character}
        return position_at(self.text, offset, self.encoding).as_dict()

    def cursor_range(self, offset: int) -> dict[str, dict[str, int]]:
        """The empty range at the cursor: where an answer is inserted."""
        position = self.cursor_position(offset)
        return {"start": position, "end": position}


@dataclass
class CompletionResult:
    text: str
    range: dict[str, dict[str, int]]
    reason: str
    timings: dict[str, Any]
    # An answer given early (or cut by the time budget) in an editor: what its rest is decoded from.
    unfinished: Unfinished | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"text": self.text, "range": self.range, "reason": self.reason, "timings": self.timings}


@dataclass
class Unfinished:
    """An answer given early (StopReason.EARLY): what its rest is decoded from (`rest_of_answer`).
    Decoding the rest, preempted, extends it in place: the next call goes on from there."""

    prompt: Prompt  # the request's prompt with the backend's text so far after it
    raw: str  # the backend's text so far
    generated: int  # tokens generated so far
    site: Site
    heal: Heal
    mode: str
    cache_key: str
    text: str  # the document asked about, and the cursor in it (where the whole answer is shown)
    offset: int
    range: dict[str, dict[str, int]]
    shown: str  # the answer given early (or cut by the time budget), as the editor has it
    max_tokens: int  # the whole answer's bound
    ended: bool = False  # its rest is decoded: nothing more to go on with
    continued: bool = False  # a request took it over (the user accepted it to its end, DocumentSession.continuation)


def judges(heal: Heal, site: Site, before: str = "", beyond: str = "") -> dict[str, Callable[[str], bool]]:
    """The streaming judges of a completion at `site` (engine/postprocess.py), for a backend's
    text that follows `before`: `stop_when` (it has left its block), `unfinished` (nothing usable
    yet; with `beyond`, the answer the editor was given, nothing usable past its lines)."""
    return {"stop_when": lambda so_far: left_block(heal.inserted(before + so_far), site),
            "unfinished": lambda so_far: unfinished(heal.inserted(before + so_far), site, beyond)}


def extended(prompt: Prompt, text: str) -> Prompt:
    """`prompt` with `text` after it, as if the model had written it (how an answer goes on)."""
    return replace(prompt, parts=(*prompt.parts, Text(text)))

"""What fimble keeps between keystrokes for one open document, and the idle work it asks for.

The language server holds one DocumentSession per open document (lsp_server/documents.py). The
session decides what an editor's stream of edits and requests means: whether a request is still
the newest, whether the last edit accepted the suggestion shown, whether an answer is the grown
whole of one shown early, and which model work to do while the user pauses. That work comes back
as data (IdleJob: its kind, the worker's key, how long a pause it waits for, whether it resumes
after being preempted) for the server to hand to the model worker. No pygls and no model here:
the whole policy is unit-tested on its own (tests/test_session.py).

Everything kept for the document lives here — the suggestion shown (type-through), the prompt's
anchor and repository context, the docstring moment's head — and goes with the session when the
document closes. (An early answer's unfinished rest travels with the answer,
`CompletionResult.unfinished`, into the one FINISH job the session's job key allows per document;
the session points at it while that job has it, for `continuation`.)
A new between-keystrokes behaviour is a new field, method or job kind here, and the one place in
lsp_server/idle.py that runs a job of that kind.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING

from .anchor import PromptMemory
from .cache import ShownSuggestion
from .reasons import Outcome

if TYPE_CHECKING:
    from .request import Unfinished

# A short window is widened, and a short window's answer refined, once the user has paused this
# long: between keystrokes the work would only be preempted, and each preemption saves and
# restores the place's KV cells.
WIDEN_QUIET_S = 0.25
# The docstring moment one Enter away is asked for after this long a pause: while the user types
# on a line that ends in a docstring's closing quotes (they were closed as it was opened), the
# question changes with each keystroke.
AHEAD_QUIET_S = 0.25
# A document's warm-up (a minute of CPU for a long file) starts or resumes only after this long
# without requests or edits.
DOCUMENT_WARM_QUIET_S = 1.0
# Documents warmed up at once (the most recently opened): CPU time is the user's.
WARM_DOCUMENTS = 3
# An edit that inserted at least this much of the suggestion shown accepted it (one character is
# also what typing into the suggestion looks like).
ACCEPTED_MIN_CHARS = 2


class JobKind(StrEnum):
    WARM_PLACE = "warm"  # evaluate the prompt of the place just edited
    PRECOMPUTE = "precompute"  # after an accepted suggestion: the next suggestion outright
    WIDEN = "widen"  # a place with a short window: its whole window
    FINISH = "finish"  # an answer given early: the rest of it (its prompt and lines are in the KV cache)
    REFINE = "refine"  # an answer from a short window: the whole window's answer
    DOCUMENT = "document"  # a document just opened: evaluate the document itself
    AHEAD = "ahead"  # a line that ends a docstring over an empty body: the docstring moment one Enter away


# What fimble/status counts each finished job as (`warmed`).
COUNTED_AS = {JobKind.WARM_PLACE: "places", JobKind.PRECOMPUTE: "precomputed", JobKind.WIDEN: "widened",
              JobKind.FINISH: "finished", JobKind.REFINE: "refined", JobKind.DOCUMENT: "documents",
              JobKind.AHEAD: "ahead"}
# The worker's key of each kind's job for a document: a newer job with the same key replaces the
# older. FINISH and REFINE share one: a new answer's follow-up makes the old one moot. AHEAD shares
# WIDEN's, which every edit asks for: the next edit (Enter, or any other) replaces it.
_KEY_PREFIX = {JobKind.WARM_PLACE: "warm", JobKind.PRECOMPUTE: "warm", JobKind.WIDEN: "widen",
               JobKind.FINISH: "follow", JobKind.REFINE: "follow", JobKind.DOCUMENT: "document",
               JobKind.AHEAD: "widen"}


@dataclass(frozen=True)
class IdleJob:
    kind: JobKind
    key: str  # the model worker's key
    quiet_s: float = 0.0  # it waits for a pause this long
    resume: bool = False  # preempted by a request, it runs again after it

    @property
    def counted_as(self) -> str:
        return COUNTED_AS[self.kind]

    @property
    def for_the_next_request(self) -> bool:
        """Its prompt is the one the next request at the place evaluates (the place just edited,
        or the next suggestion after an accepted one): a request arriving loses nothing by
        stopping its model call at once (lsp_server/worker.py `stop_at_once`)."""
        return self.kind in (JobKind.WARM_PLACE, JobKind.PRECOMPUTE)


def job_key(kind: JobKind, uri: str) -> str:
    return f"{_KEY_PREFIX[kind]}:{uri}"


def idle_keys(uri: str) -> tuple[str, ...]:
    """Every idle job key a document can have (all dropped when it closes)."""
    return tuple(dict.fromkeys(job_key(kind, uri) for kind in JobKind))


@dataclass
class DocumentSession:
    uri: str
    request_serial: int = 0  # bumped by every completion request: a newer one supersedes
    last_edit: int = -1  # offset just after the last edit's inserted text: where the user is
    last_inserted: str = ""  # the text the last edit inserted
    last_shown: str = ""  # the last suggestion shown in this document
    early_at: int = -1  # where it was shown, when it was an answer given early (its whole comes next)
    # The place's answer and the text around it, for type-through: a whole object swapped in (the
    # model worker replaces it after idle work while the event loop reads it).
    suggestion: ShownSuggestion | None = None
    # The answer given early whose rest the FINISH job decodes, while it does (`continuation`).
    unfinished: Unfinished | None = None
    # The anchor of the last place asked about and the repository context (engine/anchor.py):
    # written by the model worker, dropped with the session when the document closes.
    prompts: PromptMemory = field(default_factory=PromptMemory)

    # -- what the editor sent ----------------------------------------------------------------------

    def new_request(self) -> int:
        self.request_serial += 1
        return self.request_serial

    def superseded(self, serial: int) -> bool:
        return serial != self.request_serial

    def edited(self, end: int, inserted: str) -> None:
        """An edit that left the cursor at `end` after inserting `inserted`."""
        self.last_edit, self.last_inserted = end, inserted

    @property
    def accepted(self) -> bool:
        """The last edit inserted the start of the suggestion shown: the user accepted (part of) it."""
        return len(self.last_inserted) >= ACCEPTED_MIN_CHARS and self.last_shown.startswith(self.last_inserted)

    def answered(self, offset: int, text: str, early: bool) -> bool:
        """An answer at `offset` is shown; `early`: the rest of it comes later. Returns whether it
        is a new suggestion (not the grown whole of the early answer shown there, counted once)."""
        grown = self.early_at == offset and bool(self.last_shown) and text.startswith(self.last_shown)
        if text:
            self.last_shown = text
        self.early_at = offset if early else -1
        return not grown

    # -- type-through --------------------------------------------------------------------------------

    def remember(self, text: str, offset: int, answer: str) -> None:
        """`answer` is the place's answer at `offset` of `text` (an empty one forgets)."""
        self.suggestion = ShownSuggestion.at(text, offset, answer)

    def typed_through(self, text: str, offset: int) -> str | None:
        """The rest of the place's answer, when the user is typing it; no model needed. O(the
        answer and its context), whatever the document's size."""
        suggestion = self.suggestion  # (read once: the worker may swap it)
        rest = suggestion.rest(text, offset) if suggestion is not None else None
        return rest if rest is not None and rest.strip() else None

    def continuation(self, text: str, offset: int) -> Unfinished | None:
        """The answer given early that the user has just accepted to its end (Tab: the cursor
        after it, the rest of the document as it was) while its rest is still to be decoded: the
        next suggestion there is that rest. (Asked anew, the place is the end of a finished line,
        where a suggestion only finishes the line: nothing.) None otherwise."""
        pending = self.unfinished
        if pending is None or pending.ended:
            return None
        shown = ShownSuggestion.at(pending.text, pending.offset, pending.shown)
        return pending if shown is not None and shown.typed_whole(text, offset) else None

    # -- the idle work it asks for ---------------------------------------------------------------

    def jobs_after_edit(self, warm: bool, typed_through: bool, ends_docstring: bool = False,
                        continues: bool = False) -> list[IdleJob]:
        """After an edit: the whole window where the place had a short one (after a pause), then
        the place's prompt, or the next suggestion when the edit accepted the one shown. Nothing
        when the user typed into the suggestion shown: the next request is answered from it, and
        the model goes on with what it was doing (often the rest of an answer given early). The
        widening comes first: a new idle job preempts a running one, and the place's own warm-up
        must not be the one preempted. `ends_docstring`: the edited line may end a docstring over
        an empty body; in the widening's place, after the request made there, the docstring
        moment one Enter away (the question asked, its prompt evaluated). `continues`: the edit
        accepted an answer given early to its end (`continuation`): its FINISH job, already
        there, is the next suggestion's work."""
        if not warm or self.last_edit < 0 or (typed_through and not self.accepted) or continues:
            return []
        place = JobKind.PRECOMPUTE if self.accepted else JobKind.WARM_PLACE
        first = JobKind.AHEAD if ends_docstring else JobKind.WIDEN
        # A quote just typed closed the docstring: Enter is next, at once. Else (typing in a line
        # whose quotes were closed as they were opened) after a pause.
        quiet = (0.0 if self.last_inserted.endswith(('"', "'")) else AHEAD_QUIET_S) if ends_docstring \
            else WIDEN_QUIET_S
        return [IdleJob(first, job_key(first, self.uri), quiet, resume=True), IdleJob(place, job_key(place, self.uri))]

    def follow_up(self, reason: str, unfinished: bool, short_window: bool) -> IdleJob | None:
        """After an answer given before the pipeline was done with the place: its rest, at once
        (the KV cache holds its prompt and lines), or the whole window's answer after a pause.
        An answer from the cache, or a cancelled request, asks for nothing."""
        if reason in (Outcome.CACHE, Outcome.CANCELLED):
            return None
        if unfinished:
            return IdleJob(JobKind.FINISH, job_key(JobKind.FINISH, self.uri), 0.0, resume=True)
        if short_window:
            return IdleJob(JobKind.REFINE, job_key(JobKind.REFINE, self.uri), WIDEN_QUIET_S, resume=True)
        return None

    def document_job(self, warm: bool) -> IdleJob | None:
        if not warm:
            return None
        return IdleJob(JobKind.DOCUMENT, job_key(JobKind.DOCUMENT, self.uri), DOCUMENT_WARM_QUIET_S, resume=True)


class WarmOrder:
    """The documents whose warm-up is wanted, newest last: only the last WARM_DOCUMENTS opened."""

    def __init__(self, keep: int = WARM_DOCUMENTS) -> None:
        self._uris: deque[str] = deque()
        self.keep = keep

    def opened(self, uri: str) -> list[str]:
        """`uri` was opened (or reopened): the documents whose warm-up is no longer wanted."""
        self.forget(uri)
        self._uris.append(uri)
        dropped = []
        while len(self._uris) > self.keep:
            dropped.append(self._uris.popleft())
        return dropped

    def forget(self, uri: str) -> None:
        if uri in self._uris:
            self._uris.remove(uri)

    def __contains__(self, uri: str) -> bool:
        return uri in self._uris

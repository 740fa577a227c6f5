"""Idle work: what the model worker does between keystrokes, as each document's session asks.

The session (engine/session.py) decides which jobs an edit, an answer or an open calls for; this
module builds each job's request from the document as it is, hands it to the model worker
(lsp_server/worker.py) and counts what became of it for fimble/status (`warmed`, `followUps`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from engine.errors import EngineError
from engine.instruct import enter_after_docstring, line_ends_in_quote
from engine.reasons import Outcome
from engine.service import CompletionRequest, CompletionResult, CompletionService
from engine.session import DocumentSession, IdleJob, JobKind, WarmOrder, idle_keys, job_key

if TYPE_CHECKING:
    from .server import FimbleServer

# Sent when the rest of an answer given early is decoded: the editor asks again and is given it.
COMPLETION_READY = "fimble/completionReady"


class IdleWork:
    def __init__(self, server: FimbleServer) -> None:
        self.server = server
        self.warmed: dict[str, int] = {}  # idle work done: places, documents, precomputed, widened, finished
        # What became of each answer given before the pipeline was done (`follow_up`).
        self.follow_ups: dict[str, int] = {}
        self.warming = WarmOrder()  # the documents whose warm-up is wanted

    def run(self, job: IdleJob, run: Callable[[Any], Any], done: Callable[[asyncio.Future[Any]], None] | None = None,
            ) -> None:
        future = self.server.worker.submit_idle(job.key, run, resume=job.resume, quiet_s=job.quiet_s,
                                                stop_at_once=job.for_the_next_request)
        future.add_done_callback(done or self._count(job.counted_as))

    def _count(self, kind: str) -> Callable[[asyncio.Future[Any]], None]:
        """Warming is best effort: a superseded or failed one is only not counted."""
        def done(future: asyncio.Future[Any]) -> None:
            if not future.cancelled() and future.exception() is None and future.result():
                self.warmed[kind] = self.warmed.get(kind, 0) + 1
        return done

    def after_edit(self, uri: str) -> None:
        """After an edit, the work the session asks for while the worker is idle: the place's
        prompt evaluated (or, after an accepted suggestion, the next suggestion computed), and
        where the place has a short window, the whole window after a pause."""
        server = self.server
        doc = server.documents.get(uri)
        if (doc is None or doc.binary or doc.capped or not server.settings.warm or doc.session.last_edit < 0
                or server.load_state != "ready"):
            return  # (before the request is built: it snapshots the other documents, on every keystroke)
        session, text, service = doc.session, doc.text, server.service
        request = doc.request_at(session.last_edit, "utf-32", server.documents.others(uri), interactive=True)
        typed_through = not session.accepted and session.typed_through(text, session.last_edit) is not None
        ends_docstring = server.settings.docstring_prompt == "instruct" and line_ends_in_quote(text, session.last_edit)
        continues = session.accepted and session.continuation(text, session.last_edit) is not None
        for job in session.jobs_after_edit(server.settings.warm, typed_through, ends_docstring, continues):
            self.run(job, _place_work(job.kind, service, session, request))

    def follow_up(self, uri: str, request: CompletionRequest, offset: int, answered: CompletionResult,
                  version: int) -> str | None:
        """After an answer the editor was given before the pipeline was done with the place — from a
        short window, early, or cut by the time budget — compute what the pipeline gives with time,
        while idle and first among idle jobs: the rest of the answer (`CompletionService.rest_of_answer`;
        the KV cache holds its prompt and lines) or the whole window's answer (`refine`). When it
        differs from what was shown and the user has not moved on, tell the editor
        (COMPLETION_READY): the request it sends then is answered from the caches with it. Every
        path is counted in status (`followUps`). Returns the follow-up's kind, or None."""
        server = self.server
        server.worker.drop_idle(job_key(JobKind.FINISH, uri))  # a new answer: the old follow-up is moot
        doc, service, shown = server.documents.get(uri), server.service, answered.text
        if doc is None:
            return None
        session, pending = doc.session, answered.unfinished
        job = session.follow_up(answered.reason, pending is not None, answered.timings.get("window") == "short")
        session.unfinished = pending if job is not None and job.kind == JobKind.FINISH else None
        if job is None:
            return None
        asked = request.text

        def still_at(answer: str) -> bool:
            """The document is the one asked about, or the user has typed only a start of `answer`."""
            doc = server.documents.get(uri)
            if doc is None:
                return False
            if doc.version == version:
                return True
            text, tail = doc.text, len(asked) - offset  # (compared only when the document changed)
            return (len(text) >= len(asked) and text.startswith(asked[:offset]) and text.endswith(asked[offset:])
                    and answer.startswith(text[offset: len(text) - tail]))

        def run(cancel: Any) -> CompletionResult | None:
            if not still_at(shown):
                return None
            with contextlib.suppress(EngineError):
                if job.kind == JobKind.FINISH:
                    assert pending is not None
                    result = service.rest_of_answer(pending, cancel)
                    if result is not None:
                        session.remember(pending.text, pending.offset, result.text)
                    return result
                return _refined(service, session, replace(request, cancel=cancel))
            return None

        def done(future: asyncio.Future[Any]) -> None:
            taken = pending is not None and pending.continued  # by the request after Tab (FimbleServer._go_on)
            if future.cancelled() or (future.exception() is not None and not taken):
                return  # superseded by a newer answer for the document
            result: CompletionResult | None = None if taken else future.result()
            if taken:
                path_taken = "accepted"
            elif result is None or not still_at(result.text):
                path_taken = "moved on"
            elif result.text == shown:
                path_taken = "same"  # the rest added nothing
            elif not result.text:
                path_taken = "empty"  # the pipeline given time has nothing: what was shown stays
            else:
                path_taken = "grown" if result.text.startswith(shown) and shown else "replaced"
                server.protocol.notify(COMPLETION_READY, {"uri": uri})
            key = f"{job.kind}:{path_taken}"
            self.follow_ups[key] = self.follow_ups.get(key, 0) + 1
            if path_taken != "moved on":
                self.warmed[job.counted_as] = self.warmed.get(job.counted_as, 0) + 1

        self.run(job, run, done)
        return str(job.kind)

    def opened(self, uri: str) -> None:
        """After an open, evaluate the document itself once while idle (CompletionService.warm_document)."""
        server = self.server
        doc = server.documents.get(uri)
        job = doc.session.document_job(server.settings.warm) if doc is not None else None
        if doc is None or job is None or doc.binary or doc.capped:
            return
        text, last_edit = doc.text, max(doc.session.last_edit, 0)
        assert doc.lines is not None
        line_start = last_edit - doc.lines.position(text, last_edit, "utf-32").character  # (a lone \r ends a line)
        request = doc.request_at(line_start, "utf-32", server.documents.others(uri))
        service = server.service
        for dropped in self.warming.opened(uri):
            server.worker.drop_idle(job_key(JobKind.DOCUMENT, dropped))

        def run(cancel: Any) -> bool:
            with contextlib.suppress(EngineError):
                service.warm_document(replace(request, cancel=cancel))
            return not cancel.is_set()

        self.run(job, run)

    def closed(self, uri: str) -> None:
        """Drop the document's idle jobs. (What was kept for it went with its session.)"""
        for key in idle_keys(uri):
            self.server.worker.drop_idle(key)
        self.warming.forget(uri)


def _place_work(kind: JobKind, service: CompletionService, session: DocumentSession,
                request: CompletionRequest) -> Callable[[Any], bool]:
    def run(cancel: Any) -> bool:
        asked = replace(request, cancel=cancel)
        with contextlib.suppress(EngineError):
            if kind == JobKind.AHEAD:  # the docstring moment one Enter away, if the line ends a docstring
                offset, tree = asked.place()
                if (ahead := enter_after_docstring(tree, offset)) is None:
                    return False
                asked = replace(asked, text=ahead[0].text, tree=ahead[0], offset=ahead[1])
                return service.warm(asked) is not None and not cancel.is_set()
            if kind == JobKind.WIDEN:
                return service.widen(asked) is not None and not cancel.is_set()
            if kind == JobKind.PRECOMPUTE:  # nobody waits: the answer the pipeline gives with time
                _refined(service, session, asked)
            else:
                service.warm(asked)
            return not cancel.is_set()
        return False
    return run


def _refined(service: CompletionService, session: DocumentSession, request: CompletionRequest,
             ) -> CompletionResult | None:
    """The answer the pipeline gives with time at the request's place (`CompletionService.refine`),
    remembered for type-through; None when cancelled (run again later)."""
    result = service.refine(request)
    if result.reason == Outcome.CANCELLED:
        return None
    session.remember(request.text, request.cursor_offset(), result.text)
    return result

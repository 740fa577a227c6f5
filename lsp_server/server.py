"""The language server: pygls handlers over FimbleServer's state.

Handlers translate LSP to engine calls and back. Everything kept between keystrokes for a
document lives in its DocumentSession (engine/session.py), which also decides the idle work an
edit or an answer calls for; lsp_server/idle.py runs that work on the model worker
(lsp_server/worker.py). Loading (loading.py), fimble/status (status.py) and `fimble.explain`
(explaining.py) have modules of their own. The event loop only awaits the model worker, so
didChange and every other document keep flowing while a completion generates.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections import deque
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from lsprotocol import types
from pygls.lsp.server import LanguageServer

from engine.config import Settings, apply_options
from engine.errors import EngineError
from engine.models import fimble_home
from engine.reasons import Outcome, StopReason, is_filtered
from engine.request import CompletionRequest, Unfinished
from engine.service import CompletionResult, CompletionService
from engine.session import DocumentSession, JobKind, job_key

from . import loading, loop_time, status
from .acceptance import ACCEPTED_COMMAND, STATS_FILE, Acceptance
from .documents import MAX_PARSED_CHARS, DocumentStore
from .explaining import EXPLAIN_COMMAND, Explainer, needs_reload
from .idle import IdleWork
from .protocol import FimbleProtocol
from .worker import ModelWorker, Superseded

log = logging.getLogger("fimble")
STATUS_METHOD = "fimble/status"
EMPTY = types.InlineCompletionList(items=[])


class FimbleServer(LanguageServer):
    protocol: FimbleProtocol
    def __init__(self) -> None:
        super().__init__("fimble", "0.1.0", protocol_cls=FimbleProtocol,
                         text_document_sync_kind=types.TextDocumentSyncKind.Incremental)
        self.settings = Settings()
        self.service = CompletionService(self.settings)
        self.documents = DocumentStore()
        self.worker = ModelWorker()
        self.load_state = "not loaded"
        self.started_loading = False
        self._load_task: asyncio.Future[None] | None = None
        self.history: deque[dict[str, Any]] = deque(maxlen=1000)
        self.outcomes: dict[str, int] = {}
        self.idle = IdleWork(self)  # what the model worker does between keystrokes
        self.type_through_hits = 0
        self.remote = False  # set by the TCP transport: errors then say less (EngineError.public)
        self.protocol.whole_params_commands[EXPLAIN_COMMAND] = self.explain
        self.explainer = Explainer()  # the explaining model, when it is a second one
        self.acceptance: Acceptance | None = None  # counts of suggestions shown and accepted (`stats`)

    # -- helpers -------------------------------------------------------------------------------

    @property
    def encoding(self) -> str:
        try:
            encoding = self.workspace.position_encoding or "utf-16"
        except RuntimeError:  # before initialize
            return "utf-16"
        return str(getattr(encoding, "value", encoding))

    def redact(self, message: str) -> str:
        """The last guard on every channel out (messages, logs, status, errors): no secret passes."""
        for secret in (*self.settings.secrets(), os.environ.get("OPENAI_API_KEY", "")):
            if len(secret) >= 4:
                message = message.replace(secret, "***")
        return message

    def describe_error(self, exc: EngineError) -> str:
        """What the client is told: a client over TCP learns nothing about this machine's files."""
        return self.redact(exc.public if self.remote else str(exc))

    def warn(self, message: str) -> None:
        message = self.redact(message)
        self.window_show_message(types.ShowMessageParams(type=types.MessageType.Warning, message=message))
        self.log(message, types.MessageType.Warning)

    def log(self, message: str, kind: types.MessageType = types.MessageType.Info) -> None:
        message = self.redact(message)
        log.log(logging.WARNING if kind <= types.MessageType.Warning else logging.INFO, message)
        with contextlib.suppress(Exception):  # logging must never take the server down
            self.window_log_message(types.LogMessageParams(type=kind, message=message))

    def record(self, uri: str, outcome: str, started: float, **extra: Any) -> None:
        if extra.get("token") is None:
            extra.pop("token", None)
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1
        self.history.append({"uri": uri, "outcome": outcome, "ms": round((time.perf_counter() - started) * 1000, 1),
                             **extra})

    def apply_settings(self, options: dict[str, Any] | None) -> None:
        new, warnings = apply_options(self.settings, options)
        for warning in warnings:
            self.warn(warning)
        reload = needs_reload(self.settings, new)
        self.settings = new
        if new.stats and self.acceptance is None:
            self.acceptance = Acceptance(fimble_home() / STATS_FILE, self._text_of)
        elif not new.stats and self.acceptance is not None:
            self.acceptance.save()
            self.acceptance = None
        if reload and not self.started_loading:
            self.service = CompletionService(new)  # nothing loaded yet: `initialized` loads it
        elif reload:
            old = self.service
            self.service = CompletionService(new)
            self.load_state = "not loaded"
            self.worker.submit("load", lambda cancel: old.close(), supersede=False)
            loading.start(self)
        else:
            self.service.settings = new
        self.explainer.settings_changed(self)

    def end_session(self) -> None:
        """The client left: stop the model worker and free the model (TCP serves the next client anew)."""
        if self.acceptance is not None:
            self.acceptance.save()
        self.worker.stop()
        self.service.close()
        if self.explainer.service is not None:
            self.explainer.service.close()
        self.shutdown()

    # -- completion ------------------------------------------------------------------------------

    async def inline_completion(self, params: types.InlineCompletionParams) -> types.InlineCompletionList:
        started = time.perf_counter()
        try:
            return await self._inline_completion(params, started)
        except EngineError as exc:
            self.log(f"completion failed: {self.describe_error(exc)}", types.MessageType.Error)
            self.record(params.text_document.uri, Outcome.ERROR, started, error=self.describe_error(exc))
            return EMPTY

    async def _inline_completion(
        self, params: types.InlineCompletionParams, started: float
    ) -> types.InlineCompletionList:
        uri = params.text_document.uri
        # A client's workDoneToken, if any, names the request in fimble/status (benchmarks match on it).
        token = params.work_done_token

        def record(outcome: str, **extra: Any) -> None:
            self.record(uri, outcome, started, token=token, **extra)

        doc = self.documents.get(uri)
        if doc is None or doc.binary or doc.capped:
            why = ("binary" if doc.binary else f"over {MAX_PARSED_CHARS:,} characters: not parsed, no completions"
                   ) if doc is not None else self.documents.refused.get(uri, "unknown document")
            record(Outcome.EMPTY, why=why)
            return EMPTY
        pos = params.position
        if pos.line >= doc.line_count or pos.line < 0 or pos.character < 0:
            record(Outcome.EMPTY, why="position out of range")
            return EMPTY
        session, serial = doc.session, doc.session.new_request()
        assert doc.lines is not None
        offset = doc.lines.offset(doc.text, pos.line, pos.character, self.encoding)
        # (a character past the line's end is its end)
        request = doc.request_at(offset, self.encoding, self.documents.others(uri), interactive=True)
        service, here = self.service, request.cursor_range(offset)
        if (rest := session.typed_through(doc.text, offset)) is not None:
            self.type_through_hits += 1
            record(Outcome.CACHE, type_through=True)
            # The rest of a suggestion shown already: acceptable, not shown anew.
            return self._as_list(rest, here, self._shown(uri, doc.language_id, rest, offset, new=False))
        await asyncio.sleep(self.settings.debounce_ms / 1000)
        if session.superseded(serial):
            record(Outcome.CANCELLED, why="superseded while debouncing")
            return EMPTY
        if (pending := session.continuation(request.text, offset)) is not None:
            return await self._go_on(uri, doc.language_id, session, request, offset, pending, record)

        def complete(cancel: Any) -> CompletionResult:
            queued_ms = round((time.perf_counter() - submitted) * 1000, 1)  # waited for the worker
            # Answered while it waited (a follow-up grew the place's answer): the rest, no model.
            if (rest := session.typed_through(request.text, offset)) is not None:
                return CompletionResult(rest, here, Outcome.CACHE, {"type_through": True, "queued_ms": queued_ms})
            result = service.complete(replace(request, cancel=cancel))
            result.timings["queued_ms"] = queued_ms
            if result.reason != Outcome.CANCELLED:
                # Here, on the worker, as soon as it is known: the next keystroke's request (often
                # read before this coroutine resumes) is answered by type-through from it.
                session.remember(request.text, offset, result.text)
            return result

        submitted = time.perf_counter()
        future = self.worker.submit(uri, complete)
        try:
            result: CompletionResult = await future
        except Superseded:
            record(Outcome.CANCELLED, why="superseded")
            return EMPTY
        except asyncio.CancelledError:
            self.worker.cancel(future)
            record(Outcome.CANCELLED, why="$/cancelRequest")
            raise
        outcome = result.reason if result.reason in (Outcome.CANCELLED, Outcome.CACHE) or is_filtered(
            result.reason) else (Outcome.SHOWN if result.text else Outcome.EMPTY)
        if result.timings.get("type_through"):
            self.type_through_hits += 1
        follow_up = self.idle.follow_up(uri, request, offset, result, doc.version)
        record(outcome, reason=result.reason, timings=result.timings, followUp=follow_up)
        # The whole of an answer given early, asked for again: still the suggestion shown (counted once).
        new = session.answered(offset, result.text, early=result.reason in (StopReason.EARLY, StopReason.TIME_BUDGET))
        return self._as_list(result.text, result.range, self._shown(uri, doc.language_id, result.text, offset, new=new))

    async def _go_on(self, uri: str, language: str, session: DocumentSession, request: CompletionRequest,
                     offset: int, pending: Unfinished, record: Callable[..., None]) -> types.InlineCompletionList:
        """The request right after the user accepted an answer given early to its end, its rest
        not yet decoded (DocumentSession.continuation): the next suggestion is that rest. The
        FINISH job's decoding goes on for this request, answered early again once a usable line
        follows the accepted ones; what is left after that is the next FINISH job's (completionReady)."""
        service, here = self.service, request.cursor_range(offset)
        pending.continued = True  # its FINISH job, dropped here, is counted as taken over
        self.worker.drop_idle(job_key(JobKind.FINISH, uri))
        asked = replace(request, text=pending.text)  # what the answer was asked about
        answer_after_s = self.settings.first_answer_ms / 1000 if self.settings.first_answer_ms > 0 else None

        def go_on(cancel: Any) -> tuple[CompletionResult, CompletionResult | None]:
            queued_ms = round((time.perf_counter() - submitted) * 1000, 1)
            if (rest := session.typed_through(request.text, offset)) is not None:  # its FINISH job ended first
                return CompletionResult(rest, here, Outcome.CACHE, {"type_through": True, "queued_ms": queued_ms}), None
            whole = None if pending.ended else service.rest_of_answer(pending, cancel, answer_after_s)
            if whole is None:
                return CompletionResult("", here, Outcome.CANCELLED if cancel.is_set() else Outcome.EMPTY,
                                        {"queued_ms": queued_ms}), None
            session.remember(pending.text, pending.offset, whole.text)
            rest = session.typed_through(request.text, offset) or ""
            return CompletionResult(rest, here, whole.reason if rest else Outcome.EMPTY,
                                    {**whole.timings, "continued": True, "queued_ms": queued_ms}), whole

        def again() -> None:
            """Cancelled: the rest is decoded while idle, as before the request."""
            pending.continued = False
            self.idle.follow_up(uri, asked, pending.offset,
                                CompletionResult(pending.shown, pending.range, StopReason.EARLY, {}, pending),
                                self._version(uri))

        submitted = time.perf_counter()
        future = self.worker.submit(uri, go_on)
        try:
            result, whole = await future
        except Superseded:
            record(Outcome.CANCELLED, why="superseded")
            again()
            return EMPTY
        except asyncio.CancelledError:
            self.worker.cancel(future)
            record(Outcome.CANCELLED, why="$/cancelRequest")
            again()
            raise
        if result.reason == Outcome.CANCELLED:
            record(Outcome.CANCELLED, timings=result.timings)
            again()
            return EMPTY
        pending.continued = False
        follow_up = self.idle.follow_up(uri, asked, pending.offset, whole, self._version(uri)) if whole else None
        if result.timings.get("type_through"):
            self.type_through_hits += 1
        record(Outcome.CACHE if result.reason == Outcome.CACHE else Outcome.SHOWN if result.text else Outcome.EMPTY,
               reason=result.reason, timings=result.timings, followUp=follow_up)
        new = session.answered(offset, result.text, early=whole is not None and whole.unfinished is not None)
        return self._as_list(result.text, here, self._shown(uri, language, result.text, offset, new=new))

    def _version(self, uri: str) -> int:
        doc = self.documents.get(uri)
        return doc.version if doc is not None else -1

    @staticmethod
    def _as_list(text: str, where: dict[str, dict[str, int]], item_id: str | None = None,
                 ) -> types.InlineCompletionList:
        if not text:
            return EMPTY
        start, end = where["start"], where["end"]
        rng = types.Range(types.Position(start["line"], start["character"]),
                          types.Position(end["line"], end["character"]))
        # The editor runs the command when the user accepts the suggestion (counted in acceptance.py).
        command = (types.Command(title="fimble: suggestion accepted", command=ACCEPTED_COMMAND, arguments=[item_id])
                   if item_id else None)
        return types.InlineCompletionList(items=[types.InlineCompletionItem(insert_text=text, range=rng,
                                                                            command=command)])

    # -- acceptance counts (lsp_server/acceptance.py) -------------------------------------------------

    def _text_of(self, uri: str) -> str | None:
        doc = self.documents.get(uri)
        return doc.text if doc is not None else None

    def _shown(self, uri: str, language: str, text: str, offset: int, new: bool = True) -> str | None:
        if self.acceptance is None or not text:
            return None
        return self.acceptance.shown(uri, language, text, offset, new=new)

    def accepted(self, args: list[Any]) -> None:
        """`fimble.accepted`: counted (lsp_server/acceptance.py) when counting is on."""
        if self.acceptance is not None:
            self.acceptance.command(args)

    async def explain(self, params: types.ExecuteCommandParams) -> str:
        return await self.explainer.run(self, params)  # (lsp_server/explaining.py)

    def status(self, uri: str | None = None, history: int = 20) -> dict[str, Any]:
        return status.of(self, uri, history)


def create_server() -> FimbleServer:
    server = FimbleServer()

    @server.feature(types.INITIALIZE)
    def initialize(ls: FimbleServer, params: types.InitializeParams) -> None:
        """Read initializationOptions (camelCase, every key optional)."""
        options = params.initialization_options
        if isinstance(options, dict):
            # The TCP transport checked the token already; it is not an option and not shown anywhere.
            options = {k: v for k, v in options.items() if k != "token"}
        ls.apply_settings(options if isinstance(options, dict) else None)

    @server.feature(types.INITIALIZED)
    def initialized(ls: FimbleServer, params: types.InitializedParams) -> None:
        """Start assembling and loading the model; requests that come first wait for it."""
        loading.start(ls)

    @server.feature(types.TEXT_DOCUMENT_DID_OPEN)
    def did_open(ls: FimbleServer, params: types.DidOpenTextDocumentParams) -> None:
        """Parse the document once; later changes are incremental."""
        item = params.text_document
        if ls.documents.open(item.uri, item.language_id, item.version, item.text) is None:
            ls.warn(ls.documents.refused[item.uri])
            return
        ls.idle.opened(item.uri)

    @server.feature(types.TEXT_DOCUMENT_DID_CHANGE)
    def did_change(ls: FimbleServer, params: types.DidChangeTextDocumentParams) -> None:
        """Apply edits to the text and the tree."""
        uri = params.text_document.uri
        tracked = uri in ls.documents
        doc = ls.documents.change(uri, params.text_document.version, list(params.content_changes), ls.encoding)
        if doc is None:
            if tracked:  # this edit took the documents past their memory bound
                ls.warn(ls.documents.refused[uri])
                ls.idle.closed(uri)
            return
        if ls.acceptance is not None:
            ls.acceptance.edited(uri, doc.last_edits)
        ls.idle.after_edit(uri)

    @server.feature(types.TEXT_DOCUMENT_DID_CLOSE)
    def did_close(ls: FimbleServer, params: types.DidCloseTextDocumentParams) -> None:
        """Forget the document and everything kept for it."""
        if ls.acceptance is not None:  # what was accepted in it is counted as it was at the close
            ls.acceptance.saved(params.text_document.uri, ls._text_of(params.text_document.uri), closed=True)
        ls.documents.close(params.text_document.uri)
        ls.idle.closed(params.text_document.uri)

    @server.feature(types.TEXT_DOCUMENT_DID_SAVE)
    def did_save(ls: FimbleServer, params: types.DidSaveTextDocumentParams) -> None:
        """Count what of the suggestions accepted in the document is still there."""
        if ls.acceptance is not None:
            ls.acceptance.saved(params.text_document.uri, ls._text_of(params.text_document.uri))

    @server.feature(types.TEXT_DOCUMENT_INLINE_COMPLETION, types.InlineCompletionOptions())
    async def inline_completion(ls: FimbleServer, params: types.InlineCompletionParams) -> types.InlineCompletionList:
        """Ghost text at the cursor (its own steps on the event loop timed apart from its dispatch)."""
        return await ls.protocol.loop_time.timed(loop_time.INLINE_STEPS, ls.inline_completion(params))

    @server.feature(types.WORKSPACE_DID_CHANGE_CONFIGURATION)
    def did_change_configuration(ls: FimbleServer, params: types.DidChangeConfigurationParams) -> None:
        """Options under the `fimble` section (or at the top level)."""
        settings = params.settings
        if isinstance(settings, dict) and isinstance(settings.get("fimble"), dict):
            settings = settings["fimble"]
        ls.apply_settings(settings if isinstance(settings, dict) else None)

    @server.command(EXPLAIN_COMMAND)
    async def explain(ls: FimbleServer, *args: Any) -> str:
        """Registered so clients see the command; FimbleProtocol routes calls to FimbleServer.explain."""
        return await ls.explain(types.ExecuteCommandParams(command=EXPLAIN_COMMAND, arguments=list(args)))

    @server.command(ACCEPTED_COMMAND)
    def accepted(ls: FimbleServer, *args: Any) -> None:
        """The editor accepted a suggestion (the item's command): counted, never answered with data."""
        ls.accepted(list(args))

    @server.feature(STATUS_METHOD)
    def status(ls: FimbleServer, params: Any) -> dict[str, Any]:
        """Model, load state, caches and the last requests with their outcome."""
        def param(name: str) -> Any:  # (a dict, or the object pygls makes of a custom method's params)
            return params.get(name) if isinstance(params, dict) else getattr(params, name, None)

        uri, history = param("uri"), param("history")
        return ls.status(uri if isinstance(uri, str) else None, history if isinstance(history, int) else 20)

    @server.feature(types.SHUTDOWN)
    def shutdown(ls: FimbleServer, params: Any) -> None:
        """Stop the model worker."""
        if ls.acceptance is not None:
            ls.acceptance.save()
        ls.worker.stop()
        ls.service.close()

    return server

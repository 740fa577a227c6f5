"""The language server: pygls handlers over FimbleServer's state.

Handlers translate LSP to engine calls and back. What is kept between keystrokes for a document,
and which idle work follows an edit or an answer, is decided by its DocumentSession
(engine/session.py); this module only runs the jobs. `fimble.explain` and the explaining model
live in lsp_server/explaining.py. Model work goes to the one model worker (lsp_server/worker.py);
the event loop only awaits it, so didChange and every other document keep flowing while a
completion generates.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from lsprotocol import types
from pygls.lsp.server import LanguageServer

from engine.config import Settings, apply_options
from engine.errors import EngineError
from engine.models import fimble_home
from engine.reasons import Outcome, StopReason, is_filtered
from engine.service import CompletionRequest, CompletionResult, CompletionService
from engine.session import IdleJob, JobKind, WarmOrder, idle_keys, job_key

from . import transport
from .acceptance import ACCEPTED_COMMAND, RETAIN_AFTER_S, STATS_FILE, Acceptance, Followed
from .documents import MAX_PARSED_CHARS, DocumentStore, path_of
from .explaining import EXPLAIN_COMMAND, Explainer, needs_reload
from .protocol import FimbleProtocol
from .worker import ModelWorker, Superseded

log = logging.getLogger("fimble")
STATUS_METHOD = "fimble/status"
# Sent when the rest of an answer given early is decoded: the editor asks again and is given it.
COMPLETION_READY = "fimble/completionReady"
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
        self.warmed: dict[str, int] = {}  # idle work done: places, documents, precomputed, widened, finished
        # What became of each answer given before the pipeline was done (FimbleServer.follow_up).
        self.follow_ups: dict[str, int] = {}
        self.warming = WarmOrder()  # the documents whose warm-up is wanted
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
            self.start_loading()
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

    # -- loading ---------------------------------------------------------------------------------

    def start_loading(self) -> None:
        """Assemble and load the model on the worker, with work-done progress when the client can."""
        self.load_state = "loading"
        self.started_loading = True
        self._load_task = asyncio.ensure_future(self._load())

    async def _load(self) -> None:
        loop = asyncio.get_running_loop()
        token = f"fimble-load-{time.monotonic_ns()}"
        window = self.client_capabilities.window if self.client_capabilities else None
        progress = bool(window and window.work_done_progress)
        if progress:
            try:
                await asyncio.wait_for(self.work_done_progress.create_async(token), timeout=5)
                self.work_done_progress.begin(token, types.WorkDoneProgressBegin(title="fimble: loading model",
                                                                                 percentage=0))
            except Exception:  # a client that does not answer gets no progress, the model loads anyway
                progress = False
        service = self.service

        def report(done: int, total: int) -> None:
            if progress:
                percent = int(done * 100 / max(total, 1))
                loop.call_soon_threadsafe(self.work_done_progress.report, token, types.WorkDoneProgressReport(
                    message="assembling the model", percentage=percent))

        def load(cancel: Any) -> None:
            service.load(report)

        def finished(future: asyncio.Future[Any]) -> None:
            error = future.exception() if not future.cancelled() else None
            if service is self.service:
                self.load_state = "error" if error else "ready"
            said = (self.describe_error(error) if isinstance(error, EngineError)
                    else f"{type(error).__name__} (see the server's log)") if error else ""
            if error and not isinstance(error, EngineError):
                log.error("model load failed", exc_info=error)
            if progress:
                self.work_done_progress.end(token, types.WorkDoneProgressEnd(
                    message=f"failed: {said}" if error else "ready"))
            if error:
                self.window_show_message(types.ShowMessageParams(type=types.MessageType.Error,
                                                                 message=f"fimble: {said}"))
                self.log(f"model load failed: {said}", types.MessageType.Error)
            else:
                self.log(f"model ready: {service.settings.model} ({service.load_ms:.0f} ms)")

        self.worker.submit("load", load, supersede=False).add_done_callback(finished)

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
        session = doc.session
        serial = session.new_request()
        assert doc.lines is not None
        offset = doc.lines.offset(doc.text, pos.line, pos.character, self.encoding)
        at = doc.lines.position(doc.text, offset, self.encoding)  # (a character past the line's end is its end)
        request = CompletionRequest(doc.text, at.line, at.character, self.encoding, doc.language_id, doc.path,
                                    tree=doc.syntax.snapshot(), others=self.documents.others(uri), interactive=True,
                                    offset=offset)
        service = self.service
        if (hit := service.typed_through(request)) is not None:
            record(Outcome.CACHE, type_through=True)
            # The rest of a suggestion shown already: acceptable, not shown anew.
            return self._as_list(hit, self._shown(uri, doc.language_id, hit.text, offset, new=False))
        await asyncio.sleep(self.settings.debounce_ms / 1000)
        if session.superseded(serial):
            record(Outcome.CANCELLED, why="superseded while debouncing")
            return EMPTY
        future = self.worker.submit(uri, lambda cancel: service.complete(replace(request, cancel=cancel)))
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
        follow_up = self.follow_up(uri, request, offset, result, doc.version)
        record(outcome, reason=result.reason, timings=result.timings, followUp=follow_up)
        # The whole of an answer given early, asked for again: still the suggestion shown (counted once).
        new = session.answered(offset, result.text, early=result.reason in (StopReason.EARLY, StopReason.TIME_BUDGET))
        return self._as_list(result, self._shown(uri, doc.language_id, result.text, offset, new=new))

    # -- idle work (engine/session.py decides it, the model worker runs it) ----------------------------

    def run_idle(self, job: IdleJob, run: Callable[[Any], Any],
                 done: Callable[[asyncio.Future[Any]], None] | None = None) -> None:
        future = self.worker.submit_idle(job.key, run, resume=job.resume, quiet_s=job.quiet_s)
        future.add_done_callback(done or self._count_warm(job.counted_as))

    def warm_place(self, uri: str) -> None:
        """After an edit, the work the session asks for while the worker is idle: the place's
        prompt evaluated (or, after an accepted suggestion, the next suggestion computed), and
        where the place has a short window, the whole window after a pause."""
        doc = self.documents.get(uri)
        if (doc is None or doc.binary or doc.capped or not self.settings.warm or doc.session.last_edit < 0
                or self.load_state != "ready"):
            return  # (before the request is built: it snapshots the other documents, on every keystroke)
        session, text, service = doc.session, doc.text, self.service
        assert doc.lines is not None
        at = doc.lines.position(text, session.last_edit, "utf-32")
        request = CompletionRequest(text, at.line, at.character, "utf-32", doc.language_id, doc.path,
                                    tree=doc.syntax.snapshot(), others=self.documents.others(uri), interactive=True,
                                    offset=session.last_edit)
        typed_through = not session.accepted and service.typed_through(request, count=False) is not None
        for job in session.jobs_after_edit(self.settings.warm, typed_through):
            self.run_idle(job, self._place_work(job.kind, service, request))

    @staticmethod
    def _place_work(kind: JobKind, service: CompletionService, request: CompletionRequest) -> Callable[[Any], bool]:
        def run(cancel: Any) -> bool:
            asked = replace(request, cancel=cancel)
            with contextlib.suppress(EngineError):
                if kind == JobKind.WIDEN:
                    return service.widen(asked) is not None and not cancel.is_set()
                if kind == JobKind.PRECOMPUTE:  # nobody waits: the answer the pipeline gives with time
                    service.refine(asked)
                else:
                    service.warm(asked)
                return not cancel.is_set()
            return False
        return run

    def follow_up(self, uri: str, request: CompletionRequest, offset: int, answered: CompletionResult,
                  version: int) -> str | None:
        """After an answer the editor was given before the pipeline was done with the place — from a
        short window, early, or cut by the time budget — compute what the pipeline gives with time,
        while idle and first among idle jobs: the rest of the answer (`CompletionService.rest_of_answer`;
        the KV cache holds its prompt and lines) or the whole window's answer (`refine`). When it
        differs from what was shown and the user has not moved on, tell the editor
        (COMPLETION_READY): the request it sends then is answered from the caches with it. Every
        path is counted in status (`followUps`). Returns the follow-up's kind, or None."""
        self.worker.drop_idle(job_key(JobKind.FINISH, uri))  # a new answer: the old follow-up is moot
        doc, service, path, shown = self.documents.get(uri), self.service, path_of(uri), answered.text
        job = doc.session.follow_up(answered.reason, service.unfinished(path),
                                    answered.timings.get("window") == "short") if doc is not None else None
        if job is None:
            return None
        asked = request.text

        def still_at(answer: str) -> bool:
            """The document is the one asked about, or the user has typed only a start of `answer`."""
            doc = self.documents.get(uri)
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
                    return service.rest_of_answer(path, cancel)
                result = service.refine(replace(request, cancel=cancel))
                return None if result.reason == Outcome.CANCELLED else result
            return None

        def done(future: asyncio.Future[Any]) -> None:
            if future.cancelled() or future.exception() is not None:
                return  # superseded by a newer answer for the document
            result: CompletionResult | None = future.result()
            if result is None or not still_at(result.text):
                path_taken = "moved on"
            elif result.text == shown:
                path_taken = "same"  # the rest added nothing
            elif not result.text:
                path_taken = "empty"  # the pipeline given time has nothing: what was shown stays
            else:
                path_taken = "grown" if result.text.startswith(shown) and shown else "replaced"
                self.protocol.notify(COMPLETION_READY, {"uri": uri})
            key = f"{job.kind}:{path_taken}"
            self.follow_ups[key] = self.follow_ups.get(key, 0) + 1
            if path_taken != "moved on":
                self.warmed[job.counted_as] = self.warmed.get(job.counted_as, 0) + 1

        self.run_idle(job, run, done)
        return str(job.kind)

    def warm_document(self, uri: str) -> None:
        """After an open, evaluate the document itself once while idle (CompletionService.warm_document)."""
        doc = self.documents.get(uri)
        job = doc.session.document_job(self.settings.warm) if doc is not None else None
        if doc is None or job is None or doc.binary or doc.capped:
            return
        text, last_edit = doc.text, max(doc.session.last_edit, 0)
        assert doc.lines is not None
        at = doc.lines.position(text, last_edit, "utf-32")  # (a lone \r ends a line, as everywhere)
        request = CompletionRequest(text, at.line, 0, "utf-32", doc.language_id, doc.path, tree=doc.syntax.snapshot(),
                                    others=self.documents.others(uri), offset=last_edit - at.character)
        service = self.service
        for dropped in self.warming.opened(uri):
            self.worker.drop_idle(job_key(JobKind.DOCUMENT, dropped))

        def run(cancel: Any) -> bool:
            with contextlib.suppress(EngineError):
                service.warm_document(replace(request, cancel=cancel))
            return not cancel.is_set()

        self.run_idle(job, run)

    def forget_document(self, uri: str) -> None:
        """Drop what was kept for a document (warm-ups, anchors, typed-through suggestions)."""
        for key in idle_keys(uri):
            self.worker.drop_idle(key)
        self.warming.forget(uri)
        service, path = self.service, path_of(uri)
        # The service is the worker's: it forgets there, after whatever is running for the document.
        done = self.worker.submit(f"forget:{uri}", lambda cancel: service.forget(path), supersede=False)
        done.add_done_callback(lambda future: future.cancelled() or future.exception())  # best effort

    def _count_warm(self, kind: str) -> Callable[[asyncio.Future[Any]], None]:
        """Warming is best effort: a superseded or failed one is only not counted."""
        def done(future: asyncio.Future[Any]) -> None:
            if not future.cancelled() and future.exception() is None and future.result():
                self.warmed[kind] = self.warmed.get(kind, 0) + 1
        return done

    def _as_list(self, result: CompletionResult, item_id: str | None = None) -> types.InlineCompletionList:
        if not result.text:
            return EMPTY
        start, end = result.range["start"], result.range["end"]
        rng = types.Range(types.Position(start["line"], start["character"]),
                          types.Position(end["line"], end["character"]))
        # The editor runs the command when the user accepts the suggestion (counted in acceptance.py).
        command = (types.Command(title="fimble: suggestion accepted", command=ACCEPTED_COMMAND, arguments=[item_id])
                   if item_id else None)
        return types.InlineCompletionList(items=[types.InlineCompletionItem(insert_text=result.text, range=rng,
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
        """`fimble.accepted` [id] (VS Code) or [id, accepted length] (Neovim's partial accepts)."""
        if self.acceptance is None or not args or not isinstance(args[0], str):
            return
        length = args[1] if len(args) > 1 and isinstance(args[1], int) and not isinstance(args[1], bool) else None
        followed = self.acceptance.accepted(args[0], length)
        if followed is not None:
            asyncio.get_running_loop().call_later(RETAIN_AFTER_S, self._check_kept, followed)

    def _check_kept(self, followed: Followed) -> None:
        if self.acceptance is not None:
            self.acceptance.check(followed, self._text_of(followed.uri), "30s")

    # -- explain (lsp_server/explaining.py) ----------------------------------------------------------

    async def explain(self, params: types.ExecuteCommandParams) -> str:
        return await self.explainer.run(self, params)

    def status(self, uri: str | None = None, history: int = 20) -> dict[str, Any]:
        service = self.service
        document = None
        if uri and (doc := self.documents.get(uri)) is not None:
            # Lets a client check that the server sees the text it sees.
            document = {"uri": uri, "version": doc.version, "languageId": doc.language_id, "length": len(doc.text),
                        "sha256": hashlib.sha256(doc.text.encode("utf-8", "surrogatepass")).hexdigest(),
                        "parsed": doc.syntax.parsed, "binary": doc.binary, "overSizeCap": doc.capped}
        elif uri and uri in self.documents.refused:
            document = {"uri": uri, "tracked": False, "why": self.documents.refused[uri]}
        return {
            "model": self.settings.model,
            "modelPath": str(service.model_ref.path) if service.model_ref else None,
            "backend": self.settings.backend,
            "state": self.load_state,
            "loadMs": round(service.load_ms, 1) if service.load_ms else None,
            "explain": self.explainer.status(self),
            "positionEncoding": self.encoding,
            "documents": len(self.documents),
            "documentChars": self.documents.total_chars,
            "cache": {"hits": service.cache.hits, "misses": service.cache.misses,
                      "typeThrough": service.type_through.hits, "kv": service.cache_summary(),
                      "documentsKept": service.documents_kept(),
                      "warmed": dict(self.warmed)},
            "memory": process_memory(),
            "outcomes": dict(self.outcomes),
            "followUps": dict(self.follow_ups),
            "rules": dict(service.rule_counts),
            "acceptance": self.acceptance.summary() if self.acceptance is not None else {},
            "requests": list(self.history)[len(self.history) - min(max(0, history), len(self.history)):],
            "settings": self.settings.to_dict(),
            "document": document,
        }


def process_memory() -> dict[str, float | None]:
    """The server's resident memory now and at its peak, in MiB (model, KV caches, documents)."""
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    current = None
    with contextlib.suppress(OSError, ValueError, IndexError):
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        current = round(pages * os.sysconf("SC_PAGE_SIZE") / 2**20, 1)
    return {"rssMb": current, "peakRssMb": round(peak, 1)}


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
        ls.start_loading()

    @server.feature(types.TEXT_DOCUMENT_DID_OPEN)
    def did_open(ls: FimbleServer, params: types.DidOpenTextDocumentParams) -> None:
        """Parse the document once; later changes are incremental."""
        item = params.text_document
        if ls.documents.open(item.uri, item.language_id, item.version, item.text) is None:
            ls.warn(ls.documents.refused[item.uri])
            return
        ls.warm_document(item.uri)

    @server.feature(types.TEXT_DOCUMENT_DID_CHANGE)
    def did_change(ls: FimbleServer, params: types.DidChangeTextDocumentParams) -> None:
        """Apply edits to the text and the tree."""
        uri = params.text_document.uri
        tracked = uri in ls.documents
        doc = ls.documents.change(uri, params.text_document.version, list(params.content_changes), ls.encoding)
        if doc is None:
            if tracked:  # this edit took the documents past their memory bound
                ls.warn(ls.documents.refused[uri])
                ls.forget_document(uri)
            return
        if ls.acceptance is not None:
            ls.acceptance.edited(uri, doc.last_edits)
        ls.warm_place(uri)

    @server.feature(types.TEXT_DOCUMENT_DID_CLOSE)
    def did_close(ls: FimbleServer, params: types.DidCloseTextDocumentParams) -> None:
        """Forget the document and everything kept for it."""
        if ls.acceptance is not None:  # what was accepted in it is counted as it was at the close
            ls.acceptance.saved(params.text_document.uri, ls._text_of(params.text_document.uri), closed=True)
        ls.documents.close(params.text_document.uri)
        ls.forget_document(params.text_document.uri)

    @server.feature(types.TEXT_DOCUMENT_DID_SAVE)
    def did_save(ls: FimbleServer, params: types.DidSaveTextDocumentParams) -> None:
        """Count what of the suggestions accepted in the document is still there."""
        if ls.acceptance is not None:
            ls.acceptance.saved(params.text_document.uri, ls._text_of(params.text_document.uri))

    @server.feature(types.TEXT_DOCUMENT_INLINE_COMPLETION, types.InlineCompletionOptions())
    async def inline_completion(ls: FimbleServer, params: types.InlineCompletionParams) -> types.InlineCompletionList:
        """Ghost text at the cursor."""
        return await ls.inline_completion(params)

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
        def param(name: str) -> Any:
            return getattr(params, name, None) or (params.get(name) if isinstance(params, dict) else None)

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


def serve(tcp: str | None = None, allow_remote: bool = False) -> int:
    logging.basicConfig(level=logging.INFO, format="fimble %(levelname)s %(message)s")
    logging.getLogger("pygls").setLevel(logging.WARNING)  # it logs every message it sends at INFO
    if tcp:
        host, port = transport.parse_address(tcp, allow_remote)
        transport.serve_tcp(create_server, host, port, fimble_home(), transport.announce_on_stderr)
        return 0
    server = create_server()
    # The protocol gets its own copy of stdout, and fd 1 becomes stderr. Native code writes to fd 1
    # (llama.cpp's logs), and llama-cpp-python silences it by pointing fd 1 at /dev/null while a
    # model loads: a response written then would be lost, and a stray print would corrupt the stream.
    protocol_out = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    sys.stdout = sys.stderr
    transport.run_stdio(server, sys.stdin.buffer, protocol_out)
    return 0

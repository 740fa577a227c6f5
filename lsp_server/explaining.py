"""`fimble.explain` in the language server: which model explains, loaded on first use, streamed.

Explanations are read, streamed and asked for rarely; completions must be fast. So the explaining
model (`explainModel`, by default the largest known model the user has assembled) may be a second
model beside the completion model. The server keeps at most these two loaded: the second is loaded
on the first explanation (with progress on the explain's own token), replaced when its settings
change, and dropped when it would be the completion model anyway. Both run on the one model worker,
so the completion model's KV cache is not disturbed by an explanation.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from lsprotocol import types
from pygls.exceptions import JsonRpcException, JsonRpcInvalidParams

from engine import explain
from engine.config import Settings
from engine.errors import EngineError
from engine.service import CompletionService

from .worker import Superseded

if TYPE_CHECKING:
    from .server import FimbleServer

log = logging.getLogger("fimble")
EXPLAIN_COMMAND = "fimble.explain"
# Options whose change needs a model loaded again (the server's completion model too).
RELOAD_KEYS = ("model", "backend", "n_ctx", "n_threads", "openai_base_url", "openai_api_key", "openai_model",
               "torch_compile", "kv_cache_mb")


def needs_reload(old: Settings, new: Settings) -> bool:
    return any(getattr(new, key) != getattr(old, key) for key in RELOAD_KEYS)


class Explainer:
    """The second model, when the explaining model is not the completion model."""

    def __init__(self) -> None:
        self.service: CompletionService | None = None
        self.last_model: str | None = None  # the model that gave the last explanation
        self.failed = False  # the second model's last load failed (status says so)
        self._model_for: tuple[Settings, str] | None = None  # (settings, the model they explain with)

    def explaining_model(self, server: FimbleServer) -> str:
        """`engine.explain.explaining_model`, worked out once per settings: it reads the model
        cache's stamps, and status is asked for often. An explanation works it out anew."""
        if self._model_for is None or self._model_for[0] is not server.settings:
            self._model_for = (server.settings, explain.explaining_model(server.settings))
        return self._model_for[1]

    def service_for(self, server: FimbleServer) -> CompletionService:
        """The service that explains under the server's settings now (made, not loaded, here)."""
        self._model_for = None  # a model assembled since the last look counts now
        wanted = explain.explaining_settings(server.settings)
        if wanted.model == server.settings.model and wanted.backend == server.settings.backend:
            self.drop(server)  # the completion model explains: no second model kept
            return server.service
        if self.service is not None and not needs_reload(self.service.settings, wanted):
            self.service.settings = wanted  # temperature and the like follow the user's settings
            return self.service
        self.drop(server)
        self.service = CompletionService(wanted)
        return self.service

    def settings_changed(self, server: FimbleServer) -> None:
        """Free the second model at once when the new settings no longer want it as it is."""
        if self.service is None:
            return
        wanted = explain.explaining_settings(server.settings)
        if wanted.model == server.settings.model or needs_reload(self.service.settings, wanted):
            self.drop(server)

    def drop(self, server: FimbleServer) -> None:
        """Free the second model (on the worker: it may be explaining right now)."""
        old, self.service, self.failed = self.service, None, False
        if old is not None:
            server.worker.submit("load", lambda cancel: old.close(), supersede=False)

    def status(self, server: FimbleServer) -> dict[str, Any]:
        model = self.explaining_model(server)
        second = self.service
        if model == server.settings.model:
            state = server.load_state  # the completion model explains
        elif second is None or not second.loaded:
            state = "error" if self.failed else "not loaded"  # loaded on the first explanation
        else:
            state = "ready"
        return {
            "model": model,
            "secondModel": model != server.settings.model,
            "state": state,
            "loadMs": round(second.load_ms, 1) if second is not None and second.load_ms else None,
            "lastExplainedBy": self.last_model,
        }

    async def run(self, server: FimbleServer, params: types.ExecuteCommandParams) -> str:
        args = params.arguments or []
        first = args[0] if args else None
        if not isinstance(first, dict) or "uri" not in first or not isinstance(first.get("range"), dict):
            raise JsonRpcInvalidParams(f'{EXPLAIN_COMMAND} takes [{{"uri": ..., "range": ...}}], got {args!r}')
        doc = server.documents.get(first["uri"])
        if doc is None:
            raise JsonRpcInvalidParams(f"document {first['uri']} is not open")
        try:
            start_line = int(first["range"]["start"]["line"])
            end_line = int(first["range"]["end"]["line"])
        except (KeyError, TypeError, ValueError):
            raise JsonRpcInvalidParams(f"bad range {first['range']!r}") from None
        text, syntax, language = doc.text, doc.syntax.snapshot(), doc.language_id
        token = params.work_done_token
        loop = asyncio.get_running_loop()
        progress = server.work_done_progress
        if token is not None:
            progress.begin(token, types.WorkDoneProgressBegin(title="fimble: explain"))
        streamed: list[str] = []

        def report(message: str) -> None:
            if token is not None:
                loop.call_soon_threadsafe(progress.report, token, types.WorkDoneProgressReport(message=message))

        chosen = [""]  # the code explained, once the worker has chosen it

        def on_text(piece: str) -> None:
            streamed.append(piece)
            report(explain.clean("".join(streamed), chosen[0]))  # as the final answer will read

        service = self.service_for(server)
        model = service.settings.model

        def run(cancel: Any) -> str:
            if not service.loaded:  # the second model's first explanation: say why it waits
                report(f"loading {model} to explain (first use)")
                try:
                    service.load(lambda done, total: report(f"assembling {model}: {done * 100 // max(total, 1)}%"))
                except EngineError:
                    self.failed = service is self.service
                    raise
                log.info("explaining model ready: %s (%.0f ms)", model, service.load_ms or 0)
            # Choosing the code walks the tree (a deeply nested file takes a while): on the worker.
            chosen[0] = code = explain.target(text, start_line, end_line, syntax)
            return service.explain(code, language, on_text, cancel)

        future = server.worker.submit(f"explain:{first['uri']}", run)
        try:
            answer: str = await future
        except asyncio.CancelledError:
            server.worker.cancel(future)
            raise
        except (EngineError, Superseded) as exc:
            said = server.describe_error(exc) if isinstance(exc, EngineError) else str(exc)
            raise ExplainFailed(f"explain failed: {said}") from exc
        finally:
            if token is not None:
                progress.end(token, types.WorkDoneProgressEnd())
        self.last_model = model
        return answer


class ExplainFailed(JsonRpcException):
    """The explanation could not be made (the model failed, a newer explain took its place): LSP's
    RequestFailed, not the client's InvalidParams, which says the request itself was wrong."""

    CODE = -32803  # LSPErrorCodes.RequestFailed
    MESSAGE = "request failed"

"""Loading the completion model in the language server: on the model worker, with work-done
progress while the model is assembled, and the outcome in the load state, a message and the log."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

from lsprotocol import types

from engine.errors import EngineError

if TYPE_CHECKING:
    from .server import FimbleServer

log = logging.getLogger("fimble")


def start(server: FimbleServer) -> None:
    """Assemble and load the model on the worker, with work-done progress when the client can."""
    server.load_state = "loading"
    server.started_loading = True
    server._load_task = asyncio.ensure_future(load(server))


async def load(server: FimbleServer) -> None:
    """Assemble and load the server's model on its worker; load state, progress and messages.

    The load is queued on the worker before the client is asked for a progress token: a request
    that comes meanwhile (an explanation, a completion) then waits behind the load instead of
    going first (an explanation that loaded its own model left the completion model "loading")."""
    loop = asyncio.get_running_loop()
    token = f"fimble-load-{time.monotonic_ns()}"
    window = server.client_capabilities.window if server.client_capabilities else None
    service = server.service
    progress = {"begun": False, "ended": ""}  # ended: the end message, once the load is over

    def report(done: int, total: int) -> None:
        if progress["begun"]:
            percent = int(done * 100 / max(total, 1))
            loop.call_soon_threadsafe(server.work_done_progress.report, token, types.WorkDoneProgressReport(
                message="assembling the model", percentage=percent))

    def end(message: str) -> None:
        progress["ended"] = message
        if progress["begun"]:
            server.work_done_progress.end(token, types.WorkDoneProgressEnd(message=message))

    def finished(future: asyncio.Future[Any]) -> None:
        error = future.exception() if not future.cancelled() else None
        if service is server.service:
            server.load_state = "error" if error else "ready"
        said = (server.describe_error(error) if isinstance(error, EngineError)
                else f"{type(error).__name__} (see the server's log)") if error else ""
        if error and not isinstance(error, EngineError):
            log.error("model load failed", exc_info=error)
        end(f"failed: {said}" if error else "ready")
        if error:
            server.window_show_message(types.ShowMessageParams(type=types.MessageType.Error,
                                                             message=f"fimble: {said}"))
            server.log(f"model load failed: {said}", types.MessageType.Error)
        else:
            server.log(f"model ready: {service.settings.model} ({service.load_ms:.0f} ms)")

    server.worker.submit("load", lambda cancel: service.load(report), supersede=False).add_done_callback(finished)
    if not (window and window.work_done_progress):
        return
    try:
        await asyncio.wait_for(server.work_done_progress.create_async(token), timeout=5)
    except Exception:  # a client that does not answer gets no progress, the model loads anyway
        return
    server.work_done_progress.begin(token, types.WorkDoneProgressBegin(title="fimble: loading model", percentage=0))
    progress["begun"] = True
    if progress["ended"]:  # loaded while the client answered
        end(str(progress["ended"]))

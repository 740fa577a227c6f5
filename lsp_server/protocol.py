"""Where fimble departs from pygls' LanguageServerProtocol — every override in one place.

Each one says which pygls behaviour it corrects, and uses only these pygls internals (pinned by
tests/test_pygls_overrides.py, which fails if a pygls release moves them): `fm.features` (the
registered handlers by method), `_workspace` (None until initialize), `_send_response(id,
error=…)`, `structure_message` and the `lsp_method` decorator.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import Any

from lsprotocol import types
from pygls.exceptions import JsonRpcException, JsonRpcInvalidRequest
from pygls.protocol import LanguageServerProtocol
from pygls.protocol.language_server import lsp_method

from .loop_time import LoopTime


class Answered:
    """Stands in for a message that was already answered with an error (pygls skips it: a
    message without a known `jsonrpc` field is not dispatched)."""

    jsonrpc = "answered"


class FimbleProtocol(LanguageServerProtocol):
    # Set by the TCP transport: `exit` then ends that client's connection, not the process.
    on_exit: Callable[[], None] | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Commands whose handler takes the whole ExecuteCommandParams (set by the server).
        self.whole_params_commands: dict[str, Callable[[types.ExecuteCommandParams], Any]] = {}
        self.loop_time = LoopTime()  # the event loop's time per message (wire.dispatch)

    # pygls: `exit` calls sys.exit, ending the process. Over TCP one client's `exit` must end
    # only its own connection; the listener serves the next client.
    @lsp_method(types.EXIT)
    def lsp_exit(self, *args: Any) -> Generator[Any, Any, None]:
        if self.on_exit is None:
            return (yield from super().lsp_exit(*args))
        if (handler := self.fm.features.get(types.EXIT)) is not None:
            yield handler, args, None
        self.on_exit()
        return None

    # pygls: a second initialize is served again and resets the position encoding under the
    # open documents (their positions would then be read in other units).
    @lsp_method(types.INITIALIZE)
    def lsp_initialize(self, params: types.InitializeParams) -> Generator[Any, Any, types.InitializeResult]:
        if self._workspace is not None:
            raise JsonRpcInvalidRequest("the server is already initialized")
        return (yield from super().lsp_initialize(params))

    # pygls: didOpen/didChange/didClose also update pygls' own workspace copy of the document.
    # Our DocumentStore holds the one copy; an edit pygls' copy cannot take (a reversed range, a
    # lone surrogate) would raise before our handler ran, and the two would drift apart.
    @lsp_method(types.TEXT_DOCUMENT_DID_OPEN)
    def lsp_text_document__did_open(self, params: types.DidOpenTextDocumentParams) -> Generator[Any, Any, None]:
        if (handler := self.fm.features.get(types.TEXT_DOCUMENT_DID_OPEN)) is not None:
            yield handler, (params,), None

    @lsp_method(types.TEXT_DOCUMENT_DID_CHANGE)
    def lsp_text_document__did_change(self, params: types.DidChangeTextDocumentParams) -> Generator[Any, Any, None]:
        if (handler := self.fm.features.get(types.TEXT_DOCUMENT_DID_CHANGE)) is not None:
            yield handler, (params,), None

    @lsp_method(types.TEXT_DOCUMENT_DID_CLOSE)
    def lsp_text_document__did_close(self, params: types.DidCloseTextDocumentParams) -> Generator[Any, Any, None]:
        if (handler := self.fm.features.get(types.TEXT_DOCUMENT_DID_CLOSE)) is not None:
            yield handler, (params,), None

    # pygls: a request whose params do not fit its method is logged and dropped, and the client
    # waits for an answer forever. Here it is answered with the JSON-RPC error.
    def structure_message(self, data: dict[str, Any]) -> Any:
        try:
            return super().structure_message(data)
        except JsonRpcException as exc:
            if isinstance(data, dict) and "id" in data and "method" in data:
                self._send_response(data["id"], error=exc.to_response_error())
                return Answered()
            raise

    # pygls: a command handler gets only `arguments`; explain needs the whole params, for the
    # client's workDoneToken (its streamed progress).
    @lsp_method(types.WORKSPACE_EXECUTE_COMMAND)
    def lsp_workspace__execute_command(self, params: types.ExecuteCommandParams) -> Generator[Any, Any, Any]:
        if (handler := self.whole_params_commands.get(params.command)) is not None:
            return (yield handler, (params,), None)
        return (yield from super().lsp_workspace__execute_command(params))

"""lsp_server/protocol.py overrides pygls in a few places and leans on a few of its internals.
These tests fail if a pygls release moves what they rely on (the behaviour itself is tested end
to end in test_lsp_protocol.py, test_tcp.py and test_wire.py)."""

from __future__ import annotations

import inspect
import json

from lsprotocol import types
from pygls.protocol import JsonRPCProtocol, LanguageServerProtocol

from lsp_server.protocol import FimbleProtocol
from lsp_server.server import EXPLAIN_COMMAND, create_server


class Captured:
    """A writer that keeps what the protocol sends."""

    def __init__(self) -> None:
        self.sent: list[dict] = []

    def write(self, data: bytes) -> None:
        body = data.split(b"\r\n\r\n", 1)[-1]
        self.sent.append(json.loads(body))

    def close(self) -> None:
        pass


def test_every_override_replaces_a_method_pygls_still_has():
    overridden = [name for name, value in vars(FimbleProtocol).items()
                  if callable(value) and not name.startswith("__")]
    assert set(overridden) == {"lsp_exit", "lsp_initialize", "lsp_text_document__did_open",
                               "lsp_text_document__did_change", "lsp_text_document__did_close",
                               "structure_message", "lsp_workspace__execute_command"}
    for name in overridden:
        assert callable(getattr(LanguageServerProtocol, name, None)), f"pygls no longer has {name}"


def test_the_internals_the_overrides_use_are_where_they_were():
    server = create_server()
    protocol = server.protocol
    assert isinstance(protocol, FimbleProtocol)
    assert protocol._workspace is None  # before initialize: what lsp_initialize checks
    features = protocol.fm.features
    assert isinstance(features, dict) and types.TEXT_DOCUMENT_DID_OPEN in features
    assert types.TEXT_DOCUMENT_INLINE_COMPLETION in features
    assert {"msg_id", "error"} <= set(inspect.signature(JsonRPCProtocol._send_response).parameters)
    assert protocol.whole_params_commands == {EXPLAIN_COMMAND: server.explain}


def test_a_request_with_params_that_do_not_fit_is_answered():
    """pygls drops such a request (the client would wait forever); the override answers it."""
    server = create_server()
    writer = Captured()
    server.protocol.set_writer(writer)
    message = {"jsonrpc": "2.0", "id": 7, "method": types.TEXT_DOCUMENT_INLINE_COMPLETION,
               "params": {"textDocument": 5}}
    structured = server.protocol.structure_message(message)
    assert structured.jsonrpc == "answered"  # pygls skips it
    assert len(writer.sent) == 1
    reply = writer.sent[0]
    assert reply["id"] == 7 and reply["error"]["code"] in (-32602, -32600, -32700)

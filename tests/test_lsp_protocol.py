"""The server under malformed and random input: it stays up, documents stay right, bad requests
get JSON-RPC errors. These run with the fake backend (no model) so they can send many messages."""

from __future__ import annotations

import hashlib
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lsp_raw import RawServer

from engine.text import offset_at

INIT = {"processId": None, "rootUri": None, "capabilities": {"general": {"positionEncodings": ["utf-8"]}},
        "initializationOptions": {"backend": "fake", "debounceMs": 0}}
URI = "file:///fuzz.py"
START = "def f(x):\n    return x  # 😀\r\n"


@pytest.fixture(scope="module")
def server():
    raw = RawServer()
    result = raw.request("initialize", INIT)
    assert result["result"]["capabilities"]["positionEncoding"] == "utf-8"
    raw.notify("initialized", {})
    raw.notify("textDocument/didOpen", {"textDocument": {"uri": URI, "languageId": "python", "version": 0,
                                                         "text": START}})
    raw.reference = START  # type: ignore[attr-defined]
    raw.version = 0  # type: ignore[attr-defined]
    yield raw
    assert raw.close() == 0


def document_hash(server, uri=URI):
    return server.request("fimble/status", {"uri": uri}, timeout=10)["result"]["document"]["sha256"]


def test_malformed_messages_get_errors_and_the_server_goes_on(server):
    server.send_bytes(b"Content-Length: 9\r\n\r\n{not json")
    server.send('{"jsonrpc": "2.0", "id": 900, "method": 17}')
    unknown = server.request("fimble/noSuchMethod", {})
    assert unknown["error"]["code"] == -32601
    bad_params = server.request("textDocument/inlineCompletion", {"textDocument": 5})
    assert bad_params["error"]["code"] in (-32602, -32603)
    bad_command = server.request("workspace/executeCommand", {"command": "fimble.explain", "arguments": [1]})
    assert "error" in bad_command
    again = server.request("initialize", INIT)
    assert again["error"]["code"] == -32600
    assert server.request("fimble/status", {})["result"]["state"] in ("ready", "loading")


def test_completion_on_unknown_document_is_empty(server):
    result = server.request("textDocument/inlineCompletion", {
        "textDocument": {"uri": "file:///never-opened.py"}, "position": {"line": 0, "character": 0},
        "context": {"triggerKind": 2}})
    assert result["result"]["items"] == []


edit = st.tuples(
    st.integers(0, 6), st.integers(0, 30), st.integers(0, 6), st.integers(0, 30),
    st.lists(st.sampled_from(["a", "😀", "\r\n", "\n", "\t", "é", "(", "\ud83d", "def "]), max_size=5).map("".join),
)
def frame(body: str) -> bytes:
    data = body.encode("utf-8", "surrogatepass")
    return b"Content-Length: %d\r\n\r\n" % len(data) + data


junk = st.sampled_from([frame(body) for body in (
    "{}", '{"jsonrpc": "2.0"}', "[1, 2, 3]", '"just a string"', "{not json", '{"jsonrpc": "2.0", "method": 17}',
    '{"jsonrpc":"2.0","id":"j1","method":"textDocument/inlineCompletion","params":{"textDocument":{"uri":5}}}',
    '{"jsonrpc":"2.0","id":"j2","method":"initialize","params":{"capabilities":{}}}',
    '{"jsonrpc":"2.0","method":"textDocument/didChange","params":{"textDocument":{"uri":"file:///fuzz.py"}}}',
)])


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.one_of(edit, junk), min_size=1, max_size=8))
def test_random_edits_and_junk_keep_the_document_equal_to_a_reference(server, steps):
    for step in steps:
        if isinstance(step, bytes):
            server.send_bytes(step)
            continue
        sl, sc, el, ec, text = step
        server.version += 1
        rng = {"start": {"line": sl, "character": sc}, "end": {"line": el, "character": ec}}
        server.notify("textDocument/didChange", {"textDocument": {"uri": URI, "version": server.version},
                                                 "contentChanges": [{"range": rng, "text": text}]})
        ref = server.reference
        start, end = offset_at(ref, sl, sc, "utf-8"), offset_at(ref, el, ec, "utf-8")
        start, end = min(start, end), max(start, end)
        server.reference = ref[:start] + text + ref[end:]
    expected = hashlib.sha256(server.reference.encode("utf-8", "surrogatepass")).hexdigest()
    assert document_hash(server) == expected


def test_shutdown_and_exit_leave_no_process():
    raw = RawServer()
    raw.request("initialize", INIT)
    raw.notify("initialized", {})
    assert raw.close() == 0
    assert raw.proc.poll() == 0


@pytest.mark.model
def test_every_request_is_answered_while_the_model_loads(model_path):
    """llama.cpp silences fd 1 while it loads: the protocol must not be writing there then."""
    raw = RawServer()
    raw.request("initialize", {**INIT, "initializationOptions": {"model": str(model_path)}})
    raw.notify("initialized", {})
    states: list[str] = []
    # Every poll must be answered (a status request never waits on the model); the model must
    # get to "ready" within a generous number of polls, whatever the machine's load.
    for _ in range(6000):
        states.append(raw.request("fimble/status", {}, timeout=30)["result"]["state"])
        assert states[-1] != "error"
        if states[-1] == "ready":
            break
        time.sleep(0.05)
    assert states[-1] == "ready" and "loading" in states
    assert raw.close() == 0


def test_status_reports_the_event_loops_time_per_message_and_history_zero_lists_no_request(server):
    answered = server.request("textDocument/inlineCompletion", {
        "textDocument": {"uri": URI}, "position": {"line": 1, "character": 4}, "context": {"triggerKind": 1}})
    assert "result" in answered
    status = server.request("fimble/status", {"history": 0})["result"]
    assert status["requests"] == []  # (0 was read as "not given", and the last 20 came back)
    assert server.request("fimble/status", {"history": 1})["result"]["requests"]
    loop = status["loop"]
    assert loop["textDocument/didOpen"]["count"] == 1
    assert loop["textDocument/inlineCompletion"]["count"] >= 1
    assert loop["textDocument/inlineCompletion steps"]["count"] >= 1  # the handler's own steps, apart
    assert loop["fimble/status"]["count"] >= 1
    for figures in loop.values():
        assert 0 <= figures["p50Ms"] <= figures["p95Ms"] <= figures["maxMs"]

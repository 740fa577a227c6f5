"""The wire (lsp_server/wire.py): framing that cannot be made deaf, over real stdio too."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lsp_raw import RawServer

from lsp_server.wire import MAX_HEADER_LINE, Frame, FrameReader, FramingError, parse_body

INIT = {"processId": None, "rootUri": None, "capabilities": {},
        "initializationOptions": {"backend": "fake", "debounceMs": 0}}


def frame(body: bytes, length: int | None = None) -> bytes:
    return b"Content-Length: %d\r\n\r\n" % (len(body) if length is None else length) + body


def request(msg_id: int, method: str = "fimble/status") -> bytes:
    return json.dumps({"jsonrpc": "2.0", "id": msg_id, "method": method, "params": {}}).encode()


def feed_in_chunks(data: bytes, cuts: list[int]) -> list[Frame | FramingError]:
    reader, events, last = FrameReader(), [], 0
    for cut in [*sorted({c % (len(data) + 1) for c in cuts}), len(data)]:
        events += reader.feed(data[last:cut])
        last = cut
    return events


@given(st.lists(st.binary(max_size=300), min_size=1, max_size=6), st.lists(st.integers(0, 10_000), max_size=12))
def test_well_formed_frames_come_out_whole_however_the_bytes_are_cut(bodies, cuts):
    events = feed_in_chunks(b"".join(frame(b) for b in bodies), cuts)
    assert events == [Frame(b) for b in bodies]


no_header = st.binary(max_size=400).filter(lambda b: b"content-length" not in b.lower())


@given(no_header, st.lists(st.integers(0, 10_000), max_size=12))
def test_after_any_garbage_the_next_message_is_read(garbage, cuts):
    # The first message may be swallowed with the garbage (it can look like the rest of a header);
    # the one after it never is.
    first, second = request(1), request(2)
    events = feed_in_chunks(garbage + frame(first) + frame(second), cuts)
    assert events[-1] == Frame(second)
    assert sum(isinstance(e, FramingError) for e in events) <= 2


@pytest.mark.parametrize("bad", [
    b"Content-Length: abc\r\n\r\n" + request(1),  # not a number
    frame(request(1), 10),  # shorter than the body
    b"Content-Length: 10000000000000\r\n\r\n" + request(1),  # 10 TB
    b"X" * (MAX_HEADER_LINE * 4) + b"\r\n\r\n",  # a header line that never ends
    b"\x00\xff" * 100,
])
def test_bad_framing_is_one_error_and_the_next_message_is_read(bad):
    events = FrameReader().feed(bad + frame(request(2)))
    errors = [e for e in events if isinstance(e, FramingError)]
    assert 1 <= len(errors) <= 2 and all(e.code in (-32700, -32600) for e in errors)
    assert events[-1] == Frame(request(2))


def test_a_body_over_the_limit_is_refused_before_it_is_buffered():
    reader = FrameReader(max_body=1000)
    events = reader.feed(b"Content-Length: 5000\r\n\r\n" + b"x" * 4 * MAX_HEADER_LINE)
    assert events == [FramingError(-32600, "a message of 5000 bytes is over the 1000-byte limit")]
    assert len(reader._buffer) < 16  # the body is skipped, not kept


def test_bodies_are_checked_before_the_protocol_sees_them():
    assert parse_body(b'{"jsonrpc":"2.0","id":7,"method":"x\xff"}')[1]["id"] == 7  # not UTF-8: answered by id
    assert parse_body(b"[" * 100_000)[1]["error"]["code"] == -32700  # nesting past the recursion limit
    assert parse_body(b"[1]")[1]["error"]["code"] == -32600
    assert parse_body(b'{"id": 3, "method": "x"}')[1] == {
        "jsonrpc": "2.0", "id": 3, "error": {"code": -32600, "message": 'a JSON-RPC message has "jsonrpc": "2.0"'}}
    message, error = parse_body(request(4))
    assert error is None and message["id"] == 4


@pytest.fixture(scope="module")
def server():
    raw = RawServer()
    assert "result" in raw.request("initialize", INIT)
    raw.notify("initialized", {})
    yield raw
    assert raw.close() == 0


@pytest.mark.parametrize("bad, answered_id", [
    (b"Content-Length: abc\r\n\r\n" + request(101), None),
    (frame(request(102), 10), None),
    (b"Content-Length: 10000000000000\r\n\r\n", None),
    (frame(b'{"jsonrpc":"2.0","id":104,"method":"fimble/status","params":{"x":"\xff"}}'), 104),
    (b"Content-Type: text/plain\r\n" + b"y" * (MAX_HEADER_LINE * 2), None),
])
def test_the_server_answers_bad_framing_and_then_the_next_request(server, bad, answered_id):
    server.send_bytes(bad)
    error = server.wait_for(lambda m: "error" in m and m.get("id") == answered_id, timeout=20)
    assert error["error"]["code"] in (-32700, -32600)
    # The request right after may be swallowed while resynchronising (see above); the next is answered.
    server.send_bytes(frame(request(200)) + frame(request(201)))
    assert server.wait_for(lambda m: m.get("id") == 201, timeout=20)["result"]["state"] in ("ready", "loading")
    assert server.proc.poll() is None


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(no_header)
def test_the_server_survives_random_bytes_on_stdin(server, garbage):
    server.send_bytes(garbage)
    server.send_bytes(frame(request(300)) + frame(request(301)))
    assert server.wait_for(lambda m: m.get("id") == 301, timeout=20)["result"]["state"] in ("ready", "loading")

"""The wire: LSP base-protocol framing, read without trusting the sender, over stdio and TCP.

pygls' own reader believes every header: `Content-Length: abc` or a length shorter than the
body leaves it waiting for a header that never comes (deaf to every later message), a length of
ten terabytes is a MemoryError, and a body that is not UTF-8 is logged and never answered.

`FrameReader` is sans-IO (bytes in, frames and errors out, so it can be fuzzed): header lines
and bodies are capped, and after anything it cannot read it skips to the next
`Content-Length:` header, so the next well-formed message is answered. `dispatch` answers a
body it cannot use with -32700 (not JSON, not UTF-8) or -32600 (not a JSON-RPC message), with
the request's id when one can be read, and hands the rest to the pygls protocol.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from engine.syntax import FOREGROUND

log = logging.getLogger("fimble")

MAX_HEADER_LINE = 8 * 1024
MAX_HEADERS = 16
MAX_BODY = 64 * 1024 * 1024
PARSE_ERROR = -32700
INVALID_REQUEST = -32600
_HEADER_LINE = re.compile(rb"([A-Za-z0-9][A-Za-z0-9_.-]*):[ \t]*([^\r\n]*)\r\n")
# What the start of a header line looks like while the rest of it is still arriving.
_HEADER_START = re.compile(rb"[A-Za-z0-9][A-Za-z0-9_.-]*(:[^\r\n]*)?\r?")
# ... and how it goes on from where the last read left it: still in the name, or in the value.
_HEADER_NAME_REST = re.compile(rb"[A-Za-z0-9_.-]*(:[^\r\n]*)?\r?")
_HEADER_VALUE_REST = re.compile(rb"[^\r\n]*\r?")
_CONTENT_LENGTH = re.compile(rb"content-length:", re.IGNORECASE)


@dataclass(frozen=True)
class Frame:
    body: bytes


@dataclass(frozen=True)
class FramingError:
    code: int
    message: str


class FrameReader:
    """Splits a byte stream into message bodies. Memory is bounded by MAX_BODY plus one read."""

    def __init__(self, max_body: int = MAX_BODY) -> None:
        self.max_body = max_body
        self._buffer = bytearray()
        self._headers: dict[bytes, bytes] = {}
        self._body_length: int | None = None
        self._resyncing = False  # one error per run of garbage, not one per read
        # How much of a header line still arriving is known good (no CRLF yet, the right
        # characters), and whether its value has begun: a line sent a byte at a time is scanned
        # once, not from its start on every read.
        self._line_checked = 0
        self._in_value = False

    def feed(self, data: bytes) -> list[Frame | FramingError]:
        self._buffer += data
        events: list[Frame | FramingError] = []
        while True:
            if self._body_length is not None:
                if len(self._buffer) < self._body_length:
                    return events
                body = bytes(self._buffer[: self._body_length])
                del self._buffer[: self._body_length]
                self._body_length = None
                self._resyncing = False
                events.append(Frame(body))
                continue
            if not self._read_header(events):
                return events

    def _read_header(self, events: list[Frame | FramingError]) -> bool:
        """Consume one header line (or the blank line ending them); False when more bytes are needed."""
        buffer = self._buffer
        if not buffer or buffer == b"\r":
            return False
        if buffer.startswith(b"\r\n"):
            del buffer[:2]
            if self._headers:
                self._end_of_headers(events)
            return True
        end = buffer.find(b"\r\n", max(self._line_checked - 1, 0), MAX_HEADER_LINE + 2)
        if end < 0:
            if len(buffer) <= MAX_HEADER_LINE and self._line_so_far_good(buffer):
                return False  # a header line still arriving
            return self._skip_garbage(events, "a header line is too long or not terminated by CRLF")
        self._line_checked, self._in_value = 0, False
        match = _HEADER_LINE.fullmatch(buffer, 0, end + 2)
        if match is None or len(self._headers) >= MAX_HEADERS:
            return self._skip_garbage(events, f"not a header: {bytes(buffer[:min(end, 60)])!r}")
        self._headers[match.group(1).lower()] = match.group(2).strip()
        del buffer[: end + 2]
        return True

    def _line_so_far_good(self, buffer: bytearray) -> bool:
        """Does the buffer (no CRLF in it) look like the start of a header line? Checks only what
        came since the last call."""
        start = self._line_checked
        pattern = _HEADER_START if start == 0 else _HEADER_VALUE_REST if self._in_value else _HEADER_NAME_REST
        match = pattern.fullmatch(buffer, start)
        if match is None:
            return False
        self._in_value = self._in_value or b":" in buffer[start:]
        self._line_checked = len(buffer) - (1 if buffer.endswith(b"\r") else 0)
        return True

    def _end_of_headers(self, events: list[Frame | FramingError]) -> None:
        headers, self._headers = self._headers, {}
        raw = headers.get(b"content-length")
        if raw is None or not raw.isdigit():
            self._error(events, PARSE_ERROR, f"bad or missing Content-Length header: {raw[:40] if raw else raw!r}")
            return
        if len(raw) > 18 or int(raw) > self.max_body:
            limit = (f"{self.max_body >> 20} MiB" if self.max_body >= 1 << 20 else
                     f"{self.max_body >> 10} KiB" if self.max_body >= 1 << 10 else f"{self.max_body}-byte")
            self._error(events, INVALID_REQUEST, f"a message of {raw[:40].decode()} bytes is over the {limit} limit")
            return
        length = int(raw)
        self._body_length = length

    def _skip_garbage(self, events: list[Frame | FramingError], why: str) -> bool:
        """Drop bytes up to the next `Content-Length:` header (keeping a tail that may start one)."""
        self._headers = {}
        self._line_checked, self._in_value = 0, False
        self._error(events, PARSE_ERROR, why)
        found = _CONTENT_LENGTH.search(self._buffer, 1)
        if found is not None:
            del self._buffer[: found.start()]
            return True
        del self._buffer[: max(0, len(self._buffer) - len(b"content-length:"))]
        return False

    def _error(self, events: list[Frame | FramingError], code: int, message: str) -> None:
        if not self._resyncing:
            events.append(FramingError(code, message))
        self._resyncing = True


def error_response(msg_id: Any, code: int, message: str) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": msg_id, "error": {"code": code, "message": message}}


def parse_body(body: bytes) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """(message, None) for a JSON-RPC message; (None, error response) for anything else."""
    try:
        text = body.decode("utf-8", "surrogatepass")  # lone surrogates: what json.loads(bytes) allowed
    except UnicodeDecodeError as exc:
        # Answer the request if its id can be read at all, so the client is not left waiting.
        return None, error_response(_id_of(body.decode("utf-8", "replace")), PARSE_ERROR,
                                    f"the message body is not UTF-8 ({exc.reason} at byte {exc.start})")
    try:
        message = json.loads(text)
    except (ValueError, RecursionError) as exc:
        return None, error_response(None, PARSE_ERROR, f"the message body is not JSON: {str(exc)[:120]}")
    if not isinstance(message, dict):
        return None, error_response(None, INVALID_REQUEST, "a JSON-RPC message is an object")
    msg_id = message.get("id")
    if not isinstance(msg_id, int | str) or isinstance(msg_id, bool):
        msg_id = None
    if message.get("jsonrpc") != "2.0":
        return None, error_response(msg_id, INVALID_REQUEST, 'a JSON-RPC message has "jsonrpc": "2.0"')
    method = message.get("method")
    if method is not None and not isinstance(method, str):
        return None, error_response(msg_id, INVALID_REQUEST, "method must be a string")
    if method is None and "result" not in message and "error" not in message:
        return None, error_response(msg_id, INVALID_REQUEST, "neither a request, a notification nor a response")
    return message, None


def _id_of(text: str) -> Any:
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        return None
    msg_id = value.get("id") if isinstance(value, dict) else None
    return msg_id if isinstance(msg_id, int | str) and not isinstance(msg_id, bool) else None


def dispatch(protocol: Any, body: bytes) -> None:
    """Hand one body to the pygls protocol, or answer it with the error it earned. While it is
    handled, the model worker's parse waits its turn (`FOREGROUND`), and the time it took is
    the protocol's `loop_time` (where it keeps one)."""
    started = time.perf_counter()
    message, error = parse_body(body)
    if error is not None:
        protocol._send_data(error)
        return
    try:
        with FOREGROUND:
            structured = protocol.structure_message(message)
            protocol.handle_message(structured)
    except Exception as exc:  # a handler's bug must not take the connection down
        log.exception("could not handle a message")
        if isinstance(message, dict) and "id" in message and "method" in message:
            protocol._send_data(error_response(message["id"], -32603, f"internal error: {type(exc).__name__}"))
    if (loop_time := getattr(protocol, "loop_time", None)) is not None:
        method = message.get("method") if isinstance(message, dict) else None
        loop_time.add(method if isinstance(method, str) else "response", time.perf_counter() - started)


async def read_loop(read: Callable[[], Awaitable[bytes]], protocol: Any,
                    on_frame: Callable[[bytes], bool] | None = None, frames: FrameReader | None = None) -> None:
    """Read until the stream ends; each body goes to `on_frame` (False: stop) or to dispatch.
    `frames`: a reader that already holds the stream's start."""
    reader = frames or FrameReader()
    while data := await read():
        if not handle_events(reader.feed(data), protocol, on_frame):
            return


def handle_events(events: list[Frame | FramingError], protocol: Any,
                  on_frame: Callable[[bytes], bool] | None = None) -> bool:
    """Answer framing errors, pass bodies on; False once `on_frame` says stop."""
    for event in events:
        if isinstance(event, FramingError):
            log.warning("fimble: unreadable input: %s", event.message)
            protocol._send_data(error_response(None, event.code, event.message))
        elif on_frame is not None:
            if not on_frame(event.body):
                return False
        else:
            dispatch(protocol, event.body)
    return True

"""The scale-out backend: an OpenAI-compatible server (llama-server, llama-cpp-python, vLLM).

fimble keeps everything but decoding on the user's machine: context, the prompt (built with the
local model's template and counted with its vocabulary), caching and postprocessing. The server
only continues text: FIM prompts go to `/v1/completions` rendered as text, explain prompts to
`/v1/chat/completions` as messages, both streamed as server-sent events.

Cancel and the time budget close the connection, which is how an OpenAI-compatible server learns
that nobody is listening any more. Standard library HTTP only: one request at a time, on the
model worker thread, needs no connection pool.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

from ..errors import BackendError
from ..prompt import Special
from ..reasons import StopReason
from ..tokenizer import Tokenizer, gguf_tokenizer
from .base import (
    Backend,
    Deadline,
    GenerationRequest,
    GenerationResult,
    GenerationStats,
    TextCallback,
    TextSink,
)

DEFAULT_BASE_URL = "http://127.0.0.1:8080/v1"
CONNECT_TIMEOUT_S = 5.0
# With no time budget (explain, eval) a server silent for this long is taken as hung.
READ_TIMEOUT_S = 120.0
# With one, the budget counts from the first token (a server's evaluation of the prompt is not
# the user's to wait for), but a server that has not begun to answer after the budget and this
# much more is given up on, as one that never will.
PREFILL_ALLOWANCE_S = 10.0
# Attempts for a request that failed before any text arrived (connection refused, 502/503/429).
ATTEMPTS = 3
RETRY_STATUS = {429, 502, 503, 504}
# Whatever the server does, one request ends within this long (a stream of keep-alive comments
# never times out a read), and holds at most this much of its answer in memory.
REQUEST_DEADLINE_S = 300.0
MAX_LINE = 1 << 20  # one server-sent event line
MAX_JSON_BODY = 4 << 20  # /models
EXCERPT = 160  # characters of a server's error body passed on to the user


class _Closed(Exception):
    """The connection was closed on purpose (cancel or time budget)."""


class OpenAIBackend(Backend):
    name = "openai"

    def __init__(self, model: Any, settings: Any) -> None:
        super().__init__(model, settings)
        env_url = os.environ.get("OPENAI_BASE_URL", "").rstrip("/")
        self.base_url = (settings.openai_base_url or env_url or DEFAULT_BASE_URL).rstrip("/")
        url = urlsplit(self.base_url)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise BackendError(f"openaiBaseUrl {_without_credentials(self.base_url)!r} is not an http(s) URL")
        self._url = url
        # What errors name: never a user:password in the URL.
        self.shown_url = _without_credentials(self.base_url)
        # The environment's key is for the server the environment names; code and key go to another
        # server only with a key given for it (openaiApiKey, which a URL change clears).
        env_key = os.environ.get("OPENAI_API_KEY", "")
        same_server = _origin(self.base_url) == _origin(env_url or DEFAULT_BASE_URL)
        self.api_key = settings.openai_api_key or (env_key if same_server else "")
        self.served_model: str = settings.openai_model
        self.tokenizer: Tokenizer | None = None

    def __repr__(self) -> str:
        return f"OpenAIBackend({self.shown_url!r})"

    def excerpt(self, data: bytes | str) -> str:
        """A short, single-line piece of what a server said, with the key (if it echoed it) removed."""
        text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
        text = " ".join(text.split())
        if self.api_key:
            text = text.replace(self.api_key, "***")
        return text[:EXCERPT] + ("…" if len(text) > EXCERPT else "")

    def load(self) -> None:
        if self.tokenizer is not None:
            return
        if self.model is None or not self.model.is_gguf:
            raise BackendError("the openai backend counts prompt tokens with a local GGUF file's vocabulary: "
                               "set `model` to the GGUF file of the model the server runs")
        self.tokenizer = gguf_tokenizer(self.model.path)
        # The server need not be up yet: the editor keeps working and each request says what failed.

    def count_tokens(self, text: str) -> int:
        self.load()
        assert self.tokenizer is not None
        return self.tokenizer.count(text)

    # -- HTTP ----------------------------------------------------------------------------------

    def _connection(self, timeout: float) -> http.client.HTTPConnection:
        url = self._url
        cls = http.client.HTTPSConnection if url.scheme == "https" else http.client.HTTPConnection
        return cls(url.hostname or "", url.port, timeout=timeout)

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "Accept": "text/event-stream"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        return headers

    def _get_json(self, path: str) -> Any:
        conn = self._connection(CONNECT_TIMEOUT_S)
        try:
            conn.request("GET", self._url.path + path, headers=self._headers())
            response = conn.getresponse()
            body = response.read(MAX_JSON_BODY + 1)
        except (OSError, http.client.HTTPException) as exc:
            raise BackendError(f"could not reach the OpenAI-compatible server at {self.shown_url}: "
                               f"{self.excerpt(str(exc))}") from exc
        finally:
            conn.close()
        if response.status != 200:
            raise BackendError(f"{self.shown_url}{path} answered HTTP {response.status}: {self.excerpt(body)}")
        if len(body) > MAX_JSON_BODY:
            raise BackendError(f"{self.shown_url}{path} answered more than {MAX_JSON_BODY >> 20} MiB")
        try:
            return json.loads(body)
        except (ValueError, RecursionError) as exc:
            raise BackendError(f"{self.shown_url}{path} answered something that is not JSON: "
                               f"{self.excerpt(body)}") from exc

    def served_model_name(self) -> str:
        """`openaiModel`, else the first model the server lists (vLLM needs the name)."""
        if not self.served_model:
            listing = self._get_json("/models")
            try:
                self.served_model = str(listing["data"][0]["id"])
            except (KeyError, IndexError, TypeError) as exc:
                raise BackendError(f"{self.shown_url}/models lists no model; set openaiModel") from exc
        return self.served_model

    def _open_stream(self, path: str, body: dict[str, Any], watch: _Watch) -> tuple[socket.socket,
                                                                                     http.client.HTTPResponse]:
        """POST `body`, retrying what failed before anything was streamed; returns an open response.
        `watch` shuts the socket on a cancel or a deadline, also while the server has sent nothing."""
        payload = json.dumps(body).encode()
        last = ""
        for attempt in range(ATTEMPTS):
            if watch.fired():
                raise _Closed
            conn = self._connection(CONNECT_TIMEOUT_S)
            try:
                conn.connect()
                # Kept: the connection hands its socket over to the response and forgets it.
                sock = conn.sock
                assert sock is not None
                sock.settimeout(READ_TIMEOUT_S)
                watch.watch(sock)
                conn.request("POST", self._url.path + path, body=payload, headers=self._headers())
                response = conn.getresponse()
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                if watch.fired():
                    raise _Closed from None
                last = f"could not reach the OpenAI-compatible server at {self.shown_url}: {self.excerpt(str(exc))}"
            else:
                if response.status == 200:
                    return sock, response
                detail = self.excerpt(response.read(4 * EXCERPT))
                conn.close()
                last = f"{self.shown_url}{path} answered HTTP {response.status}: {detail}"
                if response.status not in RETRY_STATUS:
                    break
            time.sleep(min(0.2 * 2**attempt, 1.0))
        raise BackendError(last)

    def _events(self, response: http.client.HTTPResponse, path: str) -> Iterator[dict[str, Any]]:
        """The JSON objects of a server-sent event stream, until `[DONE]` or its end."""
        while raw := response.readline(MAX_LINE + 1):
            if len(raw) > MAX_LINE:
                raise BackendError(f"{self.shown_url}{path} streamed a line over {MAX_LINE >> 20} MiB")
            line = raw.decode("utf-8", "replace").strip()
            if not line or line.startswith(":") or not line.startswith("data:"):
                continue
            data = line[5:].strip()
            if data == "[DONE]":
                return
            try:
                event = json.loads(data)
            except (ValueError, RecursionError) as exc:
                raise BackendError(f"{self.shown_url}{path} streamed something that is not JSON: "
                                   f"{self.excerpt(data)}") from exc
            if not isinstance(event, dict):
                raise BackendError(f"{self.shown_url}{path} streamed an unexpected event: {self.excerpt(data)}")
            if "error" in event:
                raise BackendError(f"{self.shown_url}{path} reported an error: {self.excerpt(str(event['error']))}")
            yield event

    # -- generation ----------------------------------------------------------------------------

    def _body(self, request: GenerationRequest) -> tuple[str, dict[str, Any]]:
        prompt = request.prompt
        body: dict[str, Any] = {
            "model": self.served_model_name(),
            "max_tokens": request.max_tokens,
            "temperature": request.temperature,
            "top_p": request.top_p,
            "seed": request.seed,
            "stream": True,
            # Servers differ in what they accept beyond the OpenAI fields; these names are read by
            # llama.cpp's servers and vLLM and ignored elsewhere.
            "top_k": request.top_k,
            "min_p": request.min_p,
        }
        if request.repeat_penalty != 1.0:
            body["repeat_penalty"] = body["repetition_penalty"] = request.repeat_penalty
        stops = [*request.stop, *prompt.stop_tokens]
        if stops:
            body["stop"] = stops
        if prompt.kind == "chat" and prompt.messages:
            body["messages"] = [{"role": role, "content": content} for role, content in prompt.messages]
            return "/chat/completions", body
        body["prompt"] = prompt.render()
        return "/completions", body

    def generate(self, request: GenerationRequest, on_text: TextCallback | None = None) -> GenerationResult:
        self.load()
        stats = GenerationStats()
        started = time.perf_counter()
        # The budget is for decoding: the server's evaluation of the prompt is not counted.
        deadline = Deadline(request.time_budget_s, running=False)
        assert self.tokenizer is not None
        stats.prompt_tokens = stats.prompt_tokens_evaluated = sum(
            len(self.tokenizer.encode(part.text, allow_special=isinstance(part, Special)))
            for part in request.prompt.parts)
        path, body = self._body(request)
        sink = TextSink(request, on_text)
        reason = StopReason.MAX_TOKENS
        overall = Deadline(REQUEST_DEADLINE_S)
        # Until the first token: the budget and an allowance for the prompt's evaluation.
        waiting = Deadline(None if request.time_budget_s is None else request.time_budget_s + PREFILL_ALLOWANCE_S)
        watch = _Watch(request, (deadline, overall, waiting))
        try:
            sock, response = self._open_stream(path, body, watch)
        except _Closed:
            watch.stop()
            stats.stop_reason = StopReason.CANCELLED if request.cancel.is_set() else StopReason.TIME_BUDGET
            return GenerationResult("", stats)
        except BaseException:
            watch.stop()
            raise
        stats.prefill_ms = (time.perf_counter() - started) * 1000
        try:
            for event in self._events(response, path):
                choice = (event.get("choices") or [{}])[0]
                piece = choice.get("text") if "text" in choice else (choice.get("delta") or {}).get("content")
                if piece:
                    if stats.first_token_ms is None:
                        stats.first_token_ms = (time.perf_counter() - started) * 1000
                        deadline.start()
                        watch.deadlines = (deadline, overall)  # answering now: the decoding budget rules
                    # Counted here, not trusted to the server: one that ignores max_tokens is stopped.
                    stats.generated_tokens += max(1, self.tokenizer.count(piece))
                    if sink.add(piece):
                        reason = StopReason.SEQUENCE
                        break
                    if stats.generated_tokens >= request.max_tokens:
                        reason = StopReason.MAX_TOKENS
                        break
                finish = choice.get("finish_reason")
                if finish:
                    reason = StopReason.MAX_TOKENS if finish == "length" else StopReason.EOS
        except (OSError, http.client.HTTPException, ValueError) as exc:
            if request.cancel.is_set():
                reason = StopReason.CANCELLED
            elif watch.fired():
                reason = StopReason.TIME_BUDGET
            else:
                raise BackendError(f"the stream from {self.shown_url}{path} broke off: "
                                   f"{self.excerpt(str(exc))}") from exc
        finally:
            watch.stop()
            response.close()
            sock.close()
        if reason not in (StopReason.SEQUENCE, StopReason.EOS) and stats.generated_tokens < request.max_tokens:
            # A closed socket ends the stream like the server's own end does: say which it was.
            if request.cancel.is_set():
                reason = StopReason.CANCELLED
            elif watch.fired():
                reason = StopReason.TIME_BUDGET
        text = sink.end()
        stats.decode_ms = (time.perf_counter() - started) * 1000 - stats.prefill_ms
        stats.stop_reason = reason
        return GenerationResult(text, stats)


class _Watch:
    """Shuts the request's socket once it is cancelled or a deadline passes — while connecting,
    waiting for the server's first byte or streaming alike: a read blocked on it wakes at once."""

    def __init__(self, request: GenerationRequest, deadlines: tuple[Deadline, ...]) -> None:
        self.request = request
        self.deadlines = deadlines
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._shut = False
        threading.Thread(target=self._run, name="fimble-openai-watch", daemon=True).start()

    def fired(self) -> bool:
        return self.request.cancel.is_set() or any(d.expired() for d in self.deadlines)

    def watch(self, sock: socket.socket) -> None:
        with self._lock:
            self._sock = sock
            if self._shut:
                self._shutdown()

    def stop(self) -> None:
        self._done.set()

    def _shutdown(self) -> None:
        if self._sock is not None:
            with contextlib.suppress(OSError):  # already closed by the other side
                self._sock.shutdown(socket.SHUT_RDWR)

    def _run(self) -> None:
        while not self._done.wait(0.02):
            if self.fired():
                with self._lock:
                    self._shut = True
                    self._shutdown()
                return


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    try:
        port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
    except ValueError:
        port = None
    return parts.scheme, (parts.hostname or "").lower(), port


def _without_credentials(url: str) -> str:
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]).geturl()


__all__ = ["OpenAIBackend"]

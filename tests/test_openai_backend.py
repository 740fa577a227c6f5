"""The openai backend against real HTTP servers on loopback.

The real one is llama-cpp-python's own OpenAI-compatible server running the default model: greedy
completions through fimble's pipeline over HTTP must equal the local llama.cpp backend's. Small
stdlib servers stand in for a server that is down, slow, or answers garbage.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.backends.base import GenerationRequest
from engine.backends.openai import OpenAIBackend
from engine.config import Settings
from engine.errors import BackendError
from engine.models import ModelRef
from engine.prompt import Prompt, Special, Text
from engine.service import CompletionRequest, CompletionService

PROMPT = Prompt((Special("<|fim_prefix|>"), Text("def add(a, b):\n    return "), Special("<|fim_suffix|>"),
                 Special("<|fim_middle|>")), "fim", stop_tokens=("<|endoftext|>",))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def backend(model_path: Path, url: str, **options: object) -> OpenAIBackend:
    settings = Settings(backend="openai", openai_base_url=url, openai_model="m", **options)  # type: ignore[arg-type]
    b = OpenAIBackend(ModelRef(model_path, "gguf", "m"), settings)
    b.load()
    return b


# -- a real server -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def llama_server(model_path: Path) -> Iterator[str]:
    port = free_port()
    # llama_cpp.server loads its model as fimble does (engine/backends/llama_cpp.py): where llama.cpp's
    # AMX kernels would run, without them (they die of an illegal instruction).
    serve = ("import runpy\nfrom engine.backends.llama_reach import amx_compiled_in, model_params\n"
             "with model_params(use_extra_bufts=not amx_compiled_in()):\n"
             "    runpy.run_module('llama_cpp.server', run_name='__main__')\n")
    proc = subprocess.Popen(
        [sys.executable, "-c", serve, "--model", str(model_path), "--host", "127.0.0.1",
         "--port", str(port), "--n_ctx", "4096", "--verbose", "false"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + 120
    while True:
        try:
            with urllib.request.urlopen(url + "/models", timeout=1) as r:
                json.load(r)
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"llama_cpp.server did not start: {proc.stderr.read().decode()[-2000:]}")  # type: ignore[union-attr]
            time.sleep(0.3)
    yield url
    proc.terminate()
    proc.wait(10)


CASES = [
    ("def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n    if n < 2:\n        return n\n    ",
     "\n\nprint(fibonacci(10))\n", 4, 4, "python"),
    ("function isEven(n) {\n  return ", ";\n}\n", 1, 9, "javascript"),
    ("import os\n\ndef list_python_files(root):\n    result = []\n    for dirpath, _, names in os.walk(root):\n"
     "        ", "\n    return result\n", 5, 8, "python"),
]


class _Unmasked:
    """The local backend without its healer."""

    healer = None

    def __init__(self, backend):
        self._backend = backend

    def __getattr__(self, name):
        return getattr(self._backend, name)


@pytest.mark.model
def test_greedy_completions_over_http_equal_the_local_backend(llama_server, real_service, model_path):
    remote = CompletionService(Settings(model=str(model_path), backend="openai", openai_base_url=llama_server,
                                        time_budget_ms=0))
    # A server cannot mask its vocabulary, so half a token is not healed over HTTP (typed
    # indentation is handled the same on both): compare with the local backend's unmasked path.
    local = CompletionService(real_service.settings.replace(time_budget_ms=0),
                              backend=_Unmasked(real_service._backend), model_info=real_service.info)
    local.load()
    for before, after, line, character, language in CASES:
        text = before + after
        got = remote.complete(CompletionRequest(text, line, character, language=language, use_cache=False))
        want = local.complete(CompletionRequest(text, line, character, language=language, use_cache=False))
        # (The reasons may differ: a server reports a stop string and end-of-text both as "stop".)
        assert got.text == want.text, (before, got, want)
        assert got.text  # the model said something
    assert any(r.text.strip() for r in [remote.complete(CompletionRequest(CASES[0][0] + CASES[0][1], 4, 4,
                                                                          language="python"))])


@pytest.mark.model
def test_explain_goes_through_the_chat_endpoint(llama_server, model_path):
    b = backend(model_path, llama_server, max_tokens=64)
    service = CompletionService(Settings(model=str(model_path), backend="openai", openai_base_url=llama_server,
                                         max_tokens=48), backend=b)
    pieces: list[str] = []
    text = service.explain("def add(a, b):\n    return a + b\n", "python", on_text=pieces.append)
    assert "add" in text.lower() and len(pieces) > 3


@pytest.mark.model
def test_cancel_closes_the_stream(llama_server, model_path):
    b = backend(model_path, llama_server)
    request = GenerationRequest(prompt=PROMPT, max_tokens=400, stop=())
    threading.Timer(0.3, request.cancel.set).start()
    result = b.generate(request)
    assert result.stats.stop_reason == "cancelled"
    assert result.stats.generated_tokens < 400  # the stream was closed, not read to its end


# -- servers that misbehave ----------------------------------------------------------------------

class _Handler(http.server.BaseHTTPRequestHandler):
    behaviour = "garbage"
    requests = 0
    auth: str | None = None

    def log_message(self, *args: object) -> None:
        pass

    def do_POST(self) -> None:
        type(self).requests += 1
        type(self).auth = self.headers.get("Authorization")
        self.rfile.read(int(self.headers["Content-Length"]))
        if self.behaviour == "echo":  # a server that quotes the request's key back, over many lines
            self.send_response(401)
            self.end_headers()
            self.wfile.write(f"bad key\n{self.headers.get('Authorization')}\n".encode() + b"x" * 5000)
            return
        if self.behaviour == "silent":  # accepts the request and never answers, not even headers
            time.sleep(30)
            return
        if self.behaviour == "endless line":
            self.send_response(200)
            self.end_headers()
            with contextlib.suppress(OSError):
                for _ in range(64):
                    self.wfile.write(b"y" * (64 << 10))
            return
        if self.behaviour == "forever":  # ignores max_tokens and never finishes
            self.send_response(200)
            self.end_headers()
            with contextlib.suppress(OSError):
                for i in range(100_000):
                    self.wfile.write(f"data: {json.dumps({'choices': [{'text': f' t{i}'}]})}\n\n".encode())
            return
        if self.behaviour == "unavailable":
            self.send_response(503)
            self.end_headers()
            self.wfile.write(b"loading model")
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        if self.behaviour == "garbage":
            self.wfile.write(b"data: <html>oops</html>\n\n")
            return
        for i in range(100):  # slow: one token every 200 ms
            chunk = {"choices": [{"text": f"x{i} ", "finish_reason": None}]}
            try:
                self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                self.wfile.flush()
            except OSError:
                return
            time.sleep(0.2)


@pytest.fixture()
def fake_server() -> Iterator[tuple[str, type[_Handler]]]:
    handler = type("Handler", (_Handler,), {"requests": 0})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1", handler
    server.shutdown()


def test_a_server_that_is_down_gives_a_clear_error(model_path):
    b = backend(model_path, f"http://127.0.0.1:{free_port()}/v1")
    with pytest.raises(BackendError, match="could not reach the OpenAI-compatible server at http://127.0.0.1"):
        b.generate(GenerationRequest(prompt=PROMPT, max_tokens=4))


def test_garbage_is_refused_with_what_came(model_path, fake_server):
    url, handler = fake_server
    handler.behaviour = "garbage"
    with pytest.raises(BackendError, match="streamed something that is not JSON: <html>oops</html>"):
        backend(model_path, url).generate(GenerationRequest(prompt=PROMPT, max_tokens=4))


def test_unavailable_is_retried_then_reported(model_path, fake_server):
    url, handler = fake_server
    handler.behaviour = "unavailable"
    with pytest.raises(BackendError, match="HTTP 503: loading model"):
        backend(model_path, url).generate(GenerationRequest(prompt=PROMPT, max_tokens=4))
    assert handler.requests == 3


def test_a_slow_server_is_cut_by_the_time_budget_keeping_what_came(model_path, fake_server):
    url, handler = fake_server
    handler.behaviour = "slow"
    b = backend(model_path, url)
    result = b.generate(GenerationRequest(prompt=PROMPT, max_tokens=50, time_budget_s=1.0))
    assert result.stats.stop_reason == "time_budget" and result.stats.generated_tokens < 50
    assert result.text.startswith("x0 x1 ")


def test_a_server_that_never_answers_is_left_at_a_cancel_and_at_the_budget(model_path, fake_server, monkeypatch):
    """No headers ever: a cancel ends the request at once (it held the one model worker for 120 s),
    and with a time budget the wait ends after the budget and the prompt's allowance."""
    from engine.backends import openai as openai_module

    url, handler = fake_server
    handler.behaviour = "silent"
    b = backend(model_path, url)
    cancel = threading.Event()
    threading.Timer(0.5, cancel.set).start()
    result = b.generate(GenerationRequest(prompt=PROMPT, max_tokens=8, cancel=cancel))
    assert (result.text, result.stats.stop_reason) == ("", "cancelled")
    monkeypatch.setattr(openai_module, "PREFILL_ALLOWANCE_S", 0.5)
    result = b.generate(GenerationRequest(prompt=PROMPT, max_tokens=8, time_budget_s=0.5))
    assert (result.text, result.stats.stop_reason) == ("", "time_budget")
    assert handler.requests == 2  # neither was retried: it was given up on, not refused


def test_the_editor_keeps_working_when_the_server_is_down(model_path, tmp_path):
    """The CLI edge turns the backend error into one line and an exit code; nothing hangs."""
    source = tmp_path / "a.py"
    source.write_text("def add(a, b):\n    return \n")
    exe = Path(sys.executable).with_name("fimble")
    proc = subprocess.run(
        [str(exe), "complete", str(source), "--line", "1", "--character", "11", "--model", str(model_path),
         "--backend", "openai", "--set", f"openaiBaseUrl=http://127.0.0.1:{free_port()}/v1"],
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode != 0
    assert "could not reach the OpenAI-compatible server" in proc.stderr


def test_language_server_answers_empty_and_stays_up_when_the_server_is_down(model_path):
    """The editor's view: an empty list, the reason in fimble/status, and the next request still answered."""
    from lsp_raw import RawServer

    raw = RawServer()
    raw.request("initialize", {"processId": None, "rootUri": None, "capabilities": {}, "initializationOptions": {
        "backend": "openai", "model": str(model_path), "debounceMs": 0,
        "openaiBaseUrl": f"http://127.0.0.1:{free_port()}/v1"}})
    raw.notify("initialized", {})
    uri = "file:///down.py"
    raw.notify("textDocument/didOpen", {"textDocument": {"uri": uri, "languageId": "python", "version": 0,
                                                         "text": "def add(a, b):\n    return \n"}})
    params = {"textDocument": {"uri": uri}, "position": {"line": 1, "character": 11}, "context": {"triggerKind": 2}}
    for _ in range(2):
        answer = raw.request("textDocument/inlineCompletion", params, timeout=60)
        assert answer["result"] == {"items": []}
    status = raw.request("fimble/status", {}, timeout=10)["result"]
    assert status["backend"] == "openai" and status["state"] == "ready"
    errors = [r for r in status["requests"] if r["outcome"] == "error"]
    assert len(errors) == 2 and "could not reach the OpenAI-compatible server" in errors[-1]["error"]
    assert raw.close() == 0


def test_a_server_that_ignores_max_tokens_is_stopped_at_max_tokens(model_path, fake_server):
    url, handler = fake_server
    handler.behaviour = "forever"
    result = backend(model_path, url).generate(GenerationRequest(prompt=PROMPT, max_tokens=20, stop=()))
    assert result.stats.stop_reason == "max_tokens"
    assert 20 <= result.stats.generated_tokens <= 22 and result.text.count(" t") <= 22


def test_an_endless_line_is_refused_not_buffered(model_path, fake_server):
    url, handler = fake_server
    handler.behaviour = "endless line"
    with pytest.raises(BackendError, match="streamed a line over 1 MiB"):
        backend(model_path, url).generate(GenerationRequest(prompt=PROMPT, max_tokens=4))


def test_error_bodies_are_a_short_line_without_the_key(model_path, fake_server):
    url, handler = fake_server
    handler.behaviour = "echo"
    key = "sk-echoed-back-0123456789"
    with pytest.raises(BackendError) as info:
        backend(model_path, url, openai_api_key=key).generate(GenerationRequest(prompt=PROMPT, max_tokens=4))
    message = str(info.value)
    assert handler.auth == f"Bearer {key}"  # it was sent to the server it was given for
    assert key not in message and "\n" not in message and len(message) < 300
    assert "HTTP 401: bad key Bearer ***" in message


def test_the_environment_key_goes_only_to_the_environment_server(model_path, fake_server, monkeypatch):
    url, handler = fake_server
    handler.behaviour = "garbage"
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-the-environment")
    monkeypatch.setenv("OPENAI_BASE_URL", f"http://127.0.0.1:{free_port()}/v1")  # another server
    with pytest.raises(BackendError):
        backend(model_path, url).generate(GenerationRequest(prompt=PROMPT, max_tokens=4))
    assert handler.auth is None
    monkeypatch.setenv("OPENAI_BASE_URL", url)
    with pytest.raises(BackendError):
        backend(model_path, url).generate(GenerationRequest(prompt=PROMPT, max_tokens=4))
    assert handler.auth == "Bearer sk-from-the-environment"

"""The server's debounce, in process with the fake backend: a request that a newer one for the
same document overtakes while it waits never reaches the model."""

from __future__ import annotations

import asyncio

import pytest
from lsprotocol import types

from engine.backends.fake import FakeBackend
from engine.service import CompletionService
from lsp_server.server import FimbleServer

URI = "file:///w/debounce.py"
SOURCE = "def add(a, b):\n    return \n\nprint(add(1, 2))\n"


def params(line: int, character: int) -> types.InlineCompletionParams:
    return types.InlineCompletionParams(
        text_document=types.TextDocumentIdentifier(uri=URI), position=types.Position(line, character),
        context=types.InlineCompletionContext(trigger_kind=types.InlineCompletionTriggerKind.Automatic))


@pytest.fixture()
def server(qwen_info):
    server = FimbleServer()
    server.settings = server.settings.replace(backend="fake", debounce_ms=150, warm=False)
    backend = FakeBackend()
    server.service = CompletionService(server.settings, backend=backend, model_info=qwen_info)
    server.service.load()
    server.load_state = "ready"
    assert server.documents.open(URI, "python", 1, SOURCE) is not None
    yield server, backend
    server.worker.stop()


@pytest.mark.asyncio
async def test_a_request_overtaken_while_debouncing_never_reaches_the_model(server):
    server, backend = server
    backend.queue("a + b", "never asked for")
    first = asyncio.ensure_future(server.inline_completion(params(1, 11)))
    await asyncio.sleep(0)  # the first is waiting out its debounce now
    second = asyncio.ensure_future(server.inline_completion(params(1, 11)))
    overtaken, answered = await asyncio.gather(first, second)
    assert overtaken.items == []
    assert [item.insert_text for item in answered.items] == ["a + b"]
    assert len(backend.requests) == 1
    assert [(h["outcome"], h.get("why")) for h in server.history] == [
        ("cancelled", "superseded while debouncing"), ("shown", None)]
    # fimble/status gives as many of them as asked: none is none (it once gave all 1,000)
    assert [len(server.status(history=n)["requests"]) for n in (0, 1, 2, 50, -3)] == [0, 1, 2, 2, 0]


@pytest.mark.asyncio
async def test_requests_for_different_documents_do_not_overtake_each_other(server):
    server, backend = server
    other = "file:///w/other.py"
    assert server.documents.open(other, "python", 1, SOURCE) is not None
    backend.queue("a + b", "a - b")
    first = asyncio.ensure_future(server.inline_completion(params(1, 11)))
    await asyncio.sleep(0)
    second_params = params(1, 11)
    second_params.text_document = types.TextDocumentIdentifier(uri=other)
    both = await asyncio.gather(first, server.inline_completion(second_params))
    assert sorted(item.insert_text for result in both for item in result.items) == ["a + b", "a - b"]
    assert len(backend.requests) == 2

"""A new place answers from a short window when the whole one would take long to evaluate, and
the whole window takes over once it has been evaluated (CompletionService.widen). The fake
backend's cache model stands in for llama.cpp's here; tests/test_lsp_warm.py runs the same path
with the real model over a real LSP client."""

from __future__ import annotations

import threading

import pytest

from engine.config import Settings
from engine.service import CompletionRequest, CompletionService

DOC = "".join(f"    Line {i} of the module's description: what it does.\n" for i in range(60))
BODY = "".join(f"def f{i}(x):\n    return x + {i}\n\n\n" for i in range(80))
SOURCE = f'"""Module.\n\n{DOC}"""\n\nimport os\n\n\n{BODY}'
PATH = "/work/example/long.py"


@pytest.fixture()
def service(fake_backend, qwen_info) -> CompletionService:
    fake_backend.measure, fake_backend.rate = True, 100.0  # 100 tokens a second: 1 s buys 100 tokens
    service = CompletionService(Settings(backend="fake", new_place_ms=1000), backend=fake_backend,
                                model_info=qwen_info)
    service.load()
    return service


# The user cut `def f70(x):` and is about to type it again.
CUT = SOURCE.replace("def f70(x):\n", "\n")


def at(row: int, column: int, short: bool = True, text: str = CUT) -> CompletionRequest:
    return CompletionRequest(text, row, column, language="python", path=PATH, interactive=short)


def prompt_tokens(fake_backend) -> int:
    return fake_backend.count_tokens(fake_backend.requests[-1].prompt.render())


def row_of(needle: str) -> int:
    return SOURCE[: SOURCE.index(needle)].count("\n")


def test_a_new_place_starts_short_and_the_whole_window_takes_over_once_warmed(service, fake_backend):
    row = row_of("def f70")
    fake_backend.queue("def f70(y):")
    first = service.complete(at(row, 0))
    assert first.timings["window"] == "short" and first.text == "def f70(y):"
    short = prompt_tokens(fake_backend)
    assert short <= 100 + 16, short  # the budget, plus the template's tokens and the cursor's line

    # Idle: the whole window is evaluated, then used.
    stats = service.widen(at(row, 0))
    assert stats is not None and stats.stop_reason == "prefilled"
    fake_backend.queue("def f70(z):")
    second = service.complete(at(row, 0))
    assert second.timings["window"] == "whole"
    assert prompt_tokens(fake_backend) > 5 * short
    assert fake_backend.requests[-1].prompt.render() == fake_backend.warmed[-1]
    assert service.widen(at(row, 0)) is None  # nothing left to widen


def test_a_widening_cut_short_keeps_the_short_window(service, fake_backend):
    row = row_of("def f70")
    fake_backend.queue("a", "b")
    service.complete(at(row, 0))
    cancelled = threading.Event()
    cancelled.set()
    stats = service.widen(CompletionRequest(CUT, row, 0, language="python", path=PATH, cancel=cancelled))
    assert stats is not None and stats.stop_reason == "cancelled"
    assert service.complete(at(row, 0)).timings["window"] == "short"


def test_the_whole_window_when_it_is_cheap_asked_for_or_turned_off(fake_backend, qwen_info, service):
    row = row_of("def f70")
    fake_backend.queue("a", "b", "c", "d")
    assert service.complete(at(row, 0, short=False)).timings["window"] == "whole"  # the CLI, the eval
    whole = fake_backend.requests[-1].prompt
    service.forget(PATH)
    fake_backend.warmed.append(whole.render())  # the cache holds the whole window already
    assert service.complete(at(row, 0)).timings["window"] == "whole"
    service.forget(PATH)
    fake_backend.warmed.clear()
    service.settings = service.settings.replace(new_place_ms=0)
    assert service.complete(at(row, 0)).timings["window"] == "whole"
    fake_backend.measure = False  # a backend that cannot tell what it holds: the whole window
    service.settings = service.settings.replace(new_place_ms=1000)
    service.forget(PATH)
    assert service.complete(at(row, 0)).timings["window"] == "whole"


def test_a_short_windows_answer_is_judged_against_the_whole_window(service, fake_backend):
    """Inside a long docstring the short window starts below its opening quotes: judged on that
    fragment, prose would fail the syntax check and be dropped; a whole window's answer is kept."""
    row = row_of("Line 58 of")
    text = CUT.replace("    Line 58 of the module's description: what it does.\n", "    Line 58 of\n")
    fake_backend.queue(" the module's description: what it does.")
    result = service.complete(at(row, len("    Line 58 of"), text=text))
    assert result.timings["window"] == "short"
    prefix = fake_backend.requests[-1].prompt.render().split("<|fim_suffix|>")[0]
    assert '"""' not in prefix  # the window starts inside the docstring
    assert result.text == " the module's description: what it does."


def test_refine_gives_the_whole_windows_answer_without_a_budget_and_the_place_keeps_it(service, fake_backend):
    """After an answer from a short window the server asks for the answer the pipeline gives with
    time (CompletionService.refine): the whole window, the whole decode, no time budget; the
    editor's next request at the place is then answered with it from the cache."""
    row = row_of("def f70")
    fake_backend.queue("def f70(y):", "def f70(x):")
    first = service.complete(at(row, 0))
    assert first.timings["window"] == "short"
    refined = service.refine(at(row, 0))
    assert refined.text == "def f70(x):" and refined.timings["window"] == "whole"
    request = fake_backend.requests[-1]
    assert request.time_budget_s is None and request.answer_after_s is None
    assert prompt_tokens(fake_backend) > 5 * fake_backend.count_tokens(fake_backend.requests[0].prompt.render())
    asked = len(fake_backend.requests)
    again = service.complete(at(row, 0))  # the editor asks again (fimble/completionReady)
    assert again.text == "def f70(x):" and again.reason == "cache" and len(fake_backend.requests) == asked


@pytest.mark.asyncio
async def test_the_server_offers_the_whole_windows_answer_in_place_of_the_short_ones(fake_backend, qwen_info):
    """The language server follows an answer from a short window up while idle (refine) and, as it
    differs, says so (fimble/completionReady); the editor's next request gets it from the cache."""
    import asyncio

    from lsprotocol import types

    from lsp_server.server import FimbleServer

    server = FimbleServer()
    server.settings = server.settings.replace(backend="fake", new_place_ms=1000, first_answer_ms=0)
    fake_backend.measure, fake_backend.rate = True, 100.0
    server.service = CompletionService(server.settings, backend=fake_backend, model_info=qwen_info)
    server.service.load()
    server.load_state = "ready"
    sent: list[tuple[str, object]] = []
    server.protocol.notify = lambda method, params=None: sent.append((method, params))  # type: ignore[method-assign]
    uri = "file:///work/example/long.py"
    assert server.documents.open(uri, "python", 1, CUT) is not None
    params = types.InlineCompletionParams(
        text_document=types.TextDocumentIdentifier(uri=uri), position=types.Position(row_of("def f70"), 0),
        context=types.InlineCompletionContext(trigger_kind=types.InlineCompletionTriggerKind.Automatic))
    try:
        fake_backend.queue("def f70(y):", "def f70(x):")
        first = await server.inline_completion(params)
        assert [item.insert_text for item in first.items] == ["def f70(y):"]
        assert server.history[-1]["followUp"] == "refine"
        for _ in range(3000):  # (up to 30 s on a busy machine)
            if sent:
                break
            await asyncio.sleep(0.01)
        assert sent == [("fimble/completionReady", {"uri": uri})]
        assert server.status()["followUps"] == {"refine:replaced": 1}
        asked = len(fake_backend.requests)
        again = await server.inline_completion(params)
        assert [item.insert_text for item in again.items] == ["def f70(x):"]
        assert len(fake_backend.requests) == asked and server.history[-1]["outcome"] == "cache"

        # The user moves on (edits elsewhere) while a follow-up decodes: nothing is offered.
        fake_backend.delay_per_char = 0.02
        server.documents.get(uri).session.prompts.anchor = None  # a new place, cold again
        fake_backend.warmed.clear()
        params.position = types.Position(row_of("def f71"), 0)
        fake_backend.queue("def f71(y):", "def f71(x):")
        await server.inline_completion(params)
        at = types.Position(0, 0)
        server.documents.change(uri, 2, [types.TextDocumentContentChangePartial(range=types.Range(at, at), text="#")],
                                server.encoding)
        for _ in range(3000):  # (up to 30 s on a busy machine)
            if sum(server.idle.follow_ups.values()) == 2:
                break
            await asyncio.sleep(0.01)
        assert server.idle.follow_ups == {"refine:replaced": 1, "refine:moved on": 1} and len(sent) == 1
    finally:
        server.worker.stop()

"""An editor waiting for a long answer is given its first usable lines after `firstAnswerMs` of
decoding, and the rest is decoded afterwards from the same prompt plus those lines
(CompletionService.rest_of_answer): the whole is then what the caches give at that place. The fake
backend decodes a character every 10 ms here; tests/test_lsp_warm.py runs the same path with
the real model over a real LSP client."""

from __future__ import annotations

import threading

import pytest

from engine.config import Settings
from engine.reasons import StopReason
from engine.service import CompletionRequest, CompletionService
from engine.session import DocumentSession

PATH = "/work/example/mod.py"
SOURCE = "def total(items):\n    result = 0\n    \n\n\ndef other():\n    return 1\n"
ROW, COLUMN = 2, 4  # the blank line after `result = 0`, after its indentation
BODY = "for item in items:\n        result += item\n    return result"


@pytest.fixture()
def service(fake_backend, qwen_info) -> CompletionService:
    fake_backend.delay_per_char = 0.01
    service = CompletionService(Settings(backend="fake", first_answer_ms=50), backend=fake_backend,
                                model_info=qwen_info)
    service.load()
    return service


def at(text: str = SOURCE, row: int = ROW, column: int = COLUMN, interactive: bool = True) -> CompletionRequest:
    return CompletionRequest(text, row, column, language="python", path=PATH, interactive=interactive)


def test_a_long_answer_comes_early_and_its_rest_is_decoded_after(service, fake_backend):
    fake_backend.queue(BODY)
    early = service.complete(at())
    # 50 ms buys five characters: the first line is not usable before its body has begun.
    assert early.reason == StopReason.EARLY
    assert early.text == "for item in items:\n        result += item"
    assert early.unfinished is not None and early.unfinished.shown == early.text

    fake_backend.queue(BODY[len(early.text) + 1 :])  # what the model writes after the text it had
    whole = service.rest_of_answer(early.unfinished, threading.Event())
    assert whole is not None and whole.text == BODY and whole.reason == StopReason.EOS
    assert whole.unfinished is None
    rest = fake_backend.requests[-1]
    assert rest.prompt.render() == fake_backend.requests[0].prompt.render() + early.text + "\n"
    # Idle work: nobody waits on it, and only maxTokens bounds it.
    assert rest.heal == "" and rest.answer_after_s is None and rest.time_budget_s is None

    # Asked again at the place (the editor does so on fimble/completionReady): the whole, from the cache.
    asked = len(fake_backend.requests)
    again = service.complete(at())
    assert again.text == BODY and len(fake_backend.requests) == asked
    # Typed on into the answer (the editor's session remembers it): its rest, still without the model.
    session = DocumentSession("file://" + PATH)
    session.remember(SOURCE, early.unfinished.offset, whole.text)
    typed = SOURCE.replace("    \n\n\n", "    for it\n\n\n", 1)
    assert session.typed_through(typed, early.unfinished.offset + 6) == BODY[6:]


def test_the_whole_answer_equals_what_waiting_for_it_gives(service, fake_backend, qwen_info):
    fake_backend.queue(BODY)
    early = service.complete(at())
    fake_backend.queue(BODY[len(early.text) + 1 :])
    whole = service.rest_of_answer(early.unfinished, threading.Event())
    waited = CompletionService(Settings(backend="fake", first_answer_ms=50), backend=type(fake_backend)(),
                               model_info=qwen_info)
    waited.load()
    waited._backend.queue(BODY)  # type: ignore[union-attr]
    assert waited.complete(at(interactive=False)).text == whole.text  # the CLI waits for it all


def test_a_finish_cut_short_goes_on_from_where_it_stopped(service, fake_backend):
    fake_backend.queue(BODY)
    early = service.complete(at())
    cancel = threading.Event()
    threading.Timer(0.04, cancel.set).start()
    rest = BODY[len(early.text) + 1 :]
    fake_backend.queue(rest)
    pending = early.unfinished
    assert service.rest_of_answer(pending, cancel) is None
    decoded = fake_backend.requests[-1].prompt.render()
    assert pending.generated > early.timings["generated_tokens"]  # extended in place with what was decoded

    fake_backend.queue(rest[2:])  # the fake decoded at least two characters in 40 ms
    kept = fake_backend.requests[-1]
    whole = service.rest_of_answer(pending, threading.Event())
    assert fake_backend.requests[-1] is not kept
    assert fake_backend.requests[-1].prompt.render().startswith(decoded)
    assert len(fake_backend.requests[-1].prompt.render()) > len(decoded)
    assert whole is not None


def test_a_whole_judged_unusable_leaves_the_early_answer_in_place(service, fake_backend, monkeypatch):
    fake_backend.queue(BODY)
    early = service.complete(at())
    fake_backend.queue(BODY[len(early.text) + 1 :])
    monkeypatch.setattr(service, "_postprocess", lambda *args: ("", "filtered:syntax"))  # the whole, emptied
    whole = service.rest_of_answer(early.unfinished, threading.Event())
    assert whole is not None and whole.text == early.text and whole.reason == StopReason.EARLY
    asked = len(fake_backend.requests)
    assert service.complete(at()).text == early.text and len(fake_backend.requests) == asked  # the place's answer


def test_no_early_answer_for_a_line_the_cli_or_a_new_request(service, fake_backend):
    # Mid-line: one line is asked for, and it ends at its newline anyway.
    fake_backend.queue("(items)\n")
    mid = SOURCE.replace("result = 0", "result = sum")
    line = service.complete(at(mid, row=1, column=len("    result = sum")))
    assert line.reason != StopReason.EARLY and line.unfinished is None
    # An answer from the cache has nothing to finish.
    assert service.complete(at(mid, row=1, column=len("    result = sum"))).unfinished is None
    # Not interactive (the CLI, the eval harness): the whole answer.
    fake_backend.queue(BODY)
    other = SOURCE.replace("result = 0", "result = 1")
    whole = service.complete(at(other, interactive=False))
    assert whole.text == BODY and whole.unfinished is None


# -- in the language server (in process, the fake backend): the notification, and typing meanwhile ---

URI = "file:///work/example/mod.py"


@pytest.fixture()
def server(qwen_info):
    from engine.backends.fake import FakeBackend
    from lsp_server.server import FimbleServer

    server = FimbleServer()
    server.settings = server.settings.replace(backend="fake", first_answer_ms=50)
    backend = FakeBackend()
    backend.delay_per_char = 0.01
    server.service = CompletionService(server.settings, backend=backend, model_info=qwen_info)
    server.service.load()
    server.load_state = "ready"
    sent: list[tuple[str, object]] = []
    server.protocol.notify = lambda method, params=None: sent.append((method, params))  # type: ignore[method-assign]
    assert server.documents.open(URI, "python", 1, SOURCE) is not None
    yield server, backend, sent
    server.worker.stop()


def inline(row: int, column: int):
    from lsprotocol import types

    return types.InlineCompletionParams(
        text_document=types.TextDocumentIdentifier(uri=URI), position=types.Position(row, column),
        context=types.InlineCompletionContext(trigger_kind=types.InlineCompletionTriggerKind.Automatic))


def type_text(server, version: int, row: int, column: int, text: str) -> None:
    from lsprotocol import types

    at = types.Position(row, column)
    change = types.TextDocumentContentChangePartial(range=types.Range(at, at), text=text)
    server.documents.change(URI, version, [change], server.encoding)
    server.idle.after_edit(URI)


@pytest.mark.asyncio
async def test_the_server_says_when_the_whole_is_ready_and_typing_into_it_does_not_stop_it(server):
    import asyncio

    server, backend, sent = server
    early_text = "for item in items:\n        result += item"
    backend.queue(BODY, BODY[len(early_text) + 1 :])
    early = await server.inline_completion(inline(ROW, COLUMN))
    assert [item.insert_text for item in early.items] == [early_text]
    # The user types the suggestion's first characters while its rest is decoded: answered from
    # it, and no warm-up of the new place preempts the decoding.
    type_text(server, 2, ROW, COLUMN, "f")  # (two characters at once would be an accept)
    type_text(server, 3, ROW, COLUMN + 1, "o")
    typed = await server.inline_completion(inline(ROW, COLUMN + 2))
    assert [item.insert_text for item in typed.items] == [early_text[2:]]
    for _ in range(3000):  # (up to 30 s on a busy machine)
        if sent:
            break
        await asyncio.sleep(0.01)
    assert sent == [("fimble/completionReady", {"uri": URI})]
    assert backend.warmed == [] and len(backend.requests) == 2  # the answer, then its rest: nothing else
    assert server.idle.warmed["finished"] == 1
    # Asked again (as the editor does on the notification): the whole, typed into.
    again = await server.inline_completion(inline(ROW, COLUMN + 2))
    assert [item.insert_text for item in again.items] == [BODY[2:]]


def test_a_whole_that_differs_from_the_early_answer_takes_its_place(service, fake_backend, monkeypatch):
    """Judged as a whole, the answer is not what was shown first (its first lines were cut
    differently): the whole is the place's answer, and the server offers it (completionReady)."""
    fake_backend.queue(BODY)
    early = service.complete(at())
    fake_backend.queue(BODY[len(early.text) + 1 :])
    monkeypatch.setattr(service, "_postprocess", lambda *args: ("return sum(items)", "eos"))
    whole = service.rest_of_answer(early.unfinished, threading.Event())
    assert whole is not None and whole.text == "return sum(items)"
    asked = len(fake_backend.requests)
    assert service.complete(at()).text == "return sum(items)" and len(fake_backend.requests) == asked


def test_an_answer_cut_by_the_time_budget_is_finished_too(fake_backend, qwen_info):
    fake_backend.delay_per_char = 0.01
    service = CompletionService(Settings(backend="fake", first_answer_ms=0, time_budget_ms=100),
                                backend=fake_backend, model_info=qwen_info)
    service.load()
    fake_backend.queue(BODY)
    cut = service.complete(at())  # a fragment of the first line, dropped: nothing shown yet
    assert cut.timings["stop_reason"] == StopReason.TIME_BUDGET and cut.unfinished is not None
    fake_backend.queue(BODY[cut.timings["generated_tokens"] :])  # (one character is one token here)
    whole = service.rest_of_answer(cut.unfinished, threading.Event())
    assert whole is not None and fake_backend.requests[-1].time_budget_s is None
    assert whole.text == BODY


# -- Tab on an answer given early, before its rest is decoded -----------------------------------

LONGER = "for item in items:\n        result += item\n    result *= 2\n    return result"


def test_a_request_goes_on_with_the_rest_and_answers_early_again(service, fake_backend):
    """The rest asked for by a request (`answer_after_s`): it answers once a usable line follows the
    lines shown, with the whole so far, and carries the answer on for the rest after that."""
    fake_backend.queue(LONGER)
    early = service.complete(at())
    assert early.text == "for item in items:\n        result += item"
    pending = early.unfinished
    assert pending is not None
    fake_backend.queue(LONGER[len(early.text) + 1 :])
    grown = service.rest_of_answer(pending, threading.Event(), answer_after_s=0.05)
    assert grown is not None and grown.reason == StopReason.EARLY and grown.unfinished is pending
    assert grown.text == "for item in items:\n        result += item\n    result *= 2"  # one usable line more
    assert pending.shown == grown.text and not pending.ended
    assert fake_backend.requests[-1].answer_after_s == 0.05
    fake_backend.queue(LONGER[len(pending.raw) :])
    whole = service.rest_of_answer(pending, threading.Event())
    assert whole is not None and whole.text == LONGER and whole.reason == StopReason.EOS and pending.ended


@pytest.mark.asyncio
async def test_tab_on_an_early_answer_shows_its_rest_next(server):
    """The user accepts the early answer whole at once (one edit inserts it): the request the
    editor sends at the end of it is answered with the rest of the same answer (no new question
    there, where a suggestion would only finish a finished line), its FINISH job taken over."""
    import asyncio

    server, backend, sent = server
    early_text = "for item in items:\n        result += item"
    backend.writes(BODY)  # (its FINISH job may have begun the rest when the request comes)
    early = await server.inline_completion(inline(ROW, COLUMN))
    assert [item.insert_text for item in early.items] == [early_text]
    type_text(server, 2, ROW, COLUMN, early_text)  # Tab
    assert server.documents.get(URI).session.accepted
    after = await server.inline_completion(inline(ROW + 1, len("        result += item")))
    assert [item.insert_text for item in after.items] == ["\n    return result"]
    record = server.history[-1]
    assert record["timings"]["continued"] is True and record["reason"] == StopReason.EOS, record
    # The rest's prompt is the answer's own, with the accepted lines: not a new place's question.
    first = backend.requests[0].prompt.render()
    assert backend.warmed == [] and all(r.prompt.render().startswith(first + early_text + "\n")
                                        for r in backend.requests[1:])
    assert backend.requests[-1].answer_after_s == 0.05  # the request's: it would answer early again
    for _ in range(300):
        if server.idle.follow_ups:
            break
        await asyncio.sleep(0.01)
    assert server.idle.follow_ups == {"finish:accepted": 1} and sent == []
    # The whole is the place's answer: asked at the first place again, from the cache.
    asked = len(backend.requests)
    assert server.service.complete(at()).text == BODY and len(backend.requests) == asked

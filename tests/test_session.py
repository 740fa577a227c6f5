"""The between-keystrokes policy (engine/session.py) on its own: no pygls, no model."""

from __future__ import annotations

from engine.reasons import Outcome
from engine.session import (
    AHEAD_QUIET_S,
    DOCUMENT_WARM_QUIET_S,
    WIDEN_QUIET_S,
    DocumentSession,
    IdleJob,
    JobKind,
    WarmOrder,
    idle_keys,
)

URI = "file:///a.py"


def test_a_newer_request_supersedes_the_older():
    session = DocumentSession(URI)
    first = session.new_request()
    assert not session.superseded(first)
    second = session.new_request()
    assert session.superseded(first) and not session.superseded(second)


def test_an_edit_asks_for_the_whole_window_after_a_pause_then_the_place():
    session = DocumentSession(URI)
    assert session.jobs_after_edit(warm=True, typed_through=False) == []  # no edit yet
    session.edited(10, "x")
    assert session.jobs_after_edit(warm=True, typed_through=False) == [
        IdleJob(JobKind.WIDEN, f"widen:{URI}", WIDEN_QUIET_S, resume=True),
        IdleJob(JobKind.WARM_PLACE, f"warm:{URI}")]
    # The place's warm-up evaluates the next request's prompt: a request stops it at once; the
    # whole window, evaluated a pause at a time, keeps each call it began.
    widen, place = session.jobs_after_edit(warm=True, typed_through=False)
    assert place.for_the_next_request and not widen.for_the_next_request
    assert session.jobs_after_edit(warm=False, typed_through=False) == []
    # Typed into the suggestion shown: the next request is answered from it; the model goes on.
    assert session.jobs_after_edit(warm=True, typed_through=True) == []


def test_a_line_that_may_end_a_docstring_asks_for_the_moment_one_enter_away():
    session = DocumentSession(URI)
    session.edited(40, '"')  # the closing quote typed: Enter comes next, at once
    assert session.jobs_after_edit(warm=True, typed_through=False, ends_docstring=True) == [
        IdleJob(JobKind.AHEAD, f"widen:{URI}", 0.0, resume=True), IdleJob(JobKind.WARM_PLACE, f"warm:{URI}")]
    session.edited(38, "a")  # typing in a docstring whose quotes were closed as they were opened: after a pause
    assert session.jobs_after_edit(warm=True, typed_through=False, ends_docstring=True)[0] == \
        IdleJob(JobKind.AHEAD, f"widen:{URI}", AHEAD_QUIET_S, resume=True)
    # The next edit's widening (every edit asks for one) replaces it: Enter, or anything else.
    session.edited(45, "\n    ")
    assert session.jobs_after_edit(warm=True, typed_through=False)[0].key == f"widen:{URI}"
    assert session.jobs_after_edit(warm=False, typed_through=False, ends_docstring=True) == []


def test_accepting_the_suggestion_asks_for_the_next_one_outright():
    session = DocumentSession(URI)
    assert session.answered(5, "return total\n", early=False)
    session.edited(18, "return total\n")  # the editor inserted the suggestion
    assert session.accepted
    jobs = session.jobs_after_edit(warm=True, typed_through=True)
    assert [job.kind for job in jobs] == [JobKind.WIDEN, JobKind.PRECOMPUTE]
    assert jobs[1].key == f"warm:{URI}" and jobs[1].counted_as == "precomputed"
    session.edited(6, "r")  # one character: typing, not accepting
    assert not session.accepted


def test_the_grown_whole_of_an_early_answer_is_not_a_new_suggestion():
    session = DocumentSession(URI)
    assert session.answered(5, "for x in xs:\n", early=True)
    assert session.early_at == 5
    assert not session.answered(5, "for x in xs:\n    total += x\n", early=False)  # the rest arrived
    assert session.early_at == -1 and session.last_shown == "for x in xs:\n    total += x\n"
    assert session.answered(5, "while True:\n", early=False)  # elsewhere or different: new
    session.answered(9, "", early=False)  # nothing shown: the last suggestion stays the last shown
    assert session.last_shown == "while True:\n"


def test_an_answer_given_early_or_from_a_short_window_asks_for_its_follow_up():
    session = DocumentSession(URI)
    assert session.follow_up(Outcome.SHOWN, unfinished=True, short_window=True) == IdleJob(
        JobKind.FINISH, f"follow:{URI}", 0.0, resume=True)
    refine = session.follow_up(Outcome.SHOWN, unfinished=False, short_window=True)
    assert refine == IdleJob(JobKind.REFINE, f"follow:{URI}", WIDEN_QUIET_S, resume=True)
    assert refine is not None and refine.counted_as == "refined"
    assert session.follow_up(Outcome.SHOWN, unfinished=False, short_window=False) is None
    assert session.follow_up(Outcome.CACHE, unfinished=True, short_window=True) is None
    assert session.follow_up(Outcome.CANCELLED, unfinished=True, short_window=True) is None


def test_a_document_just_opened_is_warmed_after_a_longer_pause_and_only_the_last_few():
    session = DocumentSession(URI)
    assert session.document_job(warm=True) == IdleJob(JobKind.DOCUMENT, f"document:{URI}", DOCUMENT_WARM_QUIET_S,
                                                       resume=True)
    assert session.document_job(warm=False) is None
    order = WarmOrder(keep=2)
    assert order.opened("a") == [] and order.opened("b") == []
    assert order.opened("a") == []  # reopened: newest again
    assert order.opened("c") == ["b"] and "b" not in order and "a" in order
    order.forget("a")
    assert order.opened("d") == []


def test_closing_a_document_drops_every_kind_of_idle_job():
    keys = idle_keys(URI)
    assert set(keys) == {f"warm:{URI}", f"widen:{URI}", f"follow:{URI}", f"document:{URI}"}
    session = DocumentSession(URI)
    session.edited(3, "abc")
    made = [*session.jobs_after_edit(True, False), session.follow_up(Outcome.SHOWN, True, False),
            session.document_job(True)]
    assert {job.key for job in made if job is not None} <= set(keys)


def test_the_session_answers_type_through_from_the_place_it_remembers():
    session = DocumentSession(URI)
    text = "total = \nprint(total)\n"
    session.remember(text, 8, "sum(values)")
    typed = "total = su\nprint(total)\n"
    assert session.typed_through(typed, 10) == "m(values)"
    assert session.typed_through(typed, 9) is None  # the cursor is not after what was typed
    assert session.typed_through("total = sx\nprint(total)\n", 10) is None  # typed something else
    assert session.typed_through("total = sum(values\nprint(total)\n", 18) == ")"
    session.remember(text, 8, "sum(values)  ")
    assert session.typed_through("total = sum(values)\nprint(total)\n", 19) is None  # only whitespace is left
    session.remember(typed, 10, "")  # an empty answer there: nothing to type through any more
    assert session.typed_through(typed, 10) is None


def test_an_early_answer_accepted_to_its_end_is_continued_not_asked_anew():
    from engine.request import Unfinished

    session = DocumentSession(URI)
    text = "def f(xs):\n    \n\nprint(f([1]))\n"
    shown = "for x in xs:\n        print(x)"
    pending = Unfinished(None, shown + "\n", 9, None, None, "multi", "key", text, 15, {}, shown, 128)  # type: ignore[arg-type]
    session.unfinished = pending
    accepted = text[:15] + shown + text[15:]
    assert session.continuation(accepted, 15 + len(shown)) is pending
    assert session.continuation(accepted, 15 + len(shown) - 1) is None  # the cursor is not at its end
    assert session.continuation(text[:15] + shown[:-1] + text[15:], 15 + len(shown) - 1) is None  # a start of it
    assert session.continuation(accepted.replace("print(f", "print(g"), 15 + len(shown)) is None  # else edited
    session.answered(15, shown, early=True)
    session.edited(15 + len(shown), shown)
    assert session.accepted and session.jobs_after_edit(True, True, continues=True) == []  # its FINISH goes on
    pending.ended = True
    assert session.continuation(accepted, 15 + len(shown)) is None  # the rest is known: type-through


def test_everything_kept_for_a_document_is_in_its_session(fake_backend, qwen_info):
    """Answered in the language server (in process, the fake backend): the suggestion, the
    prompt's anchor and context are the session's; the service keeps nothing per document."""
    import asyncio

    from lsprotocol import types

    from engine.config import Settings
    from engine.service import CompletionService
    from lsp_server.server import FimbleServer

    server = FimbleServer()
    server.settings = Settings(backend="fake", first_answer_ms=0, new_place_ms=0, warm=False, debounce_ms=0)
    server.service = CompletionService(server.settings, backend=fake_backend, model_info=qwen_info)
    server.service.load()
    server.load_state = "ready"
    text = "def total(values):\n    return \n"
    assert server.documents.open(URI, "python", 1, text) is not None
    fake_backend.queue("sum(values)\n")
    params = types.InlineCompletionParams(
        text_document=types.TextDocumentIdentifier(uri=URI), position=types.Position(1, 11),
        context=types.InlineCompletionContext(trigger_kind=types.InlineCompletionTriggerKind.Automatic))
    try:
        answer = asyncio.run(server.inline_completion(params))
        assert [item.insert_text for item in answer.items] == ["sum(values)"]
        session = server.documents.get(URI).session
        assert session.prompts.kept and session.prompts.anchor is not None
        assert session.suggestion is not None and session.suggestion.text == "sum(values)"
        assert server.service.memory_for("/other.py").anchor is None  # (the service's own, for callers without one)
        assert server.status()["cache"]["documentsKept"] == 1
        server.documents.close(URI)
        server.idle.closed(URI)
        assert server.status()["cache"]["documentsKept"] == 0
    finally:
        server.worker.stop()

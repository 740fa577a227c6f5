"""CompletionService with the fake backend: what reaches the backend and what comes back."""

import threading

from engine.service import CompletionRequest

SOURCE = "def add(a, b):\n    return \n\nprint(add(1, 2))\n"


def test_mid_line_cursor_asks_for_one_line(fake_service, fake_backend):
    fake_backend.queue("a + b\nprint('junk')")
    text = "x = foo()\n"
    result = fake_service.complete(CompletionRequest(text, 0, 4, language="python"))
    assert fake_backend.requests[0].stop == ["\n"]
    assert result.text == "a + b"


def test_fim_prompt_splits_at_the_cursor(fake_service, fake_backend):
    fake_backend.queue("a + b")
    result = fake_service.complete(CompletionRequest(SOURCE, 1, 11, language="python"))
    rendered = fake_backend.requests[0].prompt.render()
    # The prefix ends at the start of the cursor's line; the line so far opens the middle.
    assert rendered == ("<|fim_prefix|>def add(a, b):\n<|fim_suffix|>\n\nprint(add(1, 2))\n"
                        "<|fim_middle|>    return ")
    assert result.as_dict() == {
        "text": "a + b",
        "range": {"start": {"line": 1, "character": 11}, "end": {"line": 1, "character": 11}},
        "reason": "eos",
        "timings": result.timings,
    }


def test_whitespace_only_output_is_no_completion(fake_service, fake_backend):
    fake_backend.queue("   \n  ")
    result = fake_service.complete(CompletionRequest(SOURCE, 1, 11))
    assert (result.text, result.reason) == ("", "empty")


def test_cancelled_request_returns_nothing(fake_service, fake_backend):
    fake_backend.queue("a + b")
    cancel = threading.Event()
    cancel.set()
    result = fake_service.complete(CompletionRequest(SOURCE, 1, 11, cancel=cancel))
    assert (result.text, result.reason) == ("", "cancelled")


def test_budget_options_reach_the_backend(fake_service, fake_backend):
    fake_service.settings = fake_service.settings.replace(max_tokens=7, time_budget_ms=900, temperature=0.3)
    fake_backend.queue("x")
    fake_service.complete(CompletionRequest(SOURCE, 1, 11))
    request = fake_backend.requests[0]
    assert (request.max_tokens, request.time_budget_s, request.temperature) == (7, 0.9, 0.3)


def test_explain_streams_through_the_chat_prompt(fake_service, fake_backend):
    fake_backend.queue("`add` returns the sum.")
    pieces = []
    answer = fake_service.explain("def add(a, b):\n    return a + b", "python", on_text=pieces.append)
    assert answer == "`add` returns the sum." == "".join(pieces)
    assert fake_backend.requests[0].prompt.kind == "chat"
    assert "```python\ndef add(a, b):" in fake_backend.requests[0].prompt.render()


def test_typing_on_keeps_the_prompt_start_and_only_appends(fake_service, fake_backend):
    fake_backend.queue("a", "b", "c")
    text = "def add(a, b):\n    return \n\nprint(add(1, 2))\n"
    fake_service.complete(CompletionRequest(text, 1, 11, path="m.py"))
    typed = text.replace("return \n", "return a +\n    x = 1\n")
    fake_service.complete(CompletionRequest(typed, 2, 9, path="m.py"))
    first, second = (r.prompt.render() for r in fake_backend.requests)
    assert second.startswith(first) and second.endswith("    return a +\n    x = 1")
    moved = typed.replace("print(add(1, 2))", "print(add(3, 4))")  # the text after the cursor changed
    fake_service.complete(CompletionRequest(moved, 2, 9, path="m.py"))
    assert not fake_backend.requests[2].prompt.render().startswith(first)


def test_an_answer_cut_by_max_tokens_keeps_its_finished_lines(fake_service, fake_backend):
    fake_service.settings = fake_service.settings.replace(max_tokens=30)
    fake_backend.queue("total = 0\n    for x in xs:\n        total += x\n")
    result = fake_service.complete(CompletionRequest("def f(xs):\n    \n", 1, 4, language="python"))
    assert result.timings["stop_reason"] == "max_tokens"
    assert result.text == "total = 0"  # "for x in xs:" is finished but has no body: the compiler cuts it

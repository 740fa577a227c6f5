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


# -- the prompt for a place (engine/anchor.py) through the service --------------------------------

HELPERS = "def scale(values, factor):\n    return [v * factor for v in values]\n\n\ndef unused():\n    pass\n"


def _other(path: str, text: str):
    from engine.context import OpenDocument
    from engine.syntax import SyntaxTree

    return OpenDocument(path, SyntaxTree(text, "python"))


def test_other_documents_go_first_in_the_repository_format(fake_service, fake_backend):
    fake_backend.queue("x", "y")
    text = "from helpers import scale\n\nresult = scale(\n"
    others = [_other("/w/helpers.py", HELPERS)]
    result = fake_service.complete(CompletionRequest(text, 2, 15, language="python", path="/w/main.py",
                                                     others=others))
    rendered = fake_backend.requests[0].prompt.render()
    assert rendered.startswith("<|repo_name|>fimble\n<|file_sep|>/w/helpers.py\ndef scale(values, factor):\n"
                               "    return [v * factor for v in values]\n<|file_sep|>/w/main.py\n<|fim_prefix|>")
    assert "def unused" not in rendered  # only definitions of names near the cursor
    assert result.timings["snippets"] == 1
    # Another place in the same file: the same context opens the prompt (kept per document).
    fake_service.complete(CompletionRequest(text, 0, 5, language="python", path="/w/main.py", others=others))
    head = rendered[: rendered.index("<|fim_prefix|>")]
    assert fake_backend.requests[1].prompt.render().startswith(head)


def test_an_anchor_is_dropped_when_its_options_change(fake_service, fake_backend):
    fake_backend.queue("a", "b", "c")
    text = "def add(a, b):\n    return \n\nprint(add(1, 2))\n"
    typed = text.replace("return \n", "return a\n")
    fake_service.complete(CompletionRequest(text, 1, 11, path="m.py"))
    fake_service.complete(CompletionRequest(typed, 1, 12, path="m.py"))
    anchor = fake_service.memory_for("m.py").anchor
    assert fake_backend.requests[1].prompt.render().endswith("    return a")  # typed on from the same anchor
    fake_service.settings = fake_service.settings.replace(context_tokens=512)
    fake_service.complete(CompletionRequest(typed.replace("return a\n", "return a \n"), 1, 13, path="m.py"))
    renewed = fake_service.memory_for("m.py").anchor
    assert renewed is not anchor and renewed.settings_key[0] == 512 and anchor.settings_key[0] != 512


def test_a_request_uses_one_settings_object_even_when_they_are_replaced_meanwhile(fake_service, fake_backend):
    """The event loop replaces `settings` while the worker completes: the request keeps the ones
    it started with (here the swap happens while its prompt is being built)."""
    fake_backend.queue("a + b")
    old = fake_service.settings.replace(max_tokens=11)
    fake_service.settings = old
    counting = fake_backend.count_tokens

    def swap_then_count(text: str) -> int:
        fake_service.settings = old.replace(max_tokens=99, context_tokens=256)
        return counting(text)

    fake_backend.count_tokens = swap_then_count  # type: ignore[method-assign]
    fake_service.complete(CompletionRequest(SOURCE, 1, 11, path="m.py"))
    assert fake_backend.requests[0].max_tokens == 11
    assert fake_service.memory_for("m.py").anchor.settings_key[0] == old.context_tokens
    assert fake_service.settings.max_tokens == 99  # the new ones are there for the next request


def test_a_line_longer_than_the_context_still_gets_an_answer(fake_service, fake_backend):
    """A 400 KB line (data, minified code): the prompt holds the part of it nearest the cursor, in
    the budget, instead of the whole line (which failed every request with "lower contextTokens")."""
    line = "data = [" + ", ".join(str(i) for i in range(60_000)) + "]"
    text = "import os\n" + line + "\nprint(len(data))\n"
    fake_backend.queue("30158")
    result = fake_service.complete(CompletionRequest(text, 1, 200_000, language="python"))
    prompt = fake_backend.requests[0].prompt.render()
    assert len(prompt) < 16 * fake_service.settings.context_tokens
    assert line[:200_000].endswith(prompt[prompt.index("<|fim_middle|>") + len("<|fim_middle|>"):])
    assert result.text == "30158"

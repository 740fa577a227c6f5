"""The docstring moment (engine/instruct.py): an empty body under a new function's docstring is
asked for with the model's chat template, the answer begun down to the docstring; everywhere else
fill-in-the-middle. Detection is by syntax; the answer goes through the same postprocessing."""

from __future__ import annotations

import threading

import pytest

from engine.config import Settings
from engine.instruct import (
    FENCE,
    HEAD_STOPS,
    HEAD_TOKENS,
    INSTRUCTION,
    MIN_BODY_TOKENS,
    HeadImports,
    docstring_moment,
    enter_after_docstring,
    imported_names,
    instruct_prompt,
    own_head,
)
from engine.service import CompletionRequest, CompletionService
from engine.syntax import SyntaxTree

HEAD = 'import math\n\n\ndef area(r):\n    """Return the area of a circle of radius r."""\n'
BELOW = "\n\nif __name__ == '__main__':\n    print(area(2))\n"


def moment(text: str, offset: int | None = None, language: str = "python"):
    offset = text.index("|") if offset is None else offset
    text = text.replace("|", "")
    return docstring_moment(SyntaxTree(text, language), offset)


def test_an_empty_body_under_a_docstring_is_the_moment():
    found = moment(HEAD + "    |" + BELOW)
    assert found is not None and found.name == "area"
    assert found.header == 'def area(r):\n    """Return the area of a circle of radius r."""\n'
    assert found.imports == "import math" and found.statement_start == HEAD.index("def area")
    # A method: the header as it stands, indented; the cursor's line may be empty (column 0 is not the body).
    method = 'class Shape:\n    def area(self):\n        """The area."""\n        |\n'
    assert moment(method).header == '    def area(self):\n        """The area."""\n'
    assert moment(HEAD + "|" + BELOW) is None


def test_the_moment_one_enter_away_is_where_a_line_ends_a_docstring_over_an_empty_body():
    docstring_line = HEAD.index('    """')
    for cursor in (len(HEAD) - 1, len(HEAD) - 4, docstring_line + 8):  # after the quotes, before them, in the text
        text = HEAD + BELOW
        ahead = enter_after_docstring(SyntaxTree(text, "python"), cursor)
        assert ahead is not None
        tree, place = ahead
        # The text with Enter pressed at the line's end, auto-indented; the same question as there.
        assert tree.text == HEAD + "    \n" + BELOW and place == len(HEAD) + 4
        assert docstring_moment(tree, place) == moment(HEAD + "    |\n" + BELOW)
    closing = 'def area(r):\n    """The area.\n\n    Of a circle.\n    """  \n'
    ahead = enter_after_docstring(SyntaxTree(closing + BELOW, "python"), len(closing) - 2)
    assert ahead is not None and ahead[0].text == closing[:-3] + "\n      \n" + BELOW  # (trailing blanks move down)
    for text, cursor in ((HEAD + "    return 1\n", len(HEAD) - 1),  # the body has code
                         (HEAD + BELOW, HEAD.index("def area") + 5),  # not the docstring's line
                         ('x = """text"""\n', 5), ("def f():\n    'doc'\n", 4)):
        assert enter_after_docstring(SyntaxTree(text, "python"), cursor) is None, text
    assert enter_after_docstring(SyntaxTree("def f():\n    'doc'\n", "python"), 18) is not None
    assert enter_after_docstring(SyntaxTree(HEAD, "javascript"), len(HEAD) - 1) is None


@pytest.mark.parametrize("text", [
    HEAD + "    |\n    return math.pi * r * r\n",  # code below in the same block: fill in the middle
    HEAD + "    total = 1\n    |\n",  # a body half written
    HEAD + "    ret|\n",  # the line is being typed
    "def area(r):\n    |\n",  # no docstring
    "def area(r):\n    # the area\n    |\n",  # a comment alone is no docstring (and no valid body)
    'x = 1\n"""Not a function."""\n|\n',
])
def test_fill_in_the_middle_everywhere_else(text):
    assert moment(text) is None


def test_other_languages_are_left_to_fill_in_the_middle():
    assert moment("/** Area. */\nfunction area(r) {\n  |\n}\n", language="javascript") is None


def test_the_prompt_asks_for_the_function_and_begins_its_answer(qwen_info):
    qwen_info = qwen_info.__class__(**{**qwen_info.__dict__, "chat_template": None})
    found = moment(HEAD + "    |" + BELOW)
    prompt = instruct_prompt(found, qwen_info, "import math\n\n\n")
    rendered = prompt.render()
    assert INSTRUCTION in rendered and "print(area(2))" not in rendered  # the calls below stay out
    assert rendered.endswith(f"<|im_start|>assistant\n{FENCE}python\nimport math\n\n\n{found.header}")
    assert "import math\n\ndef area(r):" in rendered
    # Without a head, the answer is begun with the fence alone: the model writes its head.
    assert instruct_prompt(found, qwen_info).render().endswith(f"<|im_start|>assistant\n{FENCE}python\n")
    # The template's text up to the code and the instruction are parts of their own, the same
    # for every function: the backend keeps their state (Prompt.shared_parts).
    other = instruct_prompt(moment("def f(x):\n    \"\"\"Twice x.\"\"\"\n    |\n"), qwen_info, "")
    shared = prompt.parts[: prompt.shared_parts]
    assert prompt.shared_parts == other.shared_parts > 0 and shared == other.parts[: other.shared_parts]
    assert "".join(p.text for p in shared).endswith(f"{INSTRUCTION}\n\n{FENCE}python\n")
    assert "def area" not in "".join(p.text for p in shared) and "def area" in prompt.parts[prompt.shared_parts].text


def test_the_head_is_the_models_own_lines_above_the_function():
    assert own_head("from typing import *\nfrom collections import *\n\n", True) == \
        "from typing import *\nfrom collections import *\n\n"
    # Anything but imports: the import lines alone; cut short: the same.
    assert own_head("import math\nPI = 3.14\n\n", True) == "import math\n\n\n"
    assert own_head("import math\nfrom itertools import", False) == "import math\n\n\n"
    assert own_head("Here is the function:\n", True) == ""


def test_imported_names():
    assert imported_names("from math import sqrt, ceil as c") == ["sqrt", "c"]
    assert imported_names("import os.path, re") == ["os", "re"]
    assert imported_names("from collections import *") == []  # a function body may not hold it
    assert imported_names("from typing import (List, Tuple)") == ["List", "Tuple"]
    assert imported_names("x = 1") == []


def test_an_import_of_the_head_that_the_answer_uses_goes_to_its_top():
    head = "import math\nfrom math import sqrt, floor\nfrom typing import *\n\n"
    heal = HeadImports.of(head, file_text=HEAD + "    ", indentation="    ")
    # `math` is imported by the file already; `sqrt` is used and missing; `floor` unused.
    assert heal.inserted("    return sqrt(r) * math.pi") == "from math import sqrt, floor\n    return sqrt(r) * math.pi"
    assert heal.inserted("    return math.pi * r") == "return math.pi * r"
    assert heal.inserted("") == ""
    # A name the file only mentions (in a docstring) is not bound there: its import comes along.
    mentioned = HeadImports.of("from math import sqrt\n", 'def root(x):\n    """The sqrt of x."""\n    ', "    ")
    assert mentioned.inserted("    return sqrt(x)") == "from math import sqrt\n    return sqrt(x)"
    # Bound by the file: defined, assigned, imported under another line.
    for binding in ("def sqrt(x):\n", "sqrt = lambda x: x\n", "from cmath import sqrt\n", "    sqrt: object = 1\n"):
        assert HeadImports.of("from math import sqrt\n", binding, "    ").imports == (), binding


@pytest.fixture()
def service(fake_backend, qwen_info) -> CompletionService:
    from engine.prompt import _FALLBACK_CHAT_TEMPLATE

    info = qwen_info.__class__(**{**qwen_info.__dict__, "chat_template": _FALLBACK_CHAT_TEMPLATE})
    service = CompletionService(Settings(backend="fake", time_budget_ms=0), backend=fake_backend, model_info=info)
    service.load()
    return service


def test_the_service_answers_the_moment_through_the_chat_template(service, fake_backend):
    text = HEAD + "    " + BELOW
    row = text[: len(HEAD)].count("\n")
    # The model writes its lines above the function; then, below them and the header, the body at
    # its indentation, and closes the fence and goes on.
    fake_backend.queue("import math\n\n\ndef area(", "    return math.pi * r ** 2\n```\n\nThis computes the area.")
    result = service.complete(CompletionRequest(text, row, 4, language="python", path="/w/a.py"))
    head, request = fake_backend.requests[-2:]
    assert head.prompt.render().endswith(f"{FENCE}python\n") and set(HEAD_STOPS) <= set(head.stop)
    assert request.prompt.kind == "instruct" and FENCE in request.stop
    assert request.prompt.render().endswith(f"{FENCE}python\n{HEAD}")  # the head, then the header
    assert request.max_tokens == MIN_BODY_TOKENS  # a whole body, more than maxTokens' default
    assert result.text == "return math.pi * r ** 2" and result.timings["window"] == "instruct"
    # The head is asked once for the question: the next request at the moment asks for the body alone.
    fake_backend.queue("    return math.pi * r * r\n```")
    result = service.complete(CompletionRequest(text, row, 4, language="python", path="/w/a.py", use_cache=False))
    assert len(fake_backend.requests) == 3 and result.text == "return math.pi * r * r"

    service.settings = service.settings.replace(docstring_prompt="fim")
    fake_backend.queue("return math.pi * r * r")
    result = service.complete(CompletionRequest(text, row, 4, language="python", path="/w/a.py"))
    assert fake_backend.requests[-1].prompt.kind == "fim" and result.text == "return math.pi * r * r"


def test_an_answer_that_leaves_the_function_is_cut_where_it_leaves(service, fake_backend):
    text = HEAD + "    " + BELOW
    row = text[: len(HEAD)].count("\n")
    fake_backend.queue("import math\n\n\n", "    return math.pi * r ** 2\n\n\nprint(area(3))\n")
    result = service.complete(CompletionRequest(text, row, 4, language="python", path="/w/a.py"))
    assert result.text == "return math.pi * r ** 2"


def test_an_import_of_its_own_comes_with_the_body(service, fake_backend):
    text = HEAD + "    " + BELOW
    row = text[: len(HEAD)].count("\n")
    fake_backend.queue("from math import sqrt\n\ndef area(r):", "    return sqrt(r) ** 2 * math.pi\n```")
    result = service.complete(CompletionRequest(text, row, 4, language="python", path="/w/a.py"))
    header = HEAD[len("import math\n\n\n"):]
    assert fake_backend.requests[-1].prompt.render().endswith(f"{FENCE}python\nfrom math import sqrt\n\n{header}")
    assert result.text == "from math import sqrt\n    return sqrt(r) ** 2 * math.pi"


def test_the_head_written_last_under_the_same_imports_is_drafted(service, fake_backend):
    """The model writes much the same lines above a function under the same imports: the head
    it wrote last under them, then the definition's `def`, is the answer expected at the next
    moment in any document (drafted, engine/backends/lookup.py); before any, the imports."""
    text = HEAD + "    " + BELOW
    row = text[: len(HEAD)].count("\n")
    fake_backend.queue("import math\n\n\ndef area(", "    return math.pi * r ** 2\n```")
    service.complete(CompletionRequest(text, row, 4, language="python", path="/w/a.py"))
    assert fake_backend.requests[0].expected == "import math\n\ndef"  # (nothing written yet)
    other = text.replace("area", "volume")
    fake_backend.queue("import math\nimport sys\n\n\ndef volume(", "    return r ** 3\n```")
    service.complete(CompletionRequest(other, row, 4, language="python", path="/w/b.py"))
    assert fake_backend.requests[2].expected == "import math\n\n\ndef"
    fake_backend.queue("import math\n\n\ndef cube(", "    return r ** 3\n```")
    service.complete(CompletionRequest(text.replace("area", "cube"), row, 4, language="python", path="/w/c.py"))
    assert fake_backend.requests[4].expected == "import math\nimport sys\n\n\ndef"
    # Other imports: their own guess.
    bare = text.replace("import math\n\n\n", "")
    fake_backend.queue("def area(", "    return 3.14 * r ** 2\n```")
    service.complete(CompletionRequest(bare, row - 3, 4, language="python", path="/w/d.py"))
    assert fake_backend.requests[6].expected == "def"


def test_a_sampled_head_is_asked_each_time(service, fake_backend):
    """Greedy, the head is the same for a question: kept. Sampled, each answer samples its own
    (samples of one task in `fimble eval` stay independent)."""
    service.settings = service.settings.replace(temperature=0.8)
    text = HEAD + "    " + BELOW
    row = text[: len(HEAD)].count("\n")
    for body in ("    return 1\n```", "    return 2\n```"):
        fake_backend.queue("import math\n\n\ndef area(", body)
        service.complete(CompletionRequest(text, row, 4, language="python", path="/w/a.py", use_cache=False))
    assert [r.max_tokens for r in fake_backend.requests] == [HEAD_TOKENS, MIN_BODY_TOKENS] * 2


def test_the_places_warm_up_at_the_moment_evaluates_the_question_the_request_asks(service, fake_backend):
    """Enter after a docstring: the place's warm-up (idle work) asks the head and evaluates the
    body's prompt below it, not a fill-in-the-middle prompt the request would throw away. The
    request then asks the model for the body alone, with the prompt the warm-up evaluated."""
    text = HEAD + "    " + BELOW
    row = text[: len(HEAD)].count("\n")
    fake_backend.queue("import math\n\n\ndef area(", "    return math.pi * r ** 2\n```")
    service.warm(CompletionRequest(text, row, 4, language="python", path="/w/a.py", interactive=True))
    assert len(fake_backend.requests) == 1 and fake_backend.requests[0].max_tokens == HEAD_TOKENS
    assert fake_backend.warmed[-1].endswith(f"{FENCE}python\n{HEAD}")
    result = service.complete(CompletionRequest(text, row, 4, language="python", path="/w/a.py", interactive=True))
    assert len(fake_backend.requests) == 2 and fake_backend.requests[-1].prompt.render() == fake_backend.warmed[-1]
    assert result.text == "return math.pi * r ** 2" and result.timings["head"] == "import math\n\n\n"
    # Cancelled while the model writes its head: nothing is evaluated, and the head is asked again.
    cancelled = threading.Event()
    cancelled.set()
    other = HEAD.replace("area(r)", "area2(r)") + "    " + BELOW
    fake_backend.queue("import math\n\n\ndef area2(")
    assert service.warm(CompletionRequest(other, row, 4, language="python", path="/w/a.py", cancel=cancelled)) is None
    assert len(fake_backend.warmed) == 1


@pytest.mark.asyncio
async def test_the_server_asks_the_moments_question_before_enter_is_pressed(qwen_info):
    """The user closes a docstring over an empty body (the editor asks for a suggestion there),
    pauses, and presses Enter: during the pause the server asked the model's head and evaluated
    the body's prompt, so the request after Enter asks the model for the body alone, with that
    prompt. In process, the fake backend; the real model's run is benchmarks/bench_holes_lsp.py
    --enter-after."""
    import asyncio

    from lsprotocol import types

    from engine.backends.fake import FakeBackend
    from engine.prompt import _FALLBACK_CHAT_TEMPLATE
    from lsp_server.server import FimbleServer

    uri = "file:///w/shapes.py"
    server = FimbleServer()
    server.settings = server.settings.replace(backend="fake", first_answer_ms=0)
    backend = FakeBackend()
    info = qwen_info.__class__(**{**qwen_info.__dict__, "chat_template": _FALLBACK_CHAT_TEMPLATE})
    server.service = CompletionService(server.settings, backend=backend, model_info=info)
    server.service.load()
    server.load_state = "ready"
    server.protocol.notify = lambda method, params=None: None  # type: ignore[method-assign]
    row = HEAD.count("\n") - 1  # the docstring's line
    column = len(HEAD.split("\n")[row])
    try:
        server.documents.open(uri, "python", 1, HEAD[:-2] + "\n" + BELOW)  # the last quote not yet typed

        def edit(version: int, line: int, character: int, text: str) -> None:
            at = types.Position(line, character)
            server.documents.change(uri, version, [types.TextDocumentContentChangePartial(
                range=types.Range(at, at), text=text)], server.encoding)
            server.idle.after_edit(uri)

        def inline(line: int, character: int) -> types.InlineCompletionParams:
            return types.InlineCompletionParams(
                text_document=types.TextDocumentIdentifier(uri=uri), position=types.Position(line, character),
                context=types.InlineCompletionContext(trigger_kind=types.InlineCompletionTriggerKind.Automatic))

        # What the model writes, by what is asked: the idle work for the moment one Enter ahead and
        # the request at the docstring's line run on the worker in either order.
        generate = backend.generate

        def written(request, on_text=None):
            kind = "fim" if request.prompt.kind == "fim" else "head" if request.max_tokens == HEAD_TOKENS else "body"
            backend.queue({"fim": "", "head": "import math\n\n\ndef area(",
                           "body": "    return math.pi * r ** 2\n```"}[kind])
            result = generate(request, on_text)
            if kind == "head" and result.stats.stop_reason != "cancelled":  # (the request can preempt it)
                heads.append(request)
            return result

        heads: list = []  # the head's requests answered (whatever idle work ran around them)
        backend.generate = written  # type: ignore[method-assign]
        edit(2, row, column - 1, '"')
        assert (await server.inline_completion(inline(row, column))).items == []  # (fill-in-the-middle there)
        for _ in range(3000):  # (up to 30 s: the idle job runs on the worker thread of a busy machine)
            if server.idle.warmed.get("ahead"):
                break
            await asyncio.sleep(0.01)
        assert server.idle.warmed.get("ahead") == 1
        body_prompt = backend.warmed[-1]
        assert len(heads) == 1 and body_prompt.endswith(f"{FENCE}python\n{HEAD}")
        edit(3, row, column, "\n    ")  # Enter, auto-indented
        answer = await server.inline_completion(inline(row + 1, 4))
        assert [item.insert_text for item in answer.items] == ["return math.pi * r ** 2"]
        assert backend.requests[-1].prompt.render() == body_prompt  # the head was not asked again
        assert len(heads) == 1
    finally:
        server.worker.stop()

"""Fast at a new place, over a real LSP client on a fresh server: a document just opened is warmed
while the server is idle, a new place in it reuses that work, and after the user accepts a
suggestion the next one is computed before it is asked for."""

from __future__ import annotations

import ast
import asyncio
import sysconfig
from pathlib import Path

import pytest
from lsprotocol import types
from pytest_lsp import LanguageClient
from test_lsp_e2e import URI as E2E_URI
from test_lsp_e2e import client, inline_params, status

pytestmark = pytest.mark.model
__all__ = ["client"]  # the fixture: a server of this module's own

SOURCE = "\n".join((Path(sysconfig.get_paths()["stdlib"]) / "textwrap.py").read_text().split("\n")[:200]) + "\n"
URI = "file:///work/example/textwrap_head.py"


async def until(client: LanguageClient, check, what: str, seconds: float = 240.0, uri: str = URI) -> dict:
    for _ in range(int(seconds * 5)):
        current = await status(client, uri)
        if check(current):
            return current
        await asyncio.sleep(0.2)
    raise AssertionError(f"waited {seconds} s for {what}: {current['cache']}")


def request(row: int, column: int, token: str, uri: str = URI) -> types.InlineCompletionParams:
    params = inline_params(row, column, uri)
    params.work_done_token = token  # names the request in fimble/status
    return params


def edit(client: LanguageClient, version: int, line: int, start: int, end: int, text: str, uri: str = URI) -> None:
    client.text_document_did_change(types.DidChangeTextDocumentParams(
        text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=version),
        content_changes=[types.TextDocumentContentChangePartial(
            range=types.Range(types.Position(line, start), types.Position(line, end)), text=text)]))


@pytest.mark.asyncio(loop_scope="module")
async def test_an_opened_document_is_warmed_and_a_new_place_reuses_it(client: LanguageClient):
    client.text_document_did_open(types.DidOpenTextDocumentParams(
        text_document=types.TextDocumentItem(uri=URI, language_id="python", version=1, text=SOURCE)))
    await until(client, lambda s: "document:textwrap_head.py" in s["cache"]["kv"].get("labels", []),
                "the document's warm-up")
    moved_before = (await status(client, URI))["cache"]["kv"]["moved"]
    row = 188  # `        patsearch = self.sentence_end_re.search`: jump there, cut it, type "pa"
    line = SOURCE.split("\n")[row]
    edit(client, 2, row, 8, len(line), "")
    edit(client, 3, row, 8, 8, "pa")
    result = await client.text_document_inline_completion_async(
        request(row, 10, "new-place"))
    current = await status(client, URI)
    record = next(r for r in current["requests"] if r.get("token") == "new-place")
    timings = record["timings"]
    # The window came from the warmed document, its cells moved into place — by this request, or
    # by the warm-up of the place that the edits started before it (finished, or preempted by this
    # request after its move: then only the cache's count of moved tokens shows it).
    assert timings["prompt_tokens_reused"] >= 0.85 * timings["prompt_tokens"], timings
    moved = current["cache"]["kv"]["moved"] - moved_before
    assert moved >= timings["prompt_tokens_moved"] and moved > 500, (moved, timings)
    assert result.items and record["outcome"] == "shown", record

    # The user accepts it (the editor inserts the text): the server computes the suggestion for
    # the place after it while idle, and the request that follows is answered from that.
    suggestion = result.items[0].insert_text
    assert "\n" not in suggestion
    edit(client, 4, row, 10, 10, suggestion)
    before = current["cache"]["warmed"].get("precomputed", 0)
    await until(client, lambda s: s["cache"]["warmed"].get("precomputed", 0) > before, "the precomputed suggestion")
    column = 10 + len(suggestion)
    await client.text_document_inline_completion_async(
request(row, column, "after"))
    after = next(r for r in (await status(client, URI))["requests"] if r.get("token") == "after")
    assert after["outcome"] in ("cache", "empty"), after  # from the precomputed answer, not the model
    assert "prompt_tokens" not in after.get("timings", {}), after


CALENDAR = (Path(sysconfig.get_paths()["stdlib"]) / "calendar.py").read_text()
CALENDAR_URI = "file:///work/example/calendar_copy.py"


@pytest.mark.asyncio(loop_scope="module")
async def test_a_place_in_a_file_just_opened_answers_from_a_short_window_then_the_whole(client: LanguageClient):
    """Right after opening a long file nothing of it is evaluated: the first answer at a place
    comes from a window cut to what evaluates in newPlaceMs, and once the user pauses the whole
    window's answer is computed while idle (FimbleServer.follow_up: refine) and its window used
    from then on (engine/anchor.py ShortWindow)."""
    client.text_document_did_open(types.DidOpenTextDocumentParams(
        text_document=types.TextDocumentItem(uri=CALENDAR_URI, language_id="python", version=1, text=CALENDAR)))
    lines = CALENDAR.split("\n")
    row = next(i for i, line in enumerate(lines) if line.strip().startswith("return ' '.join(self.formatweekday"))
    edit(client, 2, row, 8, len(lines[row]), "", CALENDAR_URI)  # jump there, cut the line, type "ret"
    edit(client, 3, row, 8, 8, "ret", CALENDAR_URI)
    await client.text_document_inline_completion_async(request(row, 11, "cold", CALENDAR_URI))
    current = await status(client, CALENDAR_URI)
    cold = next(r for r in current["requests"] if r.get("token") == "cold")
    assert cold.get("timings", {}).get("window") == "short", cold
    assert cold["timings"]["prompt_tokens"] < 400, cold  # the whole window is about 700 tokens here
    assert cold["timings"]["queued_ms"] >= 0, cold  # how long it waited for the document's warm-up to yield
    before = current["cache"]["warmed"].get("refined", 0)

    await until(client, lambda s: s["cache"]["warmed"].get("refined", 0) > before, "the whole window's answer",
                uri=CALENDAR_URI)
    edit(client, 4, row, 8, 11, "s = ", CALENDAR_URI)  # the user changes their mind: not typed through
    await client.text_document_inline_completion_async(request(row, 12, "whole", CALENDAR_URI))
    whole = next(r for r in (await status(client, CALENDAR_URI))["requests"] if r.get("token") == "whole")
    timings = whole["timings"]
    assert timings["window"] == "whole" and timings["prompt_tokens"] > 2 * cold["timings"]["prompt_tokens"], whole
    assert timings["prompt_tokens_evaluated"] < 64, whole  # evaluated while the user paused


PRIMES = ('def primes_below(n):\n'
          '    """Return the list of primes below n, by trial division."""\n'
          '    \n\nprint(primes_below(50))\n')
PRIMES_URI = "file:///work/example/primes.py"


@pytest.mark.asyncio(loop_scope="module")
async def test_a_long_answer_comes_early_then_whole(client: LanguageClient):
    """A body several lines long: the editor is given its first usable lines (`reason: early`),
    the server decodes the rest while idle and says so (fimble/completionReady); asked again at
    the same place, the whole comes from the cache and is counted as the one suggestion shown."""
    for uri in (URI, CALENDAR_URI, E2E_URI):  # their text would be in the prompt: not this test
        client.text_document_did_close(types.DidCloseTextDocumentParams(types.TextDocumentIdentifier(uri)))
    client.text_document_did_open(types.DidOpenTextDocumentParams(
        text_document=types.TextDocumentItem(uri=PRIMES_URI, language_id="python", version=1, text=PRIMES)))
    shown_before = (await status(client))["acceptance"].get("python", {}).get("shown", 0)
    ready = asyncio.ensure_future(client.wait_for_notification("fimble/completionReady"))
    first = await client.text_document_inline_completion_async(request(2, 4, "early-answer", PRIMES_URI))
    record = next(r for r in (await status(client, PRIMES_URI))["requests"] if r.get("token") == "early-answer")
    assert record["reason"] == "early" and first.items, record
    early = first.items[0].insert_text
    assert "\n" in early or not early.rstrip().endswith(":"), early  # a block's header comes with its body

    assert (await asyncio.wait_for(ready, 240)).uri == PRIMES_URI
    again = await client.text_document_inline_completion_async(request(2, 4, "whole-answer", PRIMES_URI))
    current = await status(client, PRIMES_URI)
    record = next(r for r in current["requests"] if r.get("token") == "whole-answer")
    assert record["outcome"] == "cache" and again.items, record  # not the model again
    whole = again.items[0].insert_text
    # The whole body goes on from the early lines; an import of the model's own that the rest uses
    # (`from math import sqrt`) comes above them (engine/instruct.py): then it replaced them.
    imports = [line for line in whole.split("\n") if line.startswith(("from ", "import "))]
    body = whole.split("\n", len(imports))[-1].lstrip() if imports else whole
    assert body.startswith(early) and body.count("\n") > early.count("\n"), (early, whole)
    lines = PRIMES.split("\n")
    ast.parse("\n".join([*lines[:2], "    " + whole, *lines[3:]]))  # the whole body, in place, parses
    assert current["cache"]["warmed"].get("finished", 0) >= 1
    # One suggestion when it grew; a replaced one is a second.
    assert current["acceptance"]["python"]["shown"] == shown_before + (2 if imports else 1)


FIZZ = ('def fizzbuzz(n):\n'
        '    """Return the numbers 1 to n as strings: "Fizz" for multiples of 3, "Buzz" for multiples of 5,\n'
        '    "FizzBuzz" for multiples of both."""\n'
        '    \n\nprint(fizzbuzz(15))\n')
FIZZ_URI = "file:///work/example/fizz.py"


@pytest.mark.asyncio(loop_scope="module")
async def test_tab_on_an_early_answer_shows_its_rest(client: LanguageClient):
    """The user accepts the early lines at once (Tab: one edit inserts them, then the item's
    command): the request the editor sends at their end is answered with the rest of the same
    answer (`continued`), where a new question at the end of a finished line gave nothing; the
    lines accepted and that rest, in place, parse."""
    client.text_document_did_close(types.DidCloseTextDocumentParams(types.TextDocumentIdentifier(PRIMES_URI)))
    client.text_document_did_open(types.DidOpenTextDocumentParams(
        text_document=types.TextDocumentItem(uri=FIZZ_URI, language_id="python", version=1, text=FIZZ)))
    first = await client.text_document_inline_completion_async(request(3, 4, "tab-first", FIZZ_URI))
    record = next(r for r in (await status(client, FIZZ_URI))["requests"] if r.get("token") == "tab-first")
    assert record["reason"] == "early" and first.items, record
    item = first.items[0]
    early = item.insert_text
    edit(client, 2, 3, 4, 4, early, FIZZ_URI)  # Tab
    if item.command is not None:
        await client.workspace_execute_command_async(types.ExecuteCommandParams(
            command=item.command.command, arguments=item.command.arguments))
    lines = FIZZ.split("\n")
    row, column = 3 + early.count("\n"), len(("    " + early).split("\n")[-1])
    after = await client.text_document_inline_completion_async(request(row, column, "tab-next", FIZZ_URI))
    current = await status(client, FIZZ_URI)
    record = next(r for r in current["requests"] if r.get("token") == "tab-next")
    assert after.items and record["outcome"] in ("shown", "cache"), record
    assert record["timings"].get("continued") or record["timings"].get("type_through"), record
    rest = after.items[0].insert_text
    assert rest.startswith("\n") and rest.strip(), rest  # the lines after the accepted ones
    ast.parse("\n".join([*lines[:3], "    " + early + rest, *lines[4:]]))


VOWELS = ('def count_vowels(text):\n'
          '    """Return how many of the characters of text are vowels (a, e, i, o, u), in either case."""\n'
          '\n\nif __name__ == "__main__":\n    print(count_vowels("Hello"))\n')
VOWELS_URI = "file:///work/example/vowels.py"


@pytest.mark.asyncio(loop_scope="module")
async def test_the_docstring_moment_is_asked_before_enter(client: LanguageClient):
    """The user types a docstring's closing quote over an empty body (the editor asks there), then
    Enter: meanwhile the server asked the model's lines above the function and evaluated the
    body's prompt as it is after Enter, so the request after Enter only decodes."""
    client.text_document_did_close(types.DidCloseTextDocumentParams(types.TextDocumentIdentifier(PRIMES_URI)))
    line = VOWELS.split("\n")[1]
    client.text_document_did_open(types.DidOpenTextDocumentParams(text_document=types.TextDocumentItem(
        uri=VOWELS_URI, language_id="python", version=1, text=VOWELS.replace(line, line[:-1]))))
    await until(client, lambda s: "document:vowels.py" in s["cache"]["kv"].get("labels", []), "the document's warm-up",
                uri=VOWELS_URI)  # (the model is loaded, and the document's own warm-up is done)
    before = (await status(client, VOWELS_URI))["cache"]["warmed"].get("ahead", 0)
    edit(client, 2, 1, len(line) - 1, len(line) - 1, '"', VOWELS_URI)
    await client.text_document_inline_completion_async(request(1, len(line), "closing-quote", VOWELS_URI))
    await until(client, lambda s: s["cache"]["warmed"].get("ahead", 0) > before, "the moment one Enter ahead",
                uri=VOWELS_URI)
    edit(client, 3, 1, len(line), len(line), "\n    ", VOWELS_URI)  # Enter, auto-indented
    result = await client.text_document_inline_completion_async(request(2, 4, "after-enter", VOWELS_URI))
    record = next(r for r in (await status(client, VOWELS_URI))["requests"] if r.get("token") == "after-enter")
    timings = record["timings"]
    assert timings["window"] == "instruct" and "head" in timings, timings
    # The prompt was in the KV cache: at most the last token is evaluated again (for its logits).
    assert timings["prompt_tokens_evaluated"] <= 1 and timings["prompt_tokens"] > 60, timings
    assert result.items and record["outcome"] == "shown", record
    lines = VOWELS.split("\n")
    ast.parse("\n".join([*lines[:2], "    " + result.items[0].insert_text, *lines[2:]]))  # in place, it parses

"""Explanations in the editor, and completions beside a second model.

    python benchmarks/bench_explain_lsp.py [--tasks 20] [--places 20] [--set KEY=VALUE]…

Explain: `fimble serve` (stdio, a real LSP client, the server's defaults: `explainModel` is the
largest known model assembled) opens a file holding --tasks HumanEval functions without their
docstrings and asks `fimble.explain` on each `def` line with a workDoneToken, as VS Code's command
does. Reported: the first explanation's wait (it loads the second model), then for the others
with the model loaded: time to the first streamed words (the first progress report with text of
the answer), time to the whole answer, words; the server's memory with both models.

Completions beside it (unless --places 0): benchmarks/bench_typing.py's `places` scenario (a user
moving around calendar.py, a request per keystroke) twice, in fresh servers: once with no second
model (explainModel = the completion model), once after one explanation has loaded the second
model. Reported: latency p50/p95 of the last request of each burst, answered with text, memory.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import sysconfig
import time
from pathlib import Path
from typing import Any

from lsprotocol import types
from pygls.lsp.client import LanguageClient

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench_typing import places, plain, start_server  # the benchmark beside this one

from engine import explain
from engine.config import Settings, apply_options, parse_set_arguments
from eval.data import load_problems
from eval.explain import without_docstring
from eval.metrics import percentile

URI = "file:///bench/explained.py"


def document(tasks: int) -> tuple[str, list[int]]:
    """HumanEval's first functions without docstrings, one after another, and their `def` lines."""
    text, lines = "", []
    for problem in load_problems(None, tasks):
        function, above, _ = without_docstring(problem)
        block = (above + "\n\n\n" if above else "") + function
        lines.append(text.count("\n") + block.count("\n", 0, block.index(function)))
        text += block + "\n\n"
    return text, lines


async def _status(client: LanguageClient) -> dict[str, Any]:
    return plain(await client.protocol.send_request_async("fimble/status", {}))  # type: ignore[no-any-return]


async def _ready(client: LanguageClient) -> None:
    while (state := (await _status(client))["state"]) != "ready":
        if state == "error":
            raise SystemExit("the server could not load the model: see its log")
        await asyncio.sleep(0.2)


async def explain_one(client: LanguageClient, line: int, token: str) -> dict[str, Any]:
    """One explanation; the time to its first streamed words and to its end."""
    first: list[float] = []
    sent = time.perf_counter()
    request = asyncio.ensure_future(client.workspace_execute_command_async(types.ExecuteCommandParams(
        command="fimble.explain", work_done_token=token,
        arguments=[{"uri": URI, "range": {"start": {"line": line, "character": 0},
                                          "end": {"line": line, "character": 0}}}])))
    while not request.done():
        reports = client.reports.get(token, [])  # type: ignore[attr-defined]
        if not first and any(text and not text.startswith(("loading ", "assembling ")) for text in reports):
            first.append(time.perf_counter())
        await asyncio.sleep(0.01)
    answer = request.result()
    done = time.perf_counter()
    return {"line": line, "first_words_ms": round(((first[0] if first else done) - sent) * 1000, 1),
            "total_ms": round((done - sent) * 1000, 1), "words": explain.word_count(answer)}


async def explain_run(args: argparse.Namespace) -> dict[str, Any]:
    client = await start_server(args)
    client.reports = {}  # type: ignore[attr-defined]

    @client.feature(types.PROGRESS)
    def progress(params: Any) -> None:
        value = params.value if hasattr(params, "value") else params["value"]
        message = value.get("message") if isinstance(value, dict) else getattr(value, "message", None)
        client.reports.setdefault(str(params.token), []).append(message)  # type: ignore[attr-defined]

    @client.feature(types.WINDOW_WORK_DONE_PROGRESS_CREATE)
    def create(params: Any) -> None:
        return None

    await _ready(client)
    text, lines = document(args.tasks)
    client.text_document_did_open(types.DidOpenTextDocumentParams(
        text_document=types.TextDocumentItem(uri=URI, language_id="python", version=0, text=text)))
    rows = []
    for i, line in enumerate(lines):
        rows.append(await explain_one(client, line, f"explain-{i}"))
        print(f"explained {i + 1}/{len(lines)}: first words {rows[-1]['first_words_ms']:.0f} ms", file=sys.stderr)
    status = await _status(client)
    await client.shutdown_async(None)
    client.exit(None)
    await client.stop()
    loaded = rows[1:]
    first = [r["first_words_ms"] for r in loaded]
    words = [r["words"] for r in loaded]
    return {
        "explain": status["explain"],
        "completion_model": status["model"],
        "first_explanation_ms": {"first_words": rows[0]["first_words_ms"], "total": rows[0]["total_ms"]},
        "loaded": {"explanations": len(loaded),
                   "first_words_ms": {"p50": round(percentile(first, 50), 1), "p95": round(percentile(first, 95), 1)},
                   "total_ms_p50": round(statistics.median(r["total_ms"] for r in loaded), 1),
                   "words": {"median": statistics.median(words), "p95": percentile(words, 95)}},
        "memory_mib": status["memory"],
        "each": rows,
    }


async def loaded_second(client: LanguageClient) -> None:
    """Load the explaining model with one explanation, as a user's first explain does."""
    client.text_document_did_open(types.DidOpenTextDocumentParams(text_document=types.TextDocumentItem(
        uri=URI, language_id="python", version=0, text="def add(a, b):\n    return a + b\n")))
    await client.workspace_execute_command_async(types.ExecuteCommandParams(
        command="fimble.explain", arguments=[{"uri": URI, "range": {"start": {"line": 0, "character": 0},
                                                                    "end": {"line": 0, "character": 0}}}]))
    print(f"second model: {(await _status(client))['explain']}", file=sys.stderr)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=20)
    parser.add_argument("--places", type=int, default=20, help="places per completion run; 0: no completion runs")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()
    # What bench_typing's server start and places scenario read.
    args.debounce, args.file, args.seed, args.typed, args.cps, args.pause, args.settle = (
        None, Path(sysconfig.get_paths()["stdlib"]) / "calendar.py", 0, 4, 8.0, 0.8, 0.0)
    result: dict[str, Any] = {"explain": asyncio.run(explain_run(args))}
    if args.places:
        settings, _ = apply_options(Settings(), parse_set_arguments(args.set))
        own = argparse.Namespace(**{**vars(args), "set": [*args.set, f"explainModel={settings.model}"]})
        text = args.file.read_text()
        result["completions_one_model"] = summary(asyncio.run(places(own, text)))
        result["completions_second_model_loaded"] = summary(asyncio.run(places(args, text, loaded_second)))
    print(json.dumps(result, indent=1))


def summary(moved: dict[str, Any]) -> dict[str, Any]:
    return {k: moved[k] for k in ("places", "answered_with_text", "latency_ms", "rest_of_line_exact", "memory",
                                  "prompt_tokens_evaluated")}


if __name__ == "__main__":
    main()

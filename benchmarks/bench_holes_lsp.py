"""Infilling holes through the language server, as an editor user meets them; scored by their tests.

    python benchmarks/bench_holes_lsp.py --out runs/holes [--data FILE] [--cursor after-indent]
        [--model qwen2.5-coder-1.5b] [--limit N] [--set KEY=VALUE]…

For each hole `fimble serve` (stdio, a real LSP client) is sent what an editor sends: the file is
opened without the hole's lines (a file just opened), then one incremental change types what the
user typed on a fresh line — for `after-indent` the Enter and the editor's auto-indent, for
`mid-line` also the first characters of the hole — and an automatic inline-completion request
follows at the cursor. The first item's edit is applied to the document, and the task's tests run
on the result in the sandbox. The server runs with its defaults (`timeBudgetMs` and all) unless
`--set` says otherwise.

`--data` takes any file of the infilling format; without it the holes are multi-line holes cut
from HumanEval's canonical solutions (`eval.holes.multiline_holes`: a block body of 2–6 lines
where the solution has one, else a span of 2–6 lines; seeded per task).
Writes samples.jsonl, results.jsonl, summary.json and report.md under --out.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from lsprotocol import types
from pygls.lsp.client import LanguageClient

from eval.metrics import percentile

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench_typing import plain  # the benchmark beside this one (its folder is on sys.path)

from engine.config import parse_set_arguments
from engine.text import offset_at, position_at
from eval import report
from eval.data import load_problems, write_jsonl
from eval.harness import execute
from eval.holes import CURSOR_MODES, multiline_holes, place_cursor

_TIMINGS = ("prompt_tokens", "prompt_tokens_evaluated", "generated_tokens", "first_token_ms", "decode_ms",
            "stop_reason", "healed")


def _position(text: str, offset: int) -> types.Position:
    pos = position_at(text, offset)
    return types.Position(line=pos.line, character=pos.character)


def _apply(text: str, item: types.InlineCompletionItem | None, cursor: int) -> tuple[str, str]:
    """The document after accepting `item` (its range, or the cursor when it has none), and what it inserted."""
    if item is None:
        return text, ""
    insert = item.insert_text if isinstance(item.insert_text, str) else item.insert_text.value
    start = end = cursor
    if item.range is not None:
        start = offset_at(text, item.range.start.line, item.range.start.character)
        end = offset_at(text, item.range.end.line, item.range.end.character)
    return text[:start] + insert + text[end:], text[start:cursor] + insert if start < cursor else insert


async def fill(args: argparse.Namespace, problems: list[dict[str, Any]]) -> list[dict[str, Any]]:
    client = LanguageClient("bench-holes", "1")
    await client.start_io(sys.executable, "-m", "lsp_server")
    options: dict[str, Any] = parse_set_arguments(args.options)
    if args.model:
        options["model"] = args.model
    await client.initialize_async(types.InitializeParams(capabilities=types.ClientCapabilities(),
                                                         initialization_options=options))
    client.initialized(types.InitializedParams())
    rows = []
    for number, problem in enumerate(problems):
        hole = place_cursor(problem, args.cursor, args.seed)
        # The file as opened: the hole's lines are not there yet (the line before ends at `cut`).
        cut = len(problem["prompt"]) - 1 if problem["prompt"].endswith("\n") else len(problem["prompt"])
        opened = problem["prompt"][:cut] + hole.after
        typed = "\n" + hole.before[len(problem["prompt"]):]
        uri = Path(f"/tmp/fimble-holes/{problem['task_id'].replace('/', '_')}.py").as_uri()
        client.text_document_did_open(types.DidOpenTextDocumentParams(
            text_document=types.TextDocumentItem(uri=uri, language_id="python", version=0, text=opened)))
        at = _position(opened, cut)
        client.text_document_did_change(types.DidChangeTextDocumentParams(
            text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=1),
            content_changes=[types.TextDocumentContentChangePartial(range=types.Range(at, at), text=typed)]))
        document = opened[:cut] + typed + opened[cut:]
        assert document == hole.document
        cursor = len(hole.before)
        sent = time.perf_counter()
        answer = await client.text_document_inline_completion_async(types.InlineCompletionParams(
            text_document=types.TextDocumentIdentifier(uri=uri), position=_position(document, cursor),
            context=types.InlineCompletionContext(trigger_kind=types.InlineCompletionTriggerKind.Automatic)))
        latency_ms = (time.perf_counter() - sent) * 1000
        items = answer.items if isinstance(answer, types.InlineCompletionList) else (answer or [])
        program, inserted = _apply(document, items[0] if items else None, cursor)
        client.text_document_did_close(types.DidCloseTextDocumentParams(
            text_document=types.TextDocumentIdentifier(uri=uri)))
        rows.append({"task_id": problem["task_id"], "sample": 0, "completion": inserted, "program": program,
                     "exact": inserted.strip() == hole.expected.strip(), "shown": bool(items),
                     "latency_ms": round(latency_ms, 1), "cursor": args.cursor})
        print(f"{number + 1}/{len(problems)} {problem['task_id']}: {len(inserted)} chars in {latency_ms:.0f} ms",
              file=sys.stderr)
    status = await client.protocol.send_request_async("fimble/status", {"history": 1000})
    await client.shutdown_async(None)
    client.exit(None)
    await client.stop()
    by_uri = {}
    for entry in plain(status).get("requests", []):
        by_uri[entry.get("uri")] = entry  # the last request for each document
    for row in rows:
        entry = by_uri.get(Path(f"/tmp/fimble-holes/{row['task_id'].replace('/', '_')}.py").as_uri(), {})
        row["reason"] = entry.get("outcome")
        row.update({k: v for k, v in entry.get("timings", {}).items() if k in _TIMINGS})
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True)
    parser.add_argument("--data", help="infilling tasks (jsonl); default: multi-line holes cut from HumanEval")
    parser.add_argument("--cursor", choices=CURSOR_MODES, default="after-indent")
    parser.add_argument("--model", help="a model name or path (the server's `model` option)")
    parser.add_argument("--limit", type=int)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--set", dest="options", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=10.0)
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    problems = load_problems(args.data) if args.data else multiline_holes(load_problems(), seed=args.seed)
    problems = problems[: args.limit] if args.limit else problems
    write_jsonl(out / "holes.jsonl", problems)
    started = time.perf_counter()
    samples = asyncio.run(fill(args, problems))
    generation_s = time.perf_counter() - started
    write_jsonl(out / "samples.jsonl", samples)
    (out / "results.jsonl").unlink(missing_ok=True)
    results = execute(samples, {p["task_id"]: p for p in problems}, out / "results.jsonl", args)
    latencies = [s["latency_ms"] for s in samples]
    meta = {"mode": "fim through the language server", "cursor": args.cursor, "model": args.model or "default",
            "data": args.data or "multi-line holes from HumanEval (eval.holes.multiline_holes)",
            "options": parse_set_arguments(args.options), "generation_s": round(generation_s, 1),
            "shown": sum(s["shown"] for s in samples),
            "latency_ms": {"p50": round(statistics.median(latencies), 1),
                           "p95": round(percentile(latencies, 95), 1)}}
    summary = report.summarize(samples, results, meta)
    report.write(out, summary, samples)
    print({k: summary.get(k) for k in ("pass@1", "passed_tasks", "tasks", "exact_match", "shown", "latency_ms")})
    return 0


if __name__ == "__main__":
    sys.exit(main())

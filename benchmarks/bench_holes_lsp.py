"""Infilling holes through the language server, as an editor user meets them; scored by their tests.

    python benchmarks/bench_holes_lsp.py --out runs/holes [--holes block|lines|span|docstring|body]
        [--data FILE] [--cursor after-indent] [--open-wait S] [--ceiling] [--model NAME]
        [--limit N] [--set KEY=VALUE]…
    python benchmarks/bench_holes_lsp.py --out runs/holes --compare [--holes …]   # all three below

For each hole `fimble serve` (stdio, a real LSP client) is sent what an editor sends: the file is
opened without the hole's lines (a file just opened; `--open-wait S`: open S seconds before the
edit, the server's warm-up had that long), then one incremental change types what the user typed
on a fresh line — for `after-indent` the Enter and the editor's auto-indent, for `mid-line` also
the first characters of the hole — and an automatic inline-completion request follows at the
cursor (`--enter-after S`: the line above is first typed to its end, its last character — a
docstring's closing quote, say — with the automatic request an editor sends there, and Enter
comes S seconds later). What it shows is the *first* suggestion. Then the client does what VS Code and the Neovim
plugin do: when the server announces `fimble/completionReady` for the document (within
--follow-s seconds; the server's status says whether a follow-up is coming at all) it asks again
at the cursor, and what that shows is the *final* suggestion. Both are applied to the document
and the task's tests run on each in the sandbox. The server runs with its defaults unless
`--set` says otherwise; `--ceiling` turns the interactive features off (firstAnswerMs 0,
newPlaceMs 0, timeBudgetMs 0: the pipeline given time). `--compare` runs the defaults just
opened, the defaults with the file open --open-wait seconds (5 if not given), and the ceiling,
on the same holes, and reports delivered / ceiling (final pass@1 over the ceiling's). `--peer
PATH/TO/llama-server` adds the peer on the same holes in the same run: llama-server asked as
llama.vim asks (benchmarks/peer_llama_server.py), each file as just opened, the cursor as above;
what it returns is what llama.vim shows, and it has no follow-up, so its first is its final.

Hole sets (`--holes`; `--data` takes any file of the infilling format instead):
- block: a block body of 2–6 lines of a HumanEval solution where it has one, else a span (eval.holes.multiline_holes);
- lines: any run of 1–16 whole lines of a solution (eval.holes.line_run_holes), harder;
- span: from a character inside a line to one up to 3 lines below (eval.holes.span_holes): the
  file is broken at the cursor until the answer mends it (use with `--cursor line-start`, the
  cursor is where the span starts);
- docstring: an empty body under a new function's docstring, code below (benchmarks/docstring_tasks.py);
- body: HumanEval's prompt with the cursor at its empty body (eval.holes.body_holes).
Writes holes.jsonl, samples.jsonl, results*.jsonl, summary.json and report.md under --out (one
folder per configuration with --compare, and compare.json).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from dataclasses import dataclass
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
from eval.holes import CURSOR_MODES, body_holes, line_run_holes, multiline_holes, place_cursor, span_holes

_TIMINGS = ("prompt_tokens", "prompt_tokens_evaluated", "generated_tokens", "first_token_ms", "decode_ms",
            "stop_reason", "healed", "window", "prompt_ms", "prefill_ms", "reuse_ms", "total_ms", "queued_ms",
            "threads")


def _position(text: str, offset: int) -> types.Position:
    pos = position_at(text, offset)
    return types.Position(line=pos.line, character=pos.character)


def _type(client: LanguageClient, uri: str, version: int, text: str, offset: int, typed: str) -> None:
    """`typed` inserted at `offset` (its line and column the same in the text before the change)."""
    at = _position(text, offset)
    client.text_document_did_change(types.DidChangeTextDocumentParams(
        text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=version),
        content_changes=[types.TextDocumentContentChangePartial(range=types.Range(at, at), text=typed)]))


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


def _items(answer: Any) -> list[types.InlineCompletionItem]:
    return list(answer.items if isinstance(answer, types.InlineCompletionList) else (answer or []))


async def _status(client: LanguageClient, uri: str | None = None) -> dict[str, Any]:
    params: dict[str, Any] = {"history": 50}
    if uri:
        params["uri"] = uri
    return plain(await client.protocol.send_request_async("fimble/status", params))


def _entry(status: dict[str, Any], token: str) -> dict[str, Any]:
    return next((r for r in reversed(status.get("requests", [])) if r.get("token") == token), {})


def _follow_ups_done(status: dict[str, Any]) -> int:
    """How many follow-ups the server has ended, whatever they came to (status `followUps`)."""
    counts = status.get("followUps") or {}
    return sum(int(v) for v in counts.values()) if isinstance(counts, dict) else 0


async def _follow(client: LanguageClient, ready: asyncio.Event, settled: int, seconds: float) -> str:
    """Wait as an editor does for fimble/completionReady: "ready", or "no ready" once the server's
    follow-up has ended without one (nothing to offer) or `seconds` have passed."""
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        try:
            await asyncio.wait_for(ready.wait(), 0.3)
            return "ready"
        except TimeoutError:
            if _follow_ups_done(await _status(client)) > settled:
                # Ended: its notification, if any, was sent before the count changed.
                await asyncio.sleep(0.05)
                return "ready" if ready.is_set() else "no ready"
    return "no ready"


@dataclass
class Asked:
    """An automatic inline-completion request, as editors send one, and what it got."""

    params: types.InlineCompletionParams
    items: list[types.InlineCompletionItem]
    ms: float
    entry: dict[str, Any]  # its record in fimble/status
    settled: int  # follow-ups the server had ended before it
    sent: float


async def _ask(client: LanguageClient, uri: str, text: str, offset: int, token: str, after_tab: bool = False) -> Asked:
    """`after_tab`: the follow-ups ended are counted after the answer, which ends the follow-up of
    the answer accepted (taken over: `finish:accepted`), so that only its own follow-up is awaited."""
    params = types.InlineCompletionParams(
        text_document=types.TextDocumentIdentifier(uri=uri), position=_position(text, offset),
        context=types.InlineCompletionContext(trigger_kind=types.InlineCompletionTriggerKind.Automatic),
        work_done_token=token)
    settled = _follow_ups_done(await _status(client))
    sent = time.perf_counter()
    items = _items(await client.text_document_inline_completion_async(params))
    ms = (time.perf_counter() - sent) * 1000
    status = await _status(client, uri)
    return Asked(params, items, ms, _entry(status, token), _follow_ups_done(status) if after_tab else settled, sent)


async def _final(client: LanguageClient, asked: Asked, ready: asyncio.Event, token: str, args: argparse.Namespace,
                 ) -> tuple[list[types.InlineCompletionItem], float, str]:
    """After an answer with a follow-up: wait for completionReady as editors do, then ask again
    at the same place. (items, ms since the first was sent, "ready" / "no ready")."""
    followed = await _follow(client, ready, asked.settled, args.follow_s)
    if followed != "ready":
        return asked.items, asked.ms, followed
    asked.params.work_done_token = token
    items = _items(await client.text_document_inline_completion_async(asked.params))
    return items, (time.perf_counter() - asked.sent) * 1000, followed


async def fill(args: argparse.Namespace, problems: list[dict[str, Any]], options: dict[str, Any],
               open_wait: float) -> list[dict[str, Any]]:
    client = LanguageClient("bench-holes", "1")
    ready: dict[str, asyncio.Event] = {}

    @client.feature("fimble/completionReady")
    def completion_ready(params: Any) -> None:  # as VS Code and the Neovim plugin do: ask again
        uri = getattr(params, "uri", None) or (params.get("uri") if isinstance(params, dict) else None)
        if uri in ready:
            ready[uri].set()

    await client.start_io(sys.executable, "-m", "lsp_server")
    if args.model:
        options = {**options, "model": args.model}
    await client.initialize_async(types.InitializeParams(capabilities=types.ClientCapabilities(),
                                                         initialization_options=options))
    client.initialized(types.InitializedParams())
    rows = []
    for number, problem in enumerate(problems):
        hole = place_cursor(problem, args.cursor, args.seed)
        # The file as opened: the hole's lines are not there yet (the line before ends at `cut`).
        if hole.before.startswith(problem["prompt"]) and problem["prompt"].endswith("\n"):
            cut = len(problem["prompt"]) - 1
            typed = "\n" + hole.before[len(problem["prompt"]):]
        else:  # a span inside a line: the file is opened as the user left it
            cut, typed = len(hole.before), ""
        opened = hole.before[:cut] + hole.after
        uri = Path(f"/tmp/fimble-holes/{problem['task_id'].replace('/', '_')}.py").as_uri()
        ready[uri] = asyncio.Event()
        version = 0
        # --enter-after: the line above is typed to its end first (e.g. a docstring's closing quote).
        last = opened[cut - 1] if args.enter_after is not None and typed.startswith("\n") and cut else ""
        client.text_document_did_open(types.DidOpenTextDocumentParams(text_document=types.TextDocumentItem(
            uri=uri, language_id="python", version=version, text=opened[:cut - 1] + opened[cut:] if last else opened)))
        if open_wait:
            await asyncio.sleep(open_wait)
        if last:
            version += 1
            _type(client, uri, version, opened, cut - 1, last)
            await client.text_document_inline_completion_async(types.InlineCompletionParams(  # as editors ask
                text_document=types.TextDocumentIdentifier(uri=uri), position=_position(opened, cut),
                context=types.InlineCompletionContext(trigger_kind=types.InlineCompletionTriggerKind.Automatic)))
            await asyncio.sleep(args.enter_after)
        if typed:
            _type(client, uri, version + 1, opened, cut, typed)
        document = opened[:cut] + typed + opened[cut:]
        assert document == hole.document
        cursor = len(hole.before)
        first = await _ask(client, uri, document, cursor, f"first-{number}")
        first_items, first_ms, entry = first.items, first.ms, first.entry
        follow = entry.get("followUp")
        final_items, final_ms, followed = first_items, first_ms, "none"
        accepted: dict[str, Any] = {}
        if args.accept:  # Tab at once, then the suggestion the editor asks for at the new cursor
            accepted = await _accept_and_ask(client, uri, version + 2, document, cursor,
                                             first_items[0] if first_items else None, ready[uri], number, args)
        elif follow:
            final_items, final_ms, followed = await _final(client, first, ready[uri], f"final-{number}", args)
        status = await _status(client, uri)
        program, inserted = _apply(document, first_items[0] if first_items else None, cursor)
        final_program, final_inserted = _apply(document, final_items[0] if final_items else None, cursor)
        if accepted:  # the final: the first accepted, then the next suggestion's final accepted too
            final_program, followed = accepted["program"], accepted["followed"]
            final_ms = first_ms + (accepted["final_ms"] or 0.0)  # (the Tab itself taken as instant)
            final_inserted = final_program[cursor: len(final_program) - (len(document) - cursor)]
        client.text_document_did_close(types.DidCloseTextDocumentParams(
            text_document=types.TextDocumentIdentifier(uri=uri)))
        ready.pop(uri, None)
        rows.append({"task_id": problem["task_id"], "sample": 0, "completion": inserted, "program": program,
                     "final_completion": final_inserted, "final_program": final_program,
                     "exact": inserted.strip() == hole.expected.strip(),
                     "final_exact": final_inserted.strip() == hole.expected.strip(),
                     "shown": bool(first_items), "final_shown": bool(final_items),
                     "latency_ms": round(first_ms, 1), "final_ms": round(final_ms, 1), "cursor": args.cursor,
                     "follow_up": follow, "followed": followed, "follow_ups": status.get("followUps", {}),
                     "reason": entry.get("outcome"), "stop": entry.get("reason"),
                     **{k: v for k, v in entry.get("timings", {}).items() if k in _TIMINGS},
                     **({"next": {k: v for k, v in accepted.items() if k != "program"}} if accepted else {})})
        print(f"{number + 1}/{len(problems)} {problem['task_id']}: first {len(inserted)} chars in {first_ms:.0f} ms "
              f"({entry.get('reason')}, {follow or 'no follow-up'}), final {len(final_inserted)} chars "
              f"({followed}, {final_ms:.0f} ms)"
              + (f"; after Tab: {accepted['outcome']} in {accepted['latency_ms']} ms" if accepted else ""),
              file=sys.stderr)
    await client.shutdown_async(None)
    client.exit(None)
    await client.stop()
    return rows


async def _accept_and_ask(client: LanguageClient, uri: str, version: int, document: str, cursor: int,
                          item: types.InlineCompletionItem | None, ready: asyncio.Event, number: int,
                          args: argparse.Namespace) -> dict[str, Any]:
    """What a user who presses Tab on the first suggestion at once ends up with: the edit VS Code
    makes (the item's range replaced by its text) and its `fimble.accepted` command, then the
    automatic request the editor sends at the new cursor, followed like the first (completionReady,
    then asked again). The program: both accepted."""
    if item is None:
        return {"program": document, "shown": False, "latency_ms": None, "final_ms": None, "followed": "none",
                "outcome": "nothing to accept"}
    insert = item.insert_text if isinstance(item.insert_text, str) else item.insert_text.value
    start = offset_at(document, item.range.start.line, item.range.start.character) if item.range else cursor
    end = offset_at(document, item.range.end.line, item.range.end.character) if item.range else cursor
    ready.clear()
    client.text_document_did_change(types.DidChangeTextDocumentParams(
        text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=version),
        content_changes=[types.TextDocumentContentChangePartial(
            range=types.Range(_position(document, start), _position(document, end)), text=insert)]))
    if item.command is not None:
        await client.workspace_execute_command_async(types.ExecuteCommandParams(
            command=item.command.command, arguments=item.command.arguments))
    after, at = document[:start] + insert + document[end:], start + len(insert)
    asked = await _ask(client, uri, after, at, f"next-{number}", after_tab=True)
    entry = asked.entry
    final_items, final_ms, followed = asked.items, asked.ms, "none"
    if entry.get("followUp"):
        final_items, final_ms, followed = await _final(client, asked, ready, f"next-final-{number}", args)
    program, _ = _apply(after, final_items[0] if final_items else None, at)
    timings = entry.get("timings", {})
    return {"program": program, "shown": bool(asked.items), "latency_ms": round(asked.ms, 1),
            "final_ms": round(final_ms, 1),
            "followed": followed, "outcome": entry.get("outcome"), "reason": entry.get("reason"),
            "type_through": bool(timings.get("type_through")), "window": timings.get("window"),
            "prompt_tokens_evaluated": timings.get("prompt_tokens_evaluated"), "queued_ms": timings.get("queued_ms")}


def peer_fill(args: argparse.Namespace, problems: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The peer on the same holes: one llama.vim request at the cursor of each file (its cache
    holds the file before, not this one: a file just opened), the answer inserted at the cursor."""
    from peer_llama_server import Request, infill_request, start  # beside this script

    from engine.models import resolve_model

    model = str(resolve_model(args.model).path)
    server = start(args.peer, model, args.peer_port, os.cpu_count() or 1)
    rows = []
    try:
        for number, problem in enumerate(problems):
            hole = place_cursor(problem, args.cursor, args.seed)
            # (row and column in code points, as llama.vim's request slices the line)
            row, column = hole.before.count("\n"), len(hole.before) - hole.before.rfind("\n") - 1
            request = Request(args.peer_port, infill_request(hole.document.split("\n"), row, column))
            request.start()
            request.join()
            answer = str((request.result or {}).get("content", ""))
            latency_ms = ((request.done or request.sent) - request.sent) * 1000
            timings = (request.result or {}).get("timings", {})
            program = hole.program(answer)
            rows.append({"task_id": problem["task_id"], "sample": 0, "completion": answer, "program": program,
                         "final_completion": answer, "final_program": program,
                         "exact": answer.strip() == hole.expected.strip(),
                         "final_exact": answer.strip() == hole.expected.strip(),
                         "shown": bool(answer.strip()), "final_shown": bool(answer.strip()),
                         "latency_ms": round(latency_ms, 1), "final_ms": round(latency_ms, 1), "cursor": args.cursor,
                         "follow_up": None, "followed": "none", "follow_ups": {},
                         "reason": "peer", "stop": "empty" if not answer.strip() else "peer",
                         "prompt_tokens_evaluated": timings.get("prompt_n"),
                         "generated_tokens": timings.get("predicted_n")})
            print(f"{number + 1}/{len(problems)} {problem['task_id']}: peer {len(answer)} chars in {latency_ms:.0f} ms",
                  file=sys.stderr)
    finally:
        server.terminate()
        server.wait(timeout=10)
    return rows


def holes_for(args: argparse.Namespace) -> list[dict[str, Any]]:
    if args.data:
        return load_problems(args.data)
    if args.holes == "docstring":
        from docstring_tasks import docstring_holes  # the benchmark data beside this script

        return docstring_holes()
    problems = load_problems()
    return {"block": lambda: multiline_holes(problems, seed=args.seed),
            "lines": lambda: line_run_holes(problems, seed=args.seed),
            "span": lambda: span_holes(problems, seed=args.seed),
            "body": lambda: body_holes(problems)}[args.holes]()


def run_one(args: argparse.Namespace, problems: list[dict[str, Any]], out: Path, options: dict[str, Any],
            open_wait: float, label: str, peer: bool = False) -> dict[str, Any]:
    out.mkdir(parents=True, exist_ok=True)
    write_jsonl(out / "holes.jsonl", problems)
    started = time.perf_counter()
    samples = peer_fill(args, problems) if peer else asyncio.run(fill(args, problems, options, open_wait))
    generation_s = time.perf_counter() - started
    write_jsonl(out / "samples.jsonl", samples)
    by_id = {p["task_id"]: p for p in problems}
    (out / "results.jsonl").unlink(missing_ok=True)
    (out / "results_final.jsonl").unlink(missing_ok=True)
    results = execute(samples, by_id, out / "results.jsonl", args)
    final = execute([{**s, "program": s["final_program"]} for s in samples], by_id, out / "results_final.jsonl",
                    args)
    first_ms = [s["latency_ms"] for s in samples]
    final_ms = [s["final_ms"] for s in samples]
    empties: dict[str, int] = {}
    for s in samples:
        if not s["final_shown"]:
            why = str(s["stop"])  # the first answer's reason: a postprocessing rule, a budget, the model's end
            empties[why] = empties.get(why, 0) + 1
    meta = {"configuration": label, "mode": "llama-server /infill as llama.vim asks" if peer
            else "fim through the language server", "cursor": args.cursor,
            "holes": args.data or args.holes, "model": args.model or "default", "options": options,
            "open_wait_s": open_wait, "enter_after_s": args.enter_after, "generation_s": round(generation_s, 1),
            "shown": sum(s["shown"] for s in samples), "final_shown": sum(s["final_shown"] for s in samples),
            "latency_ms": {"p50": round(statistics.median(first_ms), 1), "p95": round(percentile(first_ms, 95), 1)},
            "final_ms": {"p50": round(statistics.median(final_ms), 1), "p95": round(percentile(final_ms, 95), 1)},
            "first_pass@1": round(sum(r["passed"] for r in results) / len(results), 4),
            "final_pass@1": round(sum(r["passed"] for r in final) / len(final), 4),
            "final_exact_match": round(sum(s["final_exact"] for s in samples) / len(samples), 4),
            "followed": {k: sum(s["followed"] == k for s in samples) for k in ("none", "ready", "no ready")},
            "follow_ups": samples[-1]["follow_ups"] if samples else {},
            "final_empty_by": empties,
            **({"after_tab": _after_tab([s["next"] for s in samples if "next" in s])}
               if any("next" in s for s in samples) else {})}
    summary = report.summarize(samples, results, meta)
    report.write(out, summary, samples)
    print(label, {k: summary.get(k) for k in ("first_pass@1", "final_pass@1", "tasks", "shown", "final_shown",
                                               "latency_ms", "final_ms", "followed", "final_empty_by",
                                               "after_tab")})
    return summary


def _after_tab(nexts: list[dict[str, Any]]) -> dict[str, Any]:
    """The suggestions asked for right after Tab (`--accept`): how many shown, how soon, from where."""
    shown = [n["latency_ms"] for n in nexts if n["shown"]]
    outcomes: dict[str, int] = {}
    for n in nexts:
        key = "type-through" if n.get("type_through") else str(n.get("outcome"))
        outcomes[key] = outcomes.get(key, 0) + 1
    return {"asked": sum(n["latency_ms"] is not None for n in nexts), "shown": len(shown),
            "shown_ms": {"p50": round(statistics.median(shown), 1), "p95": round(percentile(shown, 95), 1)}
            if shown else None, "outcomes": outcomes,
            "followed": {k: sum(n["followed"] == k for n in nexts) for k in ("none", "ready", "no ready")}}


CEILING = {"firstAnswerMs": 0, "newPlaceMs": 0, "timeBudgetMs": 0}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True)
    parser.add_argument("--holes", choices=("block", "lines", "span", "docstring", "body"), default="block")
    parser.add_argument("--data", help="infilling tasks (jsonl) instead of --holes")
    parser.add_argument("--cursor", choices=CURSOR_MODES, default="after-indent")
    parser.add_argument("--model", help="a model name or path (the server's `model` option)")
    parser.add_argument("--limit", type=int)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--set", dest="options", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--open-wait", type=float, default=0.0, help="seconds between opening the file and the edit")
    parser.add_argument("--enter-after", type=float,
                        help="type the line above's last character first (an automatic request follows, as "
                             "editors send), then Enter after this many seconds")
    parser.add_argument("--follow-s", type=float, default=20.0, help="how long to wait for fimble/completionReady")
    parser.add_argument("--accept", action="store_true",
                        help="Tab on the first suggestion at once, then take the next suggestion there (final: both)")
    parser.add_argument("--ceiling", action="store_true", help="the interactive features off (the pipeline given time)")
    parser.add_argument("--compare", action="store_true", help="defaults just opened, defaults open a while, ceiling")
    parser.add_argument("--peer", metavar="LLAMA_SERVER", help="also run llama-server, asked as llama.vim asks")
    parser.add_argument("--peer-port", type=int, default=8012)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=10.0)
    args = parser.parse_args()
    out = Path(args.out)
    problems = holes_for(args)
    problems = problems[: args.limit] if args.limit else problems
    options: dict[str, Any] = parse_set_arguments(args.options)
    if not args.compare:
        if args.peer:
            run_one(args, problems, out / "peer", {}, 0.0, "peer: llama-server, llama.vim's request", peer=True)
        run_one(args, problems, out, {**options, **(CEILING if args.ceiling else {})}, args.open_wait,
                "ceiling" if args.ceiling else f"defaults, open {args.open_wait:g} s"
                + (f", Enter {args.enter_after:g} s after the line above" if args.enter_after is not None else ""))
        return 0
    wait = args.open_wait or 5.0
    runs = {"just opened": run_one(args, problems, out / "opened", options, 0.0, "defaults, just opened"),
            f"open {wait:g} s": run_one(args, problems, out / "open-a-while", options, wait,
                                        f"defaults, open {wait:g} s"),
            "ceiling": run_one(args, problems, out / "ceiling", {**options, **CEILING}, 0.0, "ceiling")}
    if args.peer:
        runs["peer"] = run_one(args, problems, out / "peer", {}, 0.0, "peer: llama-server, llama.vim's request",
                               peer=True)
    ceiling = runs["ceiling"]["final_pass@1"]
    table = {name: {"first_pass@1": r["first_pass@1"], "final_pass@1": r["final_pass@1"],
                    "delivered/ceiling": round(r["final_pass@1"] / ceiling, 3) if ceiling else None,
                    "first_ms_p50": r["latency_ms"]["p50"], "final_ms_p50": r["final_ms"]["p50"],
                    "final_empty": r["tasks"] - r["final_shown"], "final_empty_by": r["final_empty_by"],
                    "followed": r["followed"]} for name, r in runs.items()}
    (out / "compare.json").write_text(json.dumps(table, indent=1) + "\n")
    print(json.dumps(table, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

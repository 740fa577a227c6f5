"""Replay a typing session against `fimble serve` and compare with cold requests.

    python benchmarks/bench_typing.py [--file PATH --function NAME] [--cps 8] [--pause 0.8]
    python benchmarks/bench_typing.py --scenario places [--file PATH] [--places 20] [--settle 120]
                                      [--llama-server PATH]

`--scenario places` is a user moving around an open file: at each of --places lines (seeded,
in random order) the line is cut at its indentation and --typed characters are typed back, a
request per keystroke (the one before cancelled); reported: the last request of each burst,
answered with text or not, its latency, and prompt tokens reused/evaluated. --settle waits up to
that many seconds for the server's warm-up of the document first (0: start at once, as right
after opening a file). --llama-server runs the same places afterwards against llama-server with
llama.vim's requests (benchmarks/peer_llama_server.py).

`--busy N` keeps N other processes busy (a loop each) for the whole run, as a build or a test run
does on a user's laptop (`--busy-nice 19`: as a niced indexer does); the thread counts llama.cpp
ran the model's requests with are reported (`threads`: engine/backends/cpu_load.py).

Opens a real source file the project did not write (the standard library's textwrap.py by
default), removes a function's body after its docstring, and types the body back character by
character at --cps characters a second, pausing --pause seconds after each Enter as people do.
Enter auto-indents as editors do (the cursor then sits after the indentation; spaces or a
backspace make it the body's); --no-auto-indent types every space.
Every keystroke sends didChange and an inline-completion request, and cancels the request before
it, as VS Code does. Reported: latency percentiles of the answered requests, how the superseded
ones ended, cache hits, prompt tokens evaluated per model request, exact match of the suggested
rest of the line; then the same answered requests sent cold (reset KV cache) to a plain
llama-cpp-python `Llama` with the naive FIM prompt, as the baseline.
"""

from __future__ import annotations

import argparse
import ast
import asyncio
import contextlib
import json
import statistics
import subprocess
import sys
import sysconfig
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

from lsprotocol import types
from pygls.lsp.client import LanguageClient

from eval.metrics import percentile


def plain(value: Any) -> Any:
    if hasattr(value, "_asdict"):
        return {k: plain(v) for k, v in value._asdict().items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


def cut_body(source: str, function: str) -> tuple[str, int, str]:
    """(source without the body, offset where the body goes, the body text)."""
    tree = ast.parse(source)
    node = next(n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == function)
    lines = source.split("\n")
    first = node.body[1] if isinstance(node.body[0], ast.Expr) and len(node.body) > 1 else node.body[0]
    start = sum(len(line) + 1 for line in lines[: first.lineno - 1])
    end = sum(len(line) + 1 for line in lines[: node.end_lineno])
    body = source[start:end].rstrip("\n")
    return source[:start] + source[end - 1 :], start, body


def keystrokes(body: str, auto_indent: bool) -> list[tuple[int, str]]:
    """The edits that type `body`, one keystroke each: (characters deleted before the cursor,
    text inserted). With `auto_indent`, Enter inserts the newline and the indentation an editor
    gives it (the line's own, one level more after a colon; none on a line left blank), and the
    user then adds spaces or deletes a level (backspace) to reach the body's indentation."""
    edits: list[tuple[int, str]] = []
    i = 0
    while i < len(body):
        char = body[i]
        if char != "\n" or not auto_indent:
            edits.append((0, char))
            i += 1
            continue
        line = body[: i].rsplit("\n", 1)[-1]
        after = body[i + 1 :].split("\n", 1)[0]
        want = len(after) - len(after.lstrip(" ")) if after.strip() else 0
        opens = 4 if line.rstrip().endswith(":") else 0
        given = len(line) - len(line.lstrip(" ")) + opens if after.strip() else 0
        edits.append((0, "\n" + " " * given))
        while given > want:
            step = given - want if (given - want) % 4 else 4
            edits.append((step, ""))
            given -= step
        edits.extend((0, " ") for _ in range(want - given))
        i += 1 + want
    return edits


def rest_of_line(body: str, typed: str) -> str | None:
    """What the body has after the cursor on its line; None while the typed line is not a start of it."""
    row = typed.count("\n")
    line = typed.rsplit("\n", 1)[-1]
    lines = body.split("\n")
    if row >= len(lines) or not lines[row].startswith(line):
        return None
    return lines[row][len(line) :]


def position(text: str, offset: int) -> types.Position:
    before = text[:offset]
    line = before.count("\n")
    return types.Position(line=line, character=len(before) - (before.rfind("\n") + 1))  # ASCII source


async def start_server(args: argparse.Namespace) -> LanguageClient:
    """`fimble serve` over stdio, initialized with the benchmark's options."""
    client = LanguageClient("bench", "1")
    client.ready = []  # type: ignore[attr-defined]

    @client.feature("fimble/completionReady")
    def ready(params: Any) -> None:  # the rest of an answer given early is decoded
        client.ready.append(time.perf_counter())  # type: ignore[attr-defined]

    await client.start_io(sys.executable, "-m", "lsp_server")
    await client.initialize_async(types.InitializeParams(capabilities=types.ClientCapabilities(),
                                                         initialization_options=options(args)))
    client.initialized(types.InitializedParams())
    return client


async def replay(args: argparse.Namespace, text: str, offset: int, body: str, run: int = 0) -> dict[str, Any]:
    client = await start_server(args)
    uri = "file://" + str(args.file)
    client.text_document_did_open(types.DidOpenTextDocumentParams(
        text_document=types.TextDocumentItem(uri=uri, language_id="python", version=0, text=text)))
    while (state := plain(await client.protocol.send_request_async("fimble/status", {}))["state"]) != "ready":
        if state == "error":
            raise SystemExit("the server could not load the model: see its log")
        await asyncio.sleep(0.2)
    print("server ready; typing", file=sys.stderr)
    records: list[dict[str, Any]] = []
    inflight: tuple[str, asyncio.Future[Any], float] | None = None
    typed = ""
    for i, (deleted, inserted) in enumerate(keystrokes(body, args.auto_indent)):
        version = i + 1
        start = position(text, offset - deleted)
        client.text_document_did_change(types.DidChangeTextDocumentParams(
            text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=version),
            content_changes=[types.TextDocumentContentChangePartial(range=types.Range(start, position(text, offset)),
                                                                    text=inserted)]))
        text = text[: offset - deleted] + inserted + text[offset:]
        offset += len(inserted) - deleted
        typed = typed[: len(typed) - deleted] + inserted
        if inflight is not None and not inflight[1].done():
            client.protocol.notify("$/cancelRequest", types.CancelParams(id=inflight[0]))
        msg_id = f"k{run}-{i}"
        future = asyncio.ensure_future(client.protocol.send_request_async(
            types.TEXT_DOCUMENT_INLINE_COMPLETION, types.InlineCompletionParams(
                text_document=types.TextDocumentIdentifier(uri=uri), position=position(text, offset),
                context=types.InlineCompletionContext(trigger_kind=types.InlineCompletionTriggerKind.Automatic),
                work_done_token=msg_id), msg_id=msg_id))
        sent = time.perf_counter()
        record = {"id": msg_id, "sent": sent, "prefix": text[:offset], "suffix": text[offset:],
                  "rest_of_line": rest_of_line(body, typed), "line_start": "\n" in inserted}
        records.append(record)
        future.add_done_callback(lambda f, r=record: r.update(done=time.perf_counter(), future=f))
        inflight = (msg_id, future, sent)
        await asyncio.sleep(1 / args.cps + (args.pause if "\n" in inserted else 0))
    await asyncio.sleep(3)
    status = plain(await client.protocol.send_request_async("fimble/status", {"history": 1000}))
    await client.shutdown_async(None)
    client.exit(None)
    await client.stop()
    return {"records": records, "status": status, "ready": len(client.ready)}  # type: ignore[attr-defined]


def place_rows(args: argparse.Namespace, text: str) -> list[int]:
    """The seeded places: indented lines of code with more than --typed characters."""
    import random

    lines = text.split("\n")
    rows = [i for i, line in enumerate(lines) if len(line.strip()) > args.typed + 2 and line.startswith(" ")
            and not line.strip().startswith(("#", '"', "'"))]
    return random.Random(args.seed).sample(rows, min(args.places, len(rows)))


def burst_summary(results: list[dict[str, Any]]) -> dict[str, Any]:
    """The last request of each burst: answered with text, latency, the rest of the line exact."""
    latencies = [r["latency_ms"] for r in results]
    with_text = [r for r in results if r["text"]]
    exact = sum(r["text"].split("\n")[0] == r["expected"] for r in with_text)
    return {
        "places": len(results),
        "answered_with_text": f"{len(with_text)}/{len(results)}",
        "latency_ms": {"p50": round(percentile(latencies, 50), 1), "p95": round(percentile(latencies, 95), 1),
                       "max": round(max(latencies), 1)},
        "rest_of_line_exact": f"{exact}/{len(with_text)}",
    }


async def places(args: argparse.Namespace, text: str,
                 prepare: Callable[[LanguageClient], Awaitable[None]] | None = None) -> dict[str, Any]:
    """`prepare`, if given, runs once the model is ready and before the file opens (another
    benchmark loads the explaining model there)."""
    client = await start_server(args)
    uri = "file://" + str(args.file)
    while (state := plain(await client.protocol.send_request_async("fimble/status", {}))["state"]) != "ready":
        if state == "error":
            raise SystemExit("the server could not load the model: see its log")
        await asyncio.sleep(0.2)
    if prepare is not None:
        await prepare(client)
    opened = time.perf_counter()
    client.text_document_did_open(types.DidOpenTextDocumentParams(
        text_document=types.TextDocumentItem(uri=uri, language_id="python", version=0, text=text)))
    settled = None
    while args.settle and time.perf_counter() - opened < args.settle:
        kv = plain(await client.protocol.send_request_async("fimble/status", {}))["cache"].get("kv", {})
        if any(label.startswith("document:") for label in kv.get("labels", [])):
            settled = round(time.perf_counter() - opened, 1)
            break
        await asyncio.sleep(0.5)
    print(f"document warm-up: {settled} s" if settled else "not waiting for the document warm-up", file=sys.stderr)
    chosen, lines = place_rows(args, text), text.split("\n")
    version, results = 0, []
    for row in chosen:
        original = lines[row]
        indent = len(original) - len(original.lstrip())
        version += 1
        client.text_document_did_change(types.DidChangeTextDocumentParams(  # jump there, cut the line
            text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=version),
            content_changes=[types.TextDocumentContentChangePartial(
                range=types.Range(types.Position(row, indent), types.Position(row, len(original))), text="")]))
        await asyncio.sleep(1 / args.cps)
        futures = []
        for k in range(args.typed):
            version += 1
            char = original[indent + k]
            client.text_document_did_change(types.DidChangeTextDocumentParams(
                text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=version),
                content_changes=[types.TextDocumentContentChangePartial(
                    range=types.Range(types.Position(row, indent + k), types.Position(row, indent + k)), text=char)]))
            if futures and not futures[-1][1].done():
                client.protocol.notify("$/cancelRequest", types.CancelParams(id=futures[-1][0]))
            msg_id = f"p{row}-{k}"
            futures.append((msg_id, asyncio.ensure_future(client.protocol.send_request_async(
                types.TEXT_DOCUMENT_INLINE_COMPLETION, types.InlineCompletionParams(
                    text_document=types.TextDocumentIdentifier(uri=uri),
                    position=types.Position(row, indent + k + 1),
                    context=types.InlineCompletionContext(trigger_kind=types.InlineCompletionTriggerKind.Automatic),
                    work_done_token=msg_id), msg_id=msg_id)), time.perf_counter()))
            if k + 1 < args.typed:
                await asyncio.sleep(1 / args.cps)
        msg_id, last, sent = futures[-1]
        items = (await last).items
        latency = (time.perf_counter() - sent) * 1000
        results.append({"row": row, "id": msg_id, "latency_ms": latency, "text": items[0].insert_text if items else "",
                        "expected": original[indent + args.typed :]})
        version += 1
        client.text_document_did_change(types.DidChangeTextDocumentParams(  # put the line back
            text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=version),
            content_changes=[types.TextDocumentContentChangePartial(
                range=types.Range(types.Position(row, indent), types.Position(row, indent + args.typed)),
                text=original[indent:])]))
        await asyncio.sleep(args.pause)
    status = plain(await client.protocol.send_request_async("fimble/status", {"history": 1000}))
    await client.shutdown_async(None)
    client.exit(None)
    await client.stop()
    by_token = {h["token"]: h for h in status["requests"] if "token" in h}
    for r in results:
        timings = by_token.get(r["id"], {}).get("timings", {})
        r.update(outcome=by_token.get(r["id"], {}).get("outcome"),
                 **{k: timings.get(k) for k in ("window", "prompt_tokens", "prompt_tokens_reused",
                                                "prompt_tokens_evaluated", "generated_tokens")})
    return {
        **burst_summary(results),
        "document_warm_s": settled,
        "windows": {w: sum(r["window"] == w for r in results) for w in {r["window"] for r in results}},
        "prompt_tokens_evaluated": {"median": statistics.median([r["prompt_tokens_evaluated"] or 0 for r in results]),
                                    "max": max(r["prompt_tokens_evaluated"] or 0 for r in results)},
        "prompt_tokens_reused_median": statistics.median([r["prompt_tokens_reused"] or 0 for r in results]),
        "outcomes": {o: sum(r["outcome"] == o for r in results) for o in {r["outcome"] for r in results}},
        "kv": status["cache"].get("kv"),
        "threads": thread_counts(status["requests"]),
        "memory": status.get("memory"),
        "each": [{k: (round(v) if isinstance(v, float) else v) for k, v in r.items() if k != "id"} for r in results],
    }


@contextlib.contextmanager
def busy(n: int, nice: int = 0) -> Iterator[None]:
    """`n` processes spinning a core each at `nice` (each spinning before this yields), killed after."""
    loop = f"import os; os.nice({nice}); print(flush=True)\nwhile True: pass"
    procs = [subprocess.Popen([sys.executable, "-c", loop], stdout=subprocess.PIPE) for _ in range(n)]
    try:
        for proc in procs:
            proc.stdout.readline()  # type: ignore[union-attr]
        yield
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()


def thread_counts(history: list[dict[str, Any]]) -> dict[str, int]:
    """How many of the model's requests ran with each llama.cpp thread count."""
    counts: dict[str, int] = {}
    for h in history:
        threads = h.get("timings", {}).get("threads")
        if threads:
            counts[str(threads)] = counts.get(str(threads), 0) + 1
    return counts


def options(args: argparse.Namespace) -> dict[str, Any]:
    """initializationOptions: the debounce if given, then each --set KEY=VALUE (JSON values)."""
    out: dict[str, Any] = {} if args.debounce is None else {"debounceMs": args.debounce}
    for item in args.set:
        key, _, value = item.partition("=")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def summarize(records: list[dict[str, Any]], status: dict[str, Any]) -> dict[str, Any]:
    history = status["requests"]
    by_token = {h["token"]: h for h in history if "token" in h}
    answered, superseded = [], {"RequestCancelled": 0, "empty list": 0}
    for r in records:
        future = r.get("future")
        if future is None:
            continue
        if future.cancelled() or future.exception() is not None:
            superseded["RequestCancelled"] += 1
            continue
        if by_token.get(r["id"], {}).get("outcome") == "cancelled":
            superseded["empty list"] += 1
            continue
        r["items"] = [item.insert_text for item in future.result().items]
        r["latency_ms"] = (r["done"] - r["sent"]) * 1000
        r["outcome"] = by_token.get(r["id"], {}).get("outcome")
        answered.append(r)
    model_calls = [h for h in history if h.get("timings", {}).get("prompt_tokens") is not None]
    shown = [r for r in answered if r["items"]]
    exact = [r for r in shown if r["items"][0].split("\n")[0] == r["rest_of_line"]]
    latencies = [r["latency_ms"] for r in answered]
    by_outcome: dict[str, list[float]] = {}
    for r in answered:  # "cache" came from type-through, the others from the model
        by_outcome.setdefault(str(r["outcome"]), []).append(r["latency_ms"])
    outcomes: dict[str, int] = {}
    for h in history:
        outcomes[h["outcome"]] = outcomes.get(h["outcome"], 0) + 1
    return {
        "keystrokes": len(records),
        "answered": len(answered),
        "answered_with_text": len(shown),
        "superseded": superseded,
        "latency_ms": {"p50": round(percentile(latencies, 50), 1), "p95": round(percentile(latencies, 95), 1)},
        "latency_ms_by_outcome": {k: stats_of(v) for k, v in by_outcome.items()},
        # (None: a request the server's history no longer holds — not counted as the model's)
        "model_answers_with_text_ms": stats_of([r["latency_ms"] for r in shown if r["outcome"] not in ("cache", None)]),
        "of_those_after_enter_ms": stats_of([r["latency_ms"] for r in shown
                                             if r["outcome"] not in ("cache", None) and r.get("line_start")]),
        "server_outcomes": outcomes,
        "cache": status["cache"],
        "prompt_tokens_evaluated_per_model_call": {
            "median": statistics.median([h["timings"]["prompt_tokens_evaluated"] for h in model_calls] or [0]),
            "max": max([h["timings"]["prompt_tokens_evaluated"] for h in model_calls] or [0]),
            "model_calls": len(model_calls),
        },
        "rest_of_line_exact_match": f"{len(exact)}/{len(shown)}",
        "threads": thread_counts(history),
        "model_answers": [{"reason": h.get("reason"), "server_ms": h.get("ms"), **{k: h["timings"].get(k) for k in (
                               "window", "prompt_tokens_evaluated", "generated_tokens", "first_token_ms",
                               "decode_ms", "total_ms", "draft_accepted")}}
                          for h in history if h["outcome"] == "shown" and "prompt_tokens" in h.get("timings", {})],
    }


def stats_of(latencies: list[float]) -> dict[str, float]:
    if not latencies:
        return {"n": 0}
    return {"n": len(latencies), "p50": round(percentile(latencies, 50), 1), "p95": round(percentile(latencies, 95), 1)}


def cold_baseline(answered: list[dict[str, Any]], budget: int) -> dict[str, Any]:
    """The same requests, each cold, through a plain Llama with the naive FIM prompt."""
    from llama_cpp import Llama

    from engine.backends import llama_reach as reach
    from engine.models import resolve_model

    llm = Llama(str(resolve_model(None).path), n_ctx=4096, verbose=False)
    latencies = []
    for r in answered:
        prefix_ids = llm.tokenize(r["prefix"].encode(), add_bos=False)[-(budget * 3 // 4):]
        suffix_ids = llm.tokenize(r["suffix"].encode(), add_bos=False)[: budget // 4]
        tokens = (llm.tokenize(b"<|fim_prefix|>", add_bos=False, special=True) + prefix_ids
                  + llm.tokenize(b"<|fim_suffix|>", add_bos=False, special=True) + suffix_ids
                  + llm.tokenize(b"<|fim_middle|>", add_bos=False, special=True))
        llm.reset()
        started = time.perf_counter()
        out = []
        for token in llm.generate(tokens, temp=0.0, reset=True):
            if reach.is_eog(llm, token):
                break
            piece = llm.detokenize([token]).decode("utf-8", "replace")
            out.append(piece)
            if "\n" in piece or len(out) >= 64:
                break
        latencies.append((time.perf_counter() - started) * 1000)
        reach.forget_from(llm, 0)
    return {"requests": len(latencies), "p50_ms": round(percentile(latencies, 50), 1),
            "p95_ms": round(percentile(latencies, 95), 1)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--file", type=Path, default=Path(sysconfig.get_paths()["stdlib"]) / "textwrap.py")
    parser.add_argument("--function", default="_fix_sentence_endings",
                        help="one or more, by commas: each body typed in a fresh server, the figures pooled")
    parser.add_argument("--cps", type=float, default=8.0)
    parser.add_argument("--pause", type=float, default=0.8)
    parser.add_argument("--debounce", type=int, default=None, help="debounceMs (default: the server's)")
    parser.add_argument("--budget", type=int, default=1024)
    parser.add_argument("--no-auto-indent", dest="auto_indent", action="store_false",
                        help="type each line's indentation space by space (no editor auto-indents so)")
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument("--scenario", choices=("type", "places"), default="type")
    parser.add_argument("--places", type=int, default=20)
    parser.add_argument("--typed", type=int, default=4)
    parser.add_argument("--settle", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a server option, e.g. --set warm=false --set kvCacheMb=0")
    parser.add_argument("--llama-server", metavar="PATH",
                        help="places: also run llama-server (this binary) with llama.vim's requests, after fimble")
    parser.add_argument("--busy", type=int, default=0, metavar="N",
                        help="keep N other processes busy (a loop each) for the whole run")
    parser.add_argument("--busy-nice", type=int, default=0, metavar="K", help="their nice (a build: 0; an indexer: 19)")
    args = parser.parse_args()
    with busy(args.busy, args.busy_nice):
        run(args)


def run(args: argparse.Namespace) -> None:
    if args.scenario == "places":
        args.file = args.file if args.file.name != "textwrap.py" else args.file.with_name("calendar.py")
        text = args.file.read_text()
        moved = asyncio.run(places(args, text))
        if args.llama_server:
            from peer_llama_server import places as peer_places

            from engine.models import resolve_model

            peer = peer_places(args.llama_server, str(resolve_model(None).path), text, place_rows(args, text),
                               args.typed, args.cps, args.pause)
            moved["peer"] = {"server": "llama-server --cache-reuse 256, llama.vim's /infill requests",
                             **burst_summary(peer), "each": peer}
        print(json.dumps(moved, indent=1))
        return
    result: dict[str, Any] = {"records": [], "ready": 0}
    for run, function in enumerate(args.function.split(",")):  # one server each: every body typed fresh
        text, offset, body = cut_body(args.file.read_text(), function)
        print(f"typing {len(body)} characters of {args.file.name}:{function} at {args.cps}/s", file=sys.stderr)
        one = asyncio.run(replay(args, text, offset, body, run))
        requests = result.get("status", {}).get("requests", [])
        result = {"records": result["records"] + one["records"], "ready": result["ready"] + one["ready"],
                  "status": {**one["status"], "requests": requests + one["status"]["requests"]}}
    summary = {**summarize(result["records"], result["status"]), "completion_ready_notifications": result["ready"]}
    print(json.dumps(summary, indent=2))
    if not args.no_baseline:
        answered = [r for r in result["records"] if "latency_ms" in r]
        baseline = cold_baseline(answered, args.budget)
        print("cold baseline:", json.dumps(baseline))
        if summary["latency_ms"]["p50"] > 0:
            print(f"speed-up at p50: {baseline['p50_ms'] / summary['latency_ms']['p50']:.1f}x")
        from_model = [r for r in answered if r.get("outcome") != "cache"]
        if from_model:
            cold = cold_baseline(from_model, args.budget)
            warm = percentile([r["latency_ms"] for r in from_model], 50)
            print("answered by the model only:", json.dumps({"requests": len(from_model), "p50_ms": round(warm, 1),
                                                             "cold_p50_ms": cold["p50_ms"]}),
                  f"speed-up at p50: {cold['p50_ms'] / warm:.1f}x")


if __name__ == "__main__":
    main()

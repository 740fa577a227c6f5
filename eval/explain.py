"""`fimble eval explain`: how much of what the code does an explanation keeps (HumanEvalExplain).

For each HumanEval task:
1. the function without its docstring (the prompt's declaration + the canonical solution) is
   explained through the editor's explain path: `engine.explain.target` picks the code for a
   cursor on the `def` line, the explaining model (`explainModel`, as the editor's) explains it with
   the same prompt and the same last pass that removes LaTeX;
2. fenced code blocks are cut from the explanation (counted as `leaked_code`), and the *judge* (a
   fixed model, greedy, whatever model explains) writes the function again from its signature and
   the explanation alone, with REWRITE_INSTRUCTION;
3. the judge also writes it from the task's own docstring with the same instruction: the ceiling,
   what a reader with the author's description gets;
4. with --execute, both rewrites run against the task's tests in the sandbox.
fidelity = pass@1 from the explanation, ceiling = pass@1 from the docstring, ratio = fidelity /
ceiling. A judge as weak as the explainer caps the figure at its own skill; the ratio says how much
of what the judge can do the explanation carried. Resumable: a rerun with the same --out skips what
is done; `--ceiling-from DIR` takes the ceiling of an earlier run with the same judge.
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import re
import statistics
import threading
import time
from pathlib import Path
from typing import Any

from engine import explain, models
from engine.backends import GenerationRequest
from engine.config import Settings
from engine.errors import EngineError
from engine.prompt import chat_prompt
from engine.service import CompletionService
from engine.syntax import SyntaxTree
from engine.text import split_lines

from . import report
from .data import load_problems, read_jsonl, write_jsonl
from .generate import extract_code

# The rewrite step's prompt (fixed, so runs compare): the signature and a description, nothing else.
REWRITE_INSTRUCTION = ("Write the Python function `{signature}` that does exactly what this description says. "
                       "Reply with only the function and the imports it needs, in one ```python block."
                       "\n\nDescription:\n{explanation}")
# Names the rewrite step: a ceiling is reused only under the same judge and the same instruction.
REWRITE_ID = hashlib.sha256(REWRITE_INSTRUCTION.encode()).hexdigest()[:12]
LATEX_LEFT = ("\\(", "\\[", "$$", "\\frac", "\\text{", "\\times")
_CODE_SPAN = re.compile(r"`([^`\n]+)`")  # left to right, so the text between two spans is not one


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--limit", type=int, help="only the first N tasks, in file order")
    parser.add_argument("--out", required=True, help="folder for everything the run writes")
    parser.add_argument("--execute", action="store_true", help="run the rewrites' tests in the sandbox")
    parser.add_argument("--judge", help="the model that rewrites each function (a known name or a path; default: "
                                        "the largest known model assembled, else the explaining model)")
    parser.add_argument("--ceiling-from", metavar="DIR", help="take the ceiling (rewrites from the docstrings) "
                                                              "from an earlier run's folder with the same judge")
    parser.add_argument("--workers", type=int, default=2, help="samples executed in parallel")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds per sample")


def without_docstring(problem: dict[str, Any]) -> tuple[str, str, str]:
    """(the whole function without its docstring, the code above the function, its signature)."""
    function, above, signature, _ = _parts(problem)
    return function, above, signature


def _parts(problem: dict[str, Any]) -> tuple[str, str, str, str]:
    """`without_docstring`'s three, and the docstring itself (cleaned, as `help()` shows it)."""
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
    return "\n".join(kept).rstrip() + "\n", above, signature, ast.get_docstring(function) or ""


def rewrite(judge: CompletionService, signature: str, description: str) -> str:
    """The judge writes the function from its signature and a description alone (greedy)."""
    info = judge.info
    messages = [{"role": "user", "content": REWRITE_INSTRUCTION.format(signature=signature, explanation=description)}]
    prompt = chat_prompt(messages, info.chat_template, bos_token=info.bos_token, eos_token=info.eos_token,
                         add_bos=info.add_bos)
    result = judge.generate(GenerationRequest.from_settings(prompt, judge.settings, max_tokens=512,
                                                            time_budget_s=None))
    return extract_code(result.text)


def _program(above: str, code: str) -> str:
    return (above + "\n\n\n" if above else "") + code + "\n"


def explain_one(explainer: CompletionService, judge: CompletionService, problem: dict[str, Any]) -> dict[str, Any]:
    function, above, signature, _ = _parts(problem)
    document = _program(above, function.rstrip())
    def_line = document.count("\n", 0, document.index(function.rstrip()))
    code = explain.target(document, def_line, def_line, SyntaxTree(document, "python"))
    result = explainer.explain_result(code, "python", cancel=threading.Event())
    prose, leaked = explain.without_code_blocks(result.text)
    rewritten = rewrite(judge, signature, prose)
    stats = result.stats
    decode_s = max(stats.decode_ms, 1e-9) / 1000
    return {
        "task_id": problem["task_id"], "sample": 0, "code": code, "explanation": result.text,
        "leaked_code": leaked, "words": explain.word_count(prose),
        "latex_left": any(mark in result.text for mark in LATEX_LEFT),
        "copied_from_prompt": copied_from_prompt(result.text, code),
        "rewrite": rewritten, "program": _program(above, rewritten),
        "first_token_ms": stats.first_token_ms, "generated_tokens": stats.generated_tokens,
        "tokens_per_s": round(stats.generated_tokens / decode_s, 1), "stop_reason": stats.stop_reason,
    }


def ceiling_one(judge: CompletionService, judge_name: str, problem: dict[str, Any]) -> dict[str, Any]:
    """The judge's rewrite from the task's own docstring: what the best description gives."""
    _, above, signature, docstring = _parts(problem)
    rewritten = rewrite(judge, signature, docstring)
    return {"task_id": problem["task_id"], "sample": 0, "judge": judge_name, "rewrite_id": REWRITE_ID,
            "rewrite": rewritten, "program": _program(above, rewritten)}


def copied_from_prompt(explanation: str, code: str) -> bool:
    """A code span taken from the explain prompt's own words rather than from the code explained
    (prompt A's example formula turned up in explanations of unrelated code)."""
    return any(len(span) >= 6 and span in explain.SYSTEM and span not in code
               for span in _CODE_SPAN.findall(explanation))


def default_judge(explaining: str) -> str:
    installed = models.installed_known_models()
    return installed[0].name if installed else explaining


def judge_settings(settings: Settings, judge: str) -> Settings:
    """The judge runs greedy on this machine, whatever backend explains: a known name or a GGUF file
    with llama.cpp, a Hugging Face folder with torch."""
    backend = "torch" if Path(judge).expanduser().is_dir() else "llama_cpp"
    return Settings(model=judge, backend=backend, temperature=0.0, n_threads=settings.n_threads,
                    n_ctx=settings.n_ctx, kv_cache_mb=0, warm=False)


def _resumed(path: Path, keep: Any = lambda row: True) -> dict[str, dict[str, Any]]:
    return {row["task_id"]: row for row in read_jsonl(path) if keep(row)} if path.exists() else {}


def run(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    from .harness import _progress, execute

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    problems = load_problems(None, args.limit)
    for problem in problems:
        check_problem(problem)
    if getattr(args, "model", None) and not settings.explain_model:
        settings = settings.replace(explain_model=args.model)  # `--model` here names the explaining model
    explaining = explain.explaining_settings(settings).replace(temperature=0.0)
    judge_name = args.judge or default_judge(explaining.model)
    same_judge = judge_name == explaining.model
    same = lambda row: row.get("judge") == judge_name and row.get("rewrite_id") == REWRITE_ID  # noqa: E731
    samples_path, ceiling_path = out / "samples.jsonl", out / "ceiling.jsonl"
    done = _resumed(samples_path, lambda row: row.get("judge") == judge_name)
    ceiling = _resumed(ceiling_path, same)

    def take_earlier() -> None:
        """The ceiling rows an earlier run has (read again before each one this run would write:
        that run may still be going)."""
        if not args.ceiling_from:
            return
        earlier = _resumed(Path(args.ceiling_from) / "ceiling.jsonl", same)
        taken = [earlier[p["task_id"]] for p in problems if p["task_id"] in earlier and p["task_id"] not in ceiling]
        write_jsonl(ceiling_path, taken, append=True)
        ceiling.update({row["task_id"]: row for row in taken})

    take_earlier()
    explaining_todo = [p for p in problems if p["task_id"] not in done]
    explainer = CompletionService(explaining)
    judge = explainer if same_judge else CompletionService(judge_settings(settings, judge_name))
    started = time.perf_counter()
    if explaining_todo:
        explainer.load()
    bar = _progress(len(explaining_todo), "explaining and rewriting", unit="task")
    for problem in explaining_todo:
        row = {**explain_one(explainer, judge, problem), "judge": judge_name}
        write_jsonl(samples_path, [row], append=True)
        done[problem["task_id"]] = row
        bar.update()
    bar.close()
    # The ceiling last: the judge's rewrites from the docstrings, where no earlier run has them.
    take_earlier()
    ceiling_todo = [p for p in problems if p["task_id"] not in ceiling]
    bar = _progress(len(ceiling_todo), "the ceiling: rewriting from docstrings", unit="task")
    for problem in ceiling_todo:
        take_earlier()
        task = problem["task_id"]
        if task not in ceiling:
            ceiling[task] = ceiling_one(judge, judge_name, problem)
            write_jsonl(ceiling_path, [ceiling[task]], append=True)
        bar.update()
    bar.close()
    samples = [done[p["task_id"]] for p in problems]
    ceilings = [ceiling[p["task_id"]] for p in problems]
    results = ceiling_results = None
    if args.execute:
        by_id = {p["task_id"]: p for p in problems}
        results = execute(samples, by_id, out / "results.jsonl", args)
        ceiling_results = execute(ceilings, by_id, out / "ceiling_results.jsonl", args)
    summary = summarize(samples, results, ceiling_results, {
        "model": explaining.model, "judge": judge_name, "backend": explaining.backend,
        "wall_s": round(time.perf_counter() - started, 1)})
    report.write_files(out, summary, markdown(summary, samples), panels(samples))
    return summary


def _percentile(values: list[int], share: float) -> int | None:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * share))] if ordered else None


def summarize(samples: list[dict[str, Any]], results: list[dict[str, Any]] | None,
              ceiling_results: list[dict[str, Any]] | None, meta: dict[str, Any]) -> dict[str, Any]:
    words = [s["words"] for s in samples]
    first = [s["first_token_ms"] for s in samples if s.get("first_token_ms") is not None]
    count = max(len(samples), 1)
    summary: dict[str, Any] = {
        "tasks": len(samples),
        "words_median": statistics.median(words) if words else None,
        "words_p95": _percentile(words, 0.95),
        "over_120_words": sum(w > 120 for w in words),
        "leaked_code_share": round(sum(s["leaked_code"] > 0 for s in samples) / count, 4),
        "latex_left": sum(bool(s["latex_left"]) for s in samples),
        "copied_from_prompt": sum(copied_from_prompt(s["explanation"], s["code"]) for s in samples),
        "first_token_ms_median": round(statistics.median(first), 1) if first else None,
        "tokens_per_s_median": statistics.median(s["tokens_per_s"] for s in samples) if samples else None,
        **meta,
    }
    if results is not None:
        passed = {r["task_id"] for r in results if r["passed"]}
        summary["fidelity"] = summary["pass@1"] = round(len(passed) / max(len(results), 1), 4)
        summary["passed"] = len(passed)
        if ceiling_results is not None:
            by_docstring = {r["task_id"] for r in ceiling_results if r["passed"]}
            summary["ceiling"] = round(len(by_docstring) / max(len(ceiling_results), 1), 4)
            summary["ceiling_passed"] = len(by_docstring)
            summary["ratio"] = round(len(passed) / len(by_docstring), 4) if by_docstring else None
            order = [s["task_id"] for s in samples]
            # The docstring was enough and the explanation was not: it lost what a reader needed.
            summary["lost"] = [t for t in order if t in by_docstring and t not in passed]
            summary["gained"] = [t for t in order if t in passed and t not in by_docstring]
    return summary


def markdown(summary: dict[str, Any], samples: list[dict[str, Any]] | None = None) -> str:
    text = ("# fimble eval explain\n\nExplain each HumanEval function (docstring removed); the judge rewrites it "
            "from the explanation alone (fidelity) and from the task's docstring (ceiling); ratio = fidelity / "
            "ceiling.\n\n" + report.table([(k, v) for k, v in summary.items() if k not in ("lost", "gained")]))
    lost = summary.get("lost") or []
    if lost and samples is not None:
        by_id = {s["task_id"]: s for s in samples}
        text += (f"\n## Lost: {len(lost)} tasks the docstring's rewrite passes and the explanation's does not\n\n"
                 + "\n\n".join(f"### {task}\n\n{by_id[task]['explanation']}" for task in lost) + "\n")
    return text


def panels(samples: list[dict[str, Any]]) -> list[report.Panel]:
    return [report.Panel("explanations", "explanation length (words)", "tasks", bins=20,
                         series={"": [s["words"] for s in samples]}, mark=(120, "120 words"))]


def check_problem(problem: dict[str, Any]) -> None:
    if "canonical_solution" not in problem:
        raise EngineError(f"task {problem['task_id']} has no canonical_solution to explain")

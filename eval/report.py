"""Summaries: pass@k, latency percentiles, a markdown table and a PNG plot."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

from .metrics import mean_pass_at_k, percentile

PERCENTILES = (50, 90, 95, 99)


def summarize(
    samples: list[dict[str, Any]], results: list[dict[str, Any]] | None, meta: dict[str, Any]
) -> dict[str, Any]:
    summary: dict[str, Any] = dict(meta)
    summary["tasks"] = len({s["task_id"] for s in samples})
    summary["samples"] = len(samples)
    ttft = [s["first_token_ms"] for s in samples if s.get("first_token_ms") is not None]
    rates = [s["generated_tokens"] / (s["decode_ms"] / 1000) for s in samples
             if s.get("decode_ms") and s.get("generated_tokens")]
    summary["latency"] = {
        "time_to_first_token_ms": {f"p{q}": round(percentile(ttft, q), 1) for q in PERCENTILES},
        "decode_tokens_per_s": {f"p{q}": round(percentile(rates, q), 1) for q in PERCENTILES},
    }
    if "exact" in (samples[0] if samples else {}):
        summary["exact_match"] = round(sum(bool(s["exact"]) for s in samples) / len(samples), 4)
    if results is not None:
        per_task: dict[str, list[bool]] = defaultdict(list)
        for row in results:
            per_task[row["task_id"]].append(bool(row["passed"]))
        counts = [(len(v), sum(v)) for v in per_task.values()]
        n = min((c[0] for c in counts), default=0)
        for k in range(1, n + 1):
            summary[f"pass@{k}"] = round(mean_pass_at_k(counts, k), 4)
        summary["passed_tasks"] = sum(1 for _, c in counts if c)
        outcomes: dict[str, int] = defaultdict(int)
        for row in results:
            outcomes[row["result"].split(":")[0]] += 1
        summary["outcomes"] = dict(outcomes)
    return summary


def markdown(summary: dict[str, Any]) -> str:
    rows = [("mode", summary.get("mode")), ("model", summary.get("model")), ("tasks", summary["tasks"]),
            ("samples", summary["samples"])]
    if summary.get("cursor"):
        rows.insert(1, ("cursor", summary["cursor"]))
    rows += [(k, f"{v:.4f}") for k, v in summary.items() if k.startswith("pass@")]
    if "passed_tasks" in summary:
        rows.append(("passed tasks", summary["passed_tasks"]))
    if "exact_match" in summary:
        rows.append(("exact match", f"{summary['exact_match']:.4f}"))
    for name, values in summary["latency"].items():
        rows.append((name, ", ".join(f"{k} {v}" for k, v in values.items())))
    for key in ("generation_s", "execution_s", "wall_s"):
        if key in summary:
            rows.append((key, f"{summary[key]:.1f}"))
    lines = ["| metric | value |", "|---|---|", *(f"| {k} | {v} |" for k, v in rows)]
    return "\n".join(lines) + "\n"


def plot(summary: dict[str, Any], samples: list[dict[str, Any]], path: Path) -> bool:
    """pass@k and the time-to-first-token distribution; False when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    ks = sorted(int(k.split("@")[1]) for k in summary if k.startswith("pass@"))
    left.plot(ks, [summary[f"pass@{k}"] for k in ks], marker="o")
    left.set(xlabel="k", ylabel="pass@k", title=f"pass@k — {summary.get('mode')}", ylim=(0, 1))
    ttft = [s["first_token_ms"] for s in samples if s.get("first_token_ms") is not None]
    right.hist(ttft, bins=30)
    right.set(xlabel="time to first token (ms)", ylabel="samples", title="latency")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return True


def write(out: Path, summary: dict[str, Any], samples: list[dict[str, Any]]) -> None:
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    (out / "report.md").write_text(markdown(summary))
    plot(summary, samples, out / "plot.png")

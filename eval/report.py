"""What every eval suite writes: summary.json, report.md and plot.png, from one place.

The suites (`eval humaneval`, `eval repo`, `eval explain`, and benchmarks/bench_holes_lsp.py)
each compute their own scores; the files, the Markdown table and the plot's panels are drawn here.
`summarize`/`markdown` below are the humaneval suite's (pass@k and latency).
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
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
    return table(rows)


@dataclass(frozen=True)
class Panel:
    """One panel of plot.png: histograms of `series` (label → values), or a line through `line`."""

    title: str
    xlabel: str
    ylabel: str
    series: dict[str, list[float]] = field(default_factory=dict)
    line: tuple[Sequence[float], Sequence[float]] | None = None
    bins: int = 30
    value_range: tuple[float, float] | None = None
    ylim: tuple[float, float] | None = None
    mark: tuple[float, str] | None = None  # a dashed vertical line and its label


def plot(path: Path, panels: Sequence[Panel]) -> bool:
    """The panels side by side in one PNG; False when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    figure, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4), squeeze=False)
    for axis, panel in zip(axes[0], panels, strict=True):
        if panel.line is not None:
            axis.plot(*panel.line, marker="o")
        elif panel.series:
            labels = list(panel.series)
            axis.hist([panel.series[label] for label in labels], bins=panel.bins, range=panel.value_range,
                      label=labels if len(labels) > 1 else None)
        if panel.mark is not None:
            axis.axvline(panel.mark[0], color="red", linestyle="--", label=panel.mark[1])
        if panel.mark is not None or len(panel.series) > 1:
            axis.legend()
        axis.set(xlabel=panel.xlabel, ylabel=panel.ylabel, title=panel.title)
        if panel.ylim is not None:
            axis.set_ylim(*panel.ylim)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return True


def table(rows: Sequence[tuple[str, Any]], header: tuple[str, str] = ("metric", "value")) -> str:
    """A two-column Markdown table."""
    lines = [f"| {header[0]} | {header[1]} |", "|---|---|", *(f"| {key} | {value} |" for key, value in rows)]
    return "\n".join(lines) + "\n"


def write_files(out: Path, summary: dict[str, Any], report_md: str, panels: Sequence[Panel]) -> None:
    """summary.json, report.md and plot.png under `out`."""
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    (out / "report.md").write_text(report_md)
    plot(out / "plot.png", panels)


def panels(summary: dict[str, Any], samples: list[dict[str, Any]]) -> list[Panel]:
    """The humaneval suite's: pass@k, and the time-to-first-token distribution."""
    ks = sorted(int(k.split("@")[1]) for k in summary if k.startswith("pass@"))
    ttft = [s["first_token_ms"] for s in samples if s.get("first_token_ms") is not None]
    return [Panel(f"pass@k — {summary.get('mode')}", "k", "pass@k", line=(ks, [summary[f"pass@{k}"] for k in ks]),
                  ylim=(0, 1)),
            Panel("latency", "time to first token (ms)", "samples", series={"": ttft})]


def write(out: Path, summary: dict[str, Any], samples: list[dict[str, Any]]) -> None:
    write_files(out, summary, markdown(summary), panels(summary, samples))

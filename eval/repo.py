"""`fimble eval repo PATH`: how a model does on your own code.

Holes are cut from the repository (eval/repo_holes.py); each is completed through the same
CompletionService the editor uses — the cursor placed where people type (`--cursor`), other
files of the repository offered as open documents (nearest first), any option by `--set` — and
scored: exact match, edit similarity (normalised Levenshtein on characters), whether the spliced
file parses as well as the original, latency (first token, total) and prompt tokens evaluated.
Aggregated by kind and by language. With --test-cmd the repository's own tests judge each filled
hole too, in the sandbox (eval/repo_tests.py). Everything goes under --out: holes.jsonl (picked
once), samples.jsonl, coverage.jsonl and results.jsonl (with --test-cmd), summary.json, report.md,
plot.png; a rerun with the same --out resumes.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from collections import OrderedDict, defaultdict
from pathlib import Path
from typing import Any

from engine.config import Settings
from engine.context import OpenDocument
from engine.errors import EngineError
from engine.service import CompletionRequest, CompletionService
from engine.syntax import SUPPORTED_LANGUAGES, SyntaxTree, canonical_language, error_count, get_language, parse
from engine.text import position_at
from native.cancel import CancelFlag

from . import report
from .data import read_jsonl, write_jsonl
from .harness import _progress
from .holes import CURSOR_MODES
from .metrics import edit_similarity, percentile
from .repo_holes import (
    HOLES_PER_FILE,
    KINDS,
    RepoHole,
    file_hash,
    open_documents,
    pick_holes,
    read_source,
    regular_file_inside,
    source_files,
)
from .repo_tests import RepoTests, covered_holes, judge_samples, tests_summary

OPEN_FILES = 4  # other files of the repository offered as open documents
OPEN_FILE_CHARS = 64_000  # larger ones are not offered
CANDIDATES_PER_HOLE = 10  # --test-cmd: holes tried for coverage, at most, per hole wanted


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", help="the repository (a git checkout: its tracked files; else every file)")
    parser.add_argument("--out", required=True, help="folder for everything the run writes")
    parser.add_argument("--holes", type=int, default=100, help="how many holes")
    parser.add_argument("--kinds", default=",".join(KINDS), help="line, block, span (comma-separated)")
    parser.add_argument("--seed", type=int, default=0, help="which holes (the same seed picks the same ones)")
    parser.add_argument("--languages", default="", help="only these languages (LSP ids, comma-separated)")
    parser.add_argument("--cursor", choices=CURSOR_MODES, default="after-indent",
                        help="where the cursor sits in line and block holes (span holes: at the span)")
    parser.add_argument("--open-files", type=int, default=OPEN_FILES,
                        help="other files of the repository offered as open documents, nearest first")
    parser.add_argument("--test-cmd", default="", metavar="CMD",
                        help="the repository's own tests judge each filled hole: CMD runs at the top of the "
                             "repository, in the sandbox, over a throwaway copy; holes are kept where emptying "
                             "them makes CMD fail")
    parser.add_argument("--test-timeout", type=float, help="seconds per run of CMD (default: 4 times the "
                                                            "first run's, at least 10)")
    parser.add_argument("--candidates", type=int, help="--test-cmd: holes tried at most to find --holes the tests "
                                                       f"cover (default {CANDIDATES_PER_HOLE} per hole)")
    parser.add_argument("--workers", type=int, default=2, help="--test-cmd: runs of CMD at once")


def _csv(value: str, known: tuple[str, ...], what: str) -> tuple[str, ...]:
    chosen = tuple(canonical_language(v.strip()) if what == "languages" else v.strip()
                   for v in value.split(",") if v.strip())
    unknown = [v for v in chosen if v not in known]
    if unknown:
        raise EngineError(f"unknown {what} {', '.join(unknown)}; known: {', '.join(known)}")
    return chosen or known


class Sources:
    """The repository's files as read once, and parsed trees of the recently used ones."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.texts: dict[str, str | None] = {}
        self._trees: OrderedDict[str, SyntaxTree] = OrderedDict()

    def text(self, path: str) -> str | None:
        if path not in self.texts:
            inside = regular_file_inside(self.root.resolve(), self.root / path)
            self.texts[path] = read_source(self.root / path) if inside else None
        return self.texts[path]

    def tree(self, path: str, language: str) -> SyntaxTree | None:
        text = self.text(path)
        if text is None or len(text) > OPEN_FILE_CHARS:
            return None
        if path not in self._trees:
            self._trees[path] = SyntaxTree(text, language)
            while len(self._trees) > 4 * OPEN_FILES:
                self._trees.popitem(last=False)
        self._trees.move_to_end(path)
        return self._trees[path]


def syntax_errors(text: str, language: str) -> int | None:
    """The parse's error and missing nodes (None: no grammar for the language)."""
    spec = get_language(language)
    return None if spec is None else error_count(parse(spec, text))


def complete_hole(service: CompletionService, sources: Sources, hole: RepoHole, files: list[Path],
                  args: argparse.Namespace) -> dict[str, Any]:
    text = sources.text(hole.path)
    if text is None or file_hash(text) != hole.sha256:
        raise EngineError(f"{hole.path} changed since its holes were picked: use a new --out")
    placed = hole.place(text, args.cursor, args.seed)
    others = []
    for other in open_documents(sources.root, hole.path, files, args.open_files):
        tree = sources.tree(str(other), hole.language)
        if tree is not None:
            others.append(OpenDocument(str(other), tree))
    pos = position_at(placed.document, len(placed.before))
    started = time.perf_counter()
    result = service.complete(CompletionRequest(placed.document, pos.line, pos.character, "utf-16", hole.language,
                                                hole.path, cancel=CancelFlag(), others=others))
    wall_ms = (time.perf_counter() - started) * 1000
    spliced = placed.program(result.text)
    errors_before, errors_after = syntax_errors(text, hole.language), syntax_errors(spliced, hole.language)
    timings = result.timings
    return {
        "id": hole.id, "path": hole.path, "language": hole.language, "kind": hole.kind, "cursor": args.cursor,
        "typed": placed.before[hole.start :], "expected": placed.expected, "completion": result.text,
        "reason": result.reason,
        "exact": result.text.strip() == placed.expected.strip(),
        "edit_similarity": round(edit_similarity(result.text.rstrip(), placed.expected.rstrip()), 4),
        "parses": None if errors_after is None or errors_before is None else errors_after <= errors_before,
        "first_token_ms": timings.get("first_token_ms"), "total_ms": round(wall_ms, 1),
        "prompt_tokens": timings.get("prompt_tokens"),
        "prompt_tokens_evaluated": timings.get("prompt_tokens_evaluated"),
        "open_documents": len(others), "snippets": timings.get("snippets", 0),
    }


def changed_options(settings: Settings) -> dict[str, Any]:
    """The options that differ from their defaults (what makes this run this run)."""
    defaults = Settings().to_dict()
    return {k: v for k, v in settings.to_dict().items() if defaults.get(k) != v}


def _scores(rows: list[dict[str, Any]]) -> dict[str, Any]:
    parsed = [r["parses"] for r in rows if r["parses"] is not None]
    first = [r["first_token_ms"] for r in rows if r.get("first_token_ms") is not None]
    total = [r["total_ms"] for r in rows]
    evaluated = [r["prompt_tokens_evaluated"] for r in rows if r.get("prompt_tokens_evaluated") is not None]
    judged = [r for r in rows if "passed" in r]
    return {
        "holes": len(rows),
        "exact_match": round(sum(r["exact"] for r in rows) / len(rows), 4) if rows else None,
        "edit_similarity": round(sum(r["edit_similarity"] for r in rows) / len(rows), 4) if rows else None,
        "parses": round(sum(parsed) / len(parsed), 4) if parsed else None,
        "shown": round(sum(bool(r["completion"].strip()) for r in rows) / len(rows), 4) if rows else None,
        **({"passes_tests": round(sum(r["passed"] for r in judged) / len(judged), 4),
            "refused": sum(r["test_result"].startswith("refused") for r in judged)} if judged else {}),
        "first_token_ms": {"p50": round(percentile(first, 50), 1), "p95": round(percentile(first, 95), 1)},
        "total_ms": {"p50": round(percentile(total, 50), 1), "p95": round(percentile(total, 95), 1)},
        "prompt_tokens_evaluated_p50": round(percentile(evaluated, 50), 1) if evaluated else None,
    }


def summarize(rows: list[dict[str, Any]], meta: dict[str, Any]) -> dict[str, Any]:
    by: dict[str, dict[str, list[dict[str, Any]]]] = {"kind": defaultdict(list), "language": defaultdict(list)}
    for row in rows:
        by["kind"][row["kind"]].append(row)
        by["language"][row["language"]].append(row)
    return {**meta, **_scores(rows),
            "by_kind": {k: _scores(v) for k, v in sorted(by["kind"].items())},
            "by_language": {k: _scores(v) for k, v in sorted(by["language"].items())}}


def markdown(summary: dict[str, Any]) -> str:
    head = (f"# fimble eval repo: {summary['repository']}\n\n"
            f"model `{summary['model']}` ({summary['backend']}), cursor `{summary['cursor']}`, "
            f"{summary['holes']} holes, seed {summary['seed']}, options {json.dumps(summary['options'])}\n\n")
    columns = ("holes", "exact_match", "edit_similarity", "parses", "shown",
               *(("passes_tests", "refused") if "passes_tests" in summary else ()))
    lines = ["| group | " + " | ".join(columns) + " | first token p50/p95 ms | total p50/p95 ms | "
             "prompt tokens evaluated p50 |", "|---" * (len(columns) + 4) + "|"]

    def row(name: str, s: dict[str, Any]) -> str:
        cells = [str(s[c]) for c in columns]
        return (f"| {name} | " + " | ".join(cells) + f" | {s['first_token_ms']['p50']} / {s['first_token_ms']['p95']}"
                f" | {s['total_ms']['p50']} / {s['total_ms']['p95']} | {s['prompt_tokens_evaluated_p50']} |")

    if "tests" in summary:
        t = summary["tests"]
        head += (f"tests: `{t['command']}` in {t['cwd']} (baseline {t['baseline_s']} s, timeout {t['timeout_s']} s); "
                 f"{t['covered']} of {t['candidates_tried']} holes tried are covered by them\n\n")
    lines.append(row("**all**", summary))
    lines += [row(f"kind: {k}", v) for k, v in summary["by_kind"].items()]
    lines += [row(f"language: {k}", v) for k, v in summary["by_language"].items()]
    return head + "\n".join(lines) + f"\n\nwall time {summary.get('wall_s')} s\n"


def panels(rows: list[dict[str, Any]]) -> list[report.Panel]:
    """Edit similarity by kind, and the latency distribution."""
    kinds = sorted({r["kind"] for r in rows})
    return [report.Panel("edit similarity by kind", "edit similarity", "holes", bins=10, value_range=(0, 1),
                         series={k: [r["edit_similarity"] for r in rows if r["kind"] == k] for k in kinds}),
            report.Panel("latency", "completion time (ms)", "holes", series={"": [r["total_ms"] for r in rows]})]


def run(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    root = Path(args.path).resolve()
    if not root.is_dir():
        raise EngineError(f"{args.path} is not a folder")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    kinds = _csv(args.kinds, KINDS, "kinds")
    languages = _csv(args.languages, SUPPORTED_LANGUAGES, "languages")
    started = time.perf_counter()
    # The tests first: without the sandbox, or with tests that fail already, there is nothing to do.
    tests = RepoTests.open(root, args.test_cmd, args.workers, args.test_timeout) if args.test_cmd else None
    try:
        return _run(args, settings, root, out, kinds, languages, tests, started)
    finally:
        if tests is not None:
            tests.close()


def _run(args: argparse.Namespace, settings: Settings, root: Path, out: Path, kinds: tuple[str, ...],
         languages: tuple[str, ...], tests: RepoTests | None, started: float) -> dict[str, Any]:
    holes_path, samples_path, coverage_path = out / "holes.jsonl", out / "samples.jsonl", out / "coverage.jsonl"
    sources = Sources(root)
    if holes_path.exists():  # resuming: the holes picked the first time
        if tests is not None and not coverage_path.exists():
            raise EngineError(f"the holes in {out} were picked without --test-cmd: use a new --out")
        holes = [RepoHole(**row) for row in read_jsonl(holes_path)]
    elif tests is not None:
        # More per file than a plain run takes: the tests may cover only a few of a file's places.
        candidates = pick_holes(root, args.candidates or CANDIDATES_PER_HOLE * args.holes, kinds, args.seed,
                                languages, per_file=CANDIDATES_PER_HOLE * HOLES_PER_FILE, skip_tests=True)
        random.Random(args.seed).shuffle(candidates)  # covered holes from all over, not the first files
        texts = {h.path: sources.text(h.path) or "" for h in candidates}
        holes = sorted(covered_holes(tests, candidates, texts, args.holes, coverage_path),
                       key=lambda h: (h.path, h.start))
        write_jsonl(holes_path, [h.row() for h in holes])
    else:
        holes = pick_holes(root, args.holes, kinds, args.seed, languages)
        write_jsonl(holes_path, [h.row() for h in holes])
    if not holes:
        raise EngineError(f"no holes in {root}: no source files in {', '.join(languages)} worth typing in"
                          + (" that the tests cover" if tests is not None else ""))
    done = {r["id"]: r for r in read_jsonl(samples_path)} if samples_path.exists() else {}
    todo = [h for h in holes if h.id not in done]
    files = source_files(root, languages)
    service = CompletionService(settings)
    if todo:
        service.load()
    bar = _progress(len(todo), "completing holes", unit="hole")
    for hole in todo:
        row = complete_hole(service, sources, hole, files, args)
        write_jsonl(samples_path, [row], append=True)
        done[hole.id] = row
        bar.set_postfix(exact=sum(r["exact"] for r in done.values()))
        bar.update()
    bar.close()
    rows = [done[h.id] for h in holes]
    meta = {"repository": str(root), "model": settings.model, "backend": settings.backend, "cursor": args.cursor,
            "kinds": list(kinds), "seed": args.seed, "open_files": args.open_files,
            "settings": settings.to_dict(), "options": changed_options(settings)}
    if tests is not None:
        tests_started = time.perf_counter()
        judged = []
        for hole, row in zip(holes, rows, strict=True):
            text = sources.text(hole.path) or ""
            judged.append((hole, row, text, hole.place(text, args.cursor, args.seed).program(row["completion"])))
        verdicts = judge_samples(tests, judged, out / "results.jsonl")
        rows = [{**row, "passed": verdicts[row["id"]]["passed"], "test_result": verdicts[row["id"]]["result"]}
                for row in rows]
        meta["tests"] = tests_summary(tests, coverage_path, tests_started)
    meta["wall_s"] = round(time.perf_counter() - started, 1)
    summary = summarize(rows, meta)
    report.write_files(out, summary, markdown(summary), panels(rows))
    return summary

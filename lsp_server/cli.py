"""The `fimble` command line: complete, explain, serve, model, eval, stats.

This is an edge: engine errors become one line on stderr and exit status 1 here, nowhere else.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from engine import explain, models
from engine.config import Settings, apply_options, describe, parse_set_arguments
from engine.errors import EngineError
from engine.reasons import FILTERED, Outcome, StopReason, is_filtered
from engine.service import CompletionRequest, CompletionService
from engine.syntax import SyntaxTree, language_for_path
from engine.text import offset_at, split_lines

EXIT_ERROR = 1


@contextmanager
def progress_bar(description: str) -> Iterator[Callable[[int, int], None] | None]:
    """A tqdm bar on stderr when it is a terminal; nothing otherwise (logs stay clean)."""
    if not sys.stderr.isatty():
        yield None
        return
    from tqdm import tqdm

    bar: Any = None

    def update(done: int, total: int) -> None:
        nonlocal bar
        if bar is None:
            bar = tqdm(total=total, desc=description, unit="B", unit_scale=True, unit_divisor=1024, leave=False)
        bar.update(done - bar.n)

    try:
        yield update
    finally:
        if bar is not None:
            bar.close()


def _add_model_options(parser: argparse.ArgumentParser, explaining: bool = False) -> None:
    parser.add_argument("--model", help=(
        "the explaining model: GGUF file, Hugging Face folder, or a known name (default: explainModel, "
        "the largest known model assembled, else qwen2.5-coder-0.5b)" if explaining else
        "GGUF file, Hugging Face folder, or a known name (default: qwen2.5-coder-0.5b)"))
    parser.add_argument("--backend", help="llama_cpp (default), torch or openai")
    parser.add_argument("--set", dest="options", action="append", default=[], metavar="KEY=VALUE",
                        help="any option by its LSP name, e.g. --set maxTokens=64 (repeatable)")


def settings_from_args(args: argparse.Namespace) -> Settings:
    options = parse_set_arguments(args.options)
    if args.model:
        options["model"] = args.model
    if args.backend:
        options["backend"] = args.backend
    settings, warnings = apply_options(Settings(), options)
    for warning in warnings:
        print(warning, file=sys.stderr)
    return settings


def _read_source(path: str) -> str:
    file = Path(path)
    if not file.is_file():
        raise EngineError(f"no such file: {path}")
    data = file.read_bytes()
    if b"\0" in data[:8192]:
        raise EngineError(f"{path} looks like a binary file; fimble completes text")
    return data.decode("utf-8", errors="replace")


def _load(service: CompletionService) -> None:
    with progress_bar("assembling model") as update:
        service.load(update)


def cmd_complete(args: argparse.Namespace) -> int:
    text = _read_source(args.file)
    offset_at(text, args.line, args.character, strict=True)  # refuse a line past the end
    settings = settings_from_args(args)
    if "timeBudgetMs" not in parse_set_arguments(args.options):
        # The editor's budget keeps ghost text timely; a person who ran a command waits for the answer.
        settings = settings.replace(time_budget_ms=0)
    service = CompletionService(settings)
    _load(service)
    result = service.complete(
        CompletionRequest(text, args.line, args.character, language=language_for_path(args.file), path=args.file)
    )
    if args.json:
        print(json.dumps(result.as_dict(), indent=2))
    else:
        print(result.text)
    if not result.text:
        print(f"fimble: no completion: {why_empty(result.reason)}", file=sys.stderr)
    return 0


def why_empty(reason: str) -> str:
    """A person's reading of an empty completion's reason."""
    if is_filtered(reason):
        rule = reason.removeprefix(FILTERED)
        return f"the model's answer was dropped by the postprocessing rule '{rule}' ({reason})"
    readings: dict[str, str] = {
        StopReason.EOS: "the model ended without writing anything here (eos)",
        Outcome.EMPTY: "the model wrote only whitespace here (empty)",
        StopReason.TIME_BUDGET: "the time budget ran out before a whole line was written (time_budget); "
                                "raise it with --set timeBudgetMs=N",
        Outcome.CANCELLED: "the request was cancelled (cancelled)",
        StopReason.MAX_TOKENS: "maxTokens was reached before anything worth showing (max_tokens)",
    }
    return readings.get(reason, f"nothing worth showing ({reason})")


def cmd_explain(args: argparse.Namespace) -> int:
    text = _read_source(args.file)
    count = len(split_lines(text))
    end = args.end_line if args.end_line is not None else args.line
    if not 0 <= args.line < count or end < args.line:
        raise EngineError(f"lines {args.line}..{end} are not in {args.file} ({count} lines)")
    # The editor's choice of code, from the same function: a line alone means its definition.
    language = language_for_path(args.file)
    code = explain.target(text, args.line, end, SyntaxTree(text, language))
    settings = settings_from_args(args)
    if args.model and not settings.explain_model:
        settings = settings.replace(explain_model=args.model)  # `--model` here names the explaining model
    explaining = explain.explaining_settings(settings)
    if explaining.model != settings.model:
        print(f"fimble: explaining with {explaining.model} (explainModel; the largest model assembled)"
              if not settings.explain_model else f"fimble: explaining with {explaining.model} (explainModel)",
              file=sys.stderr)
    service = CompletionService(explaining)
    _load(service)

    streamed: list[str] = []
    printed = 0  # characters of the cleaned answer already printed: whole lines, as they complete

    def write(piece: str) -> None:
        nonlocal printed
        streamed.append(piece)
        cleaned = explain.clean("".join(streamed), code)  # the text the editor shows (no LaTeX)
        done = cleaned.rfind("\n") + 1
        if done > printed:
            sys.stdout.write(cleaned[printed:done])
            sys.stdout.flush()
            printed = done

    answer = service.explain(code, language, on_text=write)
    sys.stdout.write(answer[printed:] + "\n")
    return 0


def cmd_model(args: argparse.Namespace) -> int:
    if args.action == "status":
        print(json.dumps({"home": str(models.fimble_home()), "models": models.status()}, indent=2))
        return 0
    name = args.name or models.DEFAULT_MODEL
    if args.action == "assemble":
        with progress_bar(f"assembling {name}") as update:
            path = models.assemble(name, update)
    else:
        with progress_bar(f"verifying {name}") as update:
            path = models.verify(name, update)
    print(path)
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from .server import create_server
    from .transport import serve

    return serve(create_server, tcp=args.tcp, allow_remote=args.allow_remote)


def cmd_eval(args: argparse.Namespace) -> int:
    from eval.harness import run

    summary = run(args, settings_from_args(args))
    keys = [k for k in summary if k.startswith("pass@")] + ["exact_match", "tasks", "wall_s"]
    print(json.dumps({k: summary[k] for k in keys if k in summary}))
    print(f"report: {Path(args.out) / 'report.md'}")
    return 0


def cmd_eval_execute(args: argparse.Namespace) -> int:
    from eval.harness import run_execute

    print(json.dumps(run_execute(args)))
    print(f"results: {Path(args.out) / 'results.jsonl'}")
    return 0


def cmd_eval_explain(args: argparse.Namespace) -> int:
    from eval.explain import run as run_explain

    summary = run_explain(args, settings_from_args(args))
    print(json.dumps(summary))
    print(f"report: {Path(args.out) / 'report.md'}")
    return 0


def cmd_eval_repo(args: argparse.Namespace) -> int:
    from eval.repo import run as run_repo

    summary = run_repo(args, settings_from_args(args))
    keys = ("holes", "exact_match", "edit_similarity", "parses", "shown", "passes_tests", "refused", "total_ms",
            "wall_s")
    print(json.dumps({k: summary[k] for k in keys if k in summary}))
    print(f"report: {Path(args.out) / 'report.md'}")
    return 0


def cmd_eval_compare(args: argparse.Namespace) -> int:
    from eval.compare import table

    print(table(args.runs), end="")
    return 0


def cmd_stats(args: argparse.Namespace) -> int:
    from .acceptance import STATS_FILE, read_stats, table

    path = models.fimble_home() / STATS_FILE
    counts = {language: c.as_dict() for language, c in sorted(read_stats(path).items())}
    print(json.dumps(counts, indent=2) if args.json else f"{path}\n{table(counts)}", end="\n" if args.json else "")
    return 0


def cmd_options(args: argparse.Namespace) -> int:
    for name, default, doc in describe():
        print(f"{name:16} {default!r:28} {doc}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fimble", description="Local, offline code completion.")
    sub = parser.add_subparsers(dest="command", required=True)

    complete = sub.add_parser("complete", help="complete FILE at a 0-based position; prints the text to insert")
    complete.add_argument("file")
    complete.add_argument("--line", type=int, required=True)
    complete.add_argument("--character", type=int, required=True)
    complete.add_argument("--json", action="store_true", help='print {"text", "range", "reason", "timings"}')
    _add_model_options(complete)
    complete.set_defaults(func=cmd_complete)

    explain = sub.add_parser("explain", help="explain the code at --line (to --end-line) in markdown")
    explain.add_argument("file")
    explain.add_argument("--line", type=int, required=True)
    explain.add_argument("--end-line", type=int)
    _add_model_options(explain, explaining=True)
    explain.set_defaults(func=cmd_explain)

    model = sub.add_parser("model", help="where the model is; assemble or verify it")
    model.add_argument("action", choices=["status", "assemble", "verify"])
    model.add_argument("name", nargs="?", help=f"a known model ({', '.join(models.KNOWN_MODELS)})")
    model.set_defaults(func=cmd_model)

    serve = sub.add_parser("serve", help="run the language server (stdio unless --tcp)")
    serve.add_argument("--tcp", metavar="HOST:PORT", help="listen on TCP (loopback; a client must send the token "
                       "written to $FIMBLE_HOME/serve.token as initializationOptions.token)")
    serve.add_argument("--allow-remote", action="store_true",
                       help="allow --tcp on a non-loopback address (prefer an SSH tunnel)")
    serve.set_defaults(func=cmd_serve)

    evaluate = sub.add_parser("eval", help="measure a model: HumanEval, your own repository, explanations")
    eval_sub = evaluate.add_subparsers(dest="suite", required=True)
    humaneval = eval_sub.add_parser("humaneval", help="HumanEval and HumanEval-infilling, pass@k and latency")
    from eval.harness import add_arguments

    add_arguments(humaneval)
    _add_model_options(humaneval)
    humaneval.set_defaults(func=cmd_eval)
    execute = eval_sub.add_parser("execute", help="run given samples' tests in the sandbox (task_id + completion "
                                                  "jsonl): results.jsonl and summary.json")
    from eval.harness import add_execute_arguments

    add_execute_arguments(execute)
    execute.set_defaults(func=cmd_eval_execute)
    explain_eval = eval_sub.add_parser("explain", help="explain HumanEval functions, rewrite them from the "
                                                       "explanation alone, run the tests: explanation fidelity")
    from eval.explain import add_arguments as add_explain_arguments

    add_explain_arguments(explain_eval)
    _add_model_options(explain_eval, explaining=True)
    explain_eval.set_defaults(func=cmd_eval_explain)
    repo = eval_sub.add_parser("repo", help="holes cut from your own repository, completed as in the editor: exact "
                                            "match, edit similarity, parses, latency")
    from eval.repo import add_arguments as add_repo_arguments

    add_repo_arguments(repo)
    _add_model_options(repo)
    repo.set_defaults(func=cmd_eval_repo)
    compare = eval_sub.add_parser("compare", help="the summaries of runs side by side (settings that differ, scores)")
    compare.add_argument("runs", nargs="+", metavar="DIR", help="folders of earlier runs (their summary.json)")
    compare.set_defaults(func=cmd_eval_compare)

    stats = sub.add_parser("stats", help="suggestions shown and accepted per language, and how much was kept "
                                         "(counted on this machine only)")
    stats.add_argument("--json", action="store_true", help="the counts as JSON")
    stats.set_defaults(func=cmd_stats)
    options = sub.add_parser("options", help="list every option with its default")
    options.set_defaults(func=cmd_options)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except EngineError as exc:
        print(f"fimble: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except ValueError as exc:  # bad --set syntax
        print(f"fimble: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())


"""`fimble eval repo --test-cmd CMD`: the repository's own tests judge each filled hole.

Each run of CMD happens in the sandbox (eval/sandbox.py, the jail's command mode): fresh
namespaces with no network, a uid of its own, rlimits, a timeout, over a throwaway overlay of the
repository in which only the file with the hole differs. CMD runs at the top of the repository
(the git checkout that holds PATH, else PATH itself).

- Before anything, CMD must pass on the repository as it is (the baseline).
- A hole is kept only where emptying it makes CMD fail: the tests cover it. Emptied means the
  hole's text removed (a Python line or block becomes `pass`, so the file still parses: a syntax
  error would fail every test and prove nothing). Files that are tests are never holed.
- A filled hole passes when CMD exits 0. A completion identical to the original is the baseline's
  pass and is not run again.

The filled code runs inside the test process that judges it, so it could end that process itself
with a passing status: the one thing a sandbox cannot take from it. Such a completion is screened
before it runs — one that names a way to end or signal a process, to reach the interpreter's or
the test framework's internals, or to run other code (`exit`, `kill`, `signal`, `pytest`,
`sys.modules`, `getattr`, `eval`, …, in any language) where the original code did not, is
`refused` and counted as a failure. The exit status itself is read by the referee, outside.
"""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.errors import EngineError
from engine.syntax import error_count, get_language, parse

from .data import read_jsonl, write_jsonl
from .harness import _progress
from .repo_holes import RepoHole
from .sandbox import COMMAND_CONFIG, ExecResult, Sandbox, SandboxConfig, SandboxUnavailable, in_slots

# Words through which code ends, signals or hijacks the process that tests it, across languages
# (case-sensitive: Go's os.Exit, JS's Function constructor and process.exit, C's abort).
PROCESS_WORDS = frozenset({
    "exit", "_exit", "Exit", "quit", "abort", "halt", "kill", "killpg", "signal", "SIGKILL", "SIGTERM", "SIGINT",
    "atexit", "SystemExit", "exec", "execv", "execve", "eval", "compile", "Function", "__import__", "importlib",
    "builtins", "__builtins__", "globals", "vars", "getattr", "setattr", "delattr", "modules", "settrace",
    "setprofile", "excepthook", "ctypes", "gc", "inspect", "subprocess", "child_process", "system", "popen",
    "spawn", "fork", "pytest", "_pytest", "unittest", "conftest", "__code__", "__globals__", "__dict__",
    "__class__", "__subclasses__", "__mro__",
})
WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
TIMEOUT_FACTOR, TIMEOUT_FLOOR_S = 4.0, 10.0  # a run may take this many times the baseline's time


def screen(completion: str, original: str) -> str:
    """Why the completion may not be run ('' when it may): the process words it adds."""
    added = sorted(set(WORD.findall(completion)) & PROCESS_WORDS - set(WORD.findall(original)))
    return f"refused: names {', '.join(added)}" if added else ""


def emptied(text: str, hole: RepoHole) -> str | None:
    """The file with the hole emptied, parsing as well as the original (None: it cannot be)."""
    parses = _parser(text, hole.language)
    if parses is None:
        return None
    removed = text[: hole.start] + text[hole.end :]
    if parses(removed):
        return removed
    if hole.language == "python" and hole.kind in ("line", "block"):
        line = text[hole.start : hole.end]
        indent = line[: len(line) - len(line.lstrip())]
        placeholder = text[: hole.start] + indent + "pass\n" + text[hole.end :]
        if parses(placeholder):
            return placeholder
    return None


def _parser(original: str, language: str) -> Callable[[str], bool] | None:
    """A check that a text parses at least as well as `original`: Python's own compiler for Python
    (tree-sitter accepts an empty body, which Python does not), tree-sitter for the rest."""
    if language == "python":
        def compiles(text: str) -> bool:
            try:
                compile(text, "<hole>", "exec", dont_inherit=True)  # compiled, never run
            except (SyntaxError, ValueError, RecursionError, MemoryError):
                return False
            return True
        return compiles if compiles(original) else None
    spec = get_language(language)
    if spec is None:
        return None
    errors = error_count(parse(spec, original))
    return lambda text: error_count(parse(spec, text)) <= errors


def repository_top(path: Path) -> Path:
    """Where CMD runs: the top of the git checkout holding `path`, else `path`."""
    try:
        top = subprocess.run(["git", "-C", str(path), "rev-parse", "--show-toplevel"], capture_output=True,
                             text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return path
    return Path(top.stdout.strip()).resolve() if top.returncode == 0 and top.stdout.strip() else path


@dataclass
class RepoTests:
    """CMD over throwaway copies of the repository, a few at once (one sandbox uid per slot)."""

    command: str
    top: Path
    prefix: Path  # PATH relative to the top: hole paths are relative to PATH
    sandbox: Sandbox
    workers: int
    baseline_s: float = 0.0

    @classmethod
    def open(cls, path: Path, command: str, workers: int, timeout_s: float | None) -> RepoTests:
        top = repository_top(path)
        config = COMMAND_CONFIG if timeout_s is None else SandboxConfig(**{**COMMAND_CONFIG.__dict__,
                                                                           "timeout_s": timeout_s})
        try:
            sandbox = Sandbox(config, commands=True)
        except SandboxUnavailable as exc:
            raise EngineError(f"--test-cmd runs the repository's tests on generated code: {exc}") from None
        tests = cls(command, top, path.relative_to(top), sandbox, max(1, workers))
        baseline = tests.run({})
        if not baseline.passed:
            tests.close()
            raise EngineError(f"the test command fails on the repository as it is ({baseline.result}): holes can "
                              f"only be judged by tests that pass without them (ran `{command}` in {top})")
        tests.baseline_s = baseline.seconds
        if timeout_s is None:  # a hole that makes the tests loop should not cost the full two minutes
            tests.sandbox.config = SandboxConfig(**{**config.__dict__, "timeout_s": round(max(
                TIMEOUT_FLOOR_S, TIMEOUT_FACTOR * baseline.seconds), 1)})
        return tests

    def close(self) -> None:
        self.sandbox.close()

    def run(self, files: dict[str, str], slot: int = 0) -> ExecResult:
        """CMD with `files` (paths relative to PATH) written over the copy."""
        return self.sandbox.run_command(self.command, self.top, {str(self.prefix / k): v for k, v in files.items()},
                                        slot)

    def map(self, jobs: list[tuple[str, dict[str, str]]]) -> Iterator[tuple[str, ExecResult]]:
        """(key, files) → (key, ExecResult), in order, `workers` at a time."""
        return in_slots(lambda job, slot: (job[0], self.run(job[1], slot)), jobs, self.workers)


def covered_holes(tests: RepoTests, candidates: list[RepoHole], texts: dict[str, str], count: int,
                  coverage_path: Path) -> list[RepoHole]:
    """The first `count` candidates (in their order) whose emptied hole fails CMD. Each verdict is
    kept in coverage.jsonl, so an interrupted search resumes."""
    known = {r["id"]: r for r in read_jsonl(coverage_path)} if coverage_path.exists() else {}
    kept = [h for h in candidates if known.get(h.id, {}).get("covered")][:count]
    bar = _progress(count, "finding holes the tests cover", unit="hole")
    bar.update(len(kept))
    pending = [h for h in candidates if h.id not in known]
    batch = 2 * tests.workers
    try:
        while len(kept) < count and pending:
            jobs, skipped = [], []
            for hole in pending[:batch]:
                text = emptied(texts[hole.path], hole)
                if text is None:
                    skipped.append({"id": hole.id, "covered": False, "emptied": "does not parse when emptied"})
                else:
                    jobs.append((hole.id, {hole.path: text}))
            pending = pending[batch:]
            rows = skipped + [{"id": key, "covered": not result.passed, "emptied": result.result,
                               "seconds": round(result.seconds, 2)} for key, result in tests.map(jobs)]
            write_jsonl(coverage_path, rows, append=True)
            known.update({r["id"]: r for r in rows})
            kept = [h for h in candidates if known.get(h.id, {}).get("covered")][:count]
            bar.n = len(kept)
            bar.set_postfix(tried=len(known))
            bar.refresh()
    finally:
        bar.close()
    return kept


def judge_samples(tests: RepoTests, samples: list[tuple[RepoHole, dict[str, Any], str, str]],
                  results_path: Path) -> dict[str, dict[str, Any]]:
    """Each (hole, sample row, original file, filled file) judged by CMD; results.jsonl, resumable."""
    done = {r["id"]: r for r in read_jsonl(results_path)} if results_path.exists() else {}
    todo = [s for s in samples if s[0].id not in done]
    runs: list[tuple[str, dict[str, str]]] = []
    for hole, row, original, filled in todo:
        refused = screen(row["completion"], row["expected"])
        if filled == original:
            result = {"id": hole.id, "passed": True, "result": "passed (the original code)", "ran": False}
        elif refused:
            result = {"id": hole.id, "passed": False, "result": refused, "ran": False}
        else:
            runs.append((hole.id, {hole.path: filled}))
            continue
        write_jsonl(results_path, [result], append=True)
        done[hole.id] = result
    bar = _progress(len(runs), "running the tests", unit="hole")
    try:
        for key, outcome in tests.map(runs):
            result = {"id": key, "passed": outcome.passed, "result": outcome.result, "ran": True,
                      "seconds": round(outcome.seconds, 2)}
            write_jsonl(results_path, [result], append=True)
            done[key] = result
            bar.set_postfix(passed=sum(r["passed"] for r in done.values()))
            bar.update()
    finally:
        bar.close()
    return done


def tests_summary(tests: RepoTests, coverage_path: Path, started: float) -> dict[str, Any]:
    tried = list(read_jsonl(coverage_path)) if coverage_path.exists() else []
    return {"command": tests.command, "cwd": str(tests.top), "baseline_s": round(tests.baseline_s, 2),
            "timeout_s": tests.sandbox.config.timeout_s, "candidates_tried": len(tried),
            "covered": sum(bool(r["covered"]) for r in tried), "seconds": round(time.perf_counter() - started, 1)}

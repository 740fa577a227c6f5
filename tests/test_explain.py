"""Explain: the code chosen (one function for the editor and the CLI), the LaTeX pass, and the
`fimble eval explain` protocol (docstring removed, explanation → rewrite → tests)."""

from __future__ import annotations

import ast
import json
import subprocess
import sys

import pytest

from engine import explain
from engine.config import Settings
from engine.syntax import SyntaxTree
from eval import explain as explain_eval
from eval.data import load_problems
from eval.explain import without_docstring
from lsp_server import cli

DOC = '''import math


class Shape:
    def area(self, r):
        """Area."""
        return math.pi * r ** 2

    @staticmethod
    def unit():
        return 1


x = 1
'''


def test_latex_math_becomes_code_spans_and_code_blocks_are_left_alone():
    answer = ("The area is \\( \\text{Area} = 3.14159 \\times r^2 \\), $x \\leq y$ and $$\\frac{a}{b}$$, for $5.\n"
              "```python\nprice = \"$5 and $6\"\ntotal = 2\n```\n\\[ \\sqrt{n} \\]")
    assert explain.clean(answer) == ("The area is `Area = 3.14159 * r**2`, `x <= y` and `(a) / (b)`, for $5.\n"
                                     "```python\nprice = \"$5 and $6\"\ntotal = 2\n```\n`sqrt(n)`")
    assert explain.clean("It costs $5 and $6 each.") == "It costs $5 and $6 each."


def test_a_formula_block_becomes_a_code_span_and_a_block_repeating_the_code_is_dropped():
    code = "def area(r):\n    if r < 0:\n        return 0\n    return 3.14 * r * r"
    answer = ("It returns the area.\n\nThe formula used is:\n```python\n3.14 * r * r\n```\n\nThe code:\n"
              "```python\ndef area(r):\n    if r < 0:\n        return 0\n    return 3.14 * r * r\n```\n\n"
              "For example:\n```python\nprint(area(2))\nprint(area(-1))\n```")
    assert explain.clean(answer, code) == (
        "It returns the area.\n\nThe formula used is:\n`3.14 * r * r`\n\nThe code:\n\n"
        "For example:\n```python\nprint(area(2))\nprint(area(-1))\n```")
    streaming = "The formula used is:\n```python\n3.14 * r"
    assert explain.clean(streaming, code) == streaming  # an open block is decided once it closes


def test_code_blocks_are_cut_and_counted():
    prose, blocks = explain.without_code_blocks("Adds.\n```python\nreturn a + b\n```\nThen `b`.\n```\nx\n```")
    assert blocks == 2 and "return" not in prose and "`b`" in prose


@pytest.mark.parametrize(("line", "expected_first", "expected_last"), [
    (6, "    def area(self, r):", "        return math.pi * r ** 2"),  # inside a method: the method
    (9, "    @staticmethod", "        return 1"),  # a decorated definition, decorator included
    (13, "x = 1", "x = 1"),  # outside any definition: the line (and what is indented under it)
])
def test_the_code_to_explain_for_a_cursor(line, expected_first, expected_last):
    code = explain.target(DOC, line, line, SyntaxTree(DOC, "python")).split("\n")
    assert (code[0], code[-1]) == (expected_first, expected_last)


def test_without_a_tree_the_indented_block_is_explained():
    code = explain.target(DOC, 4, 4, SyntaxTree(DOC, "plaintext"))
    assert code.startswith("    def area") and code.endswith("return math.pi * r ** 2")


def test_the_cli_explains_the_code_the_editor_would(tmp_path, monkeypatch):
    source = tmp_path / "shape.py"
    source.write_text(DOC)
    seen = []
    monkeypatch.setattr(cli.CompletionService, "load", lambda self, progress=None: None)
    monkeypatch.setattr(cli.CompletionService, "explain",
                        lambda self, code, language, on_text=None: seen.append(code) or "")
    assert cli.main(["explain", str(source), "--line", "6", "--backend", "fake"]) == 0
    assert seen == [explain.target(DOC, 6, 6, SyntaxTree(DOC, "python"))]


def test_every_humaneval_function_loses_its_docstring_and_keeps_its_body():
    for problem in load_problems():
        function, above, signature = without_docstring(problem)
        tree = ast.parse(above + "\n" + function)
        node = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == problem["entry_point"])
        assert ast.get_docstring(node) is None, problem["task_id"]
        assert signature.startswith(problem["entry_point"] + "("), (problem["task_id"], signature)
        assert problem["canonical_solution"].strip().split("\n")[-1].strip() in function


def _eval_explain(*args: str, timeout: int = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "lsp_server.cli", "eval", "explain", *args], capture_output=True,
                          text=True, timeout=timeout)


@pytest.mark.sandbox
@pytest.mark.model
def test_eval_explain_runs_the_protocol_on_five_tasks_with_execution(model_path, tmp_path):
    out = tmp_path / "run"
    proc = _eval_explain("--limit", "5", "--execute", "--out", str(out), "--model", str(model_path),
                         "--judge", str(model_path))
    assert proc.returncode == 0, proc.stderr[-2000:]
    samples = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    results = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    ceiling = [json.loads(line) for line in (out / "ceiling_results.jsonl").read_text().splitlines()]
    summary = json.loads((out / "summary.json").read_text())
    assert [s["task_id"] for s in samples] == [f"HumanEval/{i}" for i in range(5)]
    assert all('"""' not in s["code"] and s["explanation"] and s["rewrite"] for s in samples)
    assert len(results) == 5 and summary["passed"] == sum(r["passed"] for r in results)
    assert summary["fidelity"] >= 0.4 and summary["latex_left"] == 0  # 3 of 5 passed when this was written
    # The ceiling: the same judge from the tasks' own docstrings, and the ratio of the two.
    assert summary["judge"] == str(model_path) and len(ceiling) == 5
    assert summary["ceiling_passed"] == sum(r["passed"] for r in ceiling) > 0
    assert summary["ratio"] == round(summary["passed"] / summary["ceiling_passed"], 4)
    by_docstring = {r["task_id"] for r in ceiling if r["passed"]}
    assert summary["lost"] == [r["task_id"] for r in results if r["task_id"] in by_docstring and not r["passed"]]
    assert (out / "report.md").read_text().startswith("# fimble eval explain") and (out / "plot.png").exists()
    again = _eval_explain("--limit", "5", "--out", str(out), "--model", str(model_path), "--judge", str(model_path),
                          timeout=300)
    assert again.returncode == 0 and len((out / "samples.jsonl").read_text().splitlines()) == 5  # resumed
    # Another explainer under the same judge takes the ceiling from the earlier run, not anew: a row
    # marked there arrives as it is.
    rows = [json.loads(line) for line in (out / "ceiling.jsonl").read_text().splitlines()]
    rows[0]["rewrite"] = "# taken from the earlier run"
    (out / "ceiling.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    other = tmp_path / "other"
    taken = _eval_explain("--limit", "1", "--out", str(other), "--model", str(model_path), "--judge",
                          str(model_path), "--ceiling-from", str(out), timeout=300)
    assert taken.returncode == 0, taken.stderr[-2000:]
    assert json.loads((other / "ceiling.jsonl").read_text())["rewrite"] == "# taken from the earlier run"


def test_the_report_lists_the_tasks_the_explanation_lost():
    samples = [{"task_id": f"T/{i}", "words": 50, "leaked_code": 0, "latex_left": False, "first_token_ms": 100.0,
                "tokens_per_s": 20.0, "explanation": f"explains {i}", "code": "pass"} for i in range(4)]
    results = [{"task_id": f"T/{i}", "passed": passed} for i, passed in enumerate([True, False, False, True])]
    ceiling = [{"task_id": f"T/{i}", "passed": passed} for i, passed in enumerate([True, True, False, False])]
    summary = explain_eval.summarize(samples, results, ceiling, {"judge": "j"})
    assert (summary["fidelity"], summary["ceiling"], summary["ratio"]) == (0.5, 0.5, 1.0)
    assert summary["lost"] == ["T/1"] and summary["gained"] == ["T/3"]
    report = explain_eval.markdown(summary, samples)
    assert "## Lost: 1 tasks" in report and "### T/1\n\nexplains 1" in report and "### T/0" not in report


def test_a_code_span_from_the_prompt_not_in_the_code_is_a_copy():
    span = "single backticks"  # words of the explain prompt, not code
    assert explain.SYSTEM.count(span) == 1
    assert explain_eval.copied_from_prompt(f"It applies the `{span}` here.", "def f(): pass")
    assert not explain_eval.copied_from_prompt("It returns `a + b`.", "def f(a, b): return a + b")
    # The words between two spans are not a span (", and " is in the prompt too).
    assert not explain_eval.copied_from_prompt("It takes `a`, and `b`.", "def f(a, b): pass")


def test_the_explaining_model_is_the_largest_assembled_when_larger(monkeypatch):
    from engine import models

    big, small = models.KNOWN_MODELS["qwen2.5-coder-1.5b"], models.KNOWN_MODELS["qwen2.5-coder-0.5b"]
    monkeypatch.setattr(models, "installed_known_models", lambda: [big, small])
    assert explain.explaining_model(Settings()) == "qwen2.5-coder-1.5b"
    second = explain.explaining_settings(Settings(temperature=0.3))
    assert (second.model, second.kv_cache_mb, second.warm, second.temperature) == ("qwen2.5-coder-1.5b", 0, False, 0.3)
    assert explain.explaining_model(Settings(model="qwen2.5-coder-1.5b")) == "qwen2.5-coder-1.5b"
    assert explain.explaining_settings(Settings(model="qwen2.5-coder-1.5b")) == Settings(model="qwen2.5-coder-1.5b")
    assert explain.explaining_model(Settings(explain_model="/m/other.gguf")) == "/m/other.gguf"
    # A server the user pointed at explains with its own model: code goes nowhere else.
    assert explain.explaining_model(Settings(backend="openai")) == "qwen2.5-coder-0.5b"
    monkeypatch.setattr(models, "installed_known_models", lambda: [small])
    assert explain.explaining_model(Settings()) == "qwen2.5-coder-0.5b"


def test_compare_shows_fidelity_ceiling_ratio_and_the_lost_tasks(tmp_path):
    from eval.compare import table

    for name, model, fidelity, lost in (("small", "qwen2.5-coder-0.5b", 0.5, ["HumanEval/3", "HumanEval/12"]),
                                        ("large", "qwen2.5-coder-1.5b", 0.6, [])):
        (tmp_path / name).mkdir()
        (tmp_path / name / "summary.json").write_text(json.dumps({
            "tasks": 164, "model": model, "judge": "qwen2.5-coder-1.5b", "fidelity": fidelity, "ceiling": 0.7,
            "ratio": round(fidelity / 0.7, 4), "lost": lost}))
    rows = table([str(tmp_path / "small"), str(tmp_path / "large")]).splitlines()
    assert "| model | qwen2.5-coder-0.5b | qwen2.5-coder-1.5b |" in rows
    assert "| fidelity / ceiling | 0.7143 | 0.8571 |" in rows
    assert "| judge | qwen2.5-coder-1.5b | qwen2.5-coder-1.5b |" in rows
    assert "| tasks lost (docstring passes) | 2: 3, 12 | 0 |" in rows


def test_a_long_explanation_stops_at_the_first_line_end_past_the_word_limit():
    """The prompt asks for under 120 words; a model that goes on is stopped at a line end past
    STOP_WORDS (a paragraph or list item stays whole), and what it streamed is what is shown."""
    from engine.backends.fake import FakeBackend
    from engine.models import ModelInfo

    items = "".join(f"- Step {i}: it adds {i} to each of the values in the list and keeps it for later.\n"
                    for i in range(20))  # 19 words each
    streamed: list[str] = []
    backend = FakeBackend().queue("The function walks the list.\n\n" + items)
    settings = Settings(backend="fake", max_tokens=2000)  # (the fake backend's token is a character)
    result = explain.generate(backend, ModelInfo(None, None, "", "", False), settings, "def f(xs): pass", "python",
                              on_text=streamed.append)
    words = explain.word_count(result.text)
    assert result.stats.stop_reason == "stop" and explain.STOP_WORDS <= words < explain.STOP_WORDS + 19
    assert result.text.endswith("for later.") and "".join(streamed).strip() == result.text


def test_a_looping_answer_is_cut_where_the_loop_begins_and_a_repeated_branch_is_kept():
    loop = "It sorts the array by the count of ones. The key is a lambda that counts them. "
    assert explain.clean("The function sorts numbers. " + loop * 5) == ("The function sorts numbers. " + loop).strip()
    branches = ("If the key is lower case, it goes on. If it is not, it returns `False`. If the key is upper "
                "case, it goes on. If it is not, it returns `False`. Finally it returns `True`.")
    assert explain.clean(branches) == branches

"""The `fimble` console script, run as a user runs it (a subprocess)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "examples" / "fib.py"


def fimble(*args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).with_name("fimble")
    return subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=timeout, env=os.environ.copy())


@pytest.mark.model
def test_complete_json_has_the_documented_shape(model_path):
    run = fimble("complete", str(EXAMPLE), "--line", "7", "--character", "8", "--json", "--set", "maxTokens=24",
                 "--set", "timeBudgetMs=60000")  # a loaded CI machine must not cut the answer short
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    assert set(out) == {"text", "range", "reason", "timings"}
    assert out["range"] == {"start": {"line": 7, "character": 8}, "end": {"line": 7, "character": 8}}
    assert "numbers" in out["text"]
    assert out["timings"]["prompt_tokens"] > 50 and out["timings"]["generated_tokens"] <= 24


@pytest.mark.model
def test_explain_streams_markdown_that_names_the_function(model_path):
    run = fimble("explain", str(EXAMPLE), "--line", "11", "--set", "maxTokens=120")
    assert run.returncode == 0, run.stderr
    assert "is_prime" in run.stdout or "prime" in run.stdout.lower()
    assert "explaining with" not in run.stderr  # only the 0.5B is assembled here: it explains


@pytest.mark.model
def test_explain_says_which_model_explains_when_it_is_not_the_completion_model(model_path, tmp_path):
    other = tmp_path / "explainer.gguf"
    other.symlink_to(model_path)
    run = fimble("explain", str(EXAMPLE), "--line", "11", "--set", f"explainModel={other}", "--set", "maxTokens=60")
    assert run.returncode == 0, run.stderr
    assert f"fimble: explaining with {other} (explainModel)" in run.stderr and run.stdout.strip()


def test_position_past_the_end_is_a_clear_error():
    run = fimble("complete", str(EXAMPLE), "--line", "500", "--character", "0", "--backend", "fake")
    assert run.returncode == 1
    assert "line 500 is past the end of the document" in run.stderr


def test_binary_file_is_refused(tmp_path):
    blob = tmp_path / "blob.bin"
    blob.write_bytes(b"\x00\x01\x02" * 100)
    run = fimble("complete", str(blob), "--line", "0", "--character", "0", "--backend", "fake")
    assert run.returncode == 1 and "binary" in run.stderr


def test_bad_option_warns_and_unknown_model_errors(tmp_path):
    run = fimble("complete", str(EXAMPLE), "--line", "0", "--character", "0", "--set", "maxTokens=lots",
                 "--model", str(tmp_path / "missing.gguf"))
    assert "option 'maxTokens' expected an integer" in run.stderr
    assert run.returncode == 1 and "neither a file, a folder, nor a known name" in run.stderr


def test_model_status_reports_the_default(fimble_home):
    run = fimble("model", "status")
    assert run.returncode == 0
    status = json.loads(run.stdout)
    assert status["home"] == str(fimble_home)
    default = next(m for m in status["models"] if m["default"])
    assert default["name"] == "qwen2.5-coder-0.5b" and default["parts_installed"] is True


def test_import_engine_and_lsp_server_stays_light():
    code = ("import sys, engine, lsp_server, lsp_server.cli, engine.service;"
            "heavy = [m for m in ('torch', 'transformers', 'llama_cpp') if m in sys.modules];"
            "print(heavy)")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert run.stdout.strip() == "[]", run.stdout + run.stderr

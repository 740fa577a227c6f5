"""A 10-task smoke of each eval mode with execution, through the real model (the CI run)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from engine.config import Settings
from eval.harness import run

pytestmark = pytest.mark.model
INFILLING = Path(__file__).resolve().parents[2] / "shared" / "data" / "human-eval-infilling" / \
    "HumanEval-SingleLineInfilling.jsonl.gz"


def args(tmp_path: Path, mode: str, **extra) -> argparse.Namespace:
    values = {"data": None, "mode": mode, "samples": 1, "temperature": 0.0, "top_p": 0.95, "seed": 0,
              "max_tokens": 384, "limit": 10, "out": str(tmp_path / mode), "execute": True, "workers": 2,
              "timeout": 10.0, "raw": False, "cursor": "line-start"}
    values.update(extra)
    return argparse.Namespace(**values)


@pytest.mark.sandbox
def test_complete_mode_scores_and_resumes(tmp_path, model_path):
    settings = Settings(model=str(model_path))
    summary = run(args(tmp_path, "complete"), settings)
    assert summary["tasks"] == 10 and 0.3 <= summary["pass@1"] <= 1.0
    out = tmp_path / "complete"
    assert {p.name for p in out.iterdir()} >= {"samples.jsonl", "results.jsonl", "summary.json", "report.md",
                                                "plot.png"}
    results = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert len(results) == 10 and all(r["result"] == "passed" or r["result"].startswith(("failed", "timed out"))
                                      for r in results)
    again = run(args(tmp_path, "complete"), settings)  # resumes: nothing left to generate or run
    assert again["pass@1"] == summary["pass@1"] and again["generation_s"] < 1
    assert len((out / "samples.jsonl").read_text().splitlines()) == 10


@pytest.mark.sandbox
def test_chat_mode_takes_code_from_the_fenced_reply(tmp_path, model_path):
    summary = run(args(tmp_path, "chat"), Settings(model=str(model_path)))
    assert summary["tasks"] == 10 and summary["pass@1"] >= 0.2
    first = json.loads((tmp_path / "chat" / "samples.jsonl").read_text().splitlines()[0])
    assert "def has_close_elements" in first["completion"]


@pytest.mark.sandbox
@pytest.mark.skipif(not INFILLING.exists(), reason="needs ../shared/data/human-eval-infilling")
def test_fim_pipeline_beats_raw_output(tmp_path, model_path):
    settings = Settings(model=str(model_path))
    piped = run(args(tmp_path, "fim", data=str(INFILLING), max_tokens=48), settings)
    raw = run(args(tmp_path, "fim", data=str(INFILLING), max_tokens=48, raw=True, out=str(tmp_path / "fim_raw")),
              settings)
    assert piped["pass@1"] > raw["pass@1"]
    assert piped["rules"]["block_end"] + piped["rules"]["suffix_repeat"] > 0
    assert "exact_match" in piped


@pytest.mark.sandbox
@pytest.mark.skipif(not INFILLING.exists(), reason="needs ../shared/data/human-eval-infilling")
@pytest.mark.parametrize("cursor", ["after-indent", "mid-line"])
def test_fim_where_people_type_is_healed_and_named_in_the_report(tmp_path, model_path, cursor):
    summary = run(args(tmp_path, "fim", data=str(INFILLING), max_tokens=48, cursor=cursor),
                  Settings(model=str(model_path)))
    assert summary["cursor"] == cursor and f"| cursor | {cursor} |" in (tmp_path / "fim" / "report.md").read_text()
    samples = [json.loads(line) for line in (tmp_path / "fim" / "samples.jsonl").read_text().splitlines()]
    assert all(s["cursor"] == cursor and s["typed"] for s in samples)  # something was typed before each cursor
    assert all(s["healed"] for s in samples)  # and the prompt stopped short of it
    assert summary["pass@1"] >= 0.3


def test_without_execute_only_samples_are_written(tmp_path, model_path, capsys):
    summary = run(args(tmp_path, "complete", execute=False, limit=1, max_tokens=16), Settings(model=str(model_path)))
    assert "pass@1" not in summary
    assert "add --execute" in capsys.readouterr().out
    assert not (tmp_path / "complete" / "results.jsonl").exists()

"""Golden prompts: for each supported language, exactly what the model sees.

Each `data/prompts/<languageId>.<ext>` holds a source file with a `<CURSOR>` marker; the rendered
prompt, with the cursor analysis on its first line, is in `<file>.prompt`. Run with
FIMBLE_UPDATE_GOLDEN=1 to rewrite them after an intended change, then read the diff.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from engine.context import analyze_cursor
from engine.syntax import SUPPORTED_LANGUAGES, SyntaxTree

DATA = Path(__file__).parent / "data" / "prompts"
SAMPLES = sorted(p for p in DATA.iterdir() if p.suffix != ".prompt")
# A small budget for Python shows the cut, and the imports and headers kept above it.
BUDGETS = {"python": 72}


def render(sample: Path, fake_service) -> str:
    language = sample.stem
    source = sample.read_text()
    offset = source.index("<CURSOR>")
    text = source.replace("<CURSOR>", "")
    fake_service.settings = fake_service.settings.replace(context_tokens=BUDGETS.get(language, 1024))
    tree = SyntaxTree(text, language)
    cursor = analyze_cursor(tree, offset)
    built = fake_service.build_prompt(tree, offset, cursor, path=sample.name)
    return (f"# mode={cursor.mode} why={cursor.why} parsed={tree.tree is not None} healed={built.heal.text!r}\n"
            f"{built.prompt.render()}")


def test_every_supported_language_has_a_golden_prompt():
    assert {p.stem for p in SAMPLES} == set(SUPPORTED_LANGUAGES) - {"javascriptreact"}


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda p: p.stem)
def test_prompt_matches_golden(sample, fake_service):
    golden = sample.with_name(sample.name + ".prompt")
    rendered = render(sample, fake_service)
    if os.environ.get("FIMBLE_UPDATE_GOLDEN"):
        golden.write_text(rendered)
    assert rendered == golden.read_text()
    assert "parsed=True" in rendered.split("\n", 1)[0]


def test_python_cut_keeps_imports_and_enclosing_headers(fake_service):
    rendered = render(DATA / "python.py", fake_service)
    assert "import math\nfrom dataclasses import dataclass\n" in rendered
    assert "class Circle:\n" in rendered and "def area(self) -> float:\n" in rendered
    assert "def diameter" not in rendered  # cut by the budget

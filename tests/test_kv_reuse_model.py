"""KV reuse across places with the real model and llama.cpp: a warmed document serves a new place,
a place worked at before is restored, the saved states stay within their bound."""

from __future__ import annotations

import ast
import sysconfig
from pathlib import Path

import pytest

from engine.cache import LRUCache
from engine.config import Settings
from engine.service import CompletionRequest, CompletionService
from engine.syntax import SyntaxTree

pytestmark = pytest.mark.model

# A file the project did not write, cut to ~1,700 tokens so that warming it stays short.
SOURCE = "\n".join((Path(sysconfig.get_paths()["stdlib"]) / "textwrap.py").read_text().split("\n")[:200]) + "\n"
PATH = "/work/example/textwrap_head.py"


def service(model_path: Path, **settings: object) -> CompletionService:
    svc = CompletionService(Settings(model=str(model_path), time_budget_ms=0, **settings))  # type: ignore[arg-type]
    svc.load()
    return svc


def at_place(row: int, typed: int = 2, use_cache: bool = True) -> CompletionRequest:
    """The user jumps to `row`, cuts it at its indentation and types `typed` characters back."""
    lines = SOURCE.split("\n")
    indent = len(lines[row]) - len(lines[row].lstrip())
    lines[row] = lines[row][: indent + typed]
    text = "\n".join(lines)
    return CompletionRequest(text, row, indent + typed, language="python", path=PATH,
                             tree=SyntaxTree(text, "python"), use_cache=use_cache)


ROW = 188  # `        patsearch = self.sentence_end_re.search`, in TextWrapper, far below the top


@pytest.fixture(scope="module")
def warmed(model_path: Path) -> CompletionService:
    svc = service(model_path)
    stats = svc.warm_document(CompletionRequest(SOURCE, 0, 0, language="python", path=PATH,
                                                tree=SyntaxTree(SOURCE, "python")))
    assert stats is not None and stats.stop_reason == "prefilled"
    assert stats.prompt_tokens_evaluated == stats.prompt_tokens > 1500  # the whole file, once
    assert svc.cache_summary()["labels"] == ["document:textwrap_head.py"]
    return svc


def test_a_new_place_takes_its_window_from_the_warmed_document(warmed: CompletionService, model_path: Path):
    moved_before = warmed.cache_summary()["moved"]
    result = warmed.complete(at_place(ROW))
    timings = result.timings
    # The window above the cursor came from the warmed document, moved into place; only what
    # follows it (the suffix and the typed text) was evaluated.
    assert timings["prompt_tokens_reused"] >= 0.85 * timings["prompt_tokens"], timings
    assert timings["prompt_tokens_moved"] > 500, timings
    assert warmed.cache_summary()["moved"] == moved_before + timings["prompt_tokens_moved"]
    assert timings["prompt_tokens_evaluated"] == timings["prompt_tokens"] - timings["prompt_tokens_reused"]
    # Moved cells were computed after other text than now precedes them (the approximation
    # llama-server's cache reuse makes too), so the answer may differ from a cold one's; it must
    # still be a statement that parses where it goes. A cold cache evaluates the whole prompt.
    assert result.text.strip()
    ast.parse("pa" + result.text.split("\n")[0])
    cold = service(model_path, kv_cache_mb=0).complete(at_place(ROW))
    assert cold.timings["prompt_tokens_reused"] == 0 and cold.timings["prompt_tokens_evaluated"] > 800


def test_coming_back_to_a_place_restores_its_saved_state(warmed: CompletionService):
    backend = warmed.load()
    first = warmed.complete(at_place(130))
    elsewhere = warmed.complete(at_place(151))
    assert elsewhere.timings["prompt_tokens_reused"] > 0.8 * elsewhere.timings["prompt_tokens"]
    restores = backend.states.restores
    warmed.cache = LRUCache()  # not the answer remembered: the model, from the saved state
    again = warmed.complete(at_place(130))
    # Its whole prompt was saved when the user left: restored, one token evaluated (its logits).
    assert backend.states.restores == restores + 1
    assert again.timings["prompt_tokens_evaluated"] == 1
    assert again.text == first.text


def test_saved_states_stay_within_their_bound(model_path: Path):
    svc = service(model_path, kv_cache_mb=24)
    backend = svc.load()
    svc.warm_document(CompletionRequest(SOURCE, 0, 0, language="python", path=PATH,
                                        tree=SyntaxTree(SOURCE, "python")))
    for row in (130, 151, 190, 134, 188):
        result = svc.complete(at_place(row))
        assert result.reason != "error"
        summary = svc.cache_summary()
        assert summary["bytes"] <= 24 * 1024 * 1024
    # ~12 KB a token for the 0.5B model: the document (~1,800 tokens, ~21 MB) fits alone, so the
    # places pushed it out, least recently used first.
    assert backend.states.evictions > 0
    assert all(label != "document:textwrap_head.py" for label in svc.cache_summary()["labels"])


def test_without_caches_only_the_exact_common_prefix_is_reused(warmed: CompletionService):
    """The eval harness turns caches off: an answer must not depend on what the cache held."""
    result = warmed.complete(at_place(ROW - 2, use_cache=False))
    assert result.timings["prompt_tokens_moved"] == 0
    assert result.timings["prompt_tokens_evaluated"] > 800

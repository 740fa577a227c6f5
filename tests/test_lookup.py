"""Prompt-lookup speculative decoding (engine/backends/lookup.py): the drafts, and with the real
model the promise that matters: greedy output unchanged, fewer model calls where text is copied."""

from __future__ import annotations

import pytest

from engine.backends.base import GenerationRequest
from engine.backends.lookup import COOLDOWN, PromptLookup


def test_a_draft_is_what_followed_the_latest_earlier_occurrence():
    lookup = PromptLookup([5, 1, 2, 3, 4, 9, 1, 2, 3, 7, 8, 1, 2], max_draft=4)
    # The trailing 3-gram is not found before; the 2-gram (1, 2) last came before 3, 7, 8, ...
    assert lookup.draft() == [3, 7, 8, 1]
    lookup.append(3)  # now (1, 2, 3) last came before 7
    assert lookup.draft() == [7, 8, 1, 2]
    assert lookup.draft(most=2) == [7, 8]


def test_no_match_no_draft_and_the_draft_never_proposes_unknown_tokens():
    assert PromptLookup([1, 2, 3, 4], max_draft=8).draft() == []
    lookup = PromptLookup([1, 2, 9, 1, 2], max_draft=8)
    assert lookup.draft() == [9, 1, 2]  # cut at the end of the history


def test_after_a_miss_drafting_pauses_then_grows_back_after_hits():
    lookup = PromptLookup([*range(1, 20), 1, 2], max_draft=8)
    lookup.feedback(proposed=8, accepted=0)  # a batch that bought nothing
    assert [lookup.draft() for _ in range(COOLDOWN)] == [[]] * COOLDOWN  # plain steps
    assert len(lookup.draft()) == 1
    lookup.feedback(proposed=1, accepted=1)
    lookup.feedback(proposed=2, accepted=2)
    assert lookup.limit == 4 and len(lookup.draft()) == 4
    lookup.feedback(proposed=0, accepted=0)  # nothing proposed: nothing learnt
    assert lookup.limit == 4 and lookup.cooldown == 0


# A completion that copies: the second method's signature repeats the first one's.
COPYING = '''class Report:
    def circle_area(self, radius: float, precision: int = 2, unit: str = "cm", label: str = "area") -> str:
        """The area of a circle, rounded, with its unit."""
        return f"{label}: {round(3.14159 * radius ** 2, precision)} {unit}^2"

    def circle_perimeter(self,'''


def request(fim, draft_tokens: int) -> GenerationRequest:
    return GenerationRequest(prompt=fim.build(COPYING, "\n"), max_tokens=40, temperature=0.0,
                             time_budget_s=None, draft_tokens=draft_tokens, stop=["\n"])


@pytest.mark.model
def test_llama_cpp_greedy_output_is_unchanged_and_drafts_are_accepted(real_service):
    backend, fim = real_service.load(), real_service.info.fim
    plain = backend.generate(request(fim, 0))
    fast = backend.generate(request(fim, 2))
    assert fast.text == plain.text and 'unit: str = "cm"' in plain.text, (plain.text, fast.text)
    assert plain.stats.draft_tokens == 0
    assert fast.stats.draft_accepted >= 5 and fast.stats.generated_tokens == plain.stats.generated_tokens
    # Sampling is never drafted: it is decoded as before.
    sampled = backend.generate(GenerationRequest(prompt=fim.build(COPYING, "\n"), max_tokens=10, temperature=0.7,
                                                 time_budget_s=None, draft_tokens=8, seed=3))
    assert sampled.stats.draft_tokens == 0


@pytest.mark.model
def test_torch_greedy_output_is_unchanged_and_drafts_are_accepted(model_path, real_service):
    pytest.importorskip("torch")
    from engine.backends.torch import TorchBackend
    from engine.config import Settings
    from engine.models import ModelRef

    backend = TorchBackend(ModelRef(model_path, "gguf", "qwen"), Settings(backend="torch", n_ctx=1024))
    backend.load()
    try:
        fim = real_service.info.fim
        plain = backend.generate(request(fim, 0))
        fast = backend.generate(request(fim, 2))
        assert fast.text == plain.text and fast.text.strip(), (plain.text, fast.text)
        assert fast.stats.draft_accepted >= 5 and fast.stats.generated_tokens == plain.stats.generated_tokens
    finally:
        backend.close()

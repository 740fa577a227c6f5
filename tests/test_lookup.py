"""Prompt-lookup speculative decoding (engine/backends/lookup.py): the drafts, and with the real
model the promise that matters: greedy output unchanged, fewer model calls where text is copied."""

from __future__ import annotations

from dataclasses import replace

import pytest

from engine.backends.base import GenerationRequest
from engine.backends.lookup import EXPECTED_DRAFT, LONG_DRAFT, LONG_MATCH, SHORT_DRAFT, PromptLookup


def test_a_short_match_drafts_a_batch_of_four_from_its_latest_earlier_occurrence():
    lookup = PromptLookup([5, 1, 2, 3, 4, 9, 1, 2, 3, 7, 8, 1, 2], max_draft=7)
    # The trailing 3-gram is not found before; the 2-gram (1, 2) last came before 3, 7, 8, ...
    assert lookup.draft() == [3, 7, 8][:SHORT_DRAFT]
    lookup.append(3)  # now (1, 2, 3) last came before 7
    assert lookup.draft() == [7, 8, 1]
    assert lookup.draft(most=2) == [7, 8]
    assert PromptLookup([5, 1, 2, 3, 4, 9, 1, 2], max_draft=1).draft() == [3]  # speculativeTokens caps it
    # The longest match wins over a later, shorter one: (2, 3) came last before 8, (1, 2, 3) before 7.
    assert PromptLookup([1, 2, 3, 7, 9, 2, 3, 8, 1, 2, 3], max_draft=7).draft() == [7, 9, 2]


def test_a_long_match_drafts_a_batch_of_eight():
    line = list(range(10, 30))
    lookup = PromptLookup([*line, 99, *line[:LONG_MATCH]], max_draft=7)
    assert lookup.draft() == line[LONG_MATCH : LONG_MATCH + LONG_DRAFT]
    lookup = PromptLookup([*line, 99, *line[: LONG_MATCH - 1]], max_draft=7)  # one token short of long
    assert lookup.draft() == line[LONG_MATCH - 1 : LONG_MATCH - 1 + SHORT_DRAFT]


def test_no_match_no_draft_and_the_draft_never_proposes_unknown_tokens():
    assert PromptLookup([1, 2, 3, 4], max_draft=8).draft() == []
    assert PromptLookup([1, 2, 3, 9, 3], max_draft=8).draft() == []  # one token is not a match
    lookup = PromptLookup([1, 2, 9, 1, 2], max_draft=8)
    assert lookup.draft() == [9, 1, 2]  # cut at the end of the history
    assert PromptLookup([1, 2, 9, 1, 2], max_draft=0).draft() == []


def test_an_expected_answer_is_drafted_while_the_answer_follows_it():
    expected = list(range(100, 100 + EXPECTED_DRAFT + 5))
    lookup = PromptLookup([1, 2, 3, 1, 2], max_draft=7, expected=expected)
    lookup.append(100)  # (the first token is the model's own, from the prompt's logits)
    assert lookup.draft() == expected[1 : 1 + EXPECTED_DRAFT]  # wider than a lookup draft
    assert lookup.draft(most=3) == expected[1:4]  # (the room left in the context)
    for token in expected[1:5]:
        lookup.append(token)
    assert lookup.draft() == expected[5 : 5 + EXPECTED_DRAFT]
    lookup.append(7)  # the answer departs from it: never drafted again
    lookup.append(100)
    assert lookup.draft() == []
    departs = PromptLookup([1, 2, 3, 1, 2], max_draft=7, expected=expected)
    departs.append(3)  # at its first token: prompt lookup as before
    assert departs.draft() == [1, 2, 3]
    assert PromptLookup([1], max_draft=0, expected=expected).draft() == []  # drafting off


def test_the_prompt_indexed_at_once_drafts_as_if_appended_token_by_token():
    import random

    rng = random.Random(0)
    for _ in range(200):
        history = [rng.randrange(5) for _ in range(rng.randrange(40))]
        grown = PromptLookup([], max_draft=7)
        for token in history:
            grown.append(token)
        assert PromptLookup(history, max_draft=7).draft() == grown.draft()
        assert PromptLookup(history, max_draft=7)._follows == grown._follows


def test_near_tie_is_the_gap_between_the_best_two_and_leaves_the_row_as_it_was():
    import numpy as np

    from engine.backends.llama_cpp import near_tie

    row = np.array([0.0, 5.0, 4.7, 1.0], dtype=np.float32)
    assert near_tie(row, 1) and list(row) == [0.0, 5.0, 4.7, 1.0]
    row[2] = 4.0
    assert not near_tie(row, 1) and list(row) == [0.0, 5.0, 4.0, 1.0]


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
    fast = backend.generate(request(fim, 7))
    assert fast.text == plain.text and 'unit: str = "cm"' in plain.text, (plain.text, fast.text)
    assert plain.stats.draft_tokens == 0
    assert fast.stats.draft_accepted >= 5 and fast.stats.generated_tokens == plain.stats.generated_tokens
    # An answer expected (what was written there before) is drafted whole: the same output, in
    # fewer steps; expecting another answer changes nothing but the drafts.
    expected = backend.generate(replace(request(fim, 7), expected=plain.text))
    assert expected.text == plain.text and expected.stats.draft_accepted > fast.stats.draft_accepted
    # (all but the first token and the text's end, which the model writes merged with the stop's "\n")
    assert expected.stats.draft_accepted >= plain.stats.generated_tokens - 3
    wrong = backend.generate(replace(request(fim, 7), expected=plain.text[:4] + "zzz_other = 1"))
    assert wrong.text == plain.text
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
        fast = backend.generate(request(fim, 7))
        assert fast.text == plain.text and fast.text.strip(), (plain.text, fast.text)
        assert fast.stats.draft_accepted >= 5 and fast.stats.generated_tokens == plain.stats.generated_tokens
        expected = backend.generate(replace(request(fim, 7), expected=plain.text))
        assert expected.text == plain.text and expected.stats.draft_accepted > fast.stats.draft_accepted
    finally:
        backend.close()

"""Planning KV reuse across positions (engine/backends/kv_reuse.py): which cached runs make up a
new prompt's head, and the bounded store of saved states. The llama.cpp side (moving cells,
saving and restoring them) is tested with the real model in test_llama_e2e.py."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from engine.backends.kv_reuse import MIN_RUN, Run, SavedState, StateCache, plan_reuse

PRE, SUF, MID = 1000, 1001, 1002


def document(n: int, seed: int = 0) -> list[int]:
    rng = random.Random(seed)
    return [rng.randrange(10, 900) for _ in range(n)]


def test_the_common_prefix_stays_in_place():
    cached = [PRE, *document(100)]
    prompt = [*cached[:60], 5, 6, 7]
    plan = plan_reuse(cached, prompt)
    assert plan.runs == (Run(0, 0, 60),) and not plan.moves


def test_a_window_further_down_the_document_is_moved_into_place():
    doc = document(2000)
    warmed = [PRE, *doc]  # a document's warm-up: the FIM prefix token, then its text
    window = doc[1200:1800]
    prompt = [PRE, *window, SUF, 7, 8, 9, MID]
    plan = plan_reuse(warmed, prompt)
    assert plan.runs == (Run(0, 0, 1), Run(1201, 1, 600))
    assert plan.reused == 601 and plan.moves


def test_the_cursor_moving_up_reuses_what_the_last_prompt_held_below():
    doc = document(1500)
    last = [PRE, *doc[800:1400], SUF, *doc[1400:1450], MID]
    prompt = [PRE, *doc[600:1300], SUF, *doc[1300:1350], MID]
    plan = plan_reuse(last, prompt)
    # doc[600:800] was not in the last prompt: the head ends after the prefix token.
    assert plan.reused == 1
    down = [PRE, *doc[900:1420], SUF, *doc[1420:1450], MID]
    plan = plan_reuse(last, down)
    # doc[900:1400] from the old prefix, doc[1400:1420] from the old suffix, joined end to end.
    assert [(r.source, r.target, r.length) for r in plan.runs] == [(0, 0, 1), (101, 1, 500), (602, 501, 20)]


def test_short_pinned_lines_are_kept_on_the_way_to_the_window_but_never_alone():
    doc = document(3000)
    imports, header = doc[0:3], doc[1500:1503]  # pinned lines: a few tokens each, alone in the cache
    warmed = [PRE, *doc]
    prompt = [PRE, *imports, *header, *doc[2000:2500], SUF, MID]
    plan = plan_reuse(warmed, prompt)
    assert plan.reused == 1 + 3 + 3 + 500
    assert [r.target for r in plan.runs] == [0, 4, 7]
    # The same short runs with nothing long after them are not worth their foreign context.
    alone = [PRE, *imports, *header, 5, 6, 7, 8, 9, SUF, MID]
    assert plan_reuse(warmed, alone).reused == 1 + 3  # the common prefix only


def test_the_last_prompt_token_is_always_evaluated():
    cached = [PRE, *document(50), SUF, MID]
    assert plan_reuse(cached, cached).reused == len(cached) - 1
    assert plan_reuse(cached, cached, keep_last=False).reused == len(cached)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 6), min_size=0, max_size=120), st.lists(st.integers(0, 6), min_size=1, max_size=120))
def test_a_plan_is_always_a_valid_assembly(cached, prompt):
    """Whatever the tokens (small alphabets repeat a lot): runs copy equal tokens, tile the head of
    the prompt without gaps, use no cached cell twice, and leave the last token to evaluate."""
    plan = plan_reuse(cached, prompt)
    position, used = 0, set()
    for run in plan.runs:
        assert run.target == position and run.length > 0
        assert cached[run.source : run.source + run.length] == prompt[run.target : run.target + run.length]
        cells = set(range(run.source, run.source + run.length))
        assert not cells & used
        used |= cells
        position += run.length
    assert plan.reused == position <= len(prompt) - 1
    common = next((i for i, (a, b) in enumerate(zip(cached, prompt, strict=False)) if a != b),
                  min(len(cached), len(prompt)))
    assert plan.reused >= min(common, len(prompt) - 1)
    for run in plan.runs[1:] if plan.runs and plan.runs[0].source == 0 else plan.runs:
        assert run.length >= 2


def test_a_run_must_be_long_to_stand_alone():
    doc = document(400)
    cached = [PRE, *doc]
    prompt = [SUF, *doc[100 : 100 + MIN_RUN - 1], 3, 4, 5, MID]
    assert plan_reuse(cached, prompt).reused == 0


def state(tokens: list[int], size: int, label: str = "") -> SavedState:
    return SavedState(tuple(tokens), bytearray(size), label)


def test_state_cache_is_bounded_in_bytes_least_recently_used_out_first():
    cache = StateCache(max_bytes=1000)
    a, b, c = state([1, 2, 3], 400, "a"), state([4, 5, 6], 400, "b"), state([7, 8, 9], 400, "c")
    cache.put(a)
    cache.put(b)
    cache.touch(a)  # a used since: b is the oldest
    cache.put(c)
    assert cache.summary()["labels"] == ["a", "c"] and cache.nbytes == 800 and cache.evictions == 1
    assert not cache.put(state([1], 1001))  # alone over the bound: not kept
    assert len(cache) == 2


def test_a_longer_state_replaces_the_ones_it_extends():
    cache = StateCache(max_bytes=10_000)
    cache.put(state([1, 2, 3], 100, "partial"))
    cache.put(state([1, 2, 3, 4, 5], 150, "whole"))
    assert cache.summary()["labels"] == ["whole"]


def test_best_state_serves_the_longest_head():
    doc = document(3000, seed=1)
    other = document(3000, seed=2)
    cache = StateCache(max_bytes=10**9)
    cache.put(state([PRE, *other], 100, "other.py"))
    cache.put(state([PRE, *doc], 100, "this.py"))
    best, plan = cache.best([PRE, *doc[2000:2600], SUF, MID])
    assert best is not None and best.label == "this.py" and plan.reused == 601

"""The decode loop both local backends drive: token healing, the kept-open line, and greedy
decoding with prompt-lookup drafts, written once over a small interface (`Steps`).

A backend evaluates its prompt its own way (llama.cpp's KV cells and saved states, the torch
backend's preallocated cache), then hands `decode` its Steps for the request: evaluate a batch
at the end of the cache, read a row of the last evaluation's logits, drop cells, pick a token
with the request's sampler. Everything between the prompt and the text is here, so a rule about
drafts, near-ties or healing is changed in one place and holds for both.

The order of one generation:
1. healing: while the prompt's last characters are still to be written again (engine/healing.py),
   tokens are picked among those that reproduce them and evaluated one at a time;
2. the open line: after Enter (greedy, no heal), a first token that would leave the cursor's line
   blank gives way to one that writes on it when the two are close (base.open_line_choice);
3. greedy with drafts (`request.draft_tokens`): each step evaluates the token just chosen and a
   draft after it in one batch (engine/backends/lookup.py; the expected answer first, while the
   answer follows it), keeping drafted tokens while each is the argmax after the one before;
   from the first batch on, choices whose best two logits are a near-tie are counted (where the
   output can part from one-token-at-a-time decoding);
4. otherwise the backend's own sampler, one token at a time (`Steps.sampled`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator
from typing import Protocol

from ..healing import HealingState, TokenHealer
from .base import Deadline, GenerationRequest, GenerationStats, StopReason, TextSink
from .lookup import PromptLookup


class Steps(Protocol):
    """What a backend gives the decode loop for one request."""

    healer: TokenHealer | None

    def n_ctx(self) -> int: ...

    def cells(self) -> int:
        """Tokens the KV cache holds."""
        ...

    def evaluate(self, batch: list[int]) -> None:
        """Append `batch` to the cache, with logits for each of its positions."""
        ...

    def best(self, i: int, lead: bool) -> tuple[int, bool]:
        """Row `i` of the last evaluation's logits (-1: its last): the argmax, and (when `lead`)
        whether the runner-up is within NEAR_TIE of it."""
        ...

    def truncate(self, n: int) -> None:
        """Forget the cells from `n` on (a draft's rejected part)."""
        ...

    def pick(self, allowed: list[int]) -> int:
        """The request's sampler over the last row, among `allowed` only (healing)."""
        ...

    def open_line(self) -> int | None:
        """The first token to write instead of a best one that leaves the line blank, or None."""
        ...

    def sampled(self, tokens: list[int]) -> Generator[int, None, None]:
        """The request's sampler, one token after another, each evaluated before the next."""
        ...

    def text(self, token: int) -> str:
        """The text `token` adds to the answer (a partial character is held back)."""
        ...

    def text_after_heal(self, data: bytes) -> str:
        """The text of what the last healing token writes past the healed text."""
        ...

    def flush(self) -> str:
        """What is held back at the end."""
        ...

    def is_end(self, token: int) -> bool:
        """The token ends the answer (end of generation, or one of the prompt's stop tokens)."""
        ...


def decode(steps: Steps, tokens: list[int], request: GenerationRequest, stats: GenerationStats, sink: TextSink,
           started: float, expected: list[int] | None = None) -> tuple[str, str]:
    """Generate after `tokens` (evaluated: the last row of logits follows them) into `sink`:
    (the text, the reason it stopped). `started`: when the request began (stats.first_token_ms).
    `expected`: the ids of `request.expected`, drafted first (engine/backends/lookup.py).
    The backend has refused a prompt that leaves no room (base.room_after)."""
    deadline = Deadline(request.time_budget_s)
    healing = HealingState(steps.healer if request.heal else None, request.heal)
    if healing.active:
        tokens, reason = _heal(steps, tokens, healing, request, stats, sink, started)
        if reason or len(tokens) >= steps.n_ctx():
            return sink.end(steps.flush()), reason or StopReason.MAX_TOKENS
    most = min(request.max_tokens, steps.n_ctx() - len(tokens))

    def emit(token: int) -> str:
        """Account for one generated token; the reason to stop after it, or ''."""
        if stats.first_token_ms is None:
            stats.first_token_ms = (time.perf_counter() - started) * 1000
        if steps.is_end(token):
            return StopReason.EOS
        stats.generated_tokens += 1
        return sink.add(steps.text(token)) or sink.after_token(
            stats.generated_tokens, most, deadline)

    reason = ""
    greedy = request.temperature <= 0 and request.repeat_penalty == 1.0
    if request.open_line and greedy and not request.heal:
        first = steps.open_line()
        if first is not None and len(tokens) < steps.n_ctx() - 1:
            stats.line_kept_open = 1
            reason = emit(first)
            tokens = [*tokens, first]
            steps.evaluate([first])
    if not reason and request.draft_tokens and greedy:
        reason = _with_lookup(steps, tokens, request.draft_tokens, emit, stats, expected or [])
    elif not reason:
        generator = steps.sampled(tokens)
        try:
            reason = next((reason for token in generator if (reason := emit(token))), "")
        finally:
            generator.close()
    return sink.end(steps.flush()), reason or StopReason.MAX_TOKENS


def _heal(steps: Steps, tokens: list[int], healing: HealingState, request: GenerationRequest,
          stats: GenerationStats, sink: TextSink, started: float) -> tuple[list[int], str]:
    """Pick tokens under the healing mask until the healed text is reproduced; the prompt with
    them (evaluated), and the reason to stop already, or ''. What the last of them writes past
    the healed text is the answer's start."""
    assert steps.healer is not None
    past = b""
    while healing.active and not request.cancel.is_set() and len(tokens) < steps.n_ctx():
        token = steps.pick(healing.allowed())
        past = healing.take(steps.healer.token(token))
        tokens = [*tokens, token]
        steps.evaluate([token])
    stats.healed_tokens = healing.healed_tokens
    if stats.healed_tokens:
        stats.first_token_ms = (time.perf_counter() - started) * 1000
    reason = StopReason.CANCELLED if request.cancel.is_set() else sink.add(steps.text_after_heal(past))
    return tokens, reason


def _with_lookup(steps: Steps, tokens: list[int], max_draft: int, emit: Callable[[int], str],
                 stats: GenerationStats, expected: list[int]) -> str:
    """Greedy decoding with prompt-lookup drafts (step 3 of the module docstring)."""
    lookup = PromptLookup(tokens, max_draft, expected)
    n_ctx = steps.n_ctx()
    token, batched = steps.best(-1, lead=False)[0], False
    while True:
        if reason := emit(token):
            return reason
        lookup.append(token)
        start = steps.cells()
        draft = lookup.draft(n_ctx - start - 2)
        batch = [token, *draft]
        steps.evaluate(batch)
        stats.draft_tokens += len(draft)
        batched = batched or bool(draft)
        accepted = 0
        for i in range(len(batch)):
            choice, tie = steps.best(i if draft else -1, lead=batched)
            stats.near_ties += tie
            if i == len(draft) or choice != draft[i]:
                break
            accepted += 1
            stats.draft_accepted += 1
            lookup.append(choice)
            if reason := emit(choice):
                steps.truncate(start + 1 + accepted)
                return reason
        steps.truncate(start + 1 + accepted)
        token = choice


__all__ = ["Steps", "decode"]

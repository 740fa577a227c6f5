"""Prompt-lookup speculative decoding: drafts copied from the context, verified in one batch.

Code completions often copy what is already in the file — a name, an argument list, a line
like the one above. When the last few tokens occurred before in the prompt (or the output), the
tokens that followed them there are a cheap guess at what comes next. The backend evaluates
the current token and the guess in one batch, with logits for exactly those positions, and
keeps the guessed tokens as long as each is the one greedy decoding would have chosen: the
output is the same as plain greedy decoding, produced several tokens per model call where the
guess holds. (Batched and single-token evaluation add floating-point sums in other orders; where
the two best logits are closer than NEAR_TIE, the choice may differ, in a batch's rows and in the
steps after it, whose cache holds the batch's cells — the backend counts such choices from the
first batch on, and reports them.)

How long a draft is follows from two measurements (benchmarks/bench_lookup.py):
- what a model call costs on a 2-core CPU, by the tokens in it (each with its logits), in
  one-token calls: 2 → 1.34, 3 → 1.56, **4 → 1.70**, 5 → 2.36, 6 → 2.59, **8 → 2.76**, 12 → 3.67
  (llama.cpp multiplies four rows at a time); so a draft fills a batch of 4 or of 8;
- how much of a draft holds, by the length of the match it was found by: after a match of 8
  tokens or more the next 7 tokens held ~5 on average (~90 % held the first); after 2–7 tokens,
  1.4–4 of 7; after a single token, 0.5 — not worth a batch.

An answer the caller expects (`GenerationRequest.expected`, what the model wrote at a place
like this before) is drafted first, EXPECTED_DRAFT tokens a batch, while the answer follows it:
the draft is verified as any other, so a wrong expectation costs one wider batch at most, and none
when the answer's first token already departs from it.

Only greedy decoding is sped up: with sampling every step is a plain one.
"""

from __future__ import annotations

from collections.abc import Sequence

# Match lengths looked for, in tokens: a match of LONG_MATCH or more is a long copy.
MIN_MATCH = 2
LONG_MATCH = 8
# Tokens drafted after a short match (a batch of 4) and after a long one (a batch of 8).
SHORT_DRAFT = 3
LONG_DRAFT = 7
# Logit gap under which the best two tokens count as a near-tie: batched evaluation moves this
# model's logits by up to ~0.37 against one token at a time (llama.cpp on the CPU, any batch of
# two or more), so choices closer than this may flip.
NEAR_TIE = 0.5
# Tokens of an expected answer drafted in one batch (a batch of 16: ~4.5 one-token calls, where
# the expected answer is usually a whole short text, such as the lines above a function).
EXPECTED_DRAFT = 15


class PromptLookup:
    """The token history, indexed so that the latest earlier occurrence of each of its last
    MIN_MATCH..LONG_MATCH tokens is found in O(1); `draft()` proposes what followed the longest."""

    def __init__(self, tokens: Sequence[int], max_draft: int, expected: Sequence[int] = ()) -> None:
        self.tokens = list(tokens)
        self.max_draft = max_draft
        # The expected answer, while the tokens appended since the prompt are its start.
        self.expected, self._written = list(expected), 0
        self._follows: dict[tuple[int, ...], int] = {}
        # _index for every token, n by n in bulk (a prompt of 1,000 tokens: ~1.1 ms, not ~2.4):
        # the n-gram starting at j, followed by j + n; later occurrences overwrite earlier ones.
        t = self.tokens
        for n in range(MIN_MATCH, min(LONG_MATCH, len(t) - 1) + 1):
            grams = zip(*(t[k : len(t) - n + k] for k in range(n)), strict=True)
            self._follows.update(zip(grams, range(n, len(t)), strict=True))

    def _index(self, i: int) -> None:
        """tokens[i] is known: record it as what follows each n-gram that ends before it."""
        for n in range(MIN_MATCH, min(LONG_MATCH, i) + 1):
            self._follows[tuple(self.tokens[i - n : i])] = i

    def append(self, token: int) -> None:
        self.tokens.append(token)
        self._index(len(self.tokens) - 1)
        if self._written < len(self.expected) and self.expected[self._written] == token:
            self._written += 1
        elif self.expected:  # departed from it (or past its end): never drafted again
            self.expected = []

    def draft(self, most: int | None = None) -> list[int]:
        """While the tokens since the prompt are the expected answer's start, its next
        EXPECTED_DRAFT tokens (at most `most`). Else what followed the latest earlier occurrence of
        the longest of the history's last LONG_MATCH..MIN_MATCH tokens found: LONG_DRAFT tokens
        after a long match, SHORT_DRAFT after a shorter one (at most `max_draft` and `most`); []
        when none is found."""
        room = min(self.max_draft, self.max_draft if most is None else most)
        if room <= 0:
            return []
        if self._written < len(self.expected):
            limit = EXPECTED_DRAFT if most is None else min(EXPECTED_DRAFT, most)
            return self.expected[self._written : self._written + limit]
        for n in range(LONG_MATCH, MIN_MATCH - 1, -1):
            if len(self.tokens) > n and (at := self._follows.get(tuple(self.tokens[-n:]))) is not None:
                return self.tokens[at : at + min(LONG_DRAFT if n == LONG_MATCH else SHORT_DRAFT, room)]
        return []


__all__ = ["EXPECTED_DRAFT", "LONG_DRAFT", "LONG_MATCH", "MIN_MATCH", "NEAR_TIE", "SHORT_DRAFT", "PromptLookup"]

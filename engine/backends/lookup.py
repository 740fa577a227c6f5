"""Prompt-lookup speculative decoding: drafts copied from the context, verified in one batch.

Code completions often copy what is already in the file — a name, an argument list, a line
like the one above. When the last few tokens occurred before in the prompt (or the output), the
tokens that followed them there are a cheap guess at what comes next. The backend evaluates
the current token and the guess in one batch, with logits for exactly those positions, and
keeps the guessed tokens as long as each is the one greedy decoding would have chosen: the
output is the same as plain greedy decoding, produced several tokens per model call where the
guess holds. (Batched and single-token evaluation add floating-point sums in other orders; where
the two best logits are closer than NEAR_TIE, the choice may differ — counted, and reported.)

Only greedy decoding is sped up: with sampling every step is a plain one.
"""

from __future__ import annotations

from collections.abc import Sequence

# The n-gram sizes matched, longest first: a one-token match proposes noise.
GRAMS = (3, 2)
# Logit gap under which the best two tokens count as a near-tie: batched evaluation moved this
# model's logits by up to ~0.3 against one token at a time (llama.cpp on the CPU, batches of four
# or more; smaller batches mostly agree to the bit), so choices closer than this may flip.
NEAR_TIE = 0.5
# Plain steps after a draft missed at its first token, before drafting again.
COOLDOWN = 4


class PromptLookup:
    """The token history, indexed so that the latest earlier occurrence of its last n tokens is
    found in O(1); `draft()` proposes what followed that occurrence."""

    def __init__(self, tokens: Sequence[int], max_draft: int) -> None:
        self.tokens = list(tokens)
        self.max_draft = max_draft
        self.limit = max_draft  # shrinks after misses, grows after hits (`feedback`)
        self.cooldown = 0  # plain steps left before drafting again
        self._follows: dict[tuple[int, ...], int] = {}
        for i in range(len(self.tokens)):
            self._index(i)

    def _index(self, i: int) -> None:
        """tokens[i] is known: record it as what follows each n-gram that ends before it."""
        for n in GRAMS:
            if i >= n:
                self._follows[tuple(self.tokens[i - n : i])] = i

    def append(self, token: int) -> None:
        self.tokens.append(token)
        self._index(len(self.tokens) - 1)

    def draft(self, most: int | None = None) -> list[int]:
        """Up to `limit` (and `most`) tokens that followed the latest earlier occurrence of the
        history's last n-gram; [] when there is none."""
        if self.cooldown > 0:
            self.cooldown -= 1
            return []
        room = min(self.limit, self.max_draft if most is None else most)
        if room <= 0:
            return []
        for n in GRAMS:
            if len(self.tokens) > n and (at := self._follows.get(tuple(self.tokens[-n:]))) is not None:
                return self.tokens[at : at + room]
        return []

    def feedback(self, proposed: int, accepted: int) -> None:
        """After a miss at the first token (a batch that bought nothing) draft nothing for a few
        steps, then one token; after a full hit draft twice as many: text that copies nothing
        then decodes at nearly plain speed."""
        if proposed and accepted == 0:
            self.limit, self.cooldown = 1, COOLDOWN
        elif proposed and accepted == proposed:
            self.limit = min(self.max_draft, self.limit * 2)


__all__ = ["COOLDOWN", "GRAMS", "NEAR_TIE", "PromptLookup"]

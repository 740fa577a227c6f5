"""Reusing evaluated prompt tokens across cursor positions and across prompts.

A prompt costs its evaluation: ~170 tokens/s on two CPU cores, so a 1,000-token prompt at a new
place takes six seconds. Most of that prompt is the file around the cursor, which an earlier
prompt (or the document's warm-up, see CompletionService.warm) has usually evaluated already —
at other positions. Two things make it reusable:

- `plan_reuse` finds the runs of the new prompt that a cached token sequence holds, at any
  position, and lays them end to end: the head of the new prompt. llama.cpp's sequence
  operations then move those KV cells into place (a RoPE-correct shift, as llama-server's
  `n_cache_reuse`), and only the rest is evaluated. llama.cpp requires new tokens to come after
  every cached one, so reuse ends at the first prompt token no run covers: prompts put their
  stable parts first for this reason. Unlike `n_cache_reuse`, a run may come from anywhere in
  the cache (the cursor moved up as well as down), and several runs may be joined.
- `StateCache` keeps the KV state of a few sequences (a document's warm-up, the places the user
  worked at) in memory, bounded in bytes, least recently used out first; the backend restores
  the one that covers the most of a new prompt.

A shifted run's cells were computed after other text than the tokens now before them: that is
the approximation llama-server makes too (its keys are re-rotated exactly; what earlier layers
saw differs). benchmarks/bench_typing.py --scenario places measures what it does to answers.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

# A run must be at least this long to be reused on its own; shorter matches are often accidents
# of repetitive code (`self.`, `    return `) whose cells carry another line's meaning.
MIN_RUN = 12
# Shorter runs (at least SHORT_RUN tokens, at most SHORT_SPAN in a row) are kept only when a run
# of MIN_RUN follows them: the prompt's pinned lines (an enclosing `class X:` above the window)
# sit alone in the cache, and the window after them must not be lost for their sake.
SHORT_RUN = 2
SHORT_SPAN = 96
# Runs are found through an index of this many tokens; at most this many places are tried
# (the one that continues the last run first).
_GRAM = 2
_CANDIDATES = 512


@dataclass(frozen=True)
class Run:
    """`length` tokens at `source` in the cached sequence serve as prompt tokens at `target`."""

    source: int
    target: int
    length: int


@dataclass(frozen=True)
class Plan:
    runs: tuple[Run, ...]

    @property
    def reused(self) -> int:
        """Prompt tokens the plan serves from the cache (all at the prompt's start)."""
        return sum(r.length for r in self.runs)

    @property
    def moves(self) -> bool:
        return any(r.source != r.target for r in self.runs)


class TokenIndex:
    """Where each `_GRAM`-token sequence occurs in a cached sequence."""

    def __init__(self, tokens: Sequence[int]) -> None:
        self.tokens = list(tokens)
        self.at: dict[tuple[int, ...], list[int]] = {}
        for i in range(len(self.tokens) - _GRAM + 1):
            self.at.setdefault(tuple(self.tokens[i : i + _GRAM]), []).append(i)


def plan_reuse(cached: Sequence[int] | TokenIndex, prompt: Sequence[int], *, min_run: int = MIN_RUN,
               keep_last: bool = True) -> Plan:
    """The runs of `cached` that make up the longest head of `prompt`.

    First the common prefix (free: it stays where it is), then, greedily, the longest run of
    the prompt found anywhere in the cache among cells not used yet, as long as it is at least
    `min_run` tokens (shorter ones only on the way to such a run). With `keep_last`, the
    prompt's last token is never served from the cache: its logits pick the first generated
    token, so it must be evaluated.
    """
    index = cached if isinstance(cached, TokenIndex) else TokenIndex(cached)
    tokens = index.tokens
    limit = len(prompt) - 1 if keep_last else len(prompt)
    common = 0
    while common < min(limit, len(tokens)) and tokens[common] == prompt[common]:
        common += 1
    runs = [Run(0, 0, common)] if common else []
    used = [False] * len(tokens)
    for i in range(common):
        used[i] = True
    head = common
    pending: list[Run] = []  # short runs, kept only if a long one follows
    while head + SHORT_RUN <= limit:
        best_source, best_length = -1, 0
        last = pending[-1] if pending else runs[-1] if runs else None
        candidates = index.at.get(tuple(prompt[head : head + _GRAM]), [])
        if last is not None and last.source + last.length in candidates:
            candidates = [last.source + last.length, *candidates[:_CANDIDATES]]
        for source in candidates[:_CANDIDATES]:
            length = 0
            while (head + length < limit and source + length < len(tokens) and not used[source + length]
                   and tokens[source + length] == prompt[head + length]):
                length += 1
            # Ties go to the first tried: the run that continues the last one's source, whose
            # cells were computed next to it.
            if length > best_length:
                best_source, best_length = source, length
        if best_length >= min_run:
            runs += [*pending, Run(best_source, head, best_length)]
            pending = []
        elif best_length >= SHORT_RUN and sum(r.length for r in pending) + best_length <= SHORT_SPAN:
            pending.append(Run(best_source, head, best_length))
        else:
            break
        for i in range(best_source, best_source + best_length):
            used[i] = True
        head += best_length
    return Plan(tuple(_join(runs)))


def _join(runs: list[Run]) -> list[Run]:
    """Merge runs that are contiguous in both the cache and the prompt."""
    joined: list[Run] = []
    for run in runs:
        last = joined[-1] if joined else None
        if last and last.source + last.length == run.source and last.target + last.length == run.target:
            joined[-1] = Run(last.source, last.target, last.length + run.length)
        else:
            joined.append(run)
    return joined


@dataclass
class SavedState:
    """One sequence's KV cells as llama.cpp serialises them, with the tokens they hold."""

    tokens: tuple[int, ...]
    data: bytes | bytearray
    label: str = ""
    index: TokenIndex | None = None

    @property
    def nbytes(self) -> int:
        return len(self.data)

    def token_index(self) -> TokenIndex:
        if self.index is None:
            self.index = TokenIndex(self.tokens)
        return self.index


class StateCache:
    """Saved sequence states, least recently used out first, at most `max_bytes` in all."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._states: OrderedDict[tuple[int, ...], SavedState] = OrderedDict()
        self.restores = 0
        self.evictions = 0
        self.moved = 0  # tokens whose cells were moved to another position, by requests and warm-ups
        self._summary: dict[str, object] = {}
        self._summarize()

    def __len__(self) -> int:
        return len(self._states)

    @property
    def nbytes(self) -> int:
        return sum(s.nbytes for s in self._states.values())

    def __contains__(self, tokens: Sequence[int]) -> bool:
        return tuple(tokens) in self._states

    def put(self, state: SavedState) -> bool:
        """Keep `state` (replacing one with the same tokens, and any whose tokens it starts with:
        it holds all they held). False when it alone is over the bound."""
        if state.nbytes > self.max_bytes:
            return False
        for key in [k for k in self._states if len(k) <= len(state.tokens) and state.tokens[: len(k)] == k]:
            del self._states[key]
        self._states[state.tokens] = state
        while self.nbytes > self.max_bytes:
            self._states.popitem(last=False)
            self.evictions += 1
        self._summarize()
        return True

    def best(self, prompt: Sequence[int], min_run: int = MIN_RUN) -> tuple[SavedState | None, Plan]:
        """The saved state that serves the longest head of `prompt`, and its plan."""
        best: tuple[SavedState | None, Plan] = (None, Plan(()))
        for state in self._states.values():
            plan = plan_reuse(state.token_index(), prompt, min_run=min_run)
            if plan.reused > best[1].reused:
                best = (state, plan)
        return best

    def count_moved(self, tokens: int) -> None:
        if tokens:
            self.moved += tokens
            self._summarize()

    def touch(self, state: SavedState) -> None:
        if state.tokens in self._states:
            self._states.move_to_end(state.tokens)
        self._summarize()

    def _summarize(self) -> None:
        self._summary = {"states": len(self._states), "bytes": self.nbytes, "maxBytes": self.max_bytes,
                         "restores": self.restores, "evictions": self.evictions, "moved": self.moved,
                         "tokens": [len(s.tokens) for s in self._states.values()],
                         "labels": [s.label for s in self._states.values()]}

    def summary(self) -> dict[str, object]:
        """Counters as of the last change; safe to read from another thread (a copy is swapped in)."""
        return dict(self._summary)


__all__ = ["MIN_RUN", "SHORT_RUN", "Plan", "Run", "SavedState", "StateCache", "TokenIndex", "plan_reuse"]

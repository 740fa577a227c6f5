"""The default backend: a quantized GGUF model on the CPU through llama-cpp-python.

One `Llama` object lives as long as the backend, because its KV cache is the cheapest speed-up
we have: a new prompt that shares its first N tokens with the last one evaluates only the rest.
Editor prompts change at the cursor and stay the same above it, so most of each keystroke's
prefill is reused. We evaluate the new part of the prompt ourselves in chunks, so that a cancel
can stop a long prefill too (a request's within its chunk: llama_reach.abort_on) — and what was
evaluated before the stop stays in the cache for the next request at the same place.

llama.cpp is not thread-safe: callers run one backend on one worker thread.
"""

from __future__ import annotations

import codecs
import logging
import time
from collections.abc import Generator
from dataclasses import replace
from typing import Any

from ..errors import BackendError
from ..healing import TokenHealer
from ..prompt import Prompt
from ..reasons import StopReason
from ..tokenizer import native_tokenizer
from . import llama_reach as reach
from .base import (
    Backend,
    GenerationRequest,
    GenerationResult,
    GenerationStats,
    TextCallback,
    TextSink,
    blank_tokens,
    common_prefix,
    open_line_choice,
    prefill_chunks,
    prompt_ids,
    room_after,
)
from .cpu_load import LoadGauge, threads_for, usable_cores
from .decoding import decode
from .kv_reuse import Plan, Run, SavedState, StateCache, plan_reuse
from .lookup import NEAR_TIE

log = logging.getLogger(__name__)

# Prompt tokens evaluated per llama.cpp call. The weights are read once per call, so fewer,
# larger calls prefill faster: 160 tokens take ~650 ms in one call and ~7 % more as 32 + 128, ~13 %
# more as five calls of 32 (two cores). Idle work's calls are small. A warm-up of the place just
# edited (its cancel a CancelFlag with `idle`) has every call stoppable: a request arriving stops
# it at once (an editor asks a few milliseconds after the edit) and evaluates the same prompt in
# its own first call, faster. Other idle work's calls run to their end (a plain Event), so that a
# request waits for one at most ~0.2 s on two cores, and what they evaluated stays.
# A request's first call also runs to its end, and holds what evaluates in FIRST_CALL_S at the
# measured prompt speed (`prefill_rate`; 32 tokens until measured): with the default model on two
# idle cores ~150–180 tokens, the whole new part of a prompt at a new place in a HumanEval-sized file
# (~120–200 tokens) in one call; the 1.5B, or one thread on a busy machine, fewer. Typing
# supersedes a request every keystroke, and the next request goes on from those cells (the
# prompt only grows at its end while the user types, engine/anchor.py; with every call stoppable,
# a prompt longer than a keystroke's worth would never be done while the user types). The price:
# a request that supersedes it, or a cancel, may wait for that call, FIRST_CALL_S at most.
# A request's later calls are stoppable (native.CancelFlag stops one at once); what a stopped call
# had evaluated is lost, so they are not larger.
PREFILL_CHUNK = 32
FIRST_CALL_S = 0.75
ABORTABLE_CHUNK = 128
# Moving a run of KV cells goes through positions this far up, so that no run lands on cells
# another run has still to leave (llama.cpp moves cells by position range).
_PARK = 1 << 24
# The live sequence is saved before a prompt drops at least this many of its tokens.
SAVE_WHEN_DROPPING = 256
# A saved state is restored only when it serves this many more prompt tokens than the live one
# (no fewer than a chat prompt's shared instruction, 44 tokens with the default model's template).
RESTORE_GAIN = 32
# Pack the live cells after a prompt dropped at least this many of the cached ones.
COMPACT_WHEN_DROPPED = 1024
# Weight of the newest chunk in the measured prefill speed (a moving average: a busy machine
# shows in a few chunks). Only chunks this near the start count: a token attends to every one
# before it, and a document's warm-up 6,000 tokens in runs at half the speed of a prompt.
RATE_WEIGHT = 0.25
RATE_POSITIONS = 2048


class LlamaCppBackend(Backend):
    name = "llama_cpp"

    def __init__(self, model: Any, settings: Any) -> None:
        super().__init__(model, settings)
        self.llm: Any = None
        self._eog_cache: dict[int, bool] = {}
        # Counts for the prompt budget: the native tokenizer when it reads this vocabulary (the
        # same ids, about ten times faster than asking llama.cpp), else llama.cpp itself.
        self.tokenizer: Any = None
        self._healer: TokenHealer | None = None
        self.states = StateCache(int(settings.kv_cache_mb) * 1024 * 1024)
        # A move of KV cells is applied lazily, at the next decode; until then the live sequence
        # must not be saved (llama.cpp would write the cells unrotated).
        self._moved = False
        self._scattered = False
        self._rate: float | None = None
        self._threads = 0  # what llama.cpp runs with now (cpu_load.py)
        self._load = LoadGauge()
        self._blank: Any = None  # [vocab] bool: tokens that begin with a newline or end the answer

    @property
    def prefill_rate(self) -> float | None:
        return self._rate

    def load(self) -> None:
        if self.llm is not None:
            return
        if self.model is None or not self.model.is_gguf:
            raise BackendError("the llama_cpp backend needs a GGUF model file; use backend torch for a HF folder")
        try:
            from llama_cpp import Llama
        except ImportError as exc:  # pragma: no cover - a broken install
            raise BackendError(f"llama-cpp-python is not installed ({exc}): pip install llama-cpp-python") from exc
        threads = self.settings.n_threads or usable_cores()
        self._threads = threads
        try:
            with reach.model_params(use_extra_bufts=not reach.amx_compiled_in()):
                self.llm = Llama(
                    model_path=str(self.model.path),
                    n_ctx=self.settings.n_ctx,
                    n_batch=512,
                    n_threads=threads,
                    n_threads_batch=threads,
                    seed=self.settings.seed,
                    verbose=False,
                )
        except (ValueError, RuntimeError, OSError) as exc:
            raise BackendError(f"llama.cpp could not load {self.model.path}: {exc}") from exc
        self.tokenizer = native_tokenizer(self.model.path)
        reach.quiet_stopped_batches()

    # -- tokens ------------------------------------------------------------------------------

    def tokenize(self, text: str, *, special: bool = False, add_bos: bool = False) -> list[int]:
        data = text.encode("utf-8", errors="replace")
        return list(self.llm.tokenize(data, add_bos=add_bos, special=special)) if data or add_bos else []

    def count_tokens(self, text: str) -> int:
        if self.tokenizer is not None:
            return int(self.tokenizer.count(text))
        return len(self.tokenize(text))

    def prompt_tokens(self, prompt: Prompt) -> list[int]:
        return prompt_ids(prompt, lambda text, special: self.tokenize(text, special=special), self.llm.token_bos())

    def _special_ids(self, texts: tuple[str, ...]) -> set[int]:
        ids: set[int] = set()
        for text in texts:
            found = self.tokenize(text, special=True)
            if len(found) == 1:
                ids.add(found[0])
        return ids

    def _is_eog(self, token: int) -> bool:
        if token not in self._eog_cache:

            self._eog_cache[token] = reach.is_eog(self.llm, token)
        return self._eog_cache[token]

    # -- generation ----------------------------------------------------------------------------

    def cached_prefix(self, tokens: list[int]) -> int:
        """How many leading tokens of `tokens` the KV cache already holds."""
        return common_prefix(reach.live_tokens(self.llm), tokens)

    # -- the KV cache across prompts (engine/backends/kv_reuse.py) -----------------------------

    def save_live(self, label: str = "") -> bool:
        """Keep the live sequence's KV state in the state cache (bounded by kvCacheMB)."""
        tokens = tuple(reach.live_tokens(self.llm))
        if not tokens or self._moved or self.states.max_bytes <= 0 or tokens in self.states:
            return False
        data = reach.save_sequence(self.llm, self.states.max_bytes)
        return data is not None and self.states.put(SavedState(tokens, data, label))

    def _restore(self, state: SavedState) -> bool:
        data = state.data if isinstance(state.data, bytearray) else bytearray(state.data)
        if not reach.load_sequence(self.llm, data, state.tokens):  # refused: it starts empty
            return False
        self.states.restores += 1
        self.states.touch(state)
        return True

    def _apply(self, plan: Plan, tokens: list[int]) -> int:
        """Keep the plan's runs of the live sequence, moved to their places; drop every other cell."""
        import llama_cpp

        llm, mem = self.llm, reach.memory(self.llm)
        position = 0
        for run in sorted(plan.runs, key=lambda r: r.source):
            if run.source > position:
                llama_cpp.llama_memory_seq_rm(mem, 0, position, run.source)
            position = run.source + run.length
        llama_cpp.llama_memory_seq_rm(mem, 0, position, -1)
        moving = [r for r in plan.runs if r.source != r.target]
        for run in moving:
            llama_cpp.llama_memory_seq_add(mem, 0, run.source, run.source + run.length, _PARK + run.target - run.source)
        if moving:
            llama_cpp.llama_memory_seq_add(mem, 0, _PARK, -1, -_PARK)
            self._moved = True
        reach.set_live(llm, tokens[: plan.reused])
        return sum(r.length for r in moving)

    def _reuse(self, tokens: list[int], moves: bool = True) -> tuple[int, int]:
        """Make the live sequence hold the longest head of `tokens` it or a saved state can serve.

        Returns (tokens reused, of which moved from other positions). The live sequence is saved
        first when the new prompt would drop much of it: the user may come back."""
        live = reach.live_tokens(self.llm)
        if not moves:  # the common prefix only: exact, whatever the cache held
            common = self.cached_prefix(tokens[:-1])
            self._scattered = False
            return common, self._apply(Plan((Run(0, 0, common),) if common else ()), tokens)
        plan, state, saved_plan = self._plans(live, tokens)
        restore = state is not None and saved_plan.reused >= plan.reused + RESTORE_GAIN
        kept = 0 if restore else plan.reused
        if len(live) - kept >= SAVE_WHEN_DROPPING:
            self.save_live()
        source = live
        if restore and state is not None and self._restore(state):
            plan, source = saved_plan, list(state.tokens)
        elif restore:
            plan = Plan(())
        # When most of a long sequence (a warmed document) is dropped, the kept cells sit high up.
        self._scattered = len(source) - plan.reused >= COMPACT_WHEN_DROPPED
        moved = self._apply(plan, tokens)
        self.states.count_moved(moved)  # a warm-up preempted after its move still did the work
        return plan.reused, moved

    def _plans(self, live: list[int], tokens: list[int]) -> tuple[Plan, SavedState | None, Plan]:
        """How the live sequence would serve `tokens`, and the saved state that would serve most."""
        plan = plan_reuse(live, tokens)
        # Typing in place, the live sequence serves nearly all: no saved state could gain enough.
        if len(tokens) - 1 - plan.reused < RESTORE_GAIN or not len(self.states):
            return plan, None, Plan(())
        state, saved_plan = self.states.best(tokens)
        return plan, state, saved_plan

    def _compact(self) -> None:
        """Move the live sequence's cells to the bottom of the cache. llama.cpp attends over every
        cell up to the highest one in use, so cells kept from the middle of a restored document
        made each token a quarter slower; a save and restore of the sequence packs them."""
        self._scattered = False
        tokens, data = reach.live_tokens(self.llm), reach.save_sequence(self.llm)
        if data is None:
            return  # nothing removed: the cells stay where they are
        reach.forget_from(self.llm, 0)
        if not reach.load_sequence(self.llm, data, tokens, logits_stale=False):
            raise BackendError("llama.cpp refused its own KV state while packing the cache")

    def _prefill(self, tokens: list[int], request: GenerationRequest, stats: GenerationStats) -> str:
        """Evaluate what the KV cache lacks of `tokens` (base.prefill_chunks); the stop reason or ''."""
        llm = self.llm
        started = time.perf_counter()
        stats.threads = self._fit_threads()
        stats.prompt_tokens_reused, stats.prompt_tokens_moved = self._reuse(tokens, request.reuse)
        stats.reuse_ms = (time.perf_counter() - started) * 1000

        abortable = reach.can_abort(request.cancel)
        idle = abortable and getattr(request.cancel, "idle", False)
        begun = -1 if idle else llm.n_tokens  # a request's first call, at this position, runs to its end

        def evaluate(chunk: list[int], position: int) -> bool:
            chunk_started = time.perf_counter()
            if not abortable or position == begun:
                llm.eval(chunk)
            elif not self._eval_abortable(chunk, request.cancel):
                held = reach.held_positions(llm)  # the call's finished micro-batches, if any
                reach.set_live(llm, tokens[:held])
                stats.prompt_tokens_evaluated += max(0, held - position)
                return True
            self._moved = False
            stats.prompt_tokens_evaluated += len(chunk)
            if len(chunk) >= PREFILL_CHUNK and position < RATE_POSITIONS:
                rate = len(chunk) / max(time.perf_counter() - chunk_started, 1e-6)
                self._rate = rate if self._rate is None else self._rate + RATE_WEIGHT * (rate - self._rate)
            if self._scattered:  # after a decode: moved cells are rotated, a save is exact
                self._compact()
            return False

        chunk, first = (ABORTABLE_CHUNK, self.first_call_tokens()) if abortable and not idle else (PREFILL_CHUNK, None)
        shared = self._shared_head(request.prompt)
        if llm.n_tokens < len(shared) and tokens[: len(shared)] == shared and shared not in self.states:
            # The prompt's shared parts are evaluated first and their state kept: the next prompt
            # of its kind starts from it (Prompt.shared_parts).
            reason = prefill_chunks(shared, llm.n_tokens, chunk, request.cancel, evaluate, first=first)
            if reason:
                return reason
            self.save_live("shared")
            first = None
        return prefill_chunks(tokens, llm.n_tokens, chunk, request.cancel, evaluate, first=first)

    def first_call_tokens(self) -> int:
        """A request's first prefill call, in tokens: what evaluates in FIRST_CALL_S (see above)."""
        return max(PREFILL_CHUNK, int((self._rate or 0.0) * FIRST_CALL_S))

    def _shared_head(self, prompt: Prompt) -> list[int]:
        """The ids of the prompt's shared parts (none when it has none)."""
        if not prompt.shared_parts:
            return []
        return self.prompt_tokens(replace(prompt, parts=prompt.parts[: prompt.shared_parts]))

    def _eval_abortable(self, chunk: list[int], cancel: Any) -> bool:
        """`Llama.eval(chunk)`, stopped within it when `cancel` is set; False: it was stopped."""
        try:
            with reach.abort_on(self.llm, cancel):
                self.llm.eval(chunk)
        except RuntimeError as error:
            if not reach.aborted(error):
                raise
            return False
        return True

    def _fit_threads(self) -> int:
        """Give llama.cpp the cores other processes leave free for this request (cpu_load.py)."""
        configured = int(self.settings.n_threads)
        threads = threads_for(configured, usable_cores(), None if configured else self._load.elsewhere())
        if threads != self._threads:
            reach.set_threads(self.llm, threads)
            self._threads = threads
        return threads

    def new_tokens(self, prompt: Prompt) -> int:
        """The tokens of `prompt` that neither the live sequence nor a saved state would serve
        (the same plans as `_reuse`, without applying one)."""
        self.load()
        tokens = self.prompt_tokens(prompt)
        plan, _, saved_plan = self._plans(reach.live_tokens(self.llm), tokens)
        return len(tokens) - max(plan.reused, saved_plan.reused)

    def warm(self, prompt: Prompt, cancel: Any, *, keep: str = "", preemptible: bool = False) -> GenerationStats:
        """Evaluate `prompt` into the KV cache without generating; with `keep`, save the state
        under that label (a document's warm-up) once it is whole; `preemptible`: see Backend."""
        self.load()
        if preemptible:
            self.save_live("place")
        stats = GenerationStats()
        tokens = self.prompt_tokens(prompt)[: self.llm.n_ctx() - 1]
        stats.prompt_tokens = len(tokens)
        started = time.perf_counter()
        reason = self._prefill(tokens, GenerationRequest(prompt, cancel=cancel), stats)
        stats.stop_reason = reason or StopReason.PREFILLED
        stats.prefill_ms = (time.perf_counter() - started) * 1000
        if keep and stats.stop_reason != StopReason.CANCELLED:
            self.save_live(keep)
        elif preemptible and stats.stop_reason == StopReason.CANCELLED and stats.prompt_tokens_evaluated:
            self.save_live("widening")
        return stats

    def generate(self, request: GenerationRequest, on_text: TextCallback | None = None) -> GenerationResult:
        self.load()
        stats = GenerationStats()
        started = time.perf_counter()
        tokens = self.prompt_tokens(request.prompt)
        room_after(tokens, self.llm.n_ctx())  # (refuses a prompt that leaves no room)
        stats.prompt_tokens = len(tokens)
        reason = self._prefill(tokens, request, stats)
        stats.prefill_ms = (time.perf_counter() - started) * 1000
        if reason:
            stats.stop_reason = reason
            return GenerationResult("", stats)
        decode_start = time.perf_counter()
        expected = self.tokenize(request.expected) if request.expected else None
        text, stats.stop_reason = decode(LlamaSteps(self, request), tokens, request, stats,
                                         TextSink(request, on_text), started, expected)
        stats.decode_ms = (time.perf_counter() - decode_start) * 1000
        return GenerationResult(text, stats)

    @property
    def healer(self) -> TokenHealer | None:
        """Healing needs the vocabulary as bytes and the pre-tokenizer: the native tokenizer's."""
        if self._healer is None and self.tokenizer is not None:
            tok = self.tokenizer
            self._healer = TokenHealer(tok.token_bytes(), tok.is_text_token, tok.pieces)
        return self._healer

    def blank_row(self) -> Any:
        """[vocab] bool: the tokens that leave a line blank if written first (base.blank_tokens)."""
        if self._blank is None and self.tokenizer is not None:
            n_vocab = self.llm.n_vocab()
            ends = [i for i in range(n_vocab) if reach.is_eog(self.llm, i)]
            self._blank = blank_tokens(self.tokenizer.token_bytes(), ends, n_vocab)
        return self._blank

    def cache_summary(self) -> dict[str, object]:
        llm = self.llm
        return {"liveTokens": int(llm.n_tokens) if llm is not None else 0,
                "prefillTokensPerS": round(self._rate, 1) if self._rate else None, **self.states.summary()}

    def close(self) -> None:
        self.states = StateCache(self.states.max_bytes)
        if self.llm is not None:
            self.llm.close()
            self.llm = None


class LlamaSteps:
    """The decode loop's steps (engine/backends/decoding.py) on a loaded `Llama`, for one request."""

    def __init__(self, backend: LlamaCppBackend, request: GenerationRequest) -> None:
        import numpy as np

        self.backend, self.llm, self.request = backend, backend.llm, request
        self.healer = backend.healer
        self.stop_ids = backend._special_ids(request.prompt.stop_tokens)
        self.rng = np.random.default_rng(request.seed)  # (healing's picks when sampling)
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def n_ctx(self) -> int:
        return int(self.llm.n_ctx())

    def cells(self) -> int:
        return int(self.llm.n_tokens)

    def _row(self, i: int) -> Any:
        return reach.logits_row(self.llm, i)

    def evaluate(self, batch: list[int]) -> None:
        if len(batch) == 1:
            self.llm.eval(batch)
        else:  # logits for every position (a draft's verification)
            reach.evaluate_rows(self.llm, batch)
        self.backend._moved = False

    def best(self, i: int, lead: bool) -> tuple[int, bool]:
        import numpy as np

        row = self._row(i)
        choice = int(np.argmax(row))
        return choice, lead and near_tie(row, choice)

    def truncate(self, n: int) -> None:
        if n < self.llm.n_tokens:
            reach.forget_from(self.llm, n)

    def pick(self, allowed: list[int]) -> int:
        """llama-cpp-python's logits processors run inside its sampler chain over a copy of the
        candidates; reading the last logits ourselves is simpler and exact."""
        import numpy as np

        ids = np.asarray(allowed, dtype=np.int64)
        return int(ids[pick_token(self._row(-1)[ids], self.request.temperature, self.rng)])

    def open_line(self) -> int | None:
        blank = self.backend.blank_row()
        if blank is None:
            return None
        return open_line_choice(self._row(-1), blank, self.stop_ids)

    def sampled(self, tokens: list[int]) -> Generator[int, None, None]:
        """llama-cpp-python's own loop and sampler chain (sampling, penalties)."""
        request, llm = self.request, self.llm
        llm.set_seed(request.seed)
        return llm.generate(tokens, top_k=request.top_k, top_p=request.top_p, min_p=request.min_p,
                            temp=request.temperature, repeat_penalty=request.repeat_penalty)

    def text(self, token: int) -> str:
        return self.decoder.decode(self.llm.detokenize([token]))

    def text_after_heal(self, data: bytes) -> str:
        return self.decoder.decode(data)

    def flush(self) -> str:
        return self.decoder.decode(b"", final=True)

    def is_end(self, token: int) -> bool:
        return token in self.stop_ids or self.backend._is_eog(token)


def near_tie(row: Any, best: int) -> bool:
    """Whether the best two of `row` ([vocab] logits, `best` the argmax) are within NEAR_TIE.
    (The best is masked in place for a moment: a copy of the row would cost more than the max.)"""
    import numpy as np

    top = row[best]
    row[best] = -np.inf
    second = row.max()
    row[best] = top
    return float(top - second) < NEAR_TIE


def pick_token(logits: Any, temperature: float, rng: Any) -> int:
    """Index of the chosen entry of `logits` ([n] candidates): the best when greedy, else a draw
    from their softmax at `temperature`."""
    import numpy as np

    if temperature <= 0:
        return int(np.argmax(logits))
    scaled = (logits - logits.max()) / temperature
    probs = np.exp(scaled)
    return int(rng.choice(len(probs), p=probs / probs.sum()))


__all__ = ["ABORTABLE_CHUNK", "FIRST_CALL_S", "PREFILL_CHUNK", "LlamaCppBackend", "near_tie", "pick_token"]

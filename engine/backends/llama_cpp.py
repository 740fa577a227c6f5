"""The default backend: a quantized GGUF model on the CPU through llama-cpp-python.

One `Llama` object lives as long as the backend, because its KV cache is the cheapest speed-up
we have: a new prompt that shares its first N tokens with the last one evaluates only the rest.
Editor prompts change at the cursor and stay the same above it, so most of each keystroke's
prefill is reused. We evaluate the new part of the prompt ourselves in small chunks, so that a
cancel or an exhausted time budget can stop a long prefill too — and what was evaluated before
the stop stays in the cache for the next request at the same place.

llama.cpp is not thread-safe: callers run one backend on one worker thread.
"""

from __future__ import annotations

import codecs
import logging
import os
import time
from typing import Any

from ..errors import BackendError
from ..healing import HealingState, TokenHealer
from ..prompt import Prompt, Special
from .base import (
    STOP_CANCELLED,
    STOP_EOS,
    STOP_MAX_TOKENS,
    Backend,
    Deadline,
    GenerationRequest,
    GenerationResult,
    GenerationStats,
    TextCallback,
    TextSink,
)

log = logging.getLogger(__name__)

# Prompt tokens evaluated per llama.cpp call. Small enough that cancel is seen within about
# 0.2 s on two cores, large enough that prefill keeps most of its batch speed.
PREFILL_CHUNK = 32


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

    def load(self) -> None:
        if self.llm is not None:
            return
        if self.model is None or not self.model.is_gguf:
            raise BackendError("the llama_cpp backend needs a GGUF model file; use backend torch for a HF folder")
        try:
            from llama_cpp import Llama
        except ImportError as exc:  # pragma: no cover - a broken install
            raise BackendError(f"llama-cpp-python is not installed ({exc}): pip install llama-cpp-python") from exc
        threads = self.settings.n_threads or os.cpu_count() or 1
        try:
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
        try:
            import native

            self.tokenizer = native.Tokenizer.from_gguf(self.model.path)
        except (ImportError, ValueError, KeyError) as exc:
            log.info("counting tokens with llama.cpp: %s", exc)

    # -- tokens ------------------------------------------------------------------------------

    def tokenize(self, text: str, *, special: bool = False, add_bos: bool = False) -> list[int]:
        data = text.encode("utf-8", errors="replace")
        return list(self.llm.tokenize(data, add_bos=add_bos, special=special)) if data or add_bos else []

    def count_tokens(self, text: str) -> int:
        if self.tokenizer is not None:
            return int(self.tokenizer.count(text))
        return len(self.tokenize(text))

    def prompt_tokens(self, prompt: Prompt) -> list[int]:
        ids: list[int] = [self.llm.token_bos()] if prompt.add_bos else []
        for part in prompt.parts:
            ids += self.tokenize(part.text, special=isinstance(part, Special))
        return ids

    def _special_ids(self, texts: tuple[str, ...]) -> set[int]:
        ids: set[int] = set()
        for text in texts:
            found = self.tokenize(text, special=True)
            if len(found) == 1:
                ids.add(found[0])
        return ids

    def _is_eog(self, token: int) -> bool:
        if token not in self._eog_cache:
            import llama_cpp

            self._eog_cache[token] = bool(llama_cpp.llama_vocab_is_eog(self.llm._model.vocab, token))
        return self._eog_cache[token]

    # -- generation ----------------------------------------------------------------------------

    def cached_prefix(self, tokens: list[int]) -> int:
        """How many leading tokens of `tokens` the KV cache already holds."""
        held = self.llm.input_ids[: self.llm.n_tokens]
        n = 0
        for a, b in zip(held, tokens, strict=False):
            if a != b:
                break
            n += 1
        return n

    def _prefill(self, tokens: list[int], request: GenerationRequest) -> tuple[int, str]:
        """Evaluate what the cache lacks of `tokens`; returns (evaluated, stop reason or '').

        Only a cancel stops it: the time budget is for decoding, so that a request at a new
        place answers (later) instead of spending its budget on the prompt and showing nothing."""
        llm = self.llm
        # Keep at least the last prompt token to evaluate: its logits pick the first new token.
        keep = min(self.cached_prefix(tokens), len(tokens) - 1)
        if keep < llm.n_tokens:
            llm._ctx.kv_cache_seq_rm(-1, keep, -1)
            llm.n_tokens = keep
        evaluated = 0
        for start in range(keep, len(tokens), PREFILL_CHUNK):
            if request.cancel.is_set():
                return evaluated, STOP_CANCELLED
            chunk = tokens[start : start + PREFILL_CHUNK]
            llm.eval(chunk)
            evaluated += len(chunk)
        return evaluated, ""

    def generate(self, request: GenerationRequest, on_text: TextCallback | None = None) -> GenerationResult:
        self.load()
        llm = self.llm
        stats = GenerationStats()
        started = time.perf_counter()
        tokens = self.prompt_tokens(request.prompt)
        if not tokens:
            tokens = [llm.token_bos()]
        room = llm.n_ctx() - len(tokens)
        if room <= 0:
            raise BackendError(
                f"the prompt has {len(tokens)} tokens but the context holds {llm.n_ctx()}: lower contextTokens"
            )
        stats.prompt_tokens = len(tokens)
        stats.prompt_tokens_evaluated, reason = self._prefill(tokens, request)
        stats.prefill_ms = (time.perf_counter() - started) * 1000
        if reason:
            stats.stop_reason = reason
            return GenerationResult("", stats)

        deadline = Deadline(request.time_budget_s)
        decode_start = time.perf_counter()
        stop_ids = self._special_ids(request.prompt.stop_tokens)
        sink = TextSink(request, on_text)
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        healing = HealingState(self.healer if request.heal else None, request.heal)
        if healing.active:
            tokens, past_heal = self._heal(tokens, healing, request)
            stats.healed_tokens = healing.healed_tokens
            if stats.healed_tokens:
                stats.first_token_ms = (time.perf_counter() - started) * 1000
            reason = STOP_CANCELLED if request.cancel.is_set() else sink.add(decoder.decode(past_heal))
            if reason or len(tokens) >= llm.n_ctx():
                stats.stop_reason = reason or STOP_MAX_TOKENS
                stats.decode_ms = (time.perf_counter() - decode_start) * 1000
                return GenerationResult(sink.finish(decoder.decode(b"", final=True)), stats)
            room = llm.n_ctx() - len(tokens)
        llm.set_seed(request.seed)
        generator = llm.generate(
            tokens,
            top_k=request.top_k,
            top_p=request.top_p,
            min_p=request.min_p,
            temp=request.temperature,
            repeat_penalty=request.repeat_penalty,
        )
        reason = STOP_MAX_TOKENS
        try:
            for token in generator:
                if stats.first_token_ms is None:
                    stats.first_token_ms = (time.perf_counter() - started) * 1000
                if token in stop_ids or self._is_eog(token):
                    reason = STOP_EOS
                    break
                stats.generated_tokens += 1
                reason = sink.add(decoder.decode(llm.detokenize([token]))) or sink.after_token(
                    stats.generated_tokens, min(request.max_tokens, room), deadline)
                if reason:
                    break
        finally:
            generator.close()
        text = sink.finish(decoder.decode(b"", final=True))
        stats.decode_ms = (time.perf_counter() - decode_start) * 1000
        stats.stop_reason = reason or STOP_MAX_TOKENS
        return GenerationResult(text, stats)

    @property
    def healer(self) -> TokenHealer | None:
        """Healing needs the vocabulary as bytes and the pre-tokenizer: the native tokenizer's."""
        if self._healer is None and self.tokenizer is not None:
            tok = self.tokenizer
            self._healer = TokenHealer(tok.token_bytes(), tok.is_text_token, tok.pieces)
        return self._healer

    def _heal(self, tokens: list[int], healing: HealingState, request: GenerationRequest) -> tuple[list[int], bytes]:
        """Pick tokens under the healing mask until the healed text is reproduced.

        llama-cpp-python's logits processors run inside its sampler chain over a copy of the
        candidates; reading the last logits ourselves is simpler and exact. Returns the prompt
        with the chosen tokens appended (evaluated, so `generate` finds them cached) and the
        bytes of the last one past the healed text."""
        import numpy as np

        llm, rng = self.llm, np.random.default_rng(request.seed)
        past = b""
        while healing.active and not request.cancel.is_set() and len(tokens) < llm.n_ctx():
            logits = np.ctypeslib.as_array(llm._ctx.get_logits_ith(-1), shape=(llm.n_vocab(),))
            allowed = np.asarray(healing.allowed(), dtype=np.int64)
            token = int(allowed[pick_token(logits[allowed], request.temperature, rng)])
            past = healing.take(self.healer.token(token) if self.healer else b"")
            tokens = [*tokens, token]
            llm.eval([token])
        return tokens, past

    def close(self) -> None:
        if self.llm is not None:
            self.llm.close()
            self.llm = None


def pick_token(logits: Any, temperature: float, rng: Any) -> int:
    """Index of the chosen entry of `logits` ([n] candidates): the best when greedy, else a draw
    from their softmax at `temperature`."""
    import numpy as np

    if temperature <= 0:
        return int(np.argmax(logits))
    scaled = (logits - logits.max()) / temperature
    probs = np.exp(scaled)
    return int(rng.choice(len(probs), p=probs / probs.sum()))


__all__ = ["PREFILL_CHUNK", "LlamaCppBackend", "pick_token"]

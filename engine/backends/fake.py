"""A fake backend for unit tests: it replays queued outputs and records every request.

It honours the same contract as the real backends — streaming, stop sequences, max tokens (one
"token" is one character here), cancel and time budget — so engine code can be tested without a
model. Tests that need real model behaviour use the real backend.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any

from ..reasons import StopReason
from .base import (
    Backend,
    Deadline,
    GenerationRequest,
    GenerationResult,
    GenerationStats,
    TextCallback,
    TextSink,
)


class FakeBackend(Backend):
    name = "fake"
    needs_local_model = False

    def __init__(self, model: Any = None, settings: Any = None) -> None:
        super().__init__(model, settings)
        self.outputs: deque[str] = deque()
        self.requests: list[GenerationRequest] = []
        self.loaded = False
        self.delay_per_char = 0.0
        # Set to a TokenHealer to take healed requests: an output must then begin with the
        # healed text, which is cut as a real backend's mask would have it.
        self.fake_healer: Any = None
        # A cache model for the short-window tests: prompts warmed whole count as cached, and
        # `new_tokens` is what a prompt has beyond the longest cached one it starts with (None
        # until `measure` is set: like a backend that cannot tell).
        self.measure = False
        self.rate: float | None = None
        self.warmed: list[str] = []
        # `writes`: a model that writes one answer, however its decoding is cut and resumed.
        self._writes: str | None = None
        self._base: str | None = None

    def writes(self, answer: str) -> FakeBackend:
        """The next request is answered with `answer`, and a later request whose prompt is that
        request's plus a start of `answer` with the rest of it: as a model goes on from the text it
        had (a follow-up), whichever call was cut where (the queue is for anything else)."""
        self._writes, self._base = answer, None
        return self

    @property
    def prefill_rate(self) -> float | None:
        return self.rate

    def new_tokens(self, prompt: Any) -> int | None:
        if not self.measure:
            return None
        text = prompt.render()
        cached = max((len(w) for w in self.warmed if text.startswith(w)), default=0)
        return self.count_tokens(text[cached:])

    def warm(self, prompt: Any, cancel: Any, *, keep: str = "", preemptible: bool = False) -> GenerationStats:
        if cancel.is_set():
            return GenerationStats(stop_reason=StopReason.CANCELLED)
        self.warmed.append(prompt.render())
        return GenerationStats(prompt_tokens=self.count_tokens(prompt.render()), stop_reason=StopReason.PREFILLED)

    @property
    def healer(self) -> Any:
        return self.fake_healer

    def queue(self, *outputs: str) -> FakeBackend:
        self.outputs.extend(outputs)
        return self

    def _written(self, prompt: str) -> str | None:
        if self._writes is None:
            return None
        if self._base is None:
            self._base = prompt
            return self._writes
        had = prompt[len(self._base):]
        return self._writes[len(had):] if prompt.startswith(self._base) and self._writes.startswith(had) else None

    def load(self) -> None:
        self.loaded = True

    def count_tokens(self, text: str) -> int:
        # About four characters a token, like real BPE vocabularies on code.
        return (len(text) + 3) // 4

    def generate(self, request: GenerationRequest, on_text: TextCallback | None = None) -> GenerationResult:
        self.requests.append(request)
        output = self._written(request.prompt.render())
        if output is None:
            output = self.outputs.popleft() if self.outputs else ""
        stats = GenerationStats(prompt_tokens=self.count_tokens(request.prompt.render()))
        if request.heal and self.fake_healer is not None:
            if not output.startswith(request.heal):
                raise AssertionError(f"a healed request's output must begin with {request.heal!r}: {output!r}")
            output, stats.healed_tokens = output[len(request.heal) :], 1
        stats.prompt_tokens_evaluated = stats.prompt_tokens
        deadline = Deadline(request.time_budget_s)
        sink = TextSink(request, on_text)
        reason: str = StopReason.EOS  # the queued output ran out
        for char in output:
            stop = sink.after_token(stats.generated_tokens, request.max_tokens, deadline)
            if stop:
                reason = stop
                break
            if self.delay_per_char:
                time.sleep(self.delay_per_char)
            stats.generated_tokens += 1
            stop = sink.add(char)
            if stop:
                reason = stop
                break
        text = sink.end()
        stats.stop_reason = reason
        return GenerationResult(text, stats)

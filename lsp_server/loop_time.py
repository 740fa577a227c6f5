"""How long the event loop is busy with each kind of message: what a keystroke costs the server.

Every message the loop handles is timed from its decoding to the end of its handler (`wire.dispatch`);
an asynchronous handler's own steps on the loop (the inline completion's work before and after the
model worker's) are timed apart, as `<method> steps`. `fimble/status` reports them as `loop`, and
`benchmarks/bench_edit.py --lsp` prints them beside the round trip a client sees.
"""

from __future__ import annotations

import statistics
import time
import types
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Generator
from typing import Any, TypeVar

T = TypeVar("T")

# The inline completion's own time on the loop: its steps before and after the model worker's.
INLINE_STEPS = "textDocument/inlineCompletion steps"


class LoopTime:
    # The last this many durations of each kind are summarized; at most MAX_KINDS kinds (a client
    # can name any method: the rest are counted as "other").
    KEPT = 512
    MAX_KINDS = 32

    def __init__(self) -> None:
        self._recent: dict[str, deque[float]] = {}
        self._counts: dict[str, int] = {}

    def add(self, kind: str, seconds: float) -> None:
        if kind not in self._recent and len(self._recent) >= self.MAX_KINDS:
            kind = "other"
        recent = self._recent.get(kind)
        if recent is None:
            recent = self._recent[kind] = deque(maxlen=self.KEPT)
        recent.append(seconds * 1000)
        self._counts[kind] = self._counts.get(kind, 0) + 1

    def summary(self) -> dict[str, dict[str, float]]:
        """Per kind: how many were handled, and p50 / p95 / max milliseconds of the last KEPT."""
        out = {}
        for kind, recent in self._recent.items():
            times = sorted(recent)
            out[kind] = {"count": self._counts[kind], "p50Ms": round(statistics.median(times), 3),
                         "p95Ms": round(times[max(0, -(-len(times) * 95 // 100) - 1)], 3),
                         "maxMs": round(times[-1], 3)}
        return out

    def timed(self, kind: str, coroutine: Coroutine[Any, Any, T]) -> Awaitable[T]:
        """`coroutine`, its time on the loop (each step, not its waits) added as `kind` when it ends."""
        return _stepped(coroutine, lambda seconds: self.add(kind, seconds))


@types.coroutine
def _stepped(coroutine: Coroutine[Any, Any, T], add: Callable[[float], None]) -> Generator[Any, Any, T]:
    """Drive `coroutine` one step at a time, as the task awaiting this would, timing each step."""
    busy = 0.0
    sent: Any = None
    thrown: BaseException | None = None
    try:
        while True:
            started = time.perf_counter()
            try:
                yielded = coroutine.send(sent) if thrown is None else coroutine.throw(thrown)
            except StopIteration as done:
                return done.value
            finally:
                busy += time.perf_counter() - started
            try:
                sent, thrown = (yield yielded), None
            except GeneratorExit:
                coroutine.close()
                raise
            except BaseException as exc:  # (a cancel): the coroutine decides what it means
                sent, thrown = None, exc
    finally:
        add(busy)

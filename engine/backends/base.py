"""The one Backend interface every model runner implements.

A backend turns a prompt into streamed text. Everything around it — context, prompt templates,
caching, postprocessing — lives in the engine, so that all backends give the user the same thing.
The contract shared by all of them:

- `generate()` streams text through `on_text` and returns the whole text with its stats;
- it stops at the first stop sequence (which is cut off), at an end-of-generation token, at
  `max_tokens`, when `cancel` is set (checked between tokens and between prefill chunks), or
  when `time_budget_s` of decoding has passed (the budget starts after the prompt is evaluated:
  a request at a new place answers later rather than not at all);
- with `answer_after_s`, once that long has passed since the first token, it stops at the first
  point where the text is usable (`unfinished` says no): reason "early", the caller decodes the
  rest later from the prompt plus that text;
- with `heal` (backends with a `healer`), the first tokens are constrained to reproduce `heal`,
  which the prompt stops short of, and it is cut from the text (engine/healing.py);
- the reason it stopped is in `stats.stop_reason`.
"""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from ..reasons import StopReason

if TYPE_CHECKING:
    from ..config import Settings
    from ..healing import TokenHealer
    from ..models import ModelRef
    from ..prompt import Prompt



@dataclass
class GenerationRequest:
    prompt: Prompt
    max_tokens: int = 128
    temperature: float = 0.0
    top_k: int = 40
    top_p: float = 0.95
    min_p: float = 0.05
    repeat_penalty: float = 1.0
    seed: int = 0
    stop: Sequence[str] = ()
    cancel: threading.Event = field(default_factory=threading.Event)
    time_budget_s: float | None = None
    # Text the prompt was backed off by (token healing): the output must begin with it, and it is
    # not part of the returned text. Only for backends whose `healer` is set.
    heal: str = ""
    # Reuse KV cells from other positions and saved states (kv_reuse.py: an approximation); False
    # keeps only the exact common prefix, so that an answer does not depend on what came before.
    reuse: bool = True
    # Prompt-lookup speculative decoding (engine/backends/lookup.py): at most this many drafted
    # tokens verified per step; 0 is off. Greedy decoding only.
    draft_tokens: int = 0
    # What the answer likely is (what the model wrote at a place like this before): drafted first,
    # while the answer follows it, and verified like prompt-lookup drafts (with `draft_tokens`).
    expected: str = ""
    # The cursor sits on a line of indentation alone, cut from the prompt (anchor.split_for_healing):
    # the answer is for this line. Greedy decoding passes over a first token that would leave it
    # blank (a newline, the end) when one that writes on it is within OPEN_LINE_LEAD logits.
    open_line: bool = False
    # Called with the text so far each time a line is finished; True ends generation there
    # (reason "stop"). The engine uses it to stop once a completion has left its block.
    stop_when: Callable[[str], bool] | None = None

    # Called with the text so far when the time budget runs out; True means stopping here would
    # leave nothing usable (a first line unfinished, a block header without its body), and
    # decoding goes on for up to one more budget.
    unfinished: Callable[[str], bool] | None = None
    # An editor is waiting: this long after the first token, stop as soon as `unfinished` says the
    # text is usable (StopReason.EARLY). None waits for the whole answer.
    answer_after_s: float | None = None

    def line_done(self, piece: str, text: str) -> bool:
        return self.stop_when is not None and "\n" in piece and self.stop_when(text)

    @classmethod
    def from_settings(cls, prompt: Prompt, settings: Settings, **overrides: object) -> GenerationRequest:
        values: dict[str, object] = {
            "max_tokens": settings.max_tokens,
            "temperature": settings.temperature,
            "top_k": settings.top_k,
            "top_p": settings.top_p,
            "min_p": settings.min_p,
            "repeat_penalty": settings.repeat_penalty,
            "seed": settings.seed,
            "draft_tokens": settings.speculative_tokens,
            "time_budget_s": settings.time_budget_ms / 1000 if settings.time_budget_ms else None,
        }
        values.update(overrides)
        return cls(prompt=prompt, **values)  # type: ignore[arg-type]


@dataclass
class GenerationStats:
    prompt_tokens: int = 0
    prompt_tokens_evaluated: int = 0  # prompt tokens not served from the KV cache
    prompt_tokens_reused: int = 0  # prompt tokens served from the KV cache (live or restored)
    prompt_tokens_moved: int = 0  # of those, moved from another position (kv_reuse.py)
    generated_tokens: int = 0
    reuse_ms: float = 0.0  # finding, restoring and moving reused KV cells (part of prefill_ms)
    prefill_ms: float = 0.0
    decode_ms: float = 0.0
    first_token_ms: float | None = None
    healed_tokens: int = 0  # generated tokens that reproduced the healed text
    draft_tokens: int = 0  # tokens proposed by prompt lookup (engine/backends/lookup.py)
    draft_accepted: int = 0  # of those, kept: the tokens greedy decoding chose
    near_ties: int = 0  # choices after a batched evaluation whose best two logits were within lookup.NEAR_TIE
    threads: int = 0  # CPU threads llama.cpp ran this with (cpu_load.py); 0: not llama.cpp's
    line_kept_open: int = 0  # 1: the first token would have left the cursor's line blank (open_line)
    stop_reason: str = ""

    def as_dict(self) -> dict[str, object]:
        return dict(self.__dict__)


# How far behind the best a token that writes on the line may be, in logits, and still be chosen
# over a first token that leaves it blank (open_line). After Enter the two are often within a few
# tenths (hypotenuse in tests/test_healing.py: "\n" 16.46, "   " 16.09), and which wins moves
# with llama.cpp's kernels; a model sure the line stays blank leads by more.
OPEN_LINE_LEAD = 1.0


def blank_tokens(table: Sequence[bytes], ends: Iterable[int], size: int) -> Any:
    """[size] bool: the tokens that would leave a line blank if written first — those whose bytes
    begin with a newline (`table`, the vocabulary as bytes) and those that end the answer (`ends`)."""
    import numpy as np

    blank = np.zeros(size, dtype=bool)
    blank[: len(table)] = [data[:1] in (b"\n", b"\r") for data in table[:size]]
    blank[[i for i in ends if 0 <= i < size]] = True
    return blank


def open_line_choice(row: Any, blank: Any, stops: Iterable[int] = (), lead: float | None = None) -> int | None:
    """The token to write first instead of the best of `row` ([vocab] logits) when the best is
    `blank` ([vocab] bool: it begins with a newline or ends the answer) or one of the request's
    `stops`, and the best of the others is within `lead` of it; None to keep the best."""
    import numpy as np

    lead = OPEN_LINE_LEAD if lead is None else lead
    if stops:
        blank = blank.copy()  # (the backend's row is shared by every request)
        blank[[i for i in stops if i < len(blank)]] = True
    best = int(np.argmax(row))
    if not blank[best]:
        return None
    others = np.where(blank, -np.inf, row)
    alternative = int(np.argmax(others))
    return alternative if not blank[alternative] and row[best] - row[alternative] < lead else None


@dataclass
class GenerationResult:
    text: str
    stats: GenerationStats


TextCallback = Callable[[str], None]


class Backend(ABC):
    """Subclass, set `name`, implement `load`, `count_tokens` and `generate`, then register."""

    name: ClassVar[str] = ""
    # Whether the backend can be given a model file/folder, or only talks to a server.
    needs_local_model: ClassVar[bool] = True

    def __init__(self, model: ModelRef | None, settings: Settings) -> None:
        self.model = model
        self.settings = settings

    @property
    def healer(self) -> TokenHealer | None:
        """The vocabulary tables for token healing, when this backend can constrain its first
        tokens (see engine/healing.py); None when it cannot."""
        return None

    @abstractmethod
    def load(self) -> None:
        """Load the model; called once, on the model worker, before anything else."""

    @abstractmethod
    def count_tokens(self, text: str) -> int:
        """Tokens `text` takes in this model's vocabulary (plain text, no special tokens)."""

    @abstractmethod
    def generate(self, request: GenerationRequest, on_text: TextCallback | None = None) -> GenerationResult:
        """Stream a completion of `request.prompt`; see the module docstring for the contract."""

    def warm(self, prompt: Prompt, cancel: threading.Event, *, keep: str = "",
             preemptible: bool = False) -> GenerationStats | None:
        """Evaluate `prompt` into the backend's cache without generating, so that a request that
        starts with it finds it ready; with `keep`, also save that state under the label. With
        `preemptible`, first save what the cache holds, however short, and save what was
        evaluated when cancelled: the place it replaced loses nothing, and a later call resumes
        where this one stopped. None from backends without a cache of their own (a server
        keeps its own)."""
        return None

    def new_tokens(self, prompt: Prompt) -> int | None:
        """How many of `prompt`'s tokens a request would evaluate now, what the KV cache and the
        saved states hold considered; None where the backend cannot tell (a server's cache)."""
        return None

    @property
    def prefill_rate(self) -> float | None:
        """Prompt tokens evaluated per second, as measured on this machine; None until measured."""
        return None

    def cache_summary(self) -> dict[str, object]:
        """What the backend holds in its prompt cache, for fimble/status."""
        return {}

    def close(self) -> None:  # noqa: B027 - optional hook
        """Free the model's memory."""


class StopMatcher:
    """Finds stop sequences in streamed text, holding back what could be the start of one.

    Text is released to the caller only once no stop sequence can begin inside it, so a stop
    sequence split over two tokens is never shown half.
    """

    def __init__(self, stops: Sequence[str]) -> None:
        self.stops = [s for s in stops if s]
        self.hold = max((len(s) for s in self.stops), default=1) - 1
        self.text = ""
        self.released = 0
        self.stopped = False

    def feed(self, piece: str) -> str:
        """Add a piece; return the newly releasable text. Sets `stopped` at a stop sequence."""
        start = max(0, len(self.text) - self.hold)
        self.text += piece
        cut = min((i for s in self.stops if (i := self.text.find(s, start)) >= 0), default=-1)
        if cut >= 0:
            self.text = self.text[:cut]
            self.stopped = True
            return self._release(len(self.text))
        return self._release(max(self.released, len(self.text) - self.hold))

    def flush(self) -> str:
        return self._release(len(self.text))

    def _release(self, upto: int) -> str:
        out = self.text[self.released : upto]
        self.released = max(self.released, upto)
        return out


class TextSink:
    """Where a backend's decoded text goes: through a StopMatcher to `on_text`, and collected.

    Every backend's token loop is then: `reason = sink.add(piece) or sink.after_token(...)`, stop
    when a reason comes back, and `sink.end()` for the text.
    """

    def __init__(self, request: GenerationRequest, on_text: TextCallback | None) -> None:
        self.request = request
        self.on_text = on_text
        self.matcher = StopMatcher(request.stop)
        self.out: list[str] = []
        # From the first token, so that it counts decoding alone on every backend (a server's too).
        self.answer_by = Deadline(request.answer_after_s, running=False)

    def _emit(self, piece: str) -> None:
        if piece:
            self.out.append(piece)
            if self.on_text:
                self.on_text(piece)

    def add(self, piece: str) -> str:
        """Add decoded text; StopReason.SEQUENCE when a stop sequence or `stop_when` ends it here, else ''."""
        self.answer_by.start()
        released = self.matcher.feed(piece)
        self._emit(released)
        if self.matcher.stopped or self.request.line_done(piece, self.matcher.text):
            return StopReason.SEQUENCE
        return ""

    def after_token(self, generated: int, most: int, deadline: Deadline) -> str:
        """The reason to stop after `generated` tokens, or ''."""
        if generated >= most:
            return StopReason.MAX_TOKENS
        if self.request.cancel.is_set():
            return StopReason.CANCELLED
        if deadline.expired() and not (self.request.unfinished is not None and not deadline.expired(grace=1.0)
                                       and self.request.unfinished(self.matcher.text)):
            return StopReason.TIME_BUDGET
        if self.answer_by.expired() and self.request.unfinished is not None and not self.request.unfinished(
                self.matcher.text):
            return StopReason.EARLY
        return ""

    def end(self, tail: str = "") -> str:
        """Release what was held back (unless a stop sequence ended the text); the whole text."""
        if not self.matcher.stopped:
            self._emit(self.matcher.feed(tail) + self.matcher.flush())
        return "".join(self.out)


class Deadline:
    """A wall-clock budget; None means none. With `running=False` it waits for `start()`: a backend
    that cannot tell when the prompt is evaluated (a server) starts it at the first token."""

    def __init__(self, seconds: float | None, *, running: bool = True) -> None:
        self.seconds = seconds
        self.end: float | None = None
        if running:
            self.start()

    def start(self) -> None:
        if self.end is None and self.seconds is not None:
            self.end = time.monotonic() + self.seconds

    def expired(self, grace: float = 0.0) -> bool:
        """Past the end (plus `grace` times the budget)."""
        return self.end is not None and time.monotonic() >= self.end + grace * (self.seconds or 0.0)


# -- the token loops' shared steps (the llama.cpp and torch backends) ----------------------------


def prompt_ids(prompt: Prompt, encode: Callable[[str, bool], list[int]], bos: int | None) -> list[int]:
    """A prompt's ids: BOS when the prompt asks for it and the model has one, then each part —
    `Special` parts as their control tokens, text as text. Never empty (a bare BOS, or 0)."""
    from ..prompt import Special

    ids: list[int] = [bos] if prompt.add_bos and bos is not None else []
    for part in prompt.parts:
        ids += encode(part.text, isinstance(part, Special))
    return ids or [bos if bos is not None else 0]


def room_after(tokens: Sequence[int], n_ctx: int) -> int:
    """Positions left for generated tokens; the prompt not fitting is the user's to fix."""
    room = n_ctx - len(tokens)
    if room <= 0:
        from ..errors import BackendError

        raise BackendError(f"the prompt has {len(tokens)} tokens but the context holds {n_ctx}: lower contextTokens")
    return room


def common_prefix(held: Sequence[int], tokens: Sequence[int]) -> int:
    """How many leading tokens of `tokens` the cache (holding `held`, in order) already has."""
    n = 0
    for a, b in zip(held, tokens, strict=False):
        if a != b:
            break
        n += 1
    return n


def prefill_chunks(tokens: Sequence[int], start: int, chunk: int, cancel: threading.Event,
                   evaluate: Callable[[list[int], int], bool | None], *, first: int | None = None) -> str:
    """Evaluate `tokens[start:]` as `evaluate(chunk, position)` calls of at most `chunk` tokens
    (the first of at most `first`, if given), with the cancel flag checked before each;
    StopReason.CANCELLED when it was seen (or when `evaluate` returns True: the cancel stopped
    it within its chunk), else ''.

    Only a cancel stops a prefill: the time budget is for decoding, so that a request at a new
    place answers (later) instead of spending its budget on the prompt and showing nothing. What
    was evaluated before a cancel stays in the cache for the next request at the same place."""
    position = start
    while position < len(tokens):
        if cancel.is_set():
            return StopReason.CANCELLED
        size = first if first and position == start else chunk
        if evaluate(list(tokens[position : position + size]), position):
            return StopReason.CANCELLED
        position += size
    return ""

"""CompletionService: the whole road from a document and a cursor to text to insert.

The CLI, the language server and the eval harness all call this one class, so what an editor
user sees is exactly what `fimble complete` prints and what `fimble eval` scores. It orchestrates;
each step lives in the module named for it: the cursor (context.py), the prompt for a place
(anchor.py), the model (backends/), the answer's last pass (postprocess.py), caches (cache.py).

Threads. The model backend (llama.cpp) is not thread-safe, so `load`, `complete`, `warm*`,
`explain*`, `generate` and `forget` run on one thread (the language server's model worker). Two
things may be done from any other thread, and are safe by construction:
- `typed_through`, which reads only the type-through and exact caches (each behind its lock);
- replacing `settings` (a frozen `Settings`): a call reads the attribute once and uses that one
  object throughout, so a request never mixes old and new options.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from . import explain
from .anchor import Built, Heal, PromptBuilder, QuickWindow
from .backends import Backend, GenerationRequest, GenerationResult, get_backend_class
from .backends.base import GenerationStats
from .cache import LRUCache, TypeThrough
from .config import Settings
from .context import LINE, CursorInfo, OpenDocument, analyze_cursor, line_at
from .errors import EngineError
from .instruct import FENCE, MIN_BODY_TOKENS, DocstringMoment, docstring_moment, instruct_prompt
from .models import ModelInfo, ModelRef, Progress, resolve_model
from .postprocess import RULES, Site, left_block, postprocess, unfinished
from .prompt import Prompt, Text, chat_prompt
from .reasons import Outcome, StopReason, filtered, is_filtered
from .syntax import SyntaxTree
from .text import offset_at, position_at

# Prompt tokens per second assumed until the backend has measured its own (two CPU cores).
ASSUMED_PREFILL_RATE = 150.0
# A short window keeps at least this many tokens: a few lines either side of the cursor.
MIN_QUICK_TOKENS = 64
# An answer at the docstring moment is judged against this many lines below the cursor.
SITE_LINES_BELOW = 60


@dataclass
class CompletionRequest:
    text: str
    line: int
    character: int
    encoding: str = "utf-16"
    language: str = "plaintext"
    path: str = ""
    cancel: threading.Event = field(default_factory=threading.Event)
    # The document's parsed tree, when the caller keeps one (the language server does); its
    # text must equal `text`. Without it the service parses `text` itself.
    tree: SyntaxTree | None = None
    # The other open documents, for extra context.
    others: Sequence[OpenDocument] = ()
    # Skip postprocessing and caches: the raw output cut only at stop tokens (for measuring).
    raw: bool = False
    # Use the caches (exact prompt, type-through, and KV cells moved from other places or
    # restored: engine/backends/kv_reuse.py); the eval harness turns them off, so that an answer
    # does not depend on the tasks before it.
    use_cache: bool = True
    # An editor is waiting (the language server asks for this; the CLI and the eval harness wait
    # for the whole window and the whole answer):
    # - a new place the cache does not hold starts from a window cut to what evaluates in
    #   settings.new_place_ms, widened when idle (`widen`);
    # - a long answer is answered early, its first usable lines after settings.first_answer_ms of
    #   decoding, and the rest is decoded when idle (`rest_of_answer`); so is one the time budget cut.
    interactive: bool = False
    # Idle work after an interactive answer from a short window (`refine`): the answer the
    # pipeline gives with time — the whole window (a short anchor is replaced), the whole decode,
    # no time budget — which the editor is then offered in its place.
    refine: bool = False
    # The cursor's code-point offset, when the caller has it (the language server converts the
    # position once, with the document's LineIndex); line/character are then that offset's
    # position, as the answer's range gives it.
    offset: int | None = None

    def cursor_offset(self) -> int:
        if self.offset is not None:
            return max(0, min(self.offset, len(self.text)))
        return offset_at(self.text, self.line, self.character, self.encoding)

    def cursor_position(self, offset: int) -> dict[str, int]:
        if self.offset is not None:
            return {"line": self.line, "character": self.character}
        return position_at(self.text, offset, self.encoding).as_dict()


@dataclass
class CompletionResult:
    text: str
    range: dict[str, dict[str, int]]
    reason: str
    timings: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        return {"text": self.text, "range": self.range, "reason": self.reason, "timings": self.timings}


@dataclass
class Unfinished:
    """An answer given early (StopReason.EARLY): what its rest is decoded from (`rest_of_answer`)."""

    prompt: Prompt  # the request's prompt with the backend's text so far after it
    raw: str  # the backend's text so far
    generated: int  # tokens generated so far
    site: Site
    heal: Heal
    mode: str
    cache_key: str
    prefix: str  # the document around the cursor, for the type-through cache
    suffix: str
    range: dict[str, dict[str, int]]
    shown: str  # the answer given early (or cut by the time budget), as the editor has it
    max_tokens: int  # the whole answer's bound


class CompletionService:
    def __init__(
        self,
        settings: Settings | None = None,
        *,
        backend: Backend | None = None,
        model_info: ModelInfo | None = None,
    ) -> None:
        self.settings = settings or Settings()
        self._backend = backend
        self._info = model_info
        self._lock = threading.Lock()
        self.model_ref: ModelRef | None = None
        self.load_ms: float | None = None
        self._counts: dict[str, int] = {}
        # How often each postprocessing rule changed a completion, for fimble/status and eval.
        self.rule_counts: dict[str, int] = {name: 0 for name, _ in RULES}
        self.cache = LRUCache()
        self.type_through = TypeThrough()
        self._prompts: PromptBuilder | None = None
        # Per document, the answer given early whose rest is still to decode (only the latest).
        self._unfinished: dict[str, Unfinished] = {}

    def documents_kept(self) -> int:
        """Documents the service keeps something for (an anchor or a prompt context)."""
        return self._prompts.documents_kept() if self._prompts is not None else 0

    def forget(self, path: str) -> None:
        """A document was closed: drop its anchor, prompt context and typed-through suggestion."""
        if self._prompts is not None:
            self._prompts.forget(path)
        self.type_through.forget(path)
        self._unfinished.pop(path, None)

    # -- loading -------------------------------------------------------------------------------

    @property
    def loaded(self) -> bool:
        return self._backend is not None and self._info is not None and self.load_ms is not None

    def load(self, progress: Progress | None = None) -> Backend:
        """Resolve (and assemble) the model, then load the backend; once."""
        with self._lock:
            if self._backend is not None and self.load_ms is not None and self._info is not None:
                return self._backend
            started = time.perf_counter()
            settings = self.settings
            if self._backend is None:
                cls = get_backend_class(settings.backend)
                self.model_ref = resolve_model(settings.model, progress) if cls.needs_local_model else None
                self._backend = cls(self.model_ref, settings)
            if self._info is None:
                self._info = ModelInfo.of(self.model_ref)
            self._backend.load()
            self.load_ms = (time.perf_counter() - started) * 1000
            return self._backend

    @property
    def info(self) -> ModelInfo:
        self.load()
        assert self._info is not None
        return self._info

    @property
    def prompts(self) -> PromptBuilder:
        """The prompt builder for this model (built at the first prompt: it needs the vocabulary)."""
        if self._prompts is None:
            self._prompts = PromptBuilder(self.info, self.count_tokens)
        return self._prompts

    def cache_summary(self) -> dict[str, object]:
        """The backend's prompt cache (saved KV states), for fimble/status."""
        return self._backend.cache_summary() if self.loaded and self._backend is not None else {}

    def close(self) -> None:
        if self._backend is not None:
            self._backend.close()

    # -- completion ----------------------------------------------------------------------------

    def count_tokens(self, text: str) -> int:
        """Token count with a per-text cache: prompt building counts the same lines again and again."""
        cached = self._counts.get(text)
        if cached is None:
            cached = self.load().count_tokens(text)
            if len(self._counts) > 50_000:
                self._counts.clear()
            self._counts[text] = cached
        return cached

    def build_prompt(self, tree: SyntaxTree, offset: int, cursor: CursorInfo, others: Sequence[OpenDocument] = (),
                     path: str = "", reuse: bool = False, healing: bool = True,
                     settings: Settings | None = None, quick_start: bool = False, whole: bool = False) -> Built:
        """The prompt for a cursor (engine/anchor.py), healed by this backend's healer; with
        `whole`, a short window kept for the place is replaced by the whole one."""
        settings = settings or self.settings
        backend = self.load()
        healer = backend.healer if healing else None
        quick = self._quick_window(settings, backend) if quick_start and reuse else None
        return self.prompts.completion(settings, tree, offset, cursor, others, path, reuse=reuse,
                                       healer=healer, healing=healing, quick=quick, whole=whole)

    @staticmethod
    def _quick_window(settings: Settings, backend: Backend) -> QuickWindow | None:
        """The window budget a new place starts from: what the backend evaluates in
        settings.new_place_ms at the speed it measured (None: the whole window always)."""
        if settings.new_place_ms <= 0:
            return None
        rate = backend.prefill_rate or ASSUMED_PREFILL_RATE
        tokens = max(MIN_QUICK_TOKENS, int(rate * settings.new_place_ms / 1000))
        return QuickWindow(tokens, backend.new_tokens) if tokens < settings.context_tokens else None

    def typed_through(self, request: CompletionRequest, *, count: bool = True) -> CompletionResult | None:
        """The rest of the suggestion shown last, if the user is typing it; no model needed.
        Safe from any thread (see the module docstring). `count=False` only asks (not a hit)."""
        if request.raw or not request.use_cache:
            return None
        offset = request.cursor_offset()
        rest = self.type_through.lookup(request.path, request.text[:offset], request.text[offset:], count=count)
        if rest is None or not rest.strip():
            return None
        cursor_pos = request.cursor_position(offset)
        return CompletionResult(rest, {"start": cursor_pos, "end": cursor_pos}, Outcome.CACHE, {"type_through": True})

    @staticmethod
    def _place(request: CompletionRequest) -> tuple[int, SyntaxTree]:
        """The cursor's offset in the text, and the text's tree (the caller's, or parsed now)."""
        tree = request.tree if request.tree is not None else SyntaxTree(request.text, request.language)
        return request.cursor_offset(), tree

    # -- warming (the language server calls these on the model worker when it is idle) --------

    def warm(self, request: CompletionRequest) -> GenerationStats | None:
        """Evaluate the prompt a completion at `request`'s place would have, without generating,
        so that the first request there (after the user's next keystroke) finds it ready."""
        settings, backend = self.settings, self.load()
        offset, tree = self._place(request)
        cursor = analyze_cursor(tree, offset, settings.multiline)
        built = self.build_prompt(tree, offset, cursor, request.others, request.path, reuse=request.use_cache,
                                  settings=settings, quick_start=request.interactive)
        return backend.warm(built.prompt, request.cancel)

    def widen(self, request: CompletionRequest) -> GenerationStats | None:
        """When the place was answered from a short window (`quick_start`), evaluate its whole
        window and take it over once evaluated. Preemptible: the short one's cells are saved
        first, so a keystroke that preempts this finds them still, and what was evaluated is
        saved, so the next call goes on from there. None when there is nothing to widen."""
        settings, backend = self.settings, self.load()
        offset, tree = self._place(request)
        cursor = analyze_cursor(tree, offset, settings.multiline)
        wide = self.prompts.widened(settings, tree, offset, cursor, request.others, request.path, backend.healer)
        if wide is None:
            return None
        anchor, built = wide
        stats = backend.warm(built.prompt, request.cancel, preemptible=True)
        if stats is not None and stats.stop_reason != StopReason.CANCELLED:
            self.prompts.adopt(request.path, anchor)
        return stats

    def warm_document(self, request: CompletionRequest) -> GenerationStats | None:
        """Evaluate the document itself the way prompts begin and keep that state: a request at
        any place in it then takes its window from there (engine/backends/kv_reuse.py)."""
        settings, backend = self.settings, self.load()
        offset, tree = self._place(request)
        prompt = self.prompts.document(settings, tree, offset, request.others, request.path)
        return backend.warm(prompt, request.cancel, keep=f"document:{request.path.rsplit('/', 1)[-1]}")

    def complete(self, request: CompletionRequest) -> CompletionResult:
        started = time.perf_counter()
        if (hit := self.typed_through(request)) is not None:
            return hit
        settings = self.settings  # one object for the whole request (see the module docstring)
        offset, tree = self._place(request)
        cursor_pos = request.cursor_position(offset)
        empty_range = {"start": cursor_pos, "end": cursor_pos}
        backend = self.load()
        cursor = analyze_cursor(tree, offset, settings.multiline)
        cached_ok = request.use_cache and not request.raw
        moment = docstring_moment(tree, offset) if settings.docstring_prompt == "instruct" and not request.raw else None
        if moment is not None and self.info.chat_template is not None:
            built, window = self._instruct(moment, tree, offset, cursor), "instruct"
        else:
            built = self.build_prompt(tree, offset, cursor, request.others, request.path, reuse=cached_ok,
                                      healing=not request.raw, settings=settings, quick_start=request.interactive,
                                      whole=request.refine)
            window = self._window(request.path)
        site, heal = built.site, built.heal
        prompt_ms = (time.perf_counter() - started) * 1000
        cache_key = f"{cursor.mode}\x00{built.prompt.render()}\x00{heal.text}"
        self._unfinished.pop(request.path, None)  # a new answer for the document: the old one's rest is moot
        if cached_ok and (cached := self.cache.get(cache_key)) is not None:
            text, _ = cached
            self.type_through.remember(request.path, request.text[:offset], request.text[offset:], text)
            return CompletionResult(text, empty_range, Outcome.CACHE if text else Outcome.EMPTY,
                                    {"prompt_ms": round(prompt_ms, 1), "window": window})
        # A line that opens a block (`for x in xs:`) goes on to its body; other lines end at "\n".
        line_stop = cursor.mode == LINE and (request.raw or cursor.why != "end_of_line")
        early = request.interactive and cached_ok and not line_stop and settings.first_answer_ms > 0
        gen_request = GenerationRequest.from_settings(
            built.prompt, settings, cancel=request.cancel, reuse=cached_ok,
            stop=["\n"] if line_stop else [FENCE] if window == "instruct" else [],
            **({} if request.raw else _judges(heal, site)),
            heal=heal.text if heal.masked else "",
            open_line=bool(heal.text) and not heal.masked and not line_at(request.text, offset)[1].strip(),
            answer_after_s=settings.first_answer_ms / 1000 if early else None,
            max_tokens=max(settings.max_tokens, MIN_BODY_TOKENS) if window == "instruct" else settings.max_tokens,
            **({"time_budget_s": None} if request.refine else {}),
        )
        result = backend.generate(gen_request)
        stop = result.stats.stop_reason
        post_started = time.perf_counter()
        text, reason = (heal.inserted(result.text), stop) if request.raw else self._postprocess(
            heal.inserted(result.text), stop, cursor.mode, site)
        timings = {
            "prompt_ms": round(prompt_ms, 1),
            "post_ms": round((time.perf_counter() - post_started) * 1000, 1),
            "total_ms": round((time.perf_counter() - started) * 1000, 1),
            "load_ms": round(self.load_ms or 0.0, 1),
            "mode": cursor.mode,
            "mode_why": cursor.why,
            "snippets": len(built.snippets),
            "window": window,
            "healed": heal.text,
            **{k: round(v, 1) if isinstance(v, float) else v for k, v in result.stats.as_dict().items()},
        }
        if stop == StopReason.CANCELLED:
            return CompletionResult("", empty_range, Outcome.CANCELLED, timings)
        if not text.strip():
            text, reason = "", reason if is_filtered(reason) else Outcome.EMPTY
        if stop in (StopReason.EARLY, StopReason.TIME_BUDGET) and request.interactive and cached_ok \
                and window != "short":
            # Its rest is decoded when idle (`rest_of_answer`). (A short window's answer is not finished:
            # the whole window's answer takes its place, `refine`.) A masked heal is text the
            # prompt stops short of and the backend's text lacks.
            self._unfinished[request.path] = Unfinished(
                _extended(built.prompt, (heal.text if heal.masked else "") + result.text), result.text,
                result.stats.generated_tokens, site, heal, cursor.mode, cache_key,
                request.text[:offset], request.text[offset:], empty_range, text, gen_request.max_tokens)
        elif cached_ok and stop not in (StopReason.TIME_BUDGET, StopReason.EARLY):
            # A completion cut short is a partial answer: worth showing, not keeping.
            self.cache.put(cache_key, text, reason)
        if request.use_cache:
            self.type_through.remember(request.path, request.text[:offset], request.text[offset:], text)
        return CompletionResult(text, empty_range, reason, timings)

    def _instruct(self, moment: DocstringMoment, tree: SyntaxTree, offset: int, cursor: CursorInfo) -> Built:
        """The docstring moment's prompt (engine/instruct.py): the answer is judged like a
        fill-in-the-middle answer at the cursor, against the definition's top-level statement
        above and the lines below (SITE_LINES_BELOW)."""
        text = tree.text
        before, _ = line_at(text, offset)
        top = moment.statement_start
        below = text.find("\n", offset)
        for _ in range(SITE_LINES_BELOW):
            if below < 0:
                break
            below = text.find("\n", below + 1)
        site = Site(text[top:offset], text[offset:] if below < 0 else text[offset:below + 1], cursor, tree.spec)
        return Built(instruct_prompt(moment, self.info), site, [], Heal(before, masked=False))

    def _postprocess(self, text: str, stop: str, mode: str, site: Site) -> tuple[str, str]:
        """The answer's last pass (engine/postprocess.py): the text and why it ended. An early
        answer's rules are counted when it is finished."""
        if mode != LINE and stop in (StopReason.MAX_TOKENS, StopReason.TIME_BUDGET, StopReason.EARLY):
            # Cut off mid-line: keep the lines that were finished (one line stays to be judged).
            text = text[: text.rfind("\n")] if "\n" in text.rstrip("\n") else text
        outcome = postprocess(text, site)
        if stop != StopReason.EARLY:
            for rule in outcome.fired:
                self.rule_counts[rule] = self.rule_counts.get(rule, 0) + 1
        return outcome.text, filtered(outcome.emptied_by) if outcome.emptied_by else stop

    def unfinished(self, path: str) -> bool:
        """Whether the document's last answer was given early and its rest is still to decode."""
        return path in self._unfinished

    def rest_of_answer(self, path: str, cancel: threading.Event) -> CompletionResult | None:
        """Decode the rest of the document's answer given early, from its prompt and the text it
        had (the KV cache holds both: only the last token or two is evaluated again), and make the
        whole answer what the caches give at that place. None when there is nothing to finish,
        or when cancelled (what was decoded is kept: the next call goes on from there)."""
        pending = self._unfinished.get(path)
        if pending is None:
            return None
        settings, backend = self.settings, self.load()
        heal, site, raw = pending.heal, pending.site, pending.raw
        # Idle work, preempted by any request: bounded by maxTokens, not by the time budget.
        request = GenerationRequest.from_settings(
            pending.prompt, settings, cancel=cancel, max_tokens=max(1, pending.max_tokens - pending.generated),
            time_budget_s=None, **_judges(heal, site, raw))
        result = backend.generate(request)
        stop = result.stats.stop_reason
        if stop == StopReason.CANCELLED:
            if result.text:
                self._unfinished[path] = replace(pending, prompt=_extended(pending.prompt, result.text),
                                                 raw=raw + result.text,
                                                 generated=pending.generated + result.stats.generated_tokens)
            return None
        del self._unfinished[path]
        text, reason = self._postprocess(heal.inserted(raw + result.text), stop, pending.mode, site)
        if not text.strip() and pending.shown:
            # Judged as a whole, nothing is left: what the editor shows stays the place's answer.
            text, reason = pending.shown, StopReason.EARLY
        # Otherwise the whole is the place's answer, whether it extends what was shown or, judged
        # as a whole, differs from it (the server offers it in the place of the early one).
        self.cache.put(pending.cache_key, text, reason)
        self.type_through.remember(path, pending.prefix, pending.suffix, text)
        return CompletionResult(text, pending.range, reason, {
            **{k: round(v, 1) if isinstance(v, float) else v for k, v in result.stats.as_dict().items()},
            "generated_tokens": pending.generated + result.stats.generated_tokens})

    def refine(self, request: CompletionRequest) -> CompletionResult:
        """The answer at `request`'s place from the whole window and the whole decode, with no
        time budget: what the CLI and the eval harness would give. Idle work after an answer from
        a short window; the place's caches (and its anchor) hold it afterwards, so the editor's
        next request there is answered with it. Cancelled: a CANCELLED result, run again later.

        The whole window is evaluated first through `widen` (preemptible: what it evaluated is
        kept when a keystroke preempts it, and the next call goes on from there), then decoded."""
        widened = self.widen(request)
        if widened is not None and widened.stop_reason == StopReason.CANCELLED:
            return CompletionResult("", {}, Outcome.CANCELLED, {})
        return self.complete(replace(request, interactive=False, refine=True))

    def _window(self, path: str) -> str:
        """Whether the prompt just built for `path` had a short window (a new place) or the whole."""
        return "short" if self.prompts.short(path) else "whole"

    def generate(self, request: GenerationRequest, on_text: Callable[[str], None] | None = None) -> GenerationResult:
        """Run a prompt built elsewhere (the eval harness's complete and chat modes)."""
        return self.load().generate(request, on_text)

    # -- explain (engine/explain.py) -------------------------------------------------------------

    def explain(
        self,
        code: str,
        language: str = "plaintext",
        on_text: Callable[[str], None] | None = None,
        cancel: threading.Event | None = None,
    ) -> str:
        """Explain `code` in markdown through the model's chat template, streaming to `on_text`."""
        return self.explain_result(code, language, on_text, cancel).text

    def explain_result(
        self,
        code: str,
        language: str = "plaintext",
        on_text: Callable[[str], None] | None = None,
        cancel: threading.Event | None = None,
    ) -> GenerationResult:
        """`explain`, with the generation's stats (the eval reports time to first token and speed)."""
        if not code.strip():
            raise EngineError("there is no code to explain in that range")
        settings, backend, info = self.settings, self.load(), self.info
        max_tokens = max(settings.max_tokens, explain.MIN_ANSWER_TOKENS)
        code = explain.fit(code, backend.count_tokens, settings.n_ctx - max_tokens - explain.PROMPT_TOKENS)
        prompt = chat_prompt(explain.messages(code, language), info.chat_template, bos_token=info.bos_token,
                             eos_token=info.eos_token, add_bos=info.add_bos)
        request = GenerationRequest.from_settings(prompt, settings, max_tokens=max_tokens,
                                                  time_budget_s=explain.TIME_BUDGET_S,
                                                  cancel=cancel or threading.Event())
        result = backend.generate(request, on_text)
        return GenerationResult(explain.clean(result.text, code), result.stats)


def _judges(heal: Heal, site: Site, before: str = "") -> dict[str, Callable[[str], bool]]:
    """The streaming judges of a completion at `site` (engine/postprocess.py), for a backend's
    text that follows `before`: `stop_when` (it has left its block), `unfinished` (nothing usable yet)."""
    return {"stop_when": lambda so_far: left_block(heal.inserted(before + so_far), site),
            "unfinished": lambda so_far: unfinished(heal.inserted(before + so_far), site)}


def _extended(prompt: Prompt, text: str) -> Prompt:
    """`prompt` with `text` after it, as if the model had written it (how an answer goes on)."""
    return replace(prompt, parts=(*prompt.parts, Text(text)))

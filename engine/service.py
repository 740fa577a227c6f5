"""CompletionService: the whole road from a document and a cursor to text to insert.

The CLI, the language server and the eval harness all call this one class, so what an editor
user sees is exactly what `fimble complete` prints and what `fimble eval` scores. It orchestrates; each
step lives in the module named for it: the cursor (context.py), the prompt for a place (anchor.py;
instruct.py at the docstring moment), the model (backends/), the answer's last pass (postprocess.py).

The service keeps nothing per document: what is kept between keystrokes (the prompt's memory,
the suggestion shown) is the caller's, in the document's session (engine/session.py); an answer
given early comes back with its `unfinished` rest, and `rest_of_answer` takes it.

Threads. The model backend (llama.cpp) is not thread-safe, so `load`, `complete`, `warm*`,
`explain*`, `generate` and `forget` run on one thread (the language server's model worker).
Replacing `settings` (a frozen `Settings`) is safe from any other thread: a call reads the
attribute once and uses that one object throughout, so a request never mixes old and new options.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import replace

from . import explain
from .anchor import Built, PromptMemory, ShortWindow
from .backends import Backend, GenerationRequest, GenerationResult, GenerationStats
from .cache import LRUCache
from .config import Settings
from .context import LINE, CursorInfo, OpenDocument, analyze_cursor, line_at
from .instruct import FENCE, MIN_BODY_TOKENS, HeadGuesses, HeadImports, docstring_moment, instruct_place
from .loaded import LoadedModel
from .models import ModelInfo
from .postprocess import RULES, Site, postprocess
from .reasons import Outcome, StopReason, filtered, is_filtered
from .request import CompletionRequest, CompletionResult, Unfinished, extended, judges
from .syntax import SyntaxTree

__all__ = ["CompletionRequest", "CompletionResult", "CompletionService", "Unfinished"]

class CompletionService(LoadedModel):
    """The pipeline over the loaded model (engine/loaded.py)."""

    def __init__(self, settings: Settings | None = None, *, backend: Backend | None = None,
                 model_info: ModelInfo | None = None) -> None:
        super().__init__(settings, backend=backend, model_info=model_info)
        # How often each postprocessing rule changed a completion, for fimble/status and eval.
        self.rule_counts: dict[str, int] = {name: 0 for name, _ in RULES}
        self.cache = LRUCache()
        self.heads = HeadGuesses()  # the model's lines above a function, by imports (engine/instruct.py)

    def build_prompt(self, tree: SyntaxTree, offset: int, cursor: CursorInfo, others: Sequence[OpenDocument] = (),
                     path: str = "", memory: PromptMemory | None = None, reuse: bool = False, healing: bool = True,
                     settings: Settings | None = None, short_start: bool = False, whole: bool = False) -> Built:
        """The prompt for a cursor (engine/anchor.py), healed by this backend's healer; with
        `whole`, a short window kept for the place is replaced by the whole one."""
        settings, backend = settings or self.settings, self.load()
        short = ShortWindow.for_speed(settings, backend.prefill_rate, backend.new_tokens) if short_start and reuse \
            else None
        return self.prompts.completion(settings, tree, offset, cursor, others, path,
                                       memory=self.memory_for(path, memory), reuse=reuse,
                                       healer=backend.healer if healing else None, healing=healing,
                                       short_window=short, whole=whole)

    def _built(self, request: CompletionRequest, tree: SyntaxTree, offset: int, cursor: CursorInfo,
               settings: Settings) -> tuple[Built | None, str]:
        """The place's prompt and its window: "instruct" at the docstring moment (for the warm-up too: a
        fill-in-the-middle prompt warmed there is thrown away), else "short" or "whole"; None: cancelled."""
        reuse, memory = request.use_cache and not request.raw, self.memory_for(request.path, request.memory)
        if settings.docstring_prompt == "instruct" and not request.raw and self.info.chat_template is not None \
                and (moment := docstring_moment(tree, offset)) is not None:
            return instruct_place(moment, tree, offset, cursor, self.info, memory, self.load(), settings,
                                  request.cancel, reuse, self.heads), "instruct"
        built = self.build_prompt(tree, offset, cursor, request.others, request.path, memory, reuse=reuse,
                                  healing=not request.raw, settings=settings, short_start=request.interactive,
                                  whole=request.refine)
        return built, "short" if memory.short else "whole"

    # -- warming (the language server calls these on the model worker when it is idle) --------

    def warm(self, request: CompletionRequest) -> GenerationStats | None:
        """Evaluate the prompt a completion at `request`'s place would have, without generating,
        so that the first request there (after the user's next keystroke) finds it ready."""
        settings, backend = self.settings, self.load()
        offset, tree = request.place()
        cursor = analyze_cursor(tree, offset, settings.multiline)
        built, window = self._built(request, tree, offset, cursor, settings)
        keep = "moment" if window == "instruct" else ""  # (kvCacheMb) other idle work may come before the request
        return None if built is None else backend.warm(built.prompt, request.cancel, keep=keep)

    def widen(self, request: CompletionRequest) -> GenerationStats | None:
        """When the place was answered from a short window (`short_start`), evaluate its whole
        window and take it over once evaluated. Preemptible: the short one's cells are saved
        first, so a keystroke that preempts this finds them still, and what was evaluated is
        saved, so the next call goes on from there. None when there is nothing to widen."""
        settings, backend = self.settings, self.load()
        offset, tree = request.place()
        cursor = analyze_cursor(tree, offset, settings.multiline)
        memory = self.memory_for(request.path, request.memory)
        if (wide := self.prompts.widened(settings, tree, offset, cursor, request.others, request.path, memory,
                                         backend.healer)) is None:
            return None
        anchor, built = wide
        stats = backend.warm(built.prompt, request.cancel, preemptible=True)
        if stats is not None and stats.stop_reason != StopReason.CANCELLED:
            memory.anchor = anchor
        return stats

    def warm_document(self, request: CompletionRequest) -> GenerationStats | None:
        """Evaluate the document itself the way prompts begin and keep that state: a request at
        any place in it then takes its window from there (engine/backends/kv_reuse.py)."""
        settings, backend = self.settings, self.load()
        offset, tree = request.place()
        prompt = self.prompts.document(settings, tree, offset, request.others, request.path,
                                       self.memory_for(request.path, request.memory))
        return backend.warm(prompt, request.cancel, keep=f"document:{request.path.rsplit('/', 1)[-1]}")

    def complete(self, request: CompletionRequest) -> CompletionResult:
        started = time.perf_counter()
        settings = self.settings  # one object for the whole request (see the module docstring)
        offset, tree = request.place()
        empty_range = request.cursor_range(offset)
        backend = self.load()
        cursor = analyze_cursor(tree, offset, settings.multiline)
        cached_ok = request.use_cache and not request.raw
        built, window = self._built(request, tree, offset, cursor, settings)
        if built is None:
            return CompletionResult("", empty_range, Outcome.CANCELLED, {"window": window})
        site, heal = built.site, built.heal
        prompt_ms = (time.perf_counter() - started) * 1000
        cache_key = f"{cursor.mode}\x00{built.prompt.render()}\x00{heal.text}"
        if cached_ok and (cached := self.cache.get(cache_key)) is not None:
            text, _ = cached
            return CompletionResult(text, empty_range, Outcome.CACHE if text else Outcome.EMPTY,
                                    {"prompt_ms": round(prompt_ms, 1), "window": window})
        # A line that opens a block (`for x in xs:`) goes on to its body; other lines end at "\n".
        line_stop = cursor.mode == LINE and (request.raw or cursor.why != "end_of_line")
        early = request.interactive and cached_ok and not line_stop and settings.first_answer_ms > 0
        gen_request = GenerationRequest.from_settings(
            built.prompt, settings, cancel=request.cancel, reuse=cached_ok,
            stop=["\n"] if line_stop else [FENCE] if window == "instruct" else [],
            **({} if request.raw else judges(heal, site)),
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
            "prompt_ms": round(prompt_ms, 1), "post_ms": round((time.perf_counter() - post_started) * 1000, 1),
            "total_ms": round((time.perf_counter() - started) * 1000, 1), "load_ms": round(self.load_ms or 0.0, 1),
            "mode": cursor.mode, "mode_why": cursor.why, "snippets": len(built.snippets), "window": window,
            "healed": heal.text,
            **({"head": built.heal.head} if isinstance(built.heal, HeadImports) else {}),
            **{k: round(v, 1) if isinstance(v, float) else v for k, v in result.stats.as_dict().items()},
        }
        if stop == StopReason.CANCELLED:
            return CompletionResult("", empty_range, Outcome.CANCELLED, timings)
        if not text.strip():
            text, reason = "", reason if is_filtered(reason) else Outcome.EMPTY
        pending = None
        if stop in (StopReason.EARLY, StopReason.TIME_BUDGET) and request.interactive and cached_ok \
                and window != "short":
            # Its rest is decoded when idle (`rest_of_answer`). (A short window's answer is not finished:
            # the whole window's answer takes its place, `refine`.) A masked heal is text the
            # prompt stops short of and the backend's text lacks.
            pending = Unfinished(
                extended(built.prompt, (heal.text if heal.masked else "") + result.text), result.text,
                result.stats.generated_tokens, site, heal, cursor.mode, cache_key,
                request.text, offset, empty_range, text, gen_request.max_tokens)
        elif cached_ok and stop not in (StopReason.TIME_BUDGET, StopReason.EARLY):
            # A completion cut short is a partial answer: worth showing, not keeping.
            self.cache.put(cache_key, text, reason)
        return CompletionResult(text, empty_range, reason, timings, pending)

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

    def rest_of_answer(self, pending: Unfinished, cancel: threading.Event,
                       answer_after_s: float | None = None) -> CompletionResult | None:
        """Decode the rest of an answer given early (`CompletionResult.unfinished`), from its prompt
        and the text it had (the KV cache holds both: only the last token or two is evaluated
        again), and make the whole answer what the exact cache gives at that place. None when
        cancelled: `pending` is extended with what was decoded, and the next call goes on from there.

        `answer_after_s`: a request waits for it (the user accepted the early answer to its end):
        once decoding has run that long and a usable line follows the lines shown, the whole so
        far is answered early again (StopReason.EARLY, `pending` extended and carried on)."""
        settings, backend = self.settings, self.load()
        heal, site, raw = pending.heal, pending.site, pending.raw
        # Idle work, preempted by any request: bounded by maxTokens, not by the time budget.
        request = GenerationRequest.from_settings(
            pending.prompt, settings, cancel=cancel, max_tokens=max(1, pending.max_tokens - pending.generated),
            time_budget_s=None, answer_after_s=answer_after_s,
            **judges(heal, site, raw, pending.shown if answer_after_s is not None else ""))
        result = backend.generate(request)
        stop = result.stats.stop_reason
        generated = pending.generated + result.stats.generated_tokens
        if stop in (StopReason.CANCELLED, StopReason.EARLY):
            if result.text:
                pending.prompt, pending.raw = extended(pending.prompt, result.text), raw + result.text
                pending.generated = generated
            if stop == StopReason.CANCELLED:
                return None
        text, reason = self._postprocess(heal.inserted(raw + result.text), stop, pending.mode, site)
        timings = {**{k: round(v, 1) if isinstance(v, float) else v for k, v in result.stats.as_dict().items()},
                   "generated_tokens": generated}
        if stop == StopReason.EARLY:
            # The whole so far; where judged as a whole it does not grow what was shown, the
            # shown answer stays (the rest comes with the next call).
            if text.startswith(pending.shown) and len(text) > len(pending.shown):
                pending.shown = text
            return CompletionResult(pending.shown, pending.range, StopReason.EARLY, timings, pending)
        pending.ended = True
        if not text.strip() and pending.shown:
            # Judged as a whole, nothing is left: what the editor shows stays the place's answer.
            text, reason = pending.shown, StopReason.EARLY
        # Otherwise the whole is the place's answer, whether it extends what was shown or, judged
        # as a whole, differs from it (the server offers it in the place of the early one).
        self.cache.put(pending.cache_key, text, reason)
        return CompletionResult(text, pending.range, reason, timings)

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

    def generate(self, request: GenerationRequest, on_text: Callable[[str], None] | None = None) -> GenerationResult:
        """Run a prompt built elsewhere (the eval harness's complete and chat modes)."""
        return self.load().generate(request, on_text)

    # -- explain (engine/explain.py) -------------------------------------------------------------

    def explain(self, code: str, language: str = "plaintext", on_text: Callable[[str], None] | None = None,
                cancel: threading.Event | None = None) -> str:
        """Explain `code` in markdown through the model's chat template, streaming to `on_text`."""
        return self.explain_result(code, language, on_text, cancel).text

    def explain_result(self, code: str, language: str = "plaintext", on_text: Callable[[str], None] | None = None,
                       cancel: threading.Event | None = None) -> GenerationResult:
        """`explain`, with the generation's stats (the eval reports time to first token and speed)."""
        return explain.generate(self.load(), self.info, self.settings, code, language, on_text, cancel)

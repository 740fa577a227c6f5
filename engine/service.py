"""CompletionService: the whole road from a document and a cursor to text to insert.

The CLI, the language server and the eval harness all call this one class, so what an editor
user sees is exactly what `fimble complete` prints and what `fimble eval` scores.

It is synchronous and not thread-safe on purpose: the model backend (llama.cpp) is not, so the
callers run it on one worker thread.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import explain
from .backends import Backend, GenerationRequest, GenerationResult, get_backend_class
from .backends.base import STOP_MAX_TOKENS, STOP_TIME_BUDGET, GenerationStats
from .cache import LRUCache, TypeThrough
from .config import Settings
from .context import LINE, CursorInfo, OpenDocument, Snippet, analyze_cursor, extra_snippets, names_near, pinned_lines
from .errors import EngineError
from .gguf import read_gguf
from .healing import indentation_split, strip_indentation
from .models import ModelRef, Progress, resolve_model
from .postprocess import RULES, Site, left_block, postprocess, unfinished
from .prompt import (
    FimTemplate,
    Part,
    Prompt,
    Special,
    Text,
    chat_prompt,
    detect_fim_template,
    fit_window,
    prefix_only_prompt,
)
from .syntax import SyntaxTree
from .text import offset_at, position_at

LANGUAGE_BY_SUFFIX = {
    ".py": "python", ".pyi": "python", ".js": "javascript", ".mjs": "javascript", ".cjs": "javascript",
    ".jsx": "javascript", ".ts": "typescript", ".tsx": "typescriptreact", ".go": "go", ".rs": "rust",
    ".java": "java", ".c": "c", ".h": "c", ".cc": "cpp", ".cpp": "cpp", ".cxx": "cpp", ".hpp": "cpp",
    ".cs": "csharp", ".rb": "ruby", ".php": "php", ".lua": "lua", ".sh": "shellscript", ".bash": "shellscript",
}


def language_for_path(path: str | Path) -> str:
    return LANGUAGE_BY_SUFFIX.get(Path(path).suffix.lower(), "plaintext")


# An explanation is read, not glanced at, so it gets far more time than ghost text, but not forever:
# a server that streams without end is cut here (the openai backend also counts maxTokens itself).
EXPLAIN_TIME_BUDGET_S = 120.0
EXPLAIN_PROMPT_TOKENS = 128  # the explain prompt's own words and chat template, with room to spare


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


@dataclass
class CompletionResult:
    text: str
    range: dict[str, dict[str, int]]
    reason: str
    timings: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        return {"text": self.text, "range": self.range, "reason": self.reason, "timings": self.timings}


@dataclass(frozen=True)
class Heal:
    """Text typed before the cursor that the prompt stops short of (engine/healing.py): the
    backend's first tokens are masked to reproduce it (`masked`), or, for a backend that cannot
    mask, it is indentation cut from the answer's first line."""

    text: str = ""
    masked: bool = False

    def inserted(self, generated: str) -> str:
        """What of the backend's text is inserted at the cursor (a masked heal is cut by the backend)."""
        return strip_indentation(generated, self.text) if self.text and not self.masked else generated


@dataclass(frozen=True)
class ModelInfo:
    """What the engine needs to know of a model's vocabulary to prompt it."""

    fim: FimTemplate | None
    chat_template: str | None
    bos_token: str
    eos_token: str
    add_bos: bool

    @classmethod
    def from_gguf(cls, path: Path) -> ModelInfo:
        gguf = read_gguf(path, check_complete=False)
        tokens, meta = gguf.tokens, gguf.metadata

        def token(key: str) -> str:
            index = meta.get(key)
            return tokens[index] if isinstance(index, int) and 0 <= index < len(tokens) else ""

        return cls(
            fim=detect_fim_template(tokens, meta),
            chat_template=meta.get("tokenizer.chat_template"),
            bos_token=token("tokenizer.ggml.bos_token_id"),
            eos_token=token("tokenizer.ggml.eos_token_id"),
            add_bos=bool(meta.get("tokenizer.ggml.add_bos_token", False)),
        )

    @classmethod
    def from_hf_folder(cls, folder: Path) -> ModelInfo:
        """From a Hugging Face folder's tokenizer files: its added tokens hold the FIM tokens."""
        def load(name: str) -> dict[str, Any]:
            path = folder / name
            return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}

        config, tokenizer = load("tokenizer_config.json"), load("tokenizer.json")
        tokens = [t["content"] for t in tokenizer.get("added_tokens", [])]
        tokens += [t["content"] for t in config.get("added_tokens_decoder", {}).values()]
        template = config.get("chat_template")
        if not isinstance(template, str) and (folder / "chat_template.jinja").is_file():
            template = (folder / "chat_template.jinja").read_text(encoding="utf-8")

        def token(key: str) -> str:
            value = config.get(key)
            return value.get("content", "") if isinstance(value, dict) else value or ""

        return cls(
            fim=detect_fim_template(tokens, {}),
            chat_template=template if isinstance(template, str) else None,
            bos_token=token("bos_token"),
            eos_token=token("eos_token"),
            add_bos=bool(config.get("add_bos_token", False)),
        )

    @classmethod
    def plain(cls) -> ModelInfo:
        return cls(None, None, "", "", False)


# The prompt's first line moves in steps of this many lines (see prompt.fit_window).
WINDOW_LINE_STEP = 16
# Share of the local budget for the text before the cursor. Whatever follows the cursor in the
# prompt is evaluated again when the anchor moves (and a warmed document cannot serve it: it comes
# after the suffix token, see engine/backends/kv_reuse.py), so the suffix is kept short: 1:15,
# about 64 tokens, five or six lines.
PREFIX_SHARE = 0.9375
# An anchor is kept while the text typed after it stays this small.
ANCHOR_MAX_LINES = 12
ANCHOR_MAX_CHARS = 1200


@dataclass(frozen=True)
class Anchor:
    """Where the FIM prefix of the last prompt for a document ended, and what it was."""

    offset: int  # document offset of the line start where the middle begins
    head_hash: int  # hash of the document text before `offset`
    prefix: str  # the prompt's prefix (pinned lines + window), ending at `offset`
    suffix: str  # the prompt's suffix: the text after the cursor, cut to the budget
    context: tuple[Part, ...]  # extra context placed before the prefix
    snippets: list[Snippet]
    settings_key: tuple[object, ...]

    def fits(self, text: str, offset: int, settings: Settings) -> bool:
        """Still usable: only text between the anchor and the cursor changed, and not too much."""
        if offset < self.offset or CompletionService._anchor_key(settings) != self.settings_key:
            return False
        middle = text[self.offset : offset]
        if len(middle) > ANCHOR_MAX_CHARS or middle.count("\n") > ANCHOR_MAX_LINES:
            return False
        return text.startswith(self.suffix, offset) and hash(text[: self.offset]) == self.head_hash


def _pinned_text(lines: list[str], rows: Sequence[int], window_start: int) -> str:
    """The pinned lines, each with the blank lines that follow it in the document (up to the
    window): tokenized, they are then the same tokens as in the document, where a run of
    newlines is one token, and a warmed document serves them from the KV cache too."""
    out = []
    for row in rows:
        end = row + 1
        while end < window_start and end < len(lines) and not lines[end].strip():
            end += 1
        out.append("".join(line + "\n" for line in lines[row:end]))
    return "".join(out)


def repo_context(template: FimTemplate, snippets: Sequence[Snippet], path: str) -> list[Part]:
    """Snippets in the model's repository format: `<|repo_name|>` then `<|file_sep|>path` blocks."""
    assert template.repo_name and template.file_sep
    parts: list[Part] = [Special(template.repo_name), Text("fimble\n")]
    for snippet in snippets:
        parts += [Special(template.file_sep), Text(f"{snippet.path}\n{snippet.text}\n")]
    parts += [Special(template.file_sep), Text(f"{path or 'current'}\n")]
    return parts


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
        self._anchors: dict[str, Anchor] = {}
        self._contexts: dict[str, tuple[object, tuple[Part, ...], list[Snippet]]] = {}

    def documents_kept(self) -> int:
        """Documents the service keeps something for (an anchor or a prompt context)."""
        return len(self._anchors.keys() | self._contexts.keys())

    def forget(self, path: str) -> None:
        """A document was closed: drop its anchor, prompt context and typed-through suggestion."""
        self._anchors.pop(path, None)
        self._contexts.pop(path, None)
        self.type_through.forget(path)

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
            if self._backend is None:
                cls = get_backend_class(self.settings.backend)
                ref = resolve_model(self.settings.model, progress) if cls.needs_local_model else None
                self.model_ref = ref
                self._backend = cls(ref, self.settings)
            if self._info is None:
                ref = self.model_ref
                if ref is None:
                    self._info = ModelInfo.plain()
                else:
                    self._info = ModelInfo.from_gguf(ref.path) if ref.is_gguf else ModelInfo.from_hf_folder(ref.path)
            self._backend.load()
            self.load_ms = (time.perf_counter() - started) * 1000
            return self._backend

    @property
    def info(self) -> ModelInfo:
        self.load()
        assert self._info is not None
        return self._info

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

    def build_prompt(self, tree: SyntaxTree, offset: int, cursor: CursorInfo,
                     others: Sequence[OpenDocument] = (), path: str = "",
                     reuse: bool = False, healing: bool = True) -> tuple[Prompt, Site, list[Snippet], Heal]:
        """The prompt for a cursor, the site (prefix/suffix as the model saw them), the snippets
        of other documents in it, and the text it stops short of for token healing.

        The FIM prefix ends at an anchor — the start of the line where the user began typing —
        and what was typed since goes after the middle token, as if the model had written it.
        While the user types on from there (and the text around does not change), the prompt
        only grows at its end, so llama.cpp evaluates just the new tokens on each keystroke.
        With `reuse`, the anchor of the last request for `path` is kept when it still fits.
        With `healing`, the prompt ends at the last token boundary the model would have produced
        before the cursor, and the generation reproduces the rest (engine/healing.py).
        """
        info = self.info
        text = tree.text
        anchor = self._anchors.get(path) if reuse else None
        if anchor is None or not anchor.fits(text, offset, self.settings):
            anchor = self._new_anchor(tree, offset, others, path)
            self._anchors[path] = anchor
        middle = text[anchor.offset : offset]
        site = Site(anchor.prefix + middle, anchor.suffix, cursor, tree.spec)
        kept, heal = self._heal_split(middle) if healing else (middle, Heal())
        if info.fim is None:
            return prefix_only_prompt(anchor.prefix + kept, add_bos=info.add_bos), site, [], heal
        prompt = info.fim.build(anchor.prefix, anchor.suffix, context=anchor.context, add_bos=info.add_bos,
                                middle=kept)
        return prompt, site, anchor.snippets, heal

    def _heal_split(self, middle: str) -> tuple[str, Heal]:
        """Where the prompt stops short of the cursor (engine/healing.py), and how it is made good.

        Typed indentation alone is cut from the prompt and from the answer's first line, for
        every backend: the model writes the line from its start, as it learnt to. (Masking
        measured worse there: where the model would rather leave the line blank, forcing the
        indentation token by token led it into runs of whitespace.) Any other partial token is
        healed under a mask by backends that have one."""
        kept, indentation = indentation_split(middle)
        if indentation:
            return kept, Heal(indentation, masked=False)
        healer = self.load().healer
        if healer is not None:
            kept, text = healer.split(middle)
            return kept, Heal(text, masked=True)
        return middle, Heal()

    def _new_anchor(self, tree: SyntaxTree, offset: int, others: Sequence[OpenDocument], path: str) -> Anchor:
        info = self.info
        text, count = tree.text, self.count_tokens
        start = text.rfind("\n", 0, offset) + 1  # the start of the cursor's line
        prefix, suffix = text[:start], text[offset:]
        budget = self.settings.context_tokens
        repo_format = info.fim is not None and info.fim.file_sep is not None and bool(others)
        extra_budget = budget // 4 if repo_format else 0
        local_budget = budget - extra_budget
        window = fit_window(prefix, suffix, count, local_budget, PREFIX_SHARE, WINDOW_LINE_STEP)
        pinned_text = ""
        if window.first_line > 0 and (rows := pinned_lines(tree, offset, window.first_line)):
            lines = text.split("\n")
            pinned_text = _pinned_text(lines, rows, window.first_line)
            window = fit_window(prefix, suffix, count, local_budget - count(pinned_text), PREFIX_SHARE,
                                WINDOW_LINE_STEP)
            pinned_text = _pinned_text(lines, [r for r in rows if r < window.first_line], window.first_line)
        local_prefix = pinned_text + window.prefix
        context, snippets = self._document_context(tree, offset, others, path, local_prefix + window.suffix)
        return Anchor(start, hash(text[:start]), local_prefix, window.suffix, context, snippets,
                      self._anchor_key(self.settings))

    def _document_context(self, tree: SyntaxTree, offset: int, others: Sequence[OpenDocument], path: str,
                          window_text: str) -> tuple[tuple[Part, ...], list[Snippet]]:
        """The other documents' snippets for `path`, in the model's repository format.

        They open the prompt, so they stay the same for a document while the other documents do
        not change: a new place in the same file then shares everything up to its own window
        with the prompts before (engine/backends/kv_reuse.py). They are chosen at the first
        place that needs them (names near it, recent edits elsewhere)."""
        info = self.info
        if not (info.fim and info.fim.file_sep and info.fim.repo_name and others):
            return (), []
        key = (self._anchor_key(self.settings), tuple((d.path, hash(d.tree.text), d.recent_lines) for d in others))
        cached = self._contexts.get(path)
        if cached is not None and cached[0] == key:
            return cached[1], cached[2]
        snippets = extra_snippets(names_near(tree.text, offset), others, window_text,
                                  self.settings.context_tokens // 4, self.count_tokens)
        context = tuple(repo_context(info.fim, snippets, path))
        if len(self._contexts) >= 64:
            self._contexts.pop(next(iter(self._contexts)))
        self._contexts[path] = (key, context, snippets)
        return context, snippets

    @staticmethod
    def _anchor_key(settings: Settings) -> tuple[object, ...]:
        return (settings.context_tokens, settings.model, settings.backend)

    def typed_through(self, request: CompletionRequest) -> CompletionResult | None:
        """The rest of the suggestion shown last, if the user is typing it; no model needed."""
        if request.raw or not request.use_cache:
            return None
        offset = offset_at(request.text, request.line, request.character, request.encoding)
        rest = self.type_through.lookup(request.path, request.text[:offset], request.text[offset:])
        if rest is None or not rest.strip():
            return None
        cursor_pos = position_at(request.text, offset, request.encoding).as_dict()
        return CompletionResult(rest, {"start": cursor_pos, "end": cursor_pos}, "cache", {"type_through": True})

    @staticmethod
    def _place(request: CompletionRequest) -> tuple[int, SyntaxTree]:
        """The cursor's offset in the text, and the text's tree (the caller's, or parsed now)."""
        offset = offset_at(request.text, request.line, request.character, request.encoding)
        return offset, request.tree if request.tree is not None else SyntaxTree(request.text, request.language)

    # -- warming (the language server calls these on the model worker when it is idle) --------

    def warm(self, request: CompletionRequest) -> GenerationStats | None:
        """Evaluate the prompt a completion at `request`'s place would have, without generating,
        so that the first request there (after the user's next keystroke) finds it ready."""
        backend = self.load()
        offset, tree = self._place(request)
        cursor = analyze_cursor(tree, offset, self.settings.multiline)
        prompt, *_ = self.build_prompt(tree, offset, cursor, request.others, request.path, reuse=request.use_cache)
        return backend.warm(prompt, request.cancel)

    def warm_document(self, request: CompletionRequest) -> GenerationStats | None:
        """Evaluate the document itself the way prompts begin — its context, the FIM prefix
        token, then its text from the top (the region around the cursor when it is longer than
        the context window) — and keep that state. A request at any place in the document then
        takes its window from there instead of evaluating it (engine/backends/kv_reuse.py)."""
        backend = self.load()
        info = self.info
        offset, tree = self._place(request)
        region = self._document_region(tree.text, offset, self.settings.n_ctx - 64)
        if info.fim is None:
            parts: tuple[Part, ...] = (Text(region),)
        else:
            context, _ = self._document_context(tree, offset, request.others, request.path, region)
            parts = (*context, Special(info.fim.prefix), Text(region))
        prompt = Prompt(parts, "warm", info.add_bos)
        return backend.warm(prompt, request.cancel, keep=f"document:{Path(request.path).name}")

    def _document_region(self, text: str, offset: int, budget: int) -> str:
        """The document's lines that fit `budget` tokens: all of them, or a block around the
        cursor's line (three quarters above it) starting at a multiple of WINDOW_LINE_STEP."""
        lines = text.split("\n")
        costs = [self.count_tokens(line + "\n") for line in lines]
        if sum(costs) <= budget:
            return text
        row = text.count("\n", 0, offset)
        first, used = row, 0
        while first > 0 and used + costs[first - 1] <= budget * 3 // 4:
            first -= 1
            used += costs[first]
        first = -(-first // WINDOW_LINE_STEP) * WINDOW_LINE_STEP if first else 0
        used, last = 0, first
        while last < len(lines) and used + costs[last] <= budget:
            used += costs[last]
            last += 1
        return "".join(line + "\n" for line in lines[first:last])

    def complete(self, request: CompletionRequest) -> CompletionResult:
        started = time.perf_counter()
        if (hit := self.typed_through(request)) is not None:
            return hit
        offset, tree = self._place(request)
        cursor_pos = position_at(request.text, offset, request.encoding).as_dict()
        empty_range = {"start": cursor_pos, "end": cursor_pos}
        backend = self.load()
        cursor = analyze_cursor(tree, offset, self.settings.multiline)
        prompt, site, snippets, heal = self.build_prompt(tree, offset, cursor, request.others, request.path,
                                                         reuse=request.use_cache and not request.raw,
                                                         healing=not request.raw)
        prompt_ms = (time.perf_counter() - started) * 1000
        cache_key = f"{cursor.mode}\x00{prompt.render()}\x00{heal.text}"
        if request.use_cache and not request.raw and (cached := self.cache.get(cache_key)) is not None:
            text, _ = cached
            self.type_through.remember(request.path, request.text[:offset], request.text[offset:], text)
            return CompletionResult(text, empty_range, "cache" if text else "empty", {"prompt_ms": round(prompt_ms, 1)})
        # A line that opens a block (`for x in xs:`) goes on to its body; other lines end at "\n".
        line_stop = cursor.mode == LINE and (request.raw or cursor.why != "end_of_line")
        gen_request = GenerationRequest.from_settings(
            prompt, self.settings, cancel=request.cancel, reuse=request.use_cache and not request.raw,
            stop=["\n"] if line_stop else [],
            stop_when=None if request.raw else (lambda so_far: left_block(heal.inserted(so_far), site)),
            unfinished=None if request.raw else (lambda so_far: unfinished(heal.inserted(so_far), site)),
            heal=heal.text if heal.masked else "",
        )
        result = backend.generate(gen_request)
        result.text = heal.inserted(result.text)
        post_started = time.perf_counter()
        if request.raw:
            text, reason = result.text, result.stats.stop_reason
        else:
            text = result.text
            if cursor.mode != LINE and result.stats.stop_reason in (STOP_MAX_TOKENS, STOP_TIME_BUDGET):
                # Cut off mid-line: keep the lines that were finished (one line stays to be judged).
                text = text[: text.rfind("\n")] if "\n" in text.rstrip("\n") else text
            outcome = postprocess(text, site)
            for rule in outcome.fired:
                self.rule_counts[rule] = self.rule_counts.get(rule, 0) + 1
            text = outcome.text
            reason = f"filtered:{outcome.emptied_by}" if outcome.emptied_by else result.stats.stop_reason
        timings = {
            "prompt_ms": round(prompt_ms, 1),
            "post_ms": round((time.perf_counter() - post_started) * 1000, 1),
            "total_ms": round((time.perf_counter() - started) * 1000, 1),
            "load_ms": round(self.load_ms or 0.0, 1),
            "mode": cursor.mode,
            "mode_why": cursor.why,
            "snippets": len(snippets),
            "healed": heal.text,
            **{k: round(v, 1) if isinstance(v, float) else v for k, v in result.stats.as_dict().items()},
        }
        if result.stats.stop_reason == "cancelled":
            return CompletionResult("", empty_range, "cancelled", timings)
        if not text.strip():
            text, reason = "", reason if reason.startswith("filtered:") else "empty"
        if request.use_cache and not request.raw and result.stats.stop_reason != "time_budget":
            # A completion cut by the time budget is a partial answer: worth showing, not keeping.
            self.cache.put(cache_key, text, reason)
        if request.use_cache:
            self.type_through.remember(request.path, request.text[:offset], request.text[offset:], text)
        return CompletionResult(text, empty_range, reason, timings)

    def generate(self, request: GenerationRequest, on_text: Callable[[str], None] | None = None) -> GenerationResult:
        """Run a prompt built elsewhere (the eval harness's complete and chat modes)."""
        return self.load().generate(request, on_text)

    # -- explain -------------------------------------------------------------------------------

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
        backend = self.load()
        info = self.info
        max_tokens = max(self.settings.max_tokens, 512)
        code = self._fit_for_explain(backend, code, self.settings.n_ctx - max_tokens - EXPLAIN_PROMPT_TOKENS)
        prompt = chat_prompt(explain.messages(code, language), info.chat_template, bos_token=info.bos_token,
                             eos_token=info.eos_token, add_bos=info.add_bos)
        request = GenerationRequest.from_settings(
            prompt, self.settings, max_tokens=max_tokens, time_budget_s=EXPLAIN_TIME_BUDGET_S,
            cancel=cancel or threading.Event(),
        )
        result = backend.generate(request, on_text)
        return GenerationResult(explain.clean(result.text), result.stats)

    @staticmethod
    def _fit_for_explain(backend: Backend, code: str, budget: int) -> str:
        """The selection, cut to what the context holds (the start of it, and a note saying so)."""
        tokens = backend.count_tokens(code)
        if tokens <= budget:
            return code
        keep = code[: max(0, int(len(code) * budget / tokens * 0.9))]
        return keep + "\n… (the rest of the selection did not fit in the model's context)"

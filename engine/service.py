"""CompletionService: the whole road from a document and a cursor to text to insert.

The CLI, the language server and the eval harness all call this one class, so what an editor
user sees is exactly what `fimble complete` prints and what `fimble eval` scores.

It is synchronous and not thread-safe on purpose: the model backend (llama.cpp) is not, so the
callers run it on one worker thread.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .backends import Backend, GenerationRequest, get_backend_class
from .config import Settings
from .errors import EngineError
from .gguf import read_gguf
from .models import ModelRef, Progress, resolve_model
from .prompt import FimTemplate, Prompt, chat_prompt, detect_fim_template, fit_window, prefix_only_prompt
from .text import offset_at, position_at

LANGUAGE_BY_SUFFIX = {
    ".py": "python", ".pyi": "python", ".js": "javascript", ".mjs": "javascript", ".cjs": "javascript",
    ".jsx": "javascript", ".ts": "typescript", ".tsx": "typescriptreact", ".go": "go", ".rs": "rust",
    ".java": "java", ".c": "c", ".h": "c", ".cc": "cpp", ".cpp": "cpp", ".cxx": "cpp", ".hpp": "cpp",
    ".cs": "csharp", ".rb": "ruby", ".php": "php", ".lua": "lua", ".sh": "shellscript", ".bash": "shellscript",
}


def language_for_path(path: str | Path) -> str:
    return LANGUAGE_BY_SUFFIX.get(Path(path).suffix.lower(), "plaintext")


@dataclass
class CompletionRequest:
    text: str
    line: int
    character: int
    encoding: str = "utf-16"
    language: str = "plaintext"
    path: str = ""
    cancel: threading.Event = field(default_factory=threading.Event)


@dataclass
class CompletionResult:
    text: str
    range: dict[str, dict[str, int]]
    reason: str
    timings: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        return {"text": self.text, "range": self.range, "reason": self.reason, "timings": self.timings}


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
    def plain(cls) -> ModelInfo:
        return cls(None, None, "", "", False)


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
                self._info = ModelInfo.from_gguf(ref.path) if ref and ref.is_gguf else ModelInfo.plain()
            self._backend.load()
            self.load_ms = (time.perf_counter() - started) * 1000
            return self._backend

    @property
    def info(self) -> ModelInfo:
        self.load()
        assert self._info is not None
        return self._info

    def close(self) -> None:
        if self._backend is not None:
            self._backend.close()

    # -- completion ----------------------------------------------------------------------------

    def build_prompt(self, prefix: str, suffix: str) -> Prompt:
        backend = self.load()
        info = self.info
        window = fit_window(prefix, suffix, backend.count_tokens, self.settings.context_tokens)
        if info.fim is None:
            return prefix_only_prompt(window.prefix, add_bos=info.add_bos)
        return info.fim.build(window.prefix, window.suffix, add_bos=info.add_bos)

    def complete(self, request: CompletionRequest) -> CompletionResult:
        started = time.perf_counter()
        offset = offset_at(request.text, request.line, request.character, request.encoding)
        cursor = position_at(request.text, offset, request.encoding).as_dict()
        empty_range = {"start": cursor, "end": cursor}
        backend = self.load()
        prefix, suffix = request.text[:offset], request.text[offset:]
        prompt = self.build_prompt(prefix, suffix)
        prompt_ms = (time.perf_counter() - started) * 1000
        single_line = self._single_line(prefix, suffix)
        gen_request = GenerationRequest.from_settings(
            prompt, self.settings, cancel=request.cancel, stop=["\n"] if single_line else ["\n\n\n"]
        )
        result = backend.generate(gen_request)
        text = result.text.rstrip()
        timings = {
            "prompt_ms": round(prompt_ms, 1),
            "total_ms": round((time.perf_counter() - started) * 1000, 1),
            "load_ms": round(self.load_ms or 0.0, 1),
            **{k: round(v, 1) if isinstance(v, float) else v for k, v in result.stats.as_dict().items()},
        }
        if result.stats.stop_reason == "cancelled":
            return CompletionResult("", empty_range, "cancelled", timings)
        reason = result.stats.stop_reason if text.strip() else "empty"
        return CompletionResult(text if text.strip() else "", empty_range, reason, timings)

    def _single_line(self, prefix: str, suffix: str) -> bool:
        mode = self.settings.multiline
        if mode != "auto":
            return mode == "never"
        # In the middle of a line, finish that line; at its end (or on a blank line), go on.
        return bool(suffix.split("\n", 1)[0].strip())

    # -- explain -------------------------------------------------------------------------------

    def explain(
        self,
        code: str,
        language: str = "plaintext",
        on_text: Callable[[str], None] | None = None,
        cancel: threading.Event | None = None,
    ) -> str:
        """Explain `code` in markdown through the model's chat template, streaming to `on_text`."""
        if not code.strip():
            raise EngineError("there is no code to explain in that range")
        backend = self.load()
        info = self.info
        fence = "" if language == "plaintext" else language
        messages = [
            {"role": "system", "content": "You are fimble, a concise assistant that explains code. "
             "Answer in Markdown: one short paragraph, then a few bullet points."},
            {"role": "user", "content": f"Explain what this code does.\n\n```{fence}\n{code.rstrip()}\n```"},
        ]
        prompt = chat_prompt(messages, info.chat_template, bos_token=info.bos_token, eos_token=info.eos_token,
                             add_bos=info.add_bos)
        request = GenerationRequest.from_settings(
            prompt, self.settings, max_tokens=max(self.settings.max_tokens, 512), time_budget_s=None,
            cancel=cancel or threading.Event(),
        )
        return backend.generate(request, on_text).text.strip()

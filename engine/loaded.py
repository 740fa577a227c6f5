"""The model a CompletionService completes with (engine/service.py): its backend, loaded once,
its metadata, a token counter with a cache, and the prompt builder for its vocabulary
(engine/anchor.py), with a bounded prompt memory per path for callers that keep none."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict

from .anchor import PromptBuilder, PromptMemory
from .backends import Backend, get_backend_class
from .config import Settings
from .models import ModelInfo, ModelRef, Progress, resolve_model

# Documents whose prompt memory is kept for callers that keep none (the oldest is dropped first).
MEMORIES_KEPT = 64


class LoadedModel:
    """The model a service completes with: resolved, assembled and loaded once, on first use."""

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
        self._prompts: PromptBuilder | None = None
        # What is kept between prompts for documents whose caller keeps nothing itself (the CLI,
        # the eval harness, tests); the language server passes each document's own (its session's).
        self._memories: OrderedDict[str, PromptMemory] = OrderedDict()

    def memory_for(self, path: str, given: PromptMemory | None = None) -> PromptMemory:
        """The prompt memory of the document at `path`: `given`, or the one kept here for it."""
        if given is not None:
            return given
        memory = self._memories.pop(path, None) or PromptMemory()
        self._memories[path] = memory
        while len(self._memories) > MEMORIES_KEPT:
            self._memories.popitem(last=False)
        return memory

    def forget(self, path: str) -> None:
        """Drop the prompt memory kept here for `path`."""
        self._memories.pop(path, None)

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

    def count_tokens(self, text: str) -> int:
        """Token count with a per-text cache: prompt building counts the same lines again and again."""
        cached = self._counts.get(text)
        if cached is None:
            cached = self.load().count_tokens(text)
            if len(self._counts) > 50_000:
                self._counts.clear()
            self._counts[text] = cached
        return cached

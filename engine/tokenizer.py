"""Tokenizers for backends that do not hold the model themselves.

The prompt budget is counted in the model's own tokens. The llama.cpp backend has its vocabulary
loaded anyway; the OpenAI-compatible backend talks to a server, so it loads the vocabulary of the
local model file alone (`vocab_only`: no weights, a fraction of a second) to count and to pick the
prompt template. `native.Tokenizer` — the C fast path — is used when it can read the vocabulary,
llama.cpp's tokenizer otherwise.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Protocol

from .errors import ModelError

log = logging.getLogger(__name__)


class Tokenizer(Protocol):
    def encode(self, text: str, allow_special: bool = False) -> list[int]: ...

    def count(self, text: str) -> int: ...


class LlamaVocabTokenizer:
    """llama.cpp's tokenizer over a GGUF file's vocabulary, without its weights."""

    def __init__(self, path: Path) -> None:
        from llama_cpp import Llama

        try:
            self._llm: Any = Llama(model_path=str(path), vocab_only=True, verbose=False)
        except (ValueError, RuntimeError, OSError) as exc:
            raise ModelError(f"could not read the vocabulary of {path}: {exc}") from exc

    def encode(self, text: str, allow_special: bool = False) -> list[int]:
        data = text.encode("utf-8", errors="replace")
        return list(self._llm.tokenize(data, add_bos=False, special=allow_special)) if data else []

    def count(self, text: str) -> int:
        return len(self.encode(text))


def gguf_tokenizer(path: Path) -> Tokenizer:
    """The fastest exact tokenizer for a GGUF file's vocabulary."""
    try:
        import native

        return native.Tokenizer.from_gguf(path)
    except (ImportError, AttributeError, ValueError, NotImplementedError) as exc:
        log.debug("native tokenizer unavailable for %s (%s); using llama.cpp's", path, exc)
    return LlamaVocabTokenizer(path)

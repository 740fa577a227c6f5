"""Tokenizers for counting and healing: the one place that picks the native fast path or
llama.cpp's own tokenizer.

The prompt budget is counted in the model's own tokens. `native.Tokenizer` (the C fast path,
about ten times faster than asking llama.cpp) is used when it can run the vocabulary of the
GGUF file — byte-level BPE with a pre-tokenizer it knows; otherwise llama.cpp's tokenizer over
the file's vocabulary alone (`vocab_only`: no weights, a fraction of a second).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from .errors import ModelError
from .gguf import read_gguf

if TYPE_CHECKING:
    import native

log = logging.getLogger(__name__)


class Tokenizer(Protocol):
    def encode(self, text: str, allow_special: bool = False) -> list[int]: ...

    def count(self, text: str) -> int: ...


@dataclass(frozen=True)
class Vocabulary:
    """A GGUF file's `tokenizer.ggml.*` entries, as the native tokenizer takes them."""

    model: str  # "gpt2" for byte-level BPE
    tokens: list[str]
    token_types: list[int]
    merges: list[str]
    pre: str

    @classmethod
    def from_gguf(cls, path: str | Path) -> Vocabulary:
        meta = read_gguf(path, check_complete=False).metadata
        return cls(str(meta.get("tokenizer.ggml.model", "")), list(meta.get("tokenizer.ggml.tokens", [])),
                   list(meta.get("tokenizer.ggml.token_type", [])), list(meta.get("tokenizer.ggml.merges", [])),
                   str(meta.get("tokenizer.ggml.pre", "gpt2")))


def native_tokenizer(path: str | Path, *, use_c: bool = True) -> native.Tokenizer | None:
    """The native tokenizer for a GGUF file's vocabulary; None (logged) when it cannot run it."""
    try:
        import native

        vocab = Vocabulary.from_gguf(path)
        if vocab.model != "gpt2":
            raise ValueError(f"tokenizer {vocab.model!r} is not byte-level BPE")
        return native.Tokenizer(vocab.tokens, vocab.token_types, vocab.merges, vocab.pre, use_c=use_c)
    except (ImportError, ValueError, KeyError, ModelError) as exc:
        log.info("the native tokenizer cannot run %s (%s); llama.cpp's tokenizer is used", path, exc)
        return None


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
    """The fastest exact tokenizer for a GGUF file's vocabulary (the openai backend's)."""
    return native_tokenizer(path) or LlamaVocabTokenizer(path)

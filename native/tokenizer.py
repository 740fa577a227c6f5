"""`native.Tokenizer`: byte-level BPE for GPT-2-style vocabularies.

It takes the vocabulary as lists (tokens, their types, merges, the pre-tokenizer's name), as
tiktoken's core takes its ranks: where they come from is the caller's business (fimble reads them
from a GGUF file in engine/tokenizer.py).

The same ids as llama.cpp's tokenizer (`Llama(path, vocab_only=True).tokenize(..., add_bos=False,
special=...)`). The hot path — pre-tokenizer split and merges — runs in the C module `_bpe`; this
file prepares its tables, splits off special tokens, and decodes. Without the C module it uses the
Python twin (twin.py), with a warning in the log.

Special tokens: control tokens (`<|fim_prefix|>`, `<|endoftext|>` …) are matched only with
`allow_special=True`; plain text that spells one is tokenized as text. Tokens the vocabulary marks
user-defined (Qwen's `<tool_call>`) are always matched, as llama.cpp and Hugging Face do.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any

from . import twin

log = logging.getLogger(__name__)

_CCore: Any
try:
    from ._bpe import Core as _CCore

    HAVE_C = True
except ImportError as exc:  # pragma: no cover - depends on the build
    _CCore = None
    HAVE_C = False
    log.warning("native: the C tokenizer is not built (%s); using the Python twin, about 50x slower", exc)

# llama.cpp's `tokenizer.ggml.pre` names → the pre-tokenizer the core runs.
PRE_TOKENIZERS = {
    "qwen2": twin.PRE_QWEN2,
    "llama-bpe": twin.PRE_LLAMA3,
    "llama3": twin.PRE_LLAMA3,
    "gpt-2": twin.PRE_GPT2,
    "gpt2": twin.PRE_GPT2,
    "deepseek-coder": twin.PRE_DEEPSEEK_CODER,
}
TOKEN_NORMAL, TOKEN_UNKNOWN, TOKEN_CONTROL, TOKEN_USER_DEFINED = 1, 2, 3, 4


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible map of the 256 bytes to printable characters (token strings use it)."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars, extra = dict(zip(keep, keep, strict=True)), 0
    for b in range(256):
        if b not in chars:
            chars[b] = 256 + extra
            extra += 1
    return {b: chr(c) for b, c in chars.items()}


_UNICODE_TO_BYTE = {c: b for b, c in bytes_to_unicode().items()}


def token_bytes(token: str, kind: int) -> bytes:
    """A vocabulary entry's raw bytes: byte-level decoded, or as written for special tokens."""
    if kind in (TOKEN_NORMAL, TOKEN_UNKNOWN):
        try:
            return bytes(_UNICODE_TO_BYTE[c] for c in token)
        except KeyError:
            pass
    return token.encode("utf-8")


class Tokenizer:
    """Encode, decode and count tokens; see the module docstring for special tokens."""

    def __init__(self, tokens: Sequence[str], token_types: Sequence[int], merges: Sequence[str], pre: str, *,
                 use_c: bool = True) -> None:
        if pre not in PRE_TOKENIZERS:
            raise ValueError(f"pre-tokenizer {pre!r} is not supported (supported: {', '.join(sorted(PRE_TOKENIZERS))})")
        types = list(token_types) or [TOKEN_NORMAL] * len(tokens)
        self._bytes = [token_bytes(t, k) for t, k in zip(tokens, types, strict=True)]
        ids = {t: i for i, t in reversed(list(enumerate(tokens)))}
        merge_ids: list[tuple[int, int, int]] = []
        for merge in merges:
            left, _, right = merge.partition(" ")
            a, b, m = ids.get(left), ids.get(right), ids.get(left + right)
            if a is not None and b is not None and m is not None:
                merge_ids.append((a, b, m))
        byte_ids = []
        for b in range(256):
            found = ids.get(bytes_to_unicode()[b])
            if found is None:
                raise ValueError(f"the vocabulary has no token for byte {b}: not a byte-level BPE vocabulary")
            byte_ids.append(found)
        core_cls: Any = _CCore if use_c and _CCore is not None else twin.Core
        self.core = core_cls(list(self._bytes), merge_ids, byte_ids, PRE_TOKENIZERS[pre])
        self.is_native = core_cls is _CCore
        self.pre = pre
        self._types = types
        # Longest first, as llama.cpp partitions: a longer special token wins over one inside it.
        self._always = sorted(((tokens[i], i) for i, k in enumerate(types) if k == TOKEN_USER_DEFINED),
                              key=lambda x: -len(x[0]))
        self._special = sorted(((tokens[i], i) for i, k in enumerate(types) if k in (TOKEN_CONTROL,
                                                                                       TOKEN_USER_DEFINED)),
                               key=lambda x: -len(x[0]))

    @property
    def vocab_size(self) -> int:
        return len(self._bytes)

    def _fragments(self, text: str, allow_special: bool) -> list[str | int]:
        """Split off special tokens (as ids); the text between them stays text."""
        parts: list[str | int] = [text]
        for token, token_id in self._special if allow_special else self._always:
            if not any(isinstance(p, str) and token in p for p in parts):
                continue
            split: list[str | int] = []
            for part in parts:
                if isinstance(part, int) or token not in part:
                    split.append(part)
                    continue
                pieces = part.split(token)
                for k, piece in enumerate(pieces):
                    if k:
                        split.append(token_id)
                    if piece:
                        split.append(piece)
            parts = split
        return parts

    def encode(self, text: str, allow_special: bool = False) -> list[int]:
        """Token ids of `text`; lone surrogates are encoded as '?' (as the engine does everywhere)."""
        if not (self._always or allow_special):
            return self.core.encode(text.encode("utf-8", errors="replace"))
        ids: list[int] = []
        for part in self._fragments(text, allow_special):
            if isinstance(part, int):
                ids.append(part)
            else:
                ids += self.core.encode(part.encode("utf-8", errors="replace"))
        return ids

    def count(self, text: str) -> int:
        """len(encode(text)), without building the list when no special token is in the way."""
        if self._always and any(token in text for token, _ in self._always):
            return len(self.encode(text))
        return self.core.count(text.encode("utf-8", errors="replace"))

    def pieces(self, text: str) -> list[str]:
        """The pre-tokenizer's pieces of `text`: tokens never cross their boundaries. (The Python
        twin's split: meant for short texts such as the line at the cursor.)"""
        return twin.split(text, PRE_TOKENIZERS[self.pre])

    def token_bytes(self) -> list[bytes]:
        """Every id's bytes, by id."""
        return list(self._bytes)

    def is_text_token(self, token_id: int) -> bool:
        """Whether the id is ordinary text (not a control or user-defined special token)."""
        return self._types[token_id] in (TOKEN_NORMAL, TOKEN_UNKNOWN)

    def decode_bytes(self, ids: Iterable[int]) -> bytes:
        return b"".join(self._bytes[i] for i in ids)

    def decode(self, ids: Iterable[int]) -> str:
        return self.decode_bytes(ids).decode("utf-8", errors="replace")

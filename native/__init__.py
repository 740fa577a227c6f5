"""The tokenizer fast path: byte-level BPE in C (`_bpe`), with a pure-Python twin.

    tok = native.Tokenizer(tokens, token_types, merges, "qwen2")
    tok.encode("def f():"), tok.decode(ids), tok.count(text), tok.vocab_size

`native.CancelFlag` is a cancel flag that llama.cpp can read mid-batch (cancel.py, `_cancel`).

It stands alone: the vocabulary comes in as lists (engine/tokenizer.py reads them from a GGUF file).
"""

from .cancel import HAVE_C_CANCEL, CancelFlag
from .tokenizer import HAVE_C, Tokenizer

__all__ = ["HAVE_C", "HAVE_C_CANCEL", "CancelFlag", "Tokenizer"]

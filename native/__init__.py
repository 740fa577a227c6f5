"""The tokenizer fast path: byte-level BPE in C (`_bpe`), with a pure-Python twin.

    tok = native.Tokenizer.from_gguf("model.gguf")
    tok.encode("def f():"), tok.decode(ids), tok.count(text), tok.vocab_size
"""

from .tokenizer import HAVE_C, Tokenizer

__all__ = ["HAVE_C", "Tokenizer"]

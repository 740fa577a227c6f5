"""The pure-Python twin of `_bpe.c`: the same Core, function by function, for reading and for
machines where the C extension was not built. It gives the same ids (one test suite runs against
both); it is about a hundred times slower.
"""

from __future__ import annotations

import heapq
from itertools import pairwise

from .unicode_props import LETTER, NUMBER, PUNCT, SPACE, flags

PRE_QWEN2, PRE_LLAMA3, PRE_GPT2, PRE_DEEPSEEK_CODER = 0, 1, 2, 3


def _is_nl(c: str) -> bool:
    return c in "\r\n"


def _is_other(f: int) -> bool:
    return not f & (SPACE | LETTER | NUMBER)


class _Text:
    def __init__(self, text: str) -> None:
        self.cp = text
        self.fl = [flags(ord(c)) for c in text]
        self.n = len(text)

    def run(self, j: int, flag: int) -> int:
        while j < self.n and self.fl[j] & flag:
            j += 1
        return j


def _contraction(t: _Text, i: int, fold: bool) -> int:
    """'s 't 're 've 'm 'll 'd → end of the contraction, or 0."""
    if t.cp[i] != "'" or i + 1 >= t.n:
        return 0

    def lower(c: str) -> str:
        return c.lower() if fold and "A" <= c <= "Z" else c

    a = lower(t.cp[i + 1])
    if a in "stmd":
        return i + 2
    if i + 2 < t.n and a + lower(t.cp[i + 2]) in ("re", "ve", "ll"):
        return i + 3
    return 0


def _whitespace(t: _Text, i: int, newline_first: bool) -> int:
    """\\s+(?!\\S)|\\s+ (and \\s*[\\r\\n]+ before them for llama3/qwen2) from a whitespace at i."""
    j, last_nl = i, -1
    while j < t.n and t.fl[j] & SPACE:
        if _is_nl(t.cp[j]):
            last_nl = j
        j += 1
    if newline_first and last_nl >= 0:
        return last_nl + 1
    if j == t.n or j - i == 1:
        return j
    return j - 1  # leave the last space to the word after it


def _match_llama3(t: _Text, i: int, digits: int) -> int:
    if e := _contraction(t, i, True):
        return e
    f = t.fl[i]
    if not f & (LETTER | NUMBER) and not _is_nl(t.cp[i]) and i + 1 < t.n and t.fl[i + 1] & LETTER:
        return t.run(i + 2, LETTER)
    if f & LETTER:
        return t.run(i + 1, LETTER)
    if f & NUMBER:
        j = i + 1
        while j < t.n and j - i < digits and t.fl[j] & NUMBER:
            j += 1
        return j
    s = i + 1 if t.cp[i] == " " and i + 1 < t.n and _is_other(t.fl[i + 1]) else i
    if _is_other(t.fl[s]):
        j = s + 1
        while j < t.n and _is_other(t.fl[j]):
            j += 1
        while j < t.n and _is_nl(t.cp[j]):
            j += 1
        return j
    return _whitespace(t, i, True)


def _match_gpt2(t: _Text, i: int) -> int:
    if e := _contraction(t, i, False):
        return e
    s = i + 1 if t.cp[i] == " " and i + 1 < t.n else i
    if t.fl[s] & LETTER:
        return t.run(s + 1, LETTER)
    if t.fl[s] & NUMBER:
        return t.run(s + 1, NUMBER)
    if _is_other(t.fl[s]):
        j = s + 1
        while j < t.n and _is_other(t.fl[j]):
            j += 1
        return j
    return _whitespace(t, i, False)


def _in_cjk(c: str) -> bool:
    o = ord(c)
    return 0x4E00 <= o <= 0x9FA5 or 0x0800 <= o <= 0x4E00 or 0xAC00 <= o <= 0xD7FF


def _match_deepseek(t: _Text, which: int, i: int, end: int) -> int:
    if which == 0:
        return i + 1 if _is_nl(t.cp[i]) else 0
    if which in (1, 2):
        flag = LETTER if which == 1 else PUNCT
        s = i + 1 if t.fl[i] & SPACE and i + 1 < end and t.fl[i + 1] & flag else i
        if not t.fl[s] & flag:
            return 0
        j = s + 1
        while j < end and t.fl[j] & flag:
            j += 1
        return j
    if which == 3:
        j = i
        while j < end and _in_cjk(t.cp[j]):
            j += 1
        return j if j > i else 0
    return i + 1 if t.fl[i] & NUMBER else 0


def _split_deepseek(t: _Text) -> list[int]:
    cuts = [0, t.n]
    for which in range(5):
        new = [0]
        for a, b in pairwise(cuts):
            i = a
            while i < b:
                e = _match_deepseek(t, which, i, b)
                if e:
                    if i > new[-1]:
                        new.append(i)
                    new.append(e)
                    i = e
                else:
                    i += 1
            if b > new[-1]:
                new.append(b)
        cuts = new
    return cuts


def split(text: str, pre: int) -> list[str]:
    """The pre-tokenizer: `text` cut into the pieces BPE merges within (never across)."""
    t = _Text(text)
    if pre == PRE_DEEPSEEK_CODER:
        cuts = _split_deepseek(t)
        return [text[a:b] for a, b in pairwise(cuts)]
    pieces, i = [], 0
    while i < t.n:
        e = _match_gpt2(t, i) if pre == PRE_GPT2 else _match_llama3(t, i, 3 if pre == PRE_LLAMA3 else 1)
        pieces.append(text[i:e])
        i = e
    return pieces


class Core:
    """Byte-level BPE: pre-tokenizer split and merges (the C module's interface)."""

    def __init__(self, tokens: list[bytes], merges: list[tuple[int, int, int]], byte_ids: list[int],
                 pre: int) -> None:
        if pre not in (PRE_QWEN2, PRE_LLAMA3, PRE_GPT2, PRE_DEEPSEEK_CODER):
            raise ValueError(f"unknown pre-tokenizer {pre}")
        if len(byte_ids) != 256:
            raise ValueError("byte_ids must hold 256 ids")
        self.pre = pre
        self.byte_ids = byte_ids
        self.merges: dict[tuple[int, int], tuple[int, int]] = {}
        for rank, (left, right, merged) in enumerate(merges):
            self.merges.setdefault((left, right), (rank, merged))  # the first merge of a pair wins
        self.words: dict[bytes, int] = {}
        for i, token in enumerate(tokens):
            self.words.setdefault(token, i)

    def _bpe_word(self, word: bytes) -> list[int]:
        if len(word) == 1:
            return [self.byte_ids[word[0]]]
        if self.pre == PRE_LLAMA3 and word in self.words:
            return [self.words[word]]
        ids = [self.byte_ids[b] for b in word]
        nxt = [i + 1 if i + 1 < len(word) else -1 for i in range(len(word))]
        prev = [i - 1 for i in range(len(word))]
        heap: list[tuple[int, int, int, int, int]] = []  # (rank, position, left, right, merged)

        def try_pair(left: int, right: int) -> None:
            if left >= 0 and right >= 0 and (found := self.merges.get((ids[left], ids[right]))):
                heapq.heappush(heap, (found[0], left, ids[left], ids[right], found[1]))

        for i in range(len(word) - 1):
            try_pair(i, i + 1)
        while heap:
            _rank, left, left_id, right_id, merged = heapq.heappop(heap)
            right = nxt[left]
            if right < 0 or ids[left] != left_id or ids[right] != right_id or prev[left] == -2:
                continue  # stale: a neighbour was merged since
            ids[left] = merged
            nxt[left] = nxt[right]
            if nxt[right] >= 0:
                prev[nxt[right]] = left
            prev[right] = -2
            try_pair(prev[left], left)
            try_pair(left, nxt[left])
        out, i = [], 0
        while i >= 0:
            out.append(ids[i])
            i = nxt[i]
        return out

    def encode(self, data: bytes) -> list[int]:
        out: list[int] = []
        for piece in split(bytes(data).decode("utf-8", errors="replace"), self.pre):
            out += self._bpe_word(piece.encode("utf-8"))
        return out

    def count(self, data: bytes) -> int:
        return len(self.encode(data))

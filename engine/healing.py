"""Token healing: the cursor is rarely on a token boundary the model would have produced.

A user who typed `    retu` (or pressed Enter and got four spaces of auto-indent) has left the
prompt ending inside what the model would write as one token: in training `    return` is
`"   "` + `" return"`, so after a prompt ending in a four-space token the model's best guess is
`" return"` — one space too many. Healing backs the prompt off to the start of the last
pre-tokenizer piece of the cursor's line (BPE never merges across pieces, so that is a boundary
the model knows) and makes the first generated tokens reproduce the removed characters: each
must begin with what is still to be reproduced, or be a prefix of it. The reproduced characters
are then cut from what is inserted.

Typed indentation alone is handled without a mask, for every backend: the indentation moves out
of the prompt and off the answer's first line (`indentation_split`, `strip_indentation`). Any
other partial token is healed under a mask by backends that can mask their vocabulary (llama.cpp,
torch: a `TokenHealer`); the OpenAI backend cannot, and gets the prompt as typed.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Sequence

from .text import split_lines

# Longest text backed off: a piece longer than this is typed text, not a token being spelt.
MAX_HEAL_CHARS = 48


def heal_split(middle: str, pieces: Callable[[str], Sequence[str]]) -> tuple[str, str]:
    """(kept, healed): `middle` cut before the last pre-tokenizer piece of its last line.

    `middle` is the text typed between the prompt's anchor and the cursor; `pieces` is the
    model's pre-tokenizer. Only the cursor's own line is ever backed off.
    """
    line = middle[middle.rfind("\n") + 1 :]
    if not line:
        return middle, ""
    parts = pieces(line)
    healed = parts[-1] if parts else ""
    if not healed or len(healed) > MAX_HEAL_CHARS:
        return middle, ""
    return middle[: len(middle) - len(healed)], healed


def indentation_split(middle: str) -> tuple[str, str]:
    """For backends that cannot mask: (kept, indentation) when the cursor's line is only indentation."""
    line = middle[middle.rfind("\n") + 1 :]
    if line and not line.strip():
        return middle[: len(middle) - len(line)], line
    return middle, ""


def strip_indentation(text: str, indentation: str) -> str:
    """The answer of a prompt that ended before the typed `indentation`, as inserted after it.

    The model wrote the line from its start: drop what the user already typed. Blank lines it
    began with go (the user's line is where the code goes), and a first line indented
    differently keeps its text but not its own indentation: the user's stands.
    """
    if text.startswith(indentation):
        return text[len(indentation) :]
    lines = split_lines(text)
    while len(lines) > 1 and not lines[0].strip():
        lines.pop(0)
    first = lines[0]
    lines[0] = first[len(indentation) :] if first.startswith(indentation) else first.lstrip(" \t")
    return "\n".join(lines)


class TokenHealer:
    """The vocabulary in byte order, to find the tokens that agree with a byte string fast.

    Built once per model (sorting ~150k tokens: about 0.1 s); `allowed` is then a binary search
    plus a lookup per prefix length, so a constrained step costs well under a millisecond.
    """

    def __init__(self, token_bytes: Sequence[bytes], usable: Callable[[int], bool],
                 pieces: Callable[[str], Sequence[str]]) -> None:
        pairs = sorted((data, i) for i, data in enumerate(token_bytes) if data and usable(i))
        self._keys = [data for data, _ in pairs]
        self._ids = [i for _, i in pairs]
        self._exact: dict[bytes, list[int]] = {}
        for data, i in pairs:
            self._exact.setdefault(data, []).append(i)
        self._bytes = token_bytes
        self._allowed: dict[bytes, list[int]] = {}
        self.pieces = pieces

    def split(self, middle: str) -> tuple[str, str]:
        return heal_split(middle, self.pieces)

    def allowed(self, rest: bytes) -> list[int]:
        """Ids of the tokens that begin with `rest` or that `rest` begins with (cached by `rest`:
        the same indentation comes back on every line)."""
        found = self._allowed.get(rest)
        if found is None:
            lo = bisect.bisect_left(self._keys, rest)
            hi = bisect.bisect_left(self._keys, _successor(rest)) if _successor(rest) else len(self._keys)
            found = self._ids[lo:hi]
            for end in range(1, len(rest)):
                found += self._exact.get(rest[:end], [])
            if len(self._allowed) >= 256:
                self._allowed.clear()
            self._allowed[rest] = found
        return found

    def token(self, token_id: int) -> bytes:
        return self._bytes[token_id]

    @property
    def table(self) -> Sequence[bytes]:
        """The vocabulary as bytes, by id."""
        return self._bytes


def _successor(prefix: bytes) -> bytes:
    """The least byte string above every string that begins with `prefix` (b"" when none is)."""
    stripped = prefix.rstrip(b"\xff")
    return stripped[:-1] + bytes([stripped[-1] + 1]) if stripped else b""


class HealingState:
    """One generation's progress through the healed bytes.

    `rest` is what the next tokens must still reproduce; `take(token)` consumes a token and
    returns the part of it past the healed text (what is inserted).
    """

    def __init__(self, healer: TokenHealer | None, healed: str) -> None:
        self.healer = healer
        self.rest = healed.encode("utf-8") if healer is not None else b""
        self.healed_tokens = 0

    @property
    def active(self) -> bool:
        return bool(self.rest)

    def allowed(self) -> list[int]:
        assert self.healer is not None
        return self.healer.allowed(self.rest)

    def take(self, data: bytes) -> bytes:
        if not self.rest:
            return data
        self.healed_tokens += 1
        if data.startswith(self.rest):
            data, self.rest = data[len(self.rest) :], b""
            return data
        if self.rest.startswith(data):
            self.rest = self.rest[len(data) :]
            return b""
        # Only reachable when the backend ignored the mask: give up healing, keep the text.
        self.rest = b""
        return data

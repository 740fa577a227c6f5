"""The Unicode properties the pre-tokenizers look at, shared by the C table generator and the
Python twin, so both classify every code point the same way.

Letters are \\p{L} (Lu Ll Lt Lm Lo), numbers \\p{N} (Nd Nl No), punctuation \\p{P} (Pc Pd Ps Pe Pi
Pf Po), whitespace the White_Space property — what llama.cpp's tables hold (Python's
`str.isspace` also counts U+001C..U+001F, which White_Space does not). Categories come from the
`unicodedata` of the Python that builds the extension.
"""

from __future__ import annotations

import unicodedata

LETTER, NUMBER, PUNCT, SPACE = 1, 2, 4, 8

WHITE_SPACE = frozenset(
    [*range(0x09, 0x0E), 0x20, 0x85, 0xA0, 0x1680, *range(0x2000, 0x200B), 0x2028, 0x2029, 0x202F, 0x205F, 0x3000]
)


def flags(cp: int) -> int:
    """The LETTER/NUMBER/PUNCT/SPACE bits of code point `cp`."""
    category = unicodedata.category(chr(cp))
    bits = {"L": LETTER, "N": NUMBER, "P": PUNCT}.get(category[0], 0)
    return bits | (SPACE if cp in WHITE_SPACE else 0)

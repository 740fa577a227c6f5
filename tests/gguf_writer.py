"""Write small GGUF files for tests: a header, metadata and (optionally) tensor infos and data."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any


def _string(value: str) -> bytes:
    raw = value.encode("utf-8")
    return struct.pack("<Q", len(raw)) + raw


class I32(int):
    """An int written as GGUF int32 (plain ints are uint32): token types are int32 in llama.cpp."""


def _value(value: Any) -> tuple[int, bytes]:
    if isinstance(value, I32):
        return 5, struct.pack("<i", value)
    if isinstance(value, bool):
        return 7, struct.pack("<?", value)
    if isinstance(value, int):
        return 4, struct.pack("<I", value)
    if isinstance(value, float):
        return 6, struct.pack("<f", value)
    if isinstance(value, str):
        return 8, _string(value)
    if isinstance(value, list):
        item_type = _value(value[0])[0] if value else 8
        body = b"".join(_value(v)[1] for v in value)
        return 9, struct.pack("<IQ", item_type, len(value)) + body
    raise TypeError(value)


def write_gguf(path: Path, metadata: dict[str, Any], tensors: list[tuple[str, tuple[int, ...], int]] = (),
               data_bytes: int | None = None) -> Path:
    """tensors: (name, shape, ggml_type) laid out back to back; data_bytes overrides the data size."""
    out = bytearray(b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(metadata)))
    for key, value in metadata.items():
        kind, body = _value(value)
        out += _string(key) + struct.pack("<I", kind) + body
    offset = 0
    for name, shape, ggml_type in tensors:
        out += _string(name) + struct.pack("<I", len(shape)) + b"".join(struct.pack("<Q", d) for d in shape)
        out += struct.pack("<IQ", ggml_type, offset)
        elements = 1
        for d in shape:
            elements *= d
        offset += elements * 4 if ggml_type == 0 else elements * 2
        offset = (offset + 31) // 32 * 32
    out += b"\0" * ((-len(out)) % 32)
    out += b"\0" * (offset if data_bytes is None else data_bytes)
    path.write_bytes(bytes(out))
    return path

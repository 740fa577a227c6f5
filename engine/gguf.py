"""A small, dependency-free reader for GGUF headers: metadata and tensor table.

We read GGUF ourselves instead of asking llama.cpp because we need the answers before (or
without) loading a model: is this file a GGUF at all, is it complete, which fill-in-the-middle
tokens does its vocabulary have, and (for native/) its tokenizer tables. The layout follows
ggml's `docs/gguf.md`: a header, key/value metadata, tensor infos, then aligned tensor data.
"""

from __future__ import annotations

import mmap
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ModelError

GGUF_MAGIC = b"GGUF"
DEFAULT_ALIGNMENT = 32

# GGUF value types → struct format for the scalar ones.
_SCALAR_FORMATS: dict[int, str] = {
    0: "<B",  # uint8
    1: "<b",  # int8
    2: "<H",  # uint16
    3: "<h",  # int16
    4: "<I",  # uint32
    5: "<i",  # int32
    6: "<f",  # float32
    7: "<?",  # bool
    10: "<Q",  # uint64
    11: "<q",  # int64
    12: "<d",  # float64
}
_STRING, _ARRAY = 8, 9

@dataclass(frozen=True)
class TensorInfo:
    name: str
    shape: tuple[int, ...]
    ggml_type: int
    offset: int  # relative to the start of the data section

    def nbytes(self) -> int | None:
        """The tensor's size in the file, from the `gguf` package's (elements, bytes) per block;
        None for a type it does not know (the completeness check then skips it, rather than
        refusing the file)."""
        from gguf.constants import GGML_QUANT_SIZES  # numpy and all: only when a file is checked

        block = GGML_QUANT_SIZES.get(self.ggml_type)  # type: ignore[call-overload]
        if block is None:
            return None
        elements = 1
        for dim in self.shape:
            elements *= dim
        per_block, block_bytes = block
        return (elements + per_block - 1) // per_block * block_bytes


@dataclass
class GGUFFile:
    path: Path
    version: int
    metadata: dict[str, Any]
    tensors: list[TensorInfo] = field(default_factory=list)
    data_offset: int = 0
    file_size: int = 0

    @property
    def architecture(self) -> str:
        return str(self.metadata.get("general.architecture", "unknown"))

    @property
    def tokens(self) -> list[str]:
        tokens = self.metadata.get("tokenizer.ggml.tokens", [])
        return list(tokens)

    def required_size(self) -> int | None:
        """Bytes the file must have to hold every tensor, or None when a type is unknown."""
        end = self.data_offset
        for tensor in self.tensors:
            size = tensor.nbytes()
            if size is None:
                return None
            end = max(end, self.data_offset + tensor.offset + size)
        return end


class _Cursor:
    def __init__(self, buf: mmap.mmap | bytes, path: Path) -> None:
        self.buf = buf
        self.pos = 0
        self.path = path

    def take(self, fmt: str) -> Any:
        try:
            (value,) = struct.unpack_from(fmt, self.buf, self.pos)
        except struct.error:
            raise ModelError(
                f"{self.path}: the GGUF header ends early at byte {self.pos}: the file is truncated"
            ) from None
        self.pos += struct.calcsize(fmt)
        return value

    def string(self) -> str:
        length = self.take("<Q")
        end = self.pos + length
        if end > len(self.buf):
            raise ModelError(f"{self.path}: a GGUF string runs past the end of the file: truncated")
        raw = self.buf[self.pos : end]
        self.pos = end
        return bytes(raw).decode("utf-8", errors="replace")

    def value(self, value_type: int) -> Any:
        if value_type in _SCALAR_FORMATS:
            return self.take(_SCALAR_FORMATS[value_type])
        if value_type == _STRING:
            return self.string()
        if value_type == _ARRAY:
            item_type = self.take("<I")
            count = self.take("<Q")
            if item_type in _SCALAR_FORMATS:
                fmt = _SCALAR_FORMATS[item_type]
                size = struct.calcsize(fmt)
                end = self.pos + size * count
                if end > len(self.buf):
                    raise ModelError(f"{self.path}: a GGUF array runs past the end: truncated")
                values = list(struct.unpack_from(f"<{count}{fmt[1]}", self.buf, self.pos))
                self.pos = end
                return values
            return [self.value(item_type) for _ in range(count)]
        raise ModelError(f"{self.path}: unknown GGUF value type {value_type}: not a GGUF file we can read")


def read_gguf(path: str | Path, *, check_complete: bool = True) -> GGUFFile:
    """Read a GGUF file's header. Raises ModelError naming the path and what is wrong."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"model file not found: {path}")
    file_size = path.stat().st_size
    if file_size < 24:
        raise ModelError(f"{path}: {file_size} bytes is too small to be a GGUF model")
    with path.open("rb") as handle:
        if handle.read(4) != GGUF_MAGIC:
            raise ModelError(f"{path}: not a GGUF file (it does not start with the bytes 'GGUF')")
        with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            gguf = _parse(buf, path, file_size)
    if check_complete:
        required = gguf.required_size()
        if required is not None and file_size < required:
            raise ModelError(
                f"{path}: truncated: its tensors need {required:,} bytes but the file has "
                f"{file_size:,}; assemble or download it again"
            )
    return gguf


def _parse(buf: mmap.mmap, path: Path, file_size: int) -> GGUFFile:
    cursor = _Cursor(buf, path)
    cursor.pos = 4
    version = cursor.take("<I")
    if version not in (2, 3):
        raise ModelError(f"{path}: GGUF version {version} is not supported (2 and 3 are)")
    tensor_count = cursor.take("<Q")
    kv_count = cursor.take("<Q")
    if tensor_count > 1_000_000 or kv_count > 1_000_000:
        raise ModelError(f"{path}: the GGUF header claims {tensor_count} tensors: damaged file")
    metadata: dict[str, Any] = {}
    for _ in range(kv_count):
        key = cursor.string()
        metadata[key] = cursor.value(cursor.take("<I"))
    tensors = []
    for _ in range(tensor_count):
        name = cursor.string()
        n_dims = cursor.take("<I")
        shape = tuple(cursor.take("<Q") for _ in range(n_dims))
        tensors.append(TensorInfo(name, shape, cursor.take("<I"), cursor.take("<Q")))
    alignment = int(metadata.get("general.alignment", DEFAULT_ALIGNMENT)) or DEFAULT_ALIGNMENT
    data_offset = (cursor.pos + alignment - 1) // alignment * alignment
    return GGUFFile(path, version, metadata, tensors, data_offset, file_size)

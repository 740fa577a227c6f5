"""Every reach past llama-cpp-python's public API, in one place.

A `Llama` keeps its tokens (`input_ids`, `n_tokens`), its context, batch and model objects
(`_ctx`, `_batch`, `_model`) to itself; the backend needs them to move and drop KV cells, save
and restore a sequence's state, verify a draft's batch with logits for every position, and set
threads per request, and a model's load parameters (`model_params`: `Llama` reads a module
default it takes no argument for). These functions are the only code that touches them — the backend
(engine/backends/llama_cpp.py) and the benchmarks call these — and tests/test_llama_internals.py
fails when a llama-cpp-python release moves or reshapes one.
"""

from __future__ import annotations

import ctypes
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

# llama_decode's return when its abort callback stopped it (llama.h).
DECODE_ABORTED = 2


def memory(llm: Any) -> Any:
    """The context's KV memory handle (llama_memory_* calls)."""
    import llama_cpp

    return llama_cpp.llama_get_memory(llm._ctx.ctx)


def live_tokens(llm: Any) -> list[int]:
    """The tokens whose cells the live sequence holds, in order."""
    return [int(t) for t in llm.input_ids[: llm.n_tokens]]


def set_live(llm: Any, tokens: list[int] | tuple[int, ...]) -> None:
    """Say that the live sequence's cells hold `tokens` (after cells were moved, kept or restored)."""
    llm.input_ids[: len(tokens)] = tokens
    llm.n_tokens = len(tokens)


def forget_from(llm: Any, n: int) -> None:
    """Drop the live sequence's cells from position `n` on (0: all of them)."""
    import llama_cpp

    llama_cpp.llama_memory_seq_rm(memory(llm), 0, n, -1)
    llm.n_tokens = min(int(llm.n_tokens), n)


def clear(llm: Any) -> None:
    """Empty the KV memory, cells and their placement (where cells sit changes the order llama.cpp
    sums attention in: a benchmark that compares outputs starts from here)."""
    import llama_cpp

    llama_cpp.llama_memory_clear(memory(llm), True)
    llm.n_tokens = 0


def evaluate_rows(llm: Any, batch: list[int]) -> None:
    """Evaluate `batch` after the live sequence with logits for every position (`Llama.eval` keeps
    only the last): a draft's verification reads one row per drafted token."""
    start = llm.n_tokens
    llm._batch.set_batch(batch, n_past=start, logits_all=True)
    llm._ctx.decode(llm._batch)
    llm.input_ids[start : start + len(batch)] = batch
    llm.n_tokens = start + len(batch)


def logits_row(llm: Any, i: int = -1) -> Any:
    """Row `i` of the last evaluation's logits ([vocab] float32, a view: copy it to keep it)."""
    import numpy as np

    return np.ctypeslib.as_array(llm._ctx.get_logits_ith(i), shape=(llm.n_vocab(),))


def is_eog(llm: Any, token: int) -> bool:
    """The token ends generation (end of text, end of turn, a FIM end)."""
    import llama_cpp

    return bool(llama_cpp.llama_vocab_is_eog(llm._model.vocab, token))


def set_threads(llm: Any, threads: int) -> None:
    import llama_cpp

    llama_cpp.llama_set_n_threads(llm._ctx.ctx, threads, threads)


def save_sequence(llm: Any, most_bytes: int | None = None) -> bytearray | None:
    """The live sequence's KV state as bytes (None: larger than `most_bytes`, or not written)."""
    import llama_cpp

    ctx = llm._ctx.ctx
    size = llama_cpp.llama_state_seq_get_size(ctx, 0)
    if most_bytes is not None and size > most_bytes:
        return None
    data = bytearray(size)
    written = llama_cpp.llama_state_seq_get_data(ctx, (ctypes.c_uint8 * size).from_buffer(data), size, 0)
    return data if written == size else None


def load_sequence(llm: Any, data: bytearray, tokens: list[int] | tuple[int, ...], *, logits_stale: bool = True,
                  ) -> bool:
    """Make the live sequence the saved `data` (holding `tokens`); False, and an empty sequence,
    when llama.cpp refuses it (a state from another model or context size). `logits_stale`: the
    last logits are not the sequence's (a restore; not a repack of the live sequence itself)."""
    import llama_cpp

    read = llama_cpp.llama_state_seq_set_data(llm._ctx.ctx, (ctypes.c_uint8 * len(data)).from_buffer(data),
                                              len(data), 0)
    if read == 0:
        forget_from(llm, 0)
        return False
    set_live(llm, tokens)
    if logits_stale:
        llm._requires_eval = True  # the next `generate` evaluates the last token again for its logits
    return True


_abort_reader: Any = None  # native/_cancel.c's reader as llama.cpp's callback type (`_abort_callback`)


def _abort_callback() -> Any:
    """The C reader of a CancelFlag's byte as a `ggml_abort_callback`, made once; None without
    the C build."""
    global _abort_reader
    if _abort_reader is None:
        import llama_cpp

        from native.cancel import callback_address

        address = callback_address()
        _abort_reader = False if address is None else ctypes.cast(address, llama_cpp.ggml_abort_callback)
    return _abort_reader or None


def can_abort(flag: object) -> bool:
    """Whether llama.cpp can stop a batch when `flag` is set: a native.CancelFlag, and the C
    callback that reads it built."""
    from native.cancel import CancelFlag

    return isinstance(flag, CancelFlag) and _abort_callback() is not None


# The flag abort_on has given llama.cpp, while it may stop a batch (the log filter reads it).
_stopping_on: Any = None
# What llama.cpp logs when it drops a stopped batch's cells: expected, not the user's concern.
_DROPPED_BATCH = b"decode: removing memory module entries"
_log_filter: Any = None


def quiet_stopped_batches() -> None:
    """Route llama.cpp's log through llama-cpp-python's as before, except the line it writes each
    time a batch is stopped by `abort_on` (one per superseded request: noise in the editor's log)."""
    global _log_filter
    import llama_cpp
    from llama_cpp import _logger

    if _log_filter is not None:
        return

    @llama_cpp.llama_log_callback
    def log(level: int, text: bytes, user_data: Any) -> None:
        if _stopping_on is not None and _stopping_on.seen_set and text.startswith(_DROPPED_BATCH):
            return
        _logger.llama_log_callback(level, text, user_data)

    _log_filter = log  # (kept: llama.cpp holds only the pointer)
    llama_cpp.llama_log_set(log, ctypes.c_void_p(0))


@contextmanager
def abort_on(llm: Any, flag: Any) -> Iterator[None]:
    """Inside, llama.cpp stops a batch as soon as `flag` (a native.CancelFlag, `can_abort`) is
    set: llama_decode drops the cells of the batch it had not finished and `Llama.eval` raises
    (`aborted`). After, calls run to their end again."""
    import llama_cpp

    global _stopping_on
    callback = _abort_callback()
    assert callback is not None, "abort_on needs the C reader: ask can_abort first"
    llama_cpp.llama_set_abort_callback(llm._ctx.ctx, callback, ctypes.c_void_p(flag.address))
    _stopping_on = flag
    try:
        yield
    finally:
        _stopping_on = None
        llama_cpp.llama_set_abort_callback(llm._ctx.ctx, callback, None)  # (reads nothing: never stops)


def aborted(error: BaseException) -> bool:
    """`Llama.eval` raised because the abort callback stopped llama_decode."""
    return isinstance(error, RuntimeError) and str(error) == f"llama_decode returned {DECODE_ABORTED}"


def held_positions(llm: Any) -> int:
    """How many positions the live sequence's cells hold (after an abort: the micro-batches that
    finished; `Llama.eval` counted none of the call's tokens)."""
    import llama_cpp

    return int(llama_cpp.llama_memory_seq_pos_max(memory(llm), 0)) + 1


def amx_compiled_in() -> bool:
    """Whether this llama.cpp would put the weights in its AMX buffers: built with AMX (pip builds
    it with -march=native) on a CPU that has it. Its AMX matrix kernels die of an illegal
    instruction at the first prompt (`tilezero`: the tile configuration is lost, ggml-org/llama.cpp
    PR 26954; seen on this project's Xeon machines with llama-cpp-python 0.3.36), so they are left
    out with llama.cpp's other extra weight buffers, and the plain CPU kernels run."""
    import llama_cpp

    return b"AMX_INT8 = 1" in llama_cpp.llama_print_system_info()


_PARAMS_LOCK = threading.Lock()


@contextmanager
def model_params(use_extra_bufts: bool) -> Iterator[None]:
    """`Llama` takes no `use_extra_bufts`: the defaults it reads get it while the model loads."""
    import llama_cpp.llama_cpp as lib

    default = lib.llama_model_default_params

    def params() -> Any:
        chosen = default()
        chosen.use_extra_bufts = use_extra_bufts
        return chosen

    with _PARAMS_LOCK:
        lib.llama_model_default_params = params
        try:
            yield
        finally:
            lib.llama_model_default_params = default


__all__ = [
    "DECODE_ABORTED",
    "abort_on",
    "aborted",
    "amx_compiled_in",
    "can_abort",
    "clear",
    "evaluate_rows",
    "forget_from",
    "held_positions",
    "is_eog",
    "live_tokens",
    "load_sequence",
    "logits_row",
    "memory",
    "model_params",
    "quiet_stopped_batches",
    "save_sequence",
    "set_live",
    "set_threads",
]

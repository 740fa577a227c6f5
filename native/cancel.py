"""`native.CancelFlag`: a cancel flag that C code reads while it runs, without the GIL.

    flag = CancelFlag()            # a threading.Event
    CancelFlag(idle=True)          # the flag of work no one waits for (a warm-up)
    callback_address()             # the C function `bool (*)(void *flag)`, or None without the C build
    flag.address                   # what to pass it as `flag`

A model call in llama.cpp holds the worker thread for a whole batch of prompt tokens; with this
flag as its abort callback's data, a cancel set from another thread stops the batch at once
instead of at its end (engine/backends/llama_reach.py `abort_on`). Without the C module nothing
reads the byte, and callers cut their work into smaller batches instead.
"""

from __future__ import annotations

import ctypes
import threading

try:
    from ._cancel import callback_address as _callback_address

    HAVE_C_CANCEL = True
except ImportError:  # pragma: no cover - depends on the build
    HAVE_C_CANCEL = False


class CancelFlag(threading.Event):
    """A threading.Event whose state is also one byte at a fixed address (`address`).

    `idle`: the flag of work no one waits for (a warm-up between keystrokes). A request arriving
    stops every model call of such work at once; a request's own first call runs to its end
    (engine/backends/llama_cpp.py)."""

    def __init__(self, *, idle: bool = False) -> None:
        super().__init__()
        self._byte = ctypes.c_ubyte(0)
        self.idle = idle

    @property
    def address(self) -> int:
        return ctypes.addressof(self._byte)

    @property
    def seen_set(self) -> bool:
        """What the C reader sees (the byte)."""
        return bool(self._byte.value)

    def set(self) -> None:
        self._byte.value = 1  # before the Event: a thread woken by it sees the byte set too
        super().set()

    def clear(self) -> None:
        super().clear()
        self._byte.value = 0


def callback_address() -> int | None:
    """The address of the C function that says whether a flag's byte is set; None without the C build."""
    return _callback_address() if HAVE_C_CANCEL else None


__all__ = ["HAVE_C_CANCEL", "CancelFlag", "callback_address"]

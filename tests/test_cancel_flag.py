"""native.CancelFlag: a threading.Event whose state C code reads without the GIL (the abort
callback llama.cpp calls between the nodes of a batch; engine/backends/llama_reach.py). The
model end of it is in test_llama_internals.py and test_llama_e2e.py."""

from __future__ import annotations

import ctypes
import threading

import pytest

from native.cancel import HAVE_C_CANCEL, CancelFlag, callback_address


def _reader():
    if not HAVE_C_CANCEL:
        pytest.skip("native/_cancel.c is not built")
    return ctypes.cast(callback_address(), ctypes.CFUNCTYPE(ctypes.c_bool, ctypes.c_void_p))


def test_the_c_reader_sees_what_the_flag_says():
    read = _reader()
    flag = CancelFlag()
    assert read(flag.address) is False and not flag.is_set()
    flag.set()
    assert read(flag.address) is True and flag.is_set()
    flag.clear()
    assert read(flag.address) is False and not flag.is_set()
    assert read(None) is False  # no flag given: never stops


def test_a_flag_set_from_another_thread_is_seen_and_each_flag_has_its_own_byte():
    read = _reader()
    one, other = CancelFlag(), CancelFlag()
    assert one.address != other.address
    setter = threading.Thread(target=one.set)
    setter.start()
    setter.join()
    assert one.wait(1) and read(one.address) is True
    assert read(other.address) is False  # (the wait of an Event still works: it is one)

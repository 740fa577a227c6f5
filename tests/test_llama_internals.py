"""engine/backends/llama_cpp.py reaches past llama-cpp-python's public API in a few places (the
context, the batch and the model objects of a `Llama`, and a swapped default in its ctypes
module). These tests fail when a llama-cpp-python release moves or reshapes what it relies on —
as tests/test_pygls_overrides.py does for pygls; the behaviour itself is tested end to end in
test_llama_e2e.py and test_kv_reuse_model.py. All those reaches live in engine/backends/llama_reach.py:
the backend and the benchmarks call it, and nothing else may reach in."""

from __future__ import annotations

import ctypes
import inspect
import re
import threading
from pathlib import Path

import pytest

pytestmark = pytest.mark.model

# ctypes functions called directly, with the number of arguments fimble passes.
LIBRARY_FUNCTIONS = {
    "llama_get_memory": 1, "llama_memory_seq_rm": 4, "llama_memory_seq_add": 5, "llama_set_n_threads": 3,
    "llama_state_seq_get_size": 2, "llama_state_seq_get_data": 4, "llama_state_seq_set_data": 4,
    "llama_vocab_is_eog": 2, "llama_print_system_info": 0, "llama_model_default_params": 0, "llama_memory_clear": 2,
    "llama_set_abort_callback": 3, "llama_memory_seq_pos_max": 2, "llama_log_set": 2,
}


def test_the_ctypes_functions_fimble_calls_are_there_with_their_arity():
    import llama_cpp
    import llama_cpp.llama_cpp as lib

    for name, arity in LIBRARY_FUNCTIONS.items():
        function = getattr(llama_cpp, name, None) or getattr(lib, name, None)
        assert callable(function), f"llama-cpp-python no longer has {name}"
        argtypes = getattr(function, "argtypes", None)
        if argtypes is not None:
            assert len(argtypes) == arity, (name, argtypes)
    # the abort callback's type (native/_cancel.c's function is cast to it) and what eval raises on a stop
    callback = lib.ggml_abort_callback
    assert callback._argtypes_ == (ctypes.c_void_p,) and callback._restype_ is ctypes.c_bool
    assert "llama_decode returned {return_code}" in inspect.getsource(llama_cpp._internals.LlamaContext.decode)
    # llama_reach.quiet_stopped_batches hands every other log line to llama-cpp-python's own callback
    from llama_cpp import _logger

    assert isinstance(_logger.llama_log_callback, llama_cpp.llama_log_callback)
    # llama_reach.model_params swaps this default while a model loads: it must still be read from the module
    assert "llama_model_default_params" in inspect.getsource(llama_cpp.Llama.__init__)
    assert hasattr(lib.llama_model_default_params(), "use_extra_bufts")


def test_the_private_members_of_a_loaded_llama_have_the_shape_fimble_uses(real_service):
    llm = real_service.load().llm
    assert llm is not None
    ctx, batch, model = llm._ctx, llm._batch, llm._model
    assert ctx.ctx is not None and model.vocab is not None
    for name, parameters in (("decode", ["batch"]), ("get_logits_ith", ["i"])):
        assert list(inspect.signature(getattr(ctx, name)).parameters) == parameters, name
    assert list(inspect.signature(batch.set_batch).parameters) == ["batch", "n_past", "logits_all"]
    assert isinstance(llm._requires_eval, bool)  # set after a state is restored: the next eval is not skipped
    assert llm.n_vocab() > 0 and llm.n_ctx() > 0


ROOT = Path(__file__).resolve().parent.parent
PRIVATE = re.compile(r"\._ctx\b|\._batch\b|\._model\.|\.input_ids\b|_requires_eval")


@pytest.mark.parametrize("folder", ["engine", "lsp_server", "eval", "benchmarks"])
def test_only_llama_reach_touches_llama_cpp_pythons_private_members(folder):
    reaching = [f"{path.relative_to(ROOT)}:{number}" for path in sorted((ROOT / folder).rglob("*.py"))
                if path.name != "llama_reach.py"
                for number, line in enumerate(path.read_text().splitlines(), 1) if PRIVATE.search(line)]
    assert reaching == []


def test_what_llama_reach_does_to_a_loaded_llama(real_service):
    """Cells, rows of logits and saved sequences, as the backend and the benchmarks use them."""
    import numpy as np

    from engine.backends import llama_reach as reach

    llm = real_service.load().llm
    tokens = llm.tokenize(b"def add(a, b):\n    return a + b\n\n\ndef mul(a, b):\n    return a", add_bos=False)
    reach.forget_from(llm, 0)
    assert reach.live_tokens(llm) == []
    llm.eval(tokens[:-3])
    reach.evaluate_rows(llm, tokens[-3:])  # a row of logits for each of the three
    assert reach.live_tokens(llm) == tokens
    rows = [reach.logits_row(llm, i).copy() for i in range(3)]
    assert rows[0].shape == (llm.n_vocab(),) and not np.array_equal(rows[0], rows[2])
    saved = reach.save_sequence(llm)
    assert saved is not None and reach.save_sequence(llm, most_bytes=1) is None
    reach.forget_from(llm, len(tokens) - 3)  # drop the three: evaluated again one at a time, the same rows
    assert reach.live_tokens(llm) == tokens[:-3]
    for i, token in enumerate(tokens[-3:]):
        llm.eval([token])
        assert int(np.argmax(reach.logits_row(llm))) == int(np.argmax(rows[i]))
    reach.forget_from(llm, 0)
    assert reach.load_sequence(llm, saved, tokens) and reach.live_tokens(llm) == tokens
    assert reach.is_eog(llm, llm.token_eos()) and not reach.is_eog(llm, tokens[0])
    reach.clear(llm)
    assert reach.live_tokens(llm) == []


def test_a_set_flag_stops_llama_decode_within_its_batch_and_the_cells_stay_as_they_were(real_service):
    """`abort_on`: llama.cpp reads the flag between the nodes of a batch; the stopped batch
    leaves no cells, `Llama.eval` raises what `aborted` knows, and afterwards calls run again."""
    import numpy as np

    from engine.backends import llama_reach as reach
    from native.cancel import CancelFlag

    llm = real_service.load().llm
    tokens = llm.tokenize(b"def add(a, b):\n    return a + b\n\n\ndef mul(a, b):\n    return a * b\n", add_bos=False)
    reach.clear(llm)
    llm.eval(tokens[:8])
    flag = CancelFlag()
    assert reach.can_abort(flag) and not reach.can_abort(threading.Event())
    flag.set()
    with pytest.raises(RuntimeError) as stopped, reach.abort_on(llm, flag):
        llm.eval(tokens[8:])
    assert reach.aborted(stopped.value)
    assert reach.held_positions(llm) == 8 and reach.live_tokens(llm) == tokens[:8]
    llm.eval(tokens[8:])  # the callback is off again: the same batch runs through
    after = reach.logits_row(llm).copy()
    reach.clear(llm)
    llm.eval(tokens)
    assert int(np.argmax(after)) == int(np.argmax(reach.logits_row(llm)))
    reach.clear(llm)

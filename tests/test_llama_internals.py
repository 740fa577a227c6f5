"""engine/backends/llama_cpp.py reaches past llama-cpp-python's public API in a few places (the
context, the batch and the model objects of a `Llama`, and a swapped default in its ctypes
module). These tests fail when a llama-cpp-python release moves or reshapes what it relies on —
as tests/test_pygls_overrides.py does for pygls; the behaviour itself is tested end to end in
test_llama_e2e.py and test_kv_reuse_model.py."""

from __future__ import annotations

import inspect

import pytest

pytestmark = pytest.mark.model

# ctypes functions called directly, with the number of arguments fimble passes.
LIBRARY_FUNCTIONS = {
    "llama_get_memory": 1, "llama_memory_seq_rm": 4, "llama_memory_seq_add": 5, "llama_set_n_threads": 3,
    "llama_state_seq_get_size": 2, "llama_state_seq_get_data": 4, "llama_state_seq_set_data": 4,
    "llama_vocab_is_eog": 2, "llama_print_system_info": 0, "llama_model_default_params": 0,
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
    # _model_params swaps this default while a model loads: it must still be read from the module
    assert "llama_model_default_params" in inspect.getsource(llama_cpp.Llama.__init__)
    assert hasattr(lib.llama_model_default_params(), "use_extra_bufts")


def test_the_private_members_of_a_loaded_llama_have_the_shape_fimble_uses(real_service):
    llm = real_service.load().llm
    assert llm is not None
    ctx, batch, model = llm._ctx, llm._batch, llm._model
    assert ctx.ctx is not None and model.vocab is not None
    for name, parameters in (("decode", ["batch"]), ("get_logits_ith", ["i"]),
                             ("kv_cache_seq_rm", ["seq_id", "p0", "p1"])):
        assert list(inspect.signature(getattr(ctx, name)).parameters) == parameters, name
    assert list(inspect.signature(batch.set_batch).parameters) == ["batch", "n_past", "logits_all"]
    assert isinstance(llm._requires_eval, bool)  # set after a state is restored: the next eval is not skipped
    assert llm.n_vocab() > 0 and llm.n_ctx() > 0

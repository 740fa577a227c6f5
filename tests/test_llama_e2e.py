"""The llama.cpp backend with the real default model, end to end."""

from __future__ import annotations

import ast
import threading
import time
from dataclasses import replace

import pytest
from test_cpu_load import busy_processes

from engine.backends import GenerationRequest
from engine.backends.cpu_load import usable_cores
from engine.backends.llama_cpp import ABORTABLE_CHUNK, FIRST_CALL_S, PREFILL_CHUNK
from engine.cache import LRUCache
from engine.config import Settings
from engine.errors import BackendError, ModelError
from engine.models import resolve_model
from engine.service import CompletionRequest, CompletionService
from native.cancel import CancelFlag

pytestmark = pytest.mark.model

FUNCTION = '''def mean(values: list[float]) -> float:
    """Return the arithmetic mean of values."""
    total = sum(values)
    return 

print(mean([1.0, 2.0, 3.0]))
'''


def test_fim_completion_inside_a_function_parses_in_place(real_service):
    result = real_service.complete(CompletionRequest(FUNCTION, 3, 11, language="python"))
    assert result.text.strip(), result
    lines = FUNCTION.split("\n")
    lines[3] = lines[3][:11] + result.text + lines[3][11:]
    ast.parse("\n".join(lines))  # the completed document is valid Python
    assert "total" in result.text or "len(values)" in result.text


def _long_request(service, **kw):
    prompt = service.info.fim.build("# a long story about numbers\ndef count():\n    n = 0\n", "")
    return GenerationRequest.from_settings(prompt, service.settings, max_tokens=400, **kw)


def test_cancel_is_seen_between_tokens(real_service):
    backend = real_service.load()
    cancel = threading.Event()
    flagged_at: list[float] = []
    tokens_seen = []

    def on_text(piece):
        tokens_seen.append(piece)
        if len(tokens_seen) == 5:
            flagged_at.append(time.perf_counter())
            threading.Timer(0.0, cancel.set).start()

    result = backend.generate(_long_request(real_service, cancel=cancel, time_budget_s=None), on_text)
    assert result.stats.stop_reason == "cancelled"
    assert flagged_at and result.stats.generated_tokens < 50  # seen between tokens, long before the 400


class _SeenFirstByLlamaCpp(CancelFlag):
    """Set from the start, but the backend's own checks (`is_set`, before each batch and token)
    are told it is not: only llama.cpp, reading the byte within a batch, can see it."""

    def __init__(self, *, idle: bool = False) -> None:
        super().__init__(idle=idle)
        self.set()

    def is_set(self) -> bool:
        return False


def test_a_requests_cancel_stops_the_prompt_within_a_batch_and_the_cache_stays_right(real_service, capfd):
    """The request's first batch runs to its end (typing's next request goes on from it); a
    later one is stopped within it by llama.cpp, and leaves no cells, and no line in the log."""
    from engine.backends import llama_reach as reach

    backend = real_service.load()
    # (~800 tokens: more than a first call and a batch after it)
    body = "".join(f"def unrelated_{i}(value):\n    return value * {i} - {i * 3}\n\n" for i in range(40))
    prompt = real_service.info.fim.build(body + "def triple(value):\n", "\n")
    request = GenerationRequest.from_settings(prompt, real_service.settings, max_tokens=12)
    reach.clear(backend.llm)
    first = backend.first_call_tokens()  # what evaluates in FIRST_CALL_S at the speed measured so far
    assert first >= PREFILL_CHUNK
    stopped = backend.generate(replace(request, cancel=_SeenFirstByLlamaCpp()))
    assert stopped.stats.stop_reason == "cancelled" and stopped.text == ""
    assert stopped.stats.prompt_tokens > first + ABORTABLE_CHUNK
    assert stopped.stats.prompt_tokens_evaluated == first  # the first batch, not the second
    assert reach.held_positions(backend.llm) == first and len(reach.live_tokens(backend.llm)) == first
    assert "removing memory module entries" not in capfd.readouterr().err  # (llama.cpp's line for it)
    answer = backend.generate(replace(request, cancel=CancelFlag()))  # the same prompt, from the stopped state
    reach.clear(backend.llm)
    fresh = backend.generate(replace(request, cancel=CancelFlag()))  # from an empty cache
    assert answer.stats.stop_reason == fresh.stats.stop_reason != "cancelled"
    assert answer.stats.prompt_tokens_reused == first
    assert answer.stats.prompt_tokens_evaluated + first == fresh.stats.prompt_tokens_evaluated
    # (batched in other places, the sums may differ in their last bits: the first line is compared)
    assert answer.text.strip() and answer.text.split("\n")[0] == fresh.text.split("\n")[0]


def test_a_warm_ups_first_call_is_stopped_within_it(real_service):
    """Idle work (its cancel a CancelFlag with `idle`) makes no call that runs to its end: a
    request arriving just after the edit that started the place's warm-up does not wait for it."""
    from engine.backends import llama_reach as reach

    backend = real_service.load()
    body = "".join(f"def unrelated_{i}(value):\n    return value * {i} - {i * 3}\n\n" for i in range(6))
    prompt = real_service.info.fim.build(body + "def triple(value):\n", "\n")
    reach.clear(backend.llm)
    stopped = backend.warm(prompt, _SeenFirstByLlamaCpp(idle=True), preemptible=True)
    assert stopped.stop_reason == "cancelled" and stopped.prompt_tokens > PREFILL_CHUNK
    assert stopped.prompt_tokens_evaluated == 0 and reach.live_tokens(backend.llm) == []
    whole = backend.warm(prompt, CancelFlag(idle=True))  # not stopped: the whole prompt, in small calls
    assert whole.stop_reason == "prefilled" and whole.prompt_tokens_evaluated == whole.prompt_tokens
    assert len(reach.live_tokens(backend.llm)) == whole.prompt_tokens


def test_a_requests_first_call_is_what_evaluates_in_its_time(real_service):
    """The first call's size follows the measured prompt speed (the 1.5B's, a busy machine's):
    a keystroke waits for it FIRST_CALL_S at most. Until measured, and never under, PREFILL_CHUNK."""
    backend = real_service.load()
    measured = backend._rate
    try:
        for rate, tokens in ((None, PREFILL_CHUNK), (240.0, int(240 * FIRST_CALL_S)), (75.0, int(75 * FIRST_CALL_S)),
                             (20.0, PREFILL_CHUNK)):
            backend._rate = rate
            assert backend.first_call_tokens() == tokens
    finally:
        backend._rate = measured


def test_time_budget_holds(real_service):
    backend = real_service.load()
    result = backend.generate(_long_request(real_service, time_budget_s=0.6))
    assert result.stats.stop_reason == "time_budget"
    assert 0 < result.stats.generated_tokens < 400


def test_the_time_budget_does_not_count_the_prompt(real_service):
    """At a new place the prompt is evaluated whole even when that takes longer than the budget,
    and the answer still comes (it used to be empty: the budget ran out during prefill)."""
    backend = real_service.load()
    body = "".join(f"def unrelated_{i}(value):\n    return value * {i} - {i * 3}\n\n" for i in range(40))
    prompt = real_service.info.fim.build(body + "def triple(value):\n", "\n")
    result = backend.generate(GenerationRequest.from_settings(prompt, real_service.settings, max_tokens=64,
                                                              time_budget_s=0.01))
    assert result.stats.prompt_tokens > 500
    stats = result.stats  # nothing cut short (the cache may hold a head of it from an earlier test)
    assert stats.prompt_tokens_evaluated + stats.prompt_tokens_reused >= stats.prompt_tokens - 1
    assert result.stats.stop_reason == "time_budget" and result.stats.generated_tokens >= 1


def test_stop_sequence_cuts_before_it(real_service):
    backend = real_service.load()
    prompt = real_service.info.fim.build("def f():\n    return 1\n\n\ndef g():\n    return 2\n\n\ndef h", "")
    free = backend.generate(GenerationRequest.from_settings(prompt, real_service.settings, max_tokens=40,
                                                            time_budget_s=None))
    assert "(" in free.text, free.text  # the model goes on past the name
    cut = backend.generate(GenerationRequest.from_settings(prompt, real_service.settings, max_tokens=40,
                                                           time_budget_s=None, stop=["("]))
    assert cut.stats.stop_reason == "stop"
    assert cut.text == free.text.split("(")[0]


def test_second_request_reuses_the_shared_prefix(real_service):
    backend = real_service.load()
    shared = "".join(f"def helper_{i}(x):\n    return x * {i} + {i * 7}\n\n" for i in range(60))
    template = real_service.info.fim  # the whole prompt, not cut to the default budget
    first = template.build(shared + "def first(", "")
    second = template.build(shared + "def second(", "")
    settings = real_service.settings
    a = backend.generate(GenerationRequest.from_settings(first, settings, max_tokens=2, time_budget_s=None))
    b = backend.generate(GenerationRequest.from_settings(second, settings, max_tokens=2, time_budget_s=None))
    assert a.stats.prompt_tokens > 1000
    assert b.stats.prompt_tokens_evaluated < 20 < a.stats.prompt_tokens_evaluated


def test_a_busy_machine_gets_one_thread_and_the_same_answer(real_service, model_path):
    """With nThreads 0, processes keeping every core busy leave llama.cpp one thread (two would
    wait on each other at every step); the answer is the one all cores give, bit for bit."""
    cores = usable_cores()
    if cores < 2:
        pytest.skip("one core: no thread to give up")
    cut = FUNCTION.index("return ") + 7
    prompt = real_service.info.fim.build(FUNCTION[:cut], FUNCTION[cut:])
    # The exact common prefix only (no moved cells): each answer is what a cold cache gives.
    request = GenerationRequest.from_settings(prompt, real_service.settings, max_tokens=24, time_budget_s=None,
                                              reuse=False)
    with busy_processes(cores):
        busy = real_service.load().generate(request)
    fixed = CompletionService(Settings(model=str(model_path), time_budget_ms=0, n_threads=cores))
    try:
        idle = fixed.load().generate(request)
    finally:
        fixed.close()
    assert (busy.stats.threads, idle.stats.threads) == (1, cores)
    assert busy.text and busy.text == idle.text, (busy.text, idle.text)


PRIMES = ('def primes_below(n):\n'
          '    """Return the list of primes below n, by trial division."""\n'
          '    \n\nprint(primes_below(50))\n')


def test_the_docstring_moment_asks_for_the_function_and_inserts_its_body(real_service):
    """Enter under a new function's docstring, a call of it below: the model is asked for the
    function with its chat template, writes its lines above it (the head: imports, if any) and
    then the body; what is inserted is the body, valid in place, not a call of the function."""
    result = real_service.complete(CompletionRequest(PRIMES, 2, 4, language="python", path="/w/moment.py",
                                                     use_cache=False))  # the next test asks the same
    assert result.timings["window"] == "instruct" and result.reason == "stop", result
    assert all(not line.strip() or line.startswith(("import ", "from ")) for line in result.timings["head"].split("\n"))
    lines = PRIMES.split("\n")
    lines[2] += result.text
    ast.parse("\n".join(lines))
    assert "return" in result.text and "primes_below(" not in result.text, result.text


def test_the_next_docstring_moment_starts_from_the_kept_instruction(real_service):
    """The chat template's text and the instruction are the same at every docstring moment: the
    first moment keeps their state, and a moment in another file, asked after a
    fill-in-the-middle prompt filled the cache, evaluates none of them again."""
    from engine.backends import llama_reach as reach

    reach.clear(real_service.load().llm)
    first = real_service.complete(CompletionRequest(PRIMES, 2, 4, language="python", path="/w/a.py", use_cache=False))
    kept = real_service.cache_summary()
    assert first.timings["window"] == "instruct" and "shared" in kept["labels"], kept
    assert kept["tokens"][kept["labels"].index("shared")] == 44  # the default model's template and instruction
    fim = real_service.complete(CompletionRequest(FUNCTION, 3, 11, language="python", path="/w/fim.py",
                                                  use_cache=False))
    assert fim.timings["window"] != "instruct"  # its prompt shares nothing with the instruction's
    restores = real_service.cache_summary()["restores"]
    other = "def count_vowels(word):\n    \"\"\"How many vowels the word has.\"\"\"\n    \n"
    second = real_service.complete(CompletionRequest(other, 2, 4, language="python", path="/w/b.py"))
    assert second.timings["window"] == "instruct", second
    assert real_service.cache_summary()["restores"] == restores + 1  # the head's question started from it
    lines = other.split("\n")
    lines[2] += second.text
    ast.parse("\n".join(lines))


def test_an_answer_given_early_finishes_as_the_one_waited_for(real_service):
    """The first usable lines at once, the rest decoded after from the prompt plus those lines:
    the whole is what one uninterrupted decode writes."""
    settings = real_service.settings
    real_service.settings = settings.replace(first_answer_ms=1)  # answer at the first usable line
    try:
        asked = CompletionRequest(PRIMES, 2, 4, language="python", path="/w/early.py", interactive=True)
        early = real_service.complete(asked)
        assert early.reason == "early" and early.text, early
        whole = real_service.rest_of_answer(early.unfinished, threading.Event())
        assert whole is not None and whole.timings["prompt_tokens_evaluated"] <= 4, whole.timings
        real_service.cache = LRUCache()  # not the whole just kept: decoded again, in one go
        waited = real_service.complete(CompletionRequest(PRIMES, 2, 4, language="python", path="/w/waited.py"))
    finally:
        real_service.settings = settings
    assert waited.reason != "early" and whole.text == waited.text, (early.text, whole.text, waited.text)
    # The body grows from the early lines; an import of the model's own that the rest uses
    # (`from math import sqrt`) goes above them (engine/instruct.py, HeadImports).
    body = "\n".join(line for line in whole.text.split("\n") if not line.startswith(("import ", "from ")))
    assert body.lstrip().startswith(early.text) and body.count("\n") > early.text.count("\n"), whole.text


def test_llama_cpp_amx_kernels_are_left_out_where_they_would_run(real_service):
    """On a CPU with AMX, pip's -march=native build of llama.cpp puts Q4_K weights in AMX buffers,
    and its AMX kernels die of an illegal instruction at the first prompt (CI and this project's
    machines): the model is loaded without llama.cpp's extra weight buffers there, and answers."""
    import llama_cpp

    from engine.backends.llama_reach import amx_compiled_in

    llm = real_service._backend.llm
    assert amx_compiled_in() == (b"AMX_INT8 = 1" in llama_cpp.llama_print_system_info())
    assert llm.model_params.use_extra_bufts == (not amx_compiled_in())
    result = real_service.complete(CompletionRequest(FUNCTION, 3, 11, language="python", use_cache=False))
    assert result.text.strip(), result


def test_an_open_line_is_written_on_rather_than_left_blank(real_service, monkeypatch):
    """After a finished function the model would leave the line blank ("\n", then the end); asked
    to write on the line (open_line) with any lead allowed, it writes the best token that does,
    and says so (line_kept_open). Without open_line the answer is as before."""
    from engine.backends import base

    backend, prompt = real_service.load(), real_service.info.fim.build("def f():\n    return 1\n", "\n\nprint(f())\n")
    plain = backend.generate(GenerationRequest(prompt=prompt, max_tokens=12, draft_tokens=7))
    assert plain.text.strip() == "" and plain.stats.line_kept_open == 0  # the premise: a blank first token
    monkeypatch.setattr(base, "OPEN_LINE_LEAD", 1e9)
    kept = backend.generate(GenerationRequest(prompt=prompt, max_tokens=12, draft_tokens=7, open_line=True))
    assert kept.stats.line_kept_open == 1 and kept.text.strip() and kept.text[0] not in "\r\n"
    monkeypatch.setattr(base, "OPEN_LINE_LEAD", 0.0)  # no lead allowed: the blank token stays
    again = backend.generate(GenerationRequest(prompt=prompt, max_tokens=12, draft_tokens=7, open_line=True))
    assert again.stats.line_kept_open == 0 and again.text == plain.text


def test_the_extra_buffers_choice_lasts_only_for_the_load():
    import llama_cpp.llama_cpp as lib

    from engine.backends.llama_reach import model_params

    default = lib.llama_model_default_params
    with model_params(use_extra_bufts=False):
        assert lib.llama_model_default_params().use_extra_bufts is False
    assert lib.llama_model_default_params is default and lib.llama_model_default_params().use_extra_bufts
    with pytest.raises(RuntimeError), model_params(use_extra_bufts=False):
        raise RuntimeError("a failed load")
    assert lib.llama_model_default_params is default


def test_truncated_model_file_gives_a_clear_error(model_path, tmp_path):
    cut = tmp_path / "cut.gguf"
    with model_path.open("rb") as src, cut.open("wb") as dst:
        dst.write(src.read(32 << 20))  # the header and the vocabulary; the rest a hole, not 300 MB of disk
        dst.truncate(300_000_000)
    with pytest.raises(ModelError, match=r"cut\.gguf: truncated: its tensors need 491,400,064 bytes"):
        resolve_model(str(cut))


def test_corrupt_model_file_gives_a_clear_error(tmp_path):
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"\x7fELF" + b"\0" * 4096)
    service = CompletionService(real_settings(str(bad)))
    with pytest.raises(ModelError, match=r"bad\.gguf: not a GGUF file"):
        service.load()


def test_damaged_tensor_data_surfaces_as_backend_error(model_path, tmp_path):
    """A header that parses but tensors llama.cpp cannot use: an error, not a crash."""
    from gguf_writer import write_gguf

    fake = write_gguf(tmp_path / "empty.gguf", {"general.architecture": "qwen2"})
    service = CompletionService(real_settings(str(fake)))
    with pytest.raises(BackendError, match="llama.cpp could not load"):
        service.load()


def real_settings(model: str):
    from engine.config import Settings

    return Settings(model=model)

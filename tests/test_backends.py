import sys
import threading

import pytest

from engine import backends
from engine.backends import Backend, available_backends, get_backend_class, register_backend
from engine.backends.base import GenerationRequest
from engine.backends.fake import FakeBackend
from engine.errors import BackendError
from engine.prompt import Prompt, Text


def test_builtins_are_registered_through_entry_points():
    assert {"llama_cpp", "fake"} <= set(available_backends())
    assert get_backend_class("fake") is FakeBackend


def test_unknown_backend_lists_the_known_ones():
    with pytest.raises(BackendError, match=r"unknown backend 'gpu9000'; known backends: .*llama_cpp"):
        get_backend_class("gpu9000")


THIRD_PARTY = """
from engine.backends.fake import FakeBackend


class ShoutBackend(FakeBackend):
    name = "shout"

    def generate(self, request, on_text=None):
        result = super().generate(request, on_text)
        result.text = result.text.upper()
        return result
"""


@pytest.fixture()
def installed_third_party(tmp_path, monkeypatch):
    """A tiny installed distribution, `fimble-shout`, whose entry point names its backend — as a
    package from the registry would be, found by importlib.metadata on sys.path."""
    (tmp_path / "fimble_shout.py").write_text(THIRD_PARTY)
    info = tmp_path / "fimble_shout-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fimble-shout\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[fimble.backends]\nshout = fimble_shout:ShoutBackend\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield
    backends._registered.pop("shout", None)  # the registry caches what it loaded
    sys.modules.pop("fimble_shout", None)


def test_a_third_party_backend_is_found_through_its_entry_point(installed_third_party, qwen_info):
    from engine.config import Settings
    from engine.service import CompletionRequest, CompletionService

    assert "shout" in available_backends()
    cls = get_backend_class("shout")
    assert cls.__module__ == "fimble_shout" and issubclass(cls, Backend)
    service = CompletionService(Settings(backend="shout"), model_info=qwen_info)
    service.load().queue("a + b")  # type: ignore[attr-defined]
    result = service.complete(CompletionRequest("x = \n", 0, 4, language="python"))
    assert result.text == "A + B"


def test_the_third_party_backend_is_gone_once_uninstalled():
    assert "shout" not in available_backends()
    with pytest.raises(BackendError, match="unknown backend 'shout'"):
        get_backend_class("shout")


def test_register_backend_adds_and_the_registry_can_forget():
    class Echo(FakeBackend):
        name = "echo-test"

    try:
        assert register_backend(Echo) is Echo and get_backend_class("echo-test") is Echo
    finally:
        backends._registered.pop("echo-test", None)
    with pytest.raises(BackendError):
        get_backend_class("echo-test")


def prompt(text="p"):
    return Prompt((Text(text),), "prefix")


def test_fake_backend_streams_stops_and_records():
    backend = FakeBackend().queue("abc\ndef")
    pieces = []
    result = backend.generate(GenerationRequest(prompt(), stop=["\n"]), pieces.append)
    assert result.text == "abc" and "".join(pieces) == "abc"
    assert result.stats.stop_reason == "stop"
    assert backend.requests[0].stop == ["\n"]


def test_fake_backend_honours_max_tokens_and_cancel():
    backend = FakeBackend().queue("abcdef", "abcdef")
    assert backend.generate(GenerationRequest(prompt(), max_tokens=2)).text == "ab"
    cancel = threading.Event()
    cancel.set()
    result = backend.generate(GenerationRequest(prompt(), cancel=cancel))
    assert (result.text, result.stats.stop_reason) == ("", "cancelled")


def test_open_line_passes_over_a_blank_first_token_only_when_another_is_close():
    import numpy as np

    from engine.backends.base import open_line_choice

    blank = np.array([True, True, False, False])  # "\n", the end, "   ", "return"
    assert open_line_choice(np.array([16.46, 15.25, 16.09, 14.79]), blank, lead=1.0) == 2  # 0.37 behind
    assert open_line_choice(np.array([16.46, 15.25, 15.0, 14.79]), blank, lead=1.0) is None  # 1.46 behind
    assert open_line_choice(np.array([16.0, 15.0, 16.5, 14.0]), blank, lead=1.0) is None  # the best writes
    assert open_line_choice(np.array([16.0, 15.0, 16.5, 14.0]), np.ones(4, dtype=bool), lead=1.0) is None
    # A request's stop token is blank too (the answer would end there), for that request only.
    assert open_line_choice(np.array([16.0, 15.0, 16.5, 16.2]), blank, stops=[2], lead=1.0) == 3
    assert not blank[2]


def test_prefill_chunks_cuts_the_first_chunk_apart_and_stops_where_the_cancel_is_seen():
    from engine.backends.base import prefill_chunks

    calls: list[tuple[int, int]] = []

    def evaluate(chunk: list[int], position: int) -> bool:
        calls.append((position, len(chunk)))
        return False

    tokens = list(range(300))
    assert prefill_chunks(tokens, 10, 128, threading.Event(), evaluate, first=32) == ""
    assert calls == [(10, 32), (42, 128), (170, 128), (298, 2)]
    calls.clear()
    assert prefill_chunks(tokens, 10, 128, threading.Event(), evaluate) == ""
    assert calls == [(10, 128), (138, 128), (266, 34)]
    # a chunk that the cancel stopped within (evaluate says so) ends the prefill there
    cancel = threading.Event()
    calls.clear()
    stopped = prefill_chunks(tokens, 0, 128, cancel, lambda chunk, position: calls.append((position, len(chunk)))
                             or position > 0, first=32)
    assert stopped == "cancelled" and calls == [(0, 32), (32, 128)]
    calls.clear()
    cancel.set()  # seen before the first chunk: nothing evaluated
    assert prefill_chunks(tokens, 0, 128, cancel, evaluate, first=32) == "cancelled" and calls == []

import threading

import pytest

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


def test_third_party_backend_registers_like_a_builtin():
    @register_backend
    class Echo(FakeBackend):
        name = "echo-test"

    assert get_backend_class("echo-test") is Echo
    assert issubclass(Echo, Backend)


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

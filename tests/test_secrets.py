"""The API key is a secret on every channel: status, logs, messages, errors, options, reprs."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
from lsp_raw import RawServer
from test_openai_backend import fake_server  # noqa: F401  (a fixture)

from engine.config import Settings, apply_options

SECRET = "sk-planted-0123456789abcdef"


def test_settings_never_show_the_key():
    settings = Settings(openai_api_key=SECRET)
    assert SECRET not in repr(settings) and SECRET not in str(settings.to_dict())
    assert settings.to_dict()["openaiApiKey"] == "(set)"
    _, warnings = apply_options(settings, {"openaiApiKey": 12345})  # a bad value names what is kept
    assert warnings and all(SECRET not in w and "12345" not in w for w in warnings)


def test_a_new_url_without_a_key_drops_the_old_key():
    settings = Settings(openai_base_url="http://127.0.0.1:8080/v1", openai_api_key=SECRET)
    moved, warnings = apply_options(settings, {"openaiBaseUrl": "https://elsewhere.example/v1"})
    assert moved.openai_api_key == "" and "give the key again" in warnings[0]
    both, warnings = apply_options(settings, {"openaiBaseUrl": "https://elsewhere.example/v1",
                                              "openaiApiKey": "sk-new"})
    assert both.openai_api_key == "sk-new" and not warnings


@pytest.mark.model
def test_no_channel_of_the_server_carries_the_key(model_path, fake_server, tmp_path):  # noqa: F811
    url, handler = fake_server
    handler.behaviour = "echo"  # its error body quotes the key back
    stderr = tmp_path / "stderr.txt"
    with stderr.open("wb") as err:
        raw = RawServer(stderr=err)
        seen = []
        options = {"backend": "openai", "model": str(model_path), "openaiBaseUrl": url, "openaiApiKey": SECRET,
                   "openaiModel": "m", "debounceMs": 0}
        seen.append(raw.request("initialize", {"processId": None, "rootUri": None, "capabilities": {},
                                               "initializationOptions": options}))
        raw.notify("initialized", {})
        uri = "file:///t.py"
        raw.notify("textDocument/didOpen", {"textDocument": {"uri": uri, "languageId": "python", "version": 0,
                                                             "text": "def f(x):\n    return \n"}})
        for _ in range(100):
            if raw.request("fimble/status", {})["result"]["state"] != "loading":
                break
            time.sleep(0.1)
        seen.append(raw.request("textDocument/inlineCompletion", {
            "textDocument": {"uri": uri}, "position": {"line": 1, "character": 11}, "context": {"triggerKind": 1}}))
        seen.append(raw.request("workspace/executeCommand", {"command": "fimble.explain", "arguments": [
            {"uri": uri, "range": {"start": {"line": 0, "character": 0}, "end": {"line": 1, "character": 0}}}]}))
        raw.notify("workspace/didChangeConfiguration", {"settings": {"fimble": {"openaiApiKey": 12345}}})
        seen.append(raw.request("fimble/status", {"uri": uri, "history": 50}))
        assert raw.close() == 0
        while not raw.messages.empty():
            seen.append(raw.messages.get())
    assert handler.auth == f"Bearer {SECRET}"  # the key did reach the server it was given for
    everything = repr(seen) + stderr.read_text()
    assert "HTTP 401" in everything and "openaiApiKey" in everything  # the channels were exercised
    assert SECRET not in everything


def test_the_cli_does_not_print_the_key(fake_server, model_path, tmp_path):  # noqa: F811
    url, handler = fake_server
    handler.behaviour = "echo"
    source = tmp_path / "a.py"
    source.write_text("def f():\n    return \n")
    proc = subprocess.run([sys.executable, "-m", "lsp_server.cli", "complete", str(source), "--line", "1",
                           "--character", "11", "--backend", "openai", "--model", str(model_path),
                           "--set", f"openaiBaseUrl={url}", "--set", f"openaiApiKey={SECRET}",
                           "--set", "openaiModel=m"], capture_output=True, text=True, timeout=120,
                          env={**os.environ})
    assert proc.returncode == 1 and "HTTP 401" in proc.stderr
    assert SECRET not in proc.stderr + proc.stdout
    options = subprocess.run([sys.executable, "-m", "lsp_server.cli", "options"], capture_output=True, text=True,
                             env={**os.environ, "OPENAI_API_KEY": SECRET}, timeout=60)
    assert "openaiApiKey" in options.stdout and SECRET not in options.stdout

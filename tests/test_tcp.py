"""`fimble serve --tcp`: loopback only, a token first, one client at a time, each with its own state."""

from __future__ import annotations

import contextlib
import os
import re
import stat
import subprocess
import sys
import time

import pytest
from lsp_raw import RawSocket

SECRET = "sk-planted-tcp-secret-1234"
INIT = {"processId": None, "rootUri": None, "capabilities": {}}


def options(**extra):
    return {"backend": "fake", "debounceMs": 0, **extra}


@pytest.fixture
def tcp_server(tmp_path):
    env = {**os.environ, "FIMBLE_HOME": str(tmp_path)}
    proc = subprocess.Popen([sys.executable, "-m", "lsp_server", "--tcp", "127.0.0.1:0"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    for _ in range(200):
        line = proc.stderr.readline()
        if match := re.search(r"serving on ([\d.]+):(\d+); .* token in (\S+)", line):
            break
    else:
        proc.kill()
        pytest.fail("the server never said where it listens")
    token_file = tmp_path / "serve.token"
    assert match.group(3) == str(token_file)
    proc.address = (match.group(1), int(match.group(2)))  # type: ignore[attr-defined]
    proc.token = token_file.read_text().strip()  # type: ignore[attr-defined]
    yield proc
    proc.kill()
    proc.wait()


def connect(server, token: str | None, **extra) -> tuple[RawSocket, dict]:
    client = RawSocket(*server.address)
    opts = options(**extra) if token is None else options(token=token, **extra)
    return client, client.request("initialize", {**INIT, "initializationOptions": opts}, timeout=20)


def test_the_token_file_is_private(tcp_server, tmp_path):
    mode = stat.S_IMODE((tmp_path / "serve.token").stat().st_mode)
    assert mode == 0o600
    assert len(tcp_server.token) >= 32


@pytest.mark.parametrize("token", [None, "wrong"])
def test_a_client_without_the_token_gets_an_error_and_is_closed(tcp_server, token):
    client, answer = connect(tcp_server, token)
    assert answer["error"]["code"] == -32001 and "serve.token" in answer["error"]["message"]
    assert client.ended.wait(10)
    client.close()
    assert tcp_server.poll() is None


def test_a_request_before_initialize_is_not_served(tcp_server):
    client = RawSocket(*tcp_server.address)
    answer = client.request("fimble/status", {}, timeout=20)
    assert answer["error"]["code"] == -32001 and "result" not in answer
    assert client.ended.wait(10)


def test_one_client_at_a_time_each_with_its_own_state_and_leaving_stops_nothing(tcp_server):
    first, answer = connect(tcp_server, tcp_server.token, openaiApiKey=SECRET)
    assert "result" in answer
    first.notify("initialized", {})
    first.notify("textDocument/didOpen", {"textDocument": {"uri": "file:///secret-plans.py", "languageId": "python",
                                                           "version": 0, "text": "x = 1\n"}})
    status = first.request("fimble/status", {}, timeout=20)["result"]
    assert status["documents"] == 1
    assert SECRET not in str(status)

    second, refused = connect(tcp_server, tcp_server.token)
    assert refused["error"]["code"] == -32001 and "one client at a time" in refused["error"]["message"]
    assert second.ended.wait(10)
    # the first client is still served, and only it gets its replies
    assert first.request("fimble/status", {}, timeout=20)["result"]["documents"] == 1

    first.notify("exit", None)  # `exit` ends the connection, not the server
    assert first.ended.wait(10)
    time.sleep(0.2)
    assert tcp_server.poll() is None
    third, answer = connect(tcp_server, tcp_server.token)
    assert "result" in answer
    status = third.request("fimble/status", {}, timeout=20)["result"]
    assert status["documents"] == 0 and "secret-plans" not in str(status)
    assert status["settings"]["openaiApiKey"] == ""
    third.close()  # leaving without shutdown or exit
    time.sleep(0.2)
    fourth, answer = connect(tcp_server, tcp_server.token)
    assert "result" in answer and tcp_server.poll() is None
    fourth.close()


@pytest.mark.parametrize("host", ["0.0.0.0", "192.0.2.10", "example.com"])
def test_a_non_loopback_address_is_refused_with_the_safe_way(tmp_path, host):
    proc = subprocess.run([sys.executable, "-m", "lsp_server", "--tcp", f"{host}:7777"], capture_output=True,
                          text=True, env={**os.environ, "FIMBLE_HOME": str(tmp_path)}, timeout=60)
    assert proc.returncode == 1
    assert f"refusing to serve on {host}" in proc.stderr and "ssh -N -L 7777:127.0.0.1:7777" in proc.stderr
    assert "--allow-remote" in proc.stderr
    assert not (tmp_path / "serve.token").exists()


def test_an_unwritable_home_is_a_clear_error_not_a_traceback(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    proc = subprocess.run([sys.executable, "-m", "lsp_server", "--tcp", "127.0.0.1:0"], capture_output=True,
                          text=True, env={**os.environ, "FIMBLE_HOME": str(blocker / "home")}, timeout=60)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "cannot write the TCP token" in proc.stderr


def test_a_planted_token_link_is_replaced_not_followed(tmp_path):
    from lsp_server.transport import write_token

    victim = tmp_path / "victim"
    victim.write_text("keep me")
    (tmp_path / "serve.token").symlink_to(victim)
    token, path = write_token(tmp_path)
    assert victim.read_text() == "keep me" and not path.is_symlink() and path.read_text().strip() == token


def test_a_trickling_client_never_holds_the_slot_and_gets_one_deadline(tcp_server):
    """One byte every half second: the token holder is served meanwhile, and the trickler is closed
    by one deadline from its accept (10 s), however often it sends (the wait was per read)."""
    import threading

    trickler = RawSocket(*tcp_server.address)
    stop = threading.Event()
    payload = b"Content-Length: 99999\r\n\r\n" + b"x" * 1000
    sent = [0]

    def trickle() -> None:
        for byte in payload:
            if stop.wait(0.5) or trickler.ended.is_set():
                return
            with contextlib.suppress(OSError):
                trickler.send_bytes(bytes([byte]))
                sent[0] += 1

    threading.Thread(target=trickle, daemon=True).start()
    holder, answer = connect(tcp_server, tcp_server.token)
    assert "result" in answer  # served while the trickler was still trickling
    holder.close()
    assert trickler.ended.wait(60)
    # closed while it was still sending: a wait per read would have let it go on to its last byte
    assert 0 < sent[0] < len(payload)
    stop.set()
    trickler.close()
    assert tcp_server.poll() is None


def test_a_big_body_before_the_token_is_refused_unread(tcp_server):
    client = RawSocket(*tcp_server.address)
    client.send_bytes(b"Content-Length: 25000000\r\n\r\n" + b"[" * 100_000)
    answer = client.wait_for(lambda m: "error" in m, timeout=20)
    assert answer["error"]["code"] == -32001 and "over the 64 KiB limit" in answer["error"]["message"]
    assert client.ended.wait(10)
    client.close()
    holder, answer = connect(tcp_server, tcp_server.token)
    assert "result" in answer
    holder.close()


def test_silent_connections_make_room_for_the_token_holder(tcp_server):
    idle = [RawSocket(*tcp_server.address) for _ in range(12)]  # more than are kept waiting at once
    try:
        holder, answer = connect(tcp_server, tcp_server.token)
        assert "result" in answer
        holder.close()
        assert sum(peer.ended.wait(0.5) for peer in idle[:4]) == 4  # the oldest were closed for room
    finally:
        for peer in idle:
            peer.close()


def test_a_token_that_is_not_unicode_is_a_wrong_token(tcp_server):
    client = RawSocket(*tcp_server.address)
    body = '{"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"initializationOptions": ' \
           '{"token": "\\udc80"}}}'
    client.send(body)
    answer = client.wait_for(lambda m: m.get("id") == 1, timeout=20)
    assert answer["error"]["code"] == -32001
    client.close()
    assert tcp_server.poll() is None


def test_a_second_server_on_a_taken_port_leaves_the_first_ones_token(tcp_server, tmp_path):
    token_before = (tmp_path / "serve.token").read_text()
    host, port = tcp_server.address
    proc = subprocess.run([sys.executable, "-m", "lsp_server", "--tcp", f"{host}:{port}"], capture_output=True,
                          text=True, env={**os.environ, "FIMBLE_HOME": str(tmp_path)}, timeout=60)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert f"cannot listen on {host}:{port}" in proc.stderr
    assert (tmp_path / "serve.token").read_text() == token_before
    holder, answer = connect(tcp_server, tcp_server.token)
    assert "result" in answer
    holder.close()

"""Resource bounds: the size cap on every edit, the total for all documents, deep nesting,
per-document state dropped at didClose, and edits that do not parse on the event loop."""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest
from lsp_raw import RawServer

from engine.context import MAX_DEPTH, analyze_cursor, ancestors
from engine.syntax import SyntaxTree
from lsp_server import documents
from lsp_server.documents import DocumentStore

INIT = {"processId": None, "rootUri": None, "capabilities": {},
        "initializationOptions": {"backend": "fake", "debounceMs": 0, "warm": False}}


def change(line: int, character: int, text: str, end: tuple[int, int] | None = None) -> SimpleNamespace:
    start = SimpleNamespace(line=line, character=character)
    stop = SimpleNamespace(line=end[0], character=end[1]) if end else start
    return SimpleNamespace(range=SimpleNamespace(start=start, end=stop), text=text)


def test_the_size_cap_holds_on_every_edit_and_the_text_stays_right(monkeypatch):
    monkeypatch.setattr(documents, "MAX_PARSED_CHARS", 100)
    store = DocumentStore()
    doc = store.open("file:///a.py", "python", 0, "x = 1\n")
    assert doc is not None and doc.syntax.parsed and not doc.capped
    paste = "y = 2\n" * 30  # 180 characters by didChange
    store.change("file:///a.py", 1, [change(1, 0, paste)], "utf-16")
    assert doc.capped and not doc.syntax.parsed and doc.syntax.tree is None
    assert doc.text == "x = 1\n" + paste
    store.change("file:///a.py", 2, [change(1, 0, "", end=(31, 0))], "utf-16")  # and back under the cap
    assert doc.text == "x = 1\n" and not doc.capped and doc.syntax.tree.root_node.type == "module"


def test_all_documents_together_stay_under_the_total_bound():
    store = DocumentStore(max_total_chars=1000)
    assert store.open("file:///a.py", "python", 0, "a" * 600) is not None
    assert store.open("file:///b.py", "python", 0, "b" * 600) is None
    assert "not tracked" in store.refused["file:///b.py"] and store.total_chars == 600
    assert store.change("file:///a.py", 1, [change(0, 0, "c" * 500)], "utf-16") is None  # an edit past it
    assert "file:///a.py" not in store and store.total_chars == 0
    assert store.open("file:///b.py", "python", 0, "b" * 600) is not None  # room again


def test_an_edit_tells_the_tree_and_the_parse_waits_for_a_reader():
    tree = SyntaxTree("def f():\n    return 1\n", "python")
    assert tree.tree.root_node.type == "module"
    tree.edit(20, 21, "2 + 3")
    assert tree._stale  # nothing parsed on the event loop
    snapshot = tree.snapshot()
    assert snapshot.tree.root_node.text.decode() == "def f():\n    return 2 + 3\n"  # parsed where it was read
    assert not tree._stale  # and handed back to the document, which had not changed since


def test_a_deeply_nested_file_is_walked_from_the_root_not_climbed():
    depth = 50_000
    text = "x = " + "[" * depth + "]" * depth + "\n"
    tree = SyntaxTree(text, "python")
    path = ancestors(tree, 4 + depth)
    assert len(path) == MAX_DEPTH and path[0].type in ("[", "list")
    assert analyze_cursor(tree, 4 + depth).why == "mid_line"


@pytest.fixture()
def server():
    raw = RawServer()
    raw.request("initialize", INIT)
    raw.notify("initialized", {})
    yield raw
    assert raw.close() == 0


def test_the_server_answers_in_a_file_nested_50000_deep(server):
    depth = 50_000
    text = "x = " + "[" * depth + "]" * depth + "\n\ndef f(a):\n    return \n"
    uri = "file:///deep.py"
    server.notify("textDocument/didOpen", {"textDocument": {"uri": uri, "languageId": "python", "version": 0,
                                                           "text": text}})
    for line, character in ((0, 4 + depth), (0, 4 + 2 * depth), (3, 11)):
        answer = server.request("textDocument/inlineCompletion", {
            "textDocument": {"uri": uri}, "position": {"line": line, "character": character},
            "context": {"triggerKind": 1}}, timeout=60)
        assert "items" in answer["result"]
    explained = server.request("workspace/executeCommand", {"command": "fimble.explain", "arguments": [
        {"uri": uri, "range": {"start": {"line": 0, "character": 9}, "end": {"line": 0, "character": 9}}}]},
        timeout=60)
    assert isinstance(explained.get("result"), str)
    outcomes = server.request("fimble/status", {})["result"]["outcomes"]
    assert "error" not in outcomes and sum(outcomes.values()) == 3


def test_closing_a_document_drops_what_was_kept_for_it(server):
    uri = "file:///kept.py"
    server.notify("textDocument/didOpen", {"textDocument": {"uri": uri, "languageId": "python", "version": 0,
                                                           "text": "def f(x):\n    return \n"}})
    server.request("textDocument/inlineCompletion", {"textDocument": {"uri": uri},
                                                     "position": {"line": 1, "character": 11},
                                                     "context": {"triggerKind": 1}})
    assert server.request("fimble/status", {})["result"]["cache"]["documentsKept"] == 1
    server.notify("textDocument/didClose", {"textDocument": {"uri": uri}})
    for _ in range(50):
        status = server.request("fimble/status", {})["result"]
        if status["cache"]["documentsKept"] == 0:
            break
        time.sleep(0.1)
    assert status["cache"]["documentsKept"] == 0 and status["documents"] == 0 and status["documentChars"] == 0


def test_a_document_over_the_cap_says_so_and_gets_no_completion(server):
    uri = "file:///huge.py"
    text = "x = 1\n" * (documents.MAX_PARSED_CHARS // 6 + 10)
    server.notify("textDocument/didOpen", {"textDocument": {"uri": uri, "languageId": "python", "version": 0,
                                                           "text": text}})
    answer = server.request("textDocument/inlineCompletion", {"textDocument": {"uri": uri},
                                                              "position": {"line": 3, "character": 5},
                                                              "context": {"triggerKind": 1}})
    assert answer["result"]["items"] == []
    status = server.request("fimble/status", {"uri": uri})["result"]
    assert status["document"]["overSizeCap"] is True and status["document"]["parsed"] is False
    assert status["requests"][-1]["why"].startswith("over 2,000,000 characters")


def test_status_memory_is_read_from_one_descriptor_and_follows_allocations():
    """`rssMb` is one read of /proc/PID/statm on a descriptor kept open (a status request used to
    open, read and close it: each a system call that gives the GIL up on the event loop)."""
    import os

    from lsp_server import status

    before = status.process_memory()["rssMb"]
    descriptor = status._statm()
    ballast = bytearray(64 << 20)
    ballast[::4096] = b"x" * len(ballast[::4096])  # touched: resident
    after = status.process_memory()["rssMb"]
    assert before is not None and after is not None and after - before >= 48
    assert status._statm() == descriptor and os.readlink(f"/proc/self/fd/{descriptor}").endswith(
        f"/{os.getpid()}/statm")
    del ballast

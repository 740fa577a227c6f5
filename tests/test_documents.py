"""The document store against a reference model of LSP edits (hypothesis), and the worker."""

from __future__ import annotations

import asyncio
import threading
import time
from types import SimpleNamespace

from hypothesis import given, settings
from hypothesis import strategies as st

from engine.text import offset_at
from lsp_server.documents import MAX_PARSED_CHARS, DocumentStore
from lsp_server.worker import ModelWorker, Superseded


def change(sl, sc, el, ec, text):
    rng = SimpleNamespace(start=SimpleNamespace(line=sl, character=sc), end=SimpleNamespace(line=el, character=ec))
    return SimpleNamespace(range=rng, text=text)


def reference_apply(text, c, encoding):
    start = offset_at(text, c.range.start.line, c.range.start.character, encoding)
    end = offset_at(text, c.range.end.line, c.range.end.character, encoding)
    start, end = min(start, end), max(start, end)
    return text[:start] + c.text + text[end:]


edit_text = st.lists(st.sampled_from([*"ab \t\n\r(){}:😀é", "\r\n", "def ", "\ud83d"]), max_size=6).map("".join)
edits = st.lists(st.tuples(st.integers(0, 12), st.integers(0, 40), st.integers(0, 12), st.integers(0, 40), edit_text),
                 max_size=25)


@settings(max_examples=150, deadline=None)
@given(edits, st.sampled_from(["utf-16", "utf-8", "utf-32"]))
def test_store_matches_a_reference_model_of_the_edits(edit_list, encoding):
    store = DocumentStore()
    text = "def f(x):\n    return x  # 😀\r\nprint(f(1))\n"
    store.open("file:///a.py", "python", 0, text)
    for version, (sl, sc, el, ec, new) in enumerate(edit_list, 1):
        c = change(sl, sc, el, ec, new)
        text = reference_apply(text, c, encoding)
        doc = store.change("file:///a.py", version, [c], encoding)
        assert doc is not None and doc.text == text and doc.version == version
    assert doc_tree_matches(store, "file:///a.py")


def doc_tree_matches(store, uri):
    doc = store.get(uri)
    from engine.syntax import SyntaxTree

    return str(doc.syntax.tree.root_node) == str(SyntaxTree(doc.text, "python").tree.root_node)


def test_binary_huge_and_unknown_documents_are_kept_as_plain_text():
    store = DocumentStore()
    assert store.open("file:///b.bin", "python", 0, "\x00\x01ELF").binary
    big = store.open("file:///big.py", "python", 0, "x = 1\n" * (MAX_PARSED_CHARS // 6 + 10))
    assert big.syntax.tree is None
    store.change("file:///big.py", 1, [change(0, 0, 0, 0, "#")], "utf-16")
    assert big.text.startswith("#x = 1")
    odd = store.open("file:///c.zz", "zzlang", 0, "hello")
    assert odd.syntax.tree is None and not odd.binary
    assert [d.path for d in store.others("file:///c.zz")] == []  # only parsed documents serve as context


def test_a_document_path_is_its_decoded_file_path():
    """Paths label other files in the prompt and key what is kept per document: percent-encoded
    URIs (a space, non-ASCII) are decoded as pygls reads them; a URI of no file stands for itself."""
    store = DocumentStore()
    doc = store.open("file:///home/a%20b/caf%C3%A9.py", "python", 1, "x = 1\n")
    assert doc is not None and doc.path == "/home/a b/café.py" == doc.as_context().path
    untitled = store.open("untitled:Untitled-1", "python", 1, "y = 2\n")
    assert untitled is not None and untitled.path == "untitled:Untitled-1"


def test_lines_are_counted_as_the_editor_counts_them():
    store = DocumentStore()
    doc = store.open("file:///cr.py", "python", 1, "a = 1\rb = 2\r\nc = 3\n")
    assert doc is not None and doc.line_count == 4  # a lone \r ends a line for the editor


def test_full_text_change_replaces_the_document():
    store = DocumentStore()
    store.open("file:///a.py", "python", 0, "x = 1\n")
    doc = store.change("file:///a.py", 1, [SimpleNamespace(text="y = 2\n")], "utf-16")
    assert doc.text == "y = 2\n" and doc.syntax.tree is not None


def test_change_to_an_unknown_document_is_ignored():
    assert DocumentStore().change("file:///nope.py", 1, [change(0, 0, 0, 0, "x")], "utf-16") is None


async def test_worker_supersedes_pending_and_cancels_running():
    worker = ModelWorker()
    started, submitted = threading.Event(), threading.Event()

    def slow(cancel):
        started.set()
        while not cancel.is_set():
            time.sleep(0.005)
        submitted.wait(5)  # hold the worker until all are queued: otherwise it may start `second`
        return "cancelled"

    first = worker.submit("doc", slow)
    await asyncio.get_running_loop().run_in_executor(None, started.wait)
    second = worker.submit("doc", lambda cancel: "queued")
    third = worker.submit("doc", lambda cancel: "newest")
    other = worker.submit("other-doc", lambda cancel: "kept")
    submitted.set()
    assert await first == "cancelled"
    try:
        await second
        raise AssertionError("second should have been superseded")
    except Superseded:
        pass
    assert await third == "newest"
    assert await other == "kept"
    worker.stop()


async def test_worker_reports_errors_and_keeps_going():
    worker = ModelWorker()

    def boom(cancel):
        raise ValueError("bad")

    failing = worker.submit("a", boom)
    try:
        await failing
        raise AssertionError("expected ValueError")
    except ValueError:
        pass
    assert await worker.submit("a", lambda cancel: 42) == 42
    worker.stop()


async def test_idle_jobs_run_only_when_nothing_waits_and_yield_to_real_ones():
    worker = ModelWorker()
    order: list[str] = []
    started = threading.Event()

    def warm_document(cancel):
        started.set()
        order.append("document")
        while not cancel.is_set():
            time.sleep(0.005)
        return False

    document = worker.submit_idle("document:a", warm_document, resume=True)
    await asyncio.get_running_loop().run_in_executor(None, started.wait)
    started.clear()
    # A real job preempts the running idle one; the place warm-up submitted after it runs before
    # the preempted document warm-up, which resumes last and is the same future.
    real = worker.submit("a", lambda cancel: order.append("request") or "answer")
    place = worker.submit_idle("warm:a", lambda cancel: order.append("place") or True)
    assert await real == "answer"
    assert await place is True
    await asyncio.get_running_loop().run_in_executor(None, started.wait)
    assert order == ["document", "request", "place", "document"]
    assert not document.done()
    started.clear()
    newer = worker.submit_idle("warm:a", lambda cancel: "newer place")  # preempts the document again
    assert await newer == "newer place"
    await asyncio.get_running_loop().run_in_executor(None, started.wait)  # (a busy machine: it resumes later)
    worker.stop()  # the document warm-up, running again, is stopped and settled
    assert await document is False


async def test_a_requests_cancel_and_a_place_warm_ups_stop_llama_cpp_mid_batch():
    """A request's cancel stops llama.cpp within a batch of prompt tokens (native.CancelFlag);
    so does the warm-up of the place just edited (`stop_at_once`, marked `idle`: the backend makes
    no call of it run to its end), whose prompt the request evaluates anyway. Other idle work's is
    a plain Event: a preempted call of it runs to its end, and what it evaluated stays."""
    from native.cancel import CancelFlag

    worker = ModelWorker()
    request = await worker.submit("a", lambda cancel: cancel)
    place = await worker.submit_idle("warm:a", lambda cancel: cancel, stop_at_once=True)
    widening = await worker.submit_idle("widen:a", lambda cancel: cancel)
    assert isinstance(request, CancelFlag) and not request.is_set() and not request.idle
    assert isinstance(place, CancelFlag) and not place.is_set() and place.idle
    assert isinstance(widening, threading.Event) and not isinstance(widening, CancelFlag)
    gate, running = threading.Event(), threading.Event()
    first = worker.submit("a", lambda cancel: running.set() or (gate.wait(5) and cancel))
    await asyncio.get_running_loop().run_in_executor(None, running.wait)
    second = worker.submit("a", lambda cancel: "second")  # supersedes the running one: its flag is set
    gate.set()
    flag = await first
    assert isinstance(flag, CancelFlag) and flag.is_set()
    assert await second == "second"
    worker.stop()


async def test_a_newer_idle_job_for_the_same_key_replaces_the_waiting_one():
    worker = ModelWorker()
    gate = threading.Event()
    blocker = worker.submit("busy", lambda cancel: gate.wait(5))
    old = worker.submit_idle("warm:a", lambda cancel: "old")
    new = worker.submit_idle("warm:a", lambda cancel: "new")
    gate.set()
    assert await blocker is True
    assert await new == "new"
    try:
        await old
        raise AssertionError("the older idle job should have been superseded")
    except Superseded:
        pass
    worker.stop()


async def test_a_dropped_warm_up_stops_and_does_not_come_back():
    worker = ModelWorker()
    started = threading.Event()
    runs = []

    def warm_document(cancel):
        runs.append(1)
        started.set()
        while not cancel.is_set():
            time.sleep(0.005)
        return False

    document = worker.submit_idle("document:a", warm_document, resume=True)
    await asyncio.get_running_loop().run_in_executor(None, started.wait)
    worker.drop_idle("document:a")  # the document was closed
    assert await document is False
    assert await worker.submit("other", lambda cancel: "done") == "done"
    assert runs == [1]  # not resumed
    worker.stop()


async def test_a_warm_up_that_wants_quiet_waits_for_a_pause():
    worker = ModelWorker()
    ran = threading.Event()
    document = worker.submit_idle("document:a", lambda cancel: ran.set() or True, quiet_s=3.0)
    for _ in range(4):  # keystrokes: no pause anywhere near long enough
        await worker.submit("a", lambda cancel: "answer")
        assert not ran.is_set()
        await asyncio.sleep(0.05)
    assert await document is True  # then it runs
    worker.stop()

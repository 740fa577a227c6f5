"""The completion caches as units: the exact-prompt LRU and type-through (engine/cache.py)."""

from __future__ import annotations

import threading

from engine.cache import LRUCache, TypeThrough


def test_the_lru_keeps_the_most_recently_used_and_counts_hits_and_misses():
    cache = LRUCache(capacity=2)
    cache.put("a", "A", "eos")
    cache.put("b", "B", "eos")
    assert cache.get("a") == ("A", "eos")  # "a" is now the most recent
    cache.put("c", "C", "stop")  # evicts "b", the least recent
    assert cache.get("b") is None
    assert cache.get("a") == ("A", "eos") and cache.get("c") == ("C", "stop")
    assert (cache.hits, cache.misses) == (3, 1)
    cache.put("a", "A2", "max_tokens")  # a new value for a key replaces the old
    assert cache.get("a") == ("A2", "max_tokens")


def test_type_through_answers_the_rest_while_the_user_types_the_suggestion():
    shown = TypeThrough()
    shown.remember("m.py", "x = ", "\nprint(x)\n", "compute(1, 2)")
    assert shown.lookup("m.py", "x = comp", "\nprint(x)\n") == "ute(1, 2)"
    assert shown.lookup("m.py", "x = c", "\nprint(x)\n") == "ompute(1, 2)"
    assert shown.hits == 2
    assert shown.lookup("m.py", "x = compute(1, 2)", "\nprint(x)\n") is None  # typed it all: nothing left
    assert shown.lookup("m.py", "x = comb", "\nprint(x)\n") is None  # typed something else
    assert shown.lookup("m.py", "x = comp", "\nprint(y)\n") is None  # the text after the cursor changed
    assert shown.lookup("m.py", "y = comp", "\nprint(x)\n") is None  # the text before it changed
    assert shown.lookup("other.py", "x = comp", "\nprint(x)\n") is None  # per document
    assert shown.hits == 2


def test_an_empty_answer_or_forget_drops_the_suggestion():
    shown = TypeThrough()
    shown.remember("m.py", "x = ", "", "compute()")
    shown.remember("m.py", "x = ", "", "")
    assert shown.lookup("m.py", "x = c", "") is None
    shown.remember("m.py", "x = ", "", "compute()")
    shown.forget("m.py")
    assert shown.lookup("m.py", "x = c", "") is None


def test_type_through_is_safe_from_two_threads():
    """The event loop looks up and forgets while the model worker remembers: no lost or torn
    entries, every answer is the rest of the suggestion remembered for that document."""
    shown = TypeThrough()
    errors: list[BaseException] = []
    stop = threading.Event()

    def worker() -> None:
        try:
            for i in range(3000):
                key = f"d{i % 7}.py"
                shown.remember(key, f"v{i % 7} = ", "", f"value_{i % 7}()")
                if i % 11 == 0:
                    shown.forget(key)
        except BaseException as exc:
            errors.append(exc)
        finally:
            stop.set()

    def loop() -> None:
        try:
            rounds = 0
            while not stop.is_set() or rounds < 50:  # and on after the worker ends: some entries stay
                rounds += 1
                for k in range(7):
                    rest = shown.lookup(f"d{k}.py", f"v{k} = val", "")
                    assert rest in (None, f"ue_{k}()"), rest
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker), threading.Thread(target=loop), threading.Thread(target=loop)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    assert shown.hits > 0

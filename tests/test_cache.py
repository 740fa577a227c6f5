"""The completion caches as units: the exact-prompt LRU and type-through (engine/cache.py)."""

from __future__ import annotations

from engine.cache import LRUCache, ShownSuggestion


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
    text = "x = \nprint(x)\n"
    shown = ShownSuggestion.at(text, 4, "compute(1, 2)")
    assert shown is not None

    def typed(prefix: str, suffix: str = "\nprint(x)\n") -> str | None:
        return shown.rest(prefix + suffix, len(prefix))

    assert typed("x = comp") == "ute(1, 2)"
    assert typed("x = c") == "ompute(1, 2)"
    assert typed("x = compute(1, 2)") is None  # typed it all: nothing left
    assert typed("x = comb") is None  # typed something else
    assert typed("x = comp", "\nprint(y)\n") is None  # the text after the cursor changed
    assert typed("x = comp", "\nprint(x)\n# more\n") is None  # (its end too)
    assert typed("y = comp") is None  # the text before it changed
    assert typed("# above\nx = comp") == "ute(1, 2)"  # far enough above: the same place
    assert ShownSuggestion.at(text, 4, "") is None  # an empty answer: nothing to type through


def test_type_through_compares_in_place_in_a_large_document():
    """Only the suggestion and the text around it are compared, wherever the place is."""
    body = "value = 1\n" * 200_000  # 2 MB
    text = body + "total = \n" + body
    offset = len(body) + len("total = ")
    shown = ShownSuggestion.at(text, offset, "sum(values)")
    assert shown is not None and len(shown.prefix_tail) < 5000 and len(shown.suffix_head) < 5000
    typed = text[:offset] + "su" + text[offset:]
    assert shown.rest(typed, offset + 2) == "m(values)"
    assert shown.rest(typed, offset + 1) is None  # the cursor is not after what was typed

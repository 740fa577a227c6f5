"""Token healing (engine/healing.py): unit tests on the real vocabulary, the service with the fake
backend, and the real model end to end where people type."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from engine.backends import GenerationRequest
from engine.healing import HealingState, TokenHealer, heal_split, indentation_split, strip_indentation
from engine.service import CompletionRequest
from engine.tokenizer import native_tokenizer

HYPOTENUSE = ('import math\n\n\ndef hypotenuse(a: float, b: float) -> float:\n'
              '    """Length of the hypotenuse of a right triangle with legs a and b."""\n    \n\n\n'
              'print(hypotenuse(3, 4))\n')
PALINDROME = 'def is_palindrome(s: str) -> bool:\n    """Return True if s reads the same backwards."""\n    \n'


@pytest.fixture(scope="module")
def vocab(model_path):
    tok = native_tokenizer(model_path)
    assert tok is not None
    return tok, TokenHealer(tok.token_bytes(), tok.is_text_token, tok.pieces)


def spliced(text: str, line: int, character: int, insert: str) -> str:
    lines = text.split("\n")
    lines[line] = lines[line][:character] + insert + lines[line][character:]
    return "\n".join(lines)


# -- the split, on the real pre-tokenizer ----------------------------------------------------------


@pytest.mark.parametrize(("middle", "kept", "healed"), [
    ("    ", "", "    "),  # typed indentation is one token the model never writes before code
    ("    retu", "   ", " retu"),  # the model writes "   " + " return"
    ("        self.", "        self", "."),  # ".append" is one token
    ("    x = foo(", "    x = foo", "("),  # "()" and "():" are tokens
    ("    x = café", "    x =", " café"),  # multibyte letters stay whole
    ("x = 1\n    y = ab", "x = 1\n    y =", " ab"),  # only the cursor's line is backed off
    ("x = 1\n", "x = 1\n", ""),  # at a line start there is nothing to heal
])
def test_heal_split_backs_off_to_the_last_pretokenizer_piece(vocab, middle, kept, healed):
    tok, healer = vocab
    assert healer.split(middle) == (kept, healed)
    assert heal_split(middle, tok.pieces) == (kept, healed)


@pytest.mark.parametrize("rest", [b"    ", b" retu", b".", b"(", " café".encode(), b"\t", b"x"])
def test_allowed_tokens_are_exactly_those_that_agree_with_the_rest(vocab, rest):
    tok, healer = vocab
    expected = {i for i, data in enumerate(tok.token_bytes())
                if data and tok.is_text_token(i) and (data.startswith(rest) or rest.startswith(data))}
    allowed = healer.allowed(rest)
    assert set(allowed) == expected
    assert len(allowed) == len(set(allowed))
    assert tok.encode(" return")[0] in healer.allowed(b" retu")
    assert all(tok.is_text_token(i) for i in allowed)  # never <|endoftext|> or a FIM token


def test_healing_state_consumes_the_healed_bytes_and_passes_the_rest(vocab):
    _, healer = vocab
    state = HealingState(healer, "    ret")
    assert state.take(b"   ") == b"" and state.rest == b" ret"
    assert state.take(b" return") == b"urn" and not state.active
    assert state.take(b" x") == b" x"  # done: everything passes
    assert state.healed_tokens == 2
    assert not HealingState(None, "abc").active  # no healer: no healing


def test_indentation_moves_out_of_the_prompt_and_off_the_answer():
    assert indentation_split("x = 1\n    ") == ("x = 1\n", "    ")
    assert indentation_split("    x") == ("    x", "")
    assert strip_indentation("    return 1\n    x", "    ") == "return 1\n    x"
    assert strip_indentation("\n\n        return 1", "    ") == "    return 1"  # blank lines first: dropped
    assert strip_indentation("  return 1\n  y", "    ") == "return 1\n  y"  # the user's indentation stands


# -- the service, with the fake backend ------------------------------------------------------------


def test_typed_indentation_is_not_in_the_prompt_and_not_inserted_twice(fake_service, fake_backend):
    fake_backend.queue("    return s[::-1] == s")
    result = fake_service.complete(CompletionRequest(PALINDROME, 2, 4, language="python"))
    assert fake_backend.requests[0].prompt.render().endswith('backwards."""\n<|fim_suffix|>\n<|fim_middle|>')
    assert fake_backend.requests[0].heal == ""  # not masked: the service cuts it
    assert result.text == "return s[::-1] == s"
    assert result.timings["healed"] == "    "


def test_a_partial_token_is_masked_by_a_backend_that_can(fake_service, fake_backend, vocab):
    _, healer = vocab
    fake_backend.fake_healer = healer
    fake_backend.queue(" return s[::-1] == s")
    result = fake_service.complete(CompletionRequest(PALINDROME.replace("\n    \n", "\n    retu\n"), 2, 8,
                                                     language="python"))
    request = fake_backend.requests[0]
    assert request.prompt.render().endswith("<|fim_middle|>   ") and request.heal == " retu"
    assert result.text == "rn s[::-1] == s"


def test_raw_requests_are_not_healed(fake_service, fake_backend):
    fake_backend.queue("x")
    fake_service.complete(CompletionRequest(PALINDROME, 2, 4, language="python", raw=True))
    assert fake_backend.requests[0].prompt.render().endswith("<|fim_middle|>    ")


def test_healed_and_unhealed_prompts_are_cached_apart(fake_service, fake_backend, vocab):
    _, healer = vocab
    fake_backend.fake_healer = healer
    fake_backend.queue(" return 1", " retry()")
    first = fake_service.complete(CompletionRequest("def f():\n    retu\n", 1, 8, language="python", path="a.py"))
    second = fake_service.complete(CompletionRequest("def f():\n    retr\n", 1, 8, language="python", path="b.py"))
    # The two prompts are the same text (both stop before " ret…"); the healed text tells them apart.
    assert fake_backend.requests[0].prompt == fake_backend.requests[1].prompt
    assert (first.text, second.text) == ("rn 1", "y()")


# -- the real model ---------------------------------------------------------------------------------

@pytest.mark.model
@pytest.mark.parametrize(("source", "line"), [(HYPOTENUSE, 5), (PALINDROME, 2)], ids=["hypotenuse", "palindrome"])
def test_after_auto_indent_the_body_parses_in_place(real_service, source, line):
    result = real_service.complete(CompletionRequest(source, line, 4, language="python", use_cache=False))
    assert result.text.strip(), result
    assert not result.text.startswith(" ")  # the typed indentation is not written again
    compile(spliced(source, line, 4, result.text), "<test>", "exec")
    assert "return" in result.text


@pytest.mark.model
@pytest.mark.parametrize(("typed", "starts"), [("    retu", "rn"), ("    return s[", "")], ids=["retu", "bracket"])
def test_inside_a_token_the_answer_continues_the_word(real_service, typed, starts):
    source = PALINDROME.replace("\n    \n", f"\n{typed}\n")
    result = real_service.complete(CompletionRequest(source, 2, len(typed), language="python", use_cache=False))
    assert result.timings["healed_tokens"] >= 1, result
    assert result.text.startswith(starts), result
    compile(spliced(source, 2, len(typed), result.text), "<test>", "exec")


@pytest.mark.model
def test_self_dot_heals_into_an_attribute(real_service):
    source = ("class Stack:\n    def __init__(self):\n        self.items = []\n\n    def push(self, item):\n"
              "        self.\n")
    result = real_service.complete(CompletionRequest(source, 5, 13, language="python", use_cache=False))
    assert result.timings["healed"] == "." and result.timings["healed_tokens"] >= 1
    assert result.text.startswith("items"), result
    compile(spliced(source, 5, 13, result.text), "<test>", "exec")


@pytest.mark.model
def test_the_backend_masks_until_the_healed_text_is_reproduced(real_service):
    backend = real_service.load()
    prompt = real_service.info.fim.build("def f(xs):\n", "\n", middle="   ")
    result = backend.generate(GenerationRequest.from_settings(prompt, real_service.settings, max_tokens=8,
                                                              time_budget_s=None, heal=" retu"))
    assert result.stats.healed_tokens >= 1
    assert result.text.startswith("rn"), result.text  # " retu" reproduced, then cut


@pytest.mark.model
@pytest.mark.parametrize(("source", "line"), [(HYPOTENUSE, 5), (PALINDROME, 2)], ids=["hypotenuse", "palindrome"])
def test_the_cli_examples_complete_and_parse(model_path, tmp_path, source, line):
    path = tmp_path / "example.py"
    path.write_text(source)
    done = subprocess.run([sys.executable, "-m", "lsp_server.cli", "complete", str(path), "--line", str(line),
                           "--character", "4", "--json", "--model", str(model_path)],
                          capture_output=True, text=True, timeout=600, check=True)
    answer = json.loads(done.stdout)
    assert answer["text"] and answer["timings"]["healed"] == "    ", answer
    compile(spliced(source, line, 4, answer["text"]), "<test>", "exec")


def test_the_cli_says_why_when_there_is_no_completion(tmp_path):
    path = tmp_path / "a.py"
    path.write_text(PALINDROME)
    done = subprocess.run([sys.executable, "-m", "lsp_server.cli", "complete", str(path), "--line", "2",
                           "--character", "4", "--backend", "fake"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0
    assert "fimble: no completion: the model wrote only whitespace here (empty)" in done.stderr


def test_the_block_is_judged_on_the_text_as_inserted(fake_service, fake_backend):
    """With typed indentation the model writes its lines from column 0; the end-of-block check
    while streaming must see them without the indentation the user typed, or it cuts a block
    header from its body (`if x:` then nothing)."""
    source = "def f(ops):\n    balance = 0\n    for op in ops:\n        \n    return balance\n"
    fake_backend.queue("        balance += op\n        if balance < 0:\n            return -1\n    return balance\n")
    result = fake_service.complete(CompletionRequest(source, 3, 8, language="python"))
    assert result.text == "balance += op\n        if balance < 0:\n            return -1"

"""native.Tokenizer: one suite, run against the C module and the Python twin, checked against
llama.cpp's tokenizer (the reference) and Hugging Face tokenizers built from the same GGUF."""

from __future__ import annotations

import sysconfig
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import native
from engine.tokenizer import Vocabulary
from native.tokenizer import Tokenizer

pytestmark = pytest.mark.model  # the vocabulary comes from the real model file

MULTILINGUAL = (
    "日本語のテキスト、中文字符和标点。한국어 문장입니다. العربية: مرحبا بالعالم. हिन्दी देवनागरी लिपि। "
    "Ελληνικά, русский язык, עברית. Emoji: 👨‍👩‍👧‍👦 🏳️‍🌈 👍🏽 ❤️‍🔥; combining: é (e\u0301), n\u0303, "
    "Z\u0351\u0300\u0301algo; ligature ﬁ, fullwidth ＡＢＣ１２３, math 𝔸𝕓𝒸 ∑∫√∞, ZWJ\u200d, NBSP\u00a0here."
)
RUNS = [
    " " * 1000, "\t" * 300, "\n" * 200, "\r\n" * 150, "1234567890" * 50, " \t \n \r\n  \n\t" * 20,
    "x" + " " * 17 + "y", "a\n\n\n    b\n", "trailing   ", "   leading", "0.5e-10 + 12_345", "'''\"\"\"''",
    "def f():\r\n    return 1\r\n\r\n", "I'M YOU'RE we'Ve they'LL it'd", "ſ K ǅ",  # case-folding traps
]


@pytest.fixture(scope="module")
def llama(model_path):
    from llama_cpp import Llama

    llm = Llama(model_path=str(model_path), vocab_only=True, verbose=False)
    return lambda text, special=False: llm.tokenize(text.encode("utf-8", "replace"), add_bos=False,
                                                    special=special)


def from_gguf(path: Path, *, use_c: bool = True) -> Tokenizer:
    """native takes the vocabulary as lists; engine/tokenizer.py reads them from the file."""
    vocab = Vocabulary.from_gguf(path)
    return Tokenizer(vocab.tokens, vocab.token_types, vocab.merges, vocab.pre, use_c=use_c)


@pytest.fixture(scope="module", params=["c", "twin"])
def tok(request, model_path) -> Tokenizer:
    if request.param == "c" and not native.HAVE_C:
        pytest.fail("the C extension is not built")
    tokenizer = from_gguf(model_path, use_c=request.param == "c")
    assert tokenizer.is_native == (request.param == "c")
    return tokenizer


def stdlib_sources() -> list[Path]:
    root = Path(sysconfig.get_paths()["stdlib"])
    return sorted(p for p in root.rglob("*.py") if "site-packages" not in p.parts)


def test_the_whole_standard_library_matches_llama_cpp(tok, llama):
    files = stdlib_sources()
    if not tok.is_native:
        files = files[::60]  # the twin is ~50x slower: every 60th file
    checked = 0
    for path in files:
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        assert tok.encode(text) == llama(text), path
        checked += len(text)
    assert checked > (5_000_000 if tok.is_native else 80_000)  # (Debian's stdlib, without its tests: 11 MB)


@pytest.mark.parametrize("text", [MULTILINGUAL, *RUNS], ids=["multilingual", *(f"run{i}" for i in range(len(RUNS)))])
def test_hard_texts_match_llama_cpp(tok, llama, text):
    assert tok.encode(text) == llama(text)
    assert tok.count(text) == len(llama(text))


ASSIGNED = st.characters(
    blacklist_categories=("Cs", "Cn", "Co"),  # surrogates; unassigned in this Python's Unicode, private use
    max_codepoint=0x10FFFF,
)
CODE_LIKE = st.sampled_from([*" \t\n\r'\"()[]{}:.,=+-_#0123456789abcxyzXYZ", "\r\n", "  ", "ü", "中", "👍"])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.one_of(ASSIGNED, CODE_LIKE), max_size=60).map("".join))
def test_random_text_matches_llama_cpp(tok, llama, text):
    assert tok.encode(text) == llama(text)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(max_size=80))
def test_decode_inverts_encode_for_every_valid_str(tok, text):
    text = text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")  # valid str only
    assert tok.decode(tok.encode(text)) == text


def test_lone_surrogates_are_encoded_as_replacement_never_a_crash(tok):
    assert tok.encode("a\ud800b\udfff") == tok.encode("a?b?")
    assert tok.count("\udc80" * 5) == len(tok.encode("?????"))


def test_special_tokens_only_when_allowed(tok, llama):
    text = "<|fim_prefix|>def f():<|fim_suffix|>\n<|fim_middle|>"
    special = tok.encode(text, allow_special=True)
    assert special == llama(text, special=True)
    assert special[0] == 151659 and len(special) < len(tok.encode(text))
    plain = tok.encode(text)
    assert plain == llama(text) and 151659 not in plain
    assert tok.decode(plain) == text == tok.decode(special)
    # User-defined tokens are part of the text's vocabulary: matched either way, as llama.cpp does.
    assert tok.encode("<tool_call>x") == llama("<tool_call>x") == [151657, 87]


def test_api_shape(tok):
    assert tok.vocab_size == 151936
    assert tok.encode("") == [] and tok.count("") == 0 and tok.decode([]) == ""
    assert isinstance(tok.encode("x")[0], int)


# -- the other pre-tokenizers, on the same vocabulary ----------------------------------------------

@pytest.fixture(scope="module", params=["gpt-2", "llama-bpe", "deepseek-coder"])
def other_pre(request, model_path, tmp_path_factory):
    from gguf_writer import I32, write_gguf

    from engine.gguf import read_gguf

    meta = read_gguf(model_path, check_complete=False).metadata
    vocab = {k: v for k, v in meta.items() if k.startswith("tokenizer.ggml") or k == "general.architecture"}
    vocab["tokenizer.ggml.token_type"] = [I32(t) for t in vocab["tokenizer.ggml.token_type"]]
    vocab["tokenizer.ggml.pre"] = request.param
    return write_gguf(tmp_path_factory.mktemp("vocab") / f"{request.param}.gguf", vocab)


def test_other_pre_tokenizers_match_llama_cpp(other_pre):
    from llama_cpp import Llama

    llm = Llama(model_path=str(other_pre), vocab_only=True, verbose=False)
    c, twin = from_gguf(other_pre), from_gguf(other_pre, use_c=False)
    texts = [MULTILINGUAL, *RUNS, *(p.read_text(encoding="utf-8") for p in stdlib_sources()[:400:40])]
    for text in texts:
        want = llm.tokenize(text.encode("utf-8"), add_bos=False, special=False)
        assert c.encode(text) == want, (other_pre.name, text[:80])
        assert twin.encode(text) == want, (other_pre.name, text[:80])


def test_unknown_pre_tokenizer_is_refused_by_name(model_path):
    from engine.gguf import read_gguf

    meta = read_gguf(model_path, check_complete=False).metadata
    with pytest.raises(ValueError, match="pre-tokenizer 'falcon' is not supported"):
        Tokenizer(meta["tokenizer.ggml.tokens"], meta["tokenizer.ggml.token_type"], meta["tokenizer.ggml.merges"],
                  "falcon")


# -- Hugging Face tokenizers built from the same GGUF --------------------------------------------

@pytest.fixture(scope="module")
def hf(model_path, tmp_path_factory):
    transformers = pytest.importorskip("transformers")
    from tokenizers import Tokenizer as HFTokenizer

    folder = tmp_path_factory.mktemp("hf-tokenizer")
    transformers.AutoTokenizer.from_pretrained(str(model_path.parent), gguf_file=model_path.name).save_pretrained(
        folder)
    hf = HFTokenizer.from_file(str(folder / "tokenizer.json"))
    return lambda text: hf.encode(text, add_special_tokens=False).ids


def test_matches_hugging_face_tokenizers(tok, hf):
    texts = [MULTILINGUAL, *RUNS, *(p.read_text(encoding="utf-8") for p in stdlib_sources()[:2000:50])]
    for text in texts:
        assert tok.encode(text) == hf(text), text[:80]

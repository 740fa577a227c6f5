"""Tokenizer speed: native (C) vs tiktoken vs Hugging Face tokenizers vs llama.cpp, one thread.

    python benchmarks/bench_tokenizer.py [--model GGUF] [--mb 12] [--hf-folder DIR]

All four use the same vocabulary (the GGUF's) and the same split rules (qwen2's): tiktoken gets an
`Encoding` built from the GGUF tokens (the id is the merge rank in this tiktoken-derived vocabulary)
and the qwen2 pattern; Hugging Face gets the tokenizer.json transformers writes from the GGUF (the
torch backend keeps one; give its folder with --hf-folder, or it is made in a temp dir). The
corpus is the Python standard library's source (no site-packages), at least --mb megabytes, each
file encoded by one call. Also reported: load time and the resident memory the loaded vocabulary
takes, the Python twin's speed on a slice, and the cost of recounting a 5,000-line file after a
keystroke with the engine's per-line cache.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import sysconfig
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("RAYON_NUM_THREADS", "1")  # Hugging Face tokenizers: one thread, like the others
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

QWEN2_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
                 r"\s*[\r\n]+|\s+(?!\S)|\s+")


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def corpus(megabytes: float) -> list[str]:
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    texts, total = [], 0
    for path in sorted(stdlib.rglob("*.py")):
        if "site-packages" in path.parts:
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        texts.append(text)
        total += len(text.encode("utf-8"))
    while total < megabytes * 1e6:  # a small stdlib: repeat it
        texts += texts
        total *= 2
    return texts


def loaded(name: str, build: Callable[[], object]) -> tuple[object, float, float]:
    gc.collect()
    before = rss_mb()
    started = time.perf_counter()
    obj = build()
    return obj, time.perf_counter() - started, rss_mb() - before


def speed(encode: Callable[[str], object], texts: list[str]) -> float:
    size = sum(len(t.encode("utf-8")) for t in texts)
    started = time.perf_counter()
    for text in texts:
        encode(text)
    return size / 1e6 / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default=None, help="GGUF file (default: the embedded model)")
    parser.add_argument("--mb", type=float, default=12.0)
    parser.add_argument("--hf-folder", type=Path, default=None)
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from engine.models import resolve_model

    path = resolve_model(args.model).path
    texts = corpus(args.mb)
    size = sum(len(t.encode("utf-8")) for t in texts)
    print(f"corpus: {len(texts)} files of the standard library, {size / 1e6:.1f} MB; model {path.name}")

    import native
    from engine.tokenizer import native_tokenizer

    tok, load_s, mem = loaded("native", lambda: native_tokenizer(path))
    assert isinstance(tok, native.Tokenizer) and tok.is_native
    rows = [("native (C)", speed(tok.encode, texts), load_s, mem)]

    import tiktoken

    from engine.gguf import read_gguf

    meta = read_gguf(path, check_complete=False).metadata
    types = meta["tokenizer.ggml.token_type"]
    from native.tokenizer import token_bytes

    def build_tiktoken() -> object:
        ranks = {token_bytes(t, k): i for i, (t, k) in enumerate(zip(meta["tokenizer.ggml.tokens"], types,
                                                                       strict=True)) if k == 1}
        special = {t: i for i, (t, k) in enumerate(zip(meta["tokenizer.ggml.tokens"], types, strict=True))
                   if k in (3, 4)}
        return tiktoken.Encoding("qwen2-gguf", pat_str=QWEN2_PATTERN, mergeable_ranks=ranks, special_tokens=special)

    enc, load_s, mem = loaded("tiktoken", build_tiktoken)
    sample = texts[:200]
    agree = sum(enc.encode_ordinary(t) == tok.encode(t) for t in sample)  # type: ignore[attr-defined]
    rows.append(("tiktoken", speed(enc.encode_ordinary, texts), load_s, mem))  # type: ignore[attr-defined]

    from tokenizers import Tokenizer as HFTokenizer

    folder = args.hf_folder
    if folder is None:
        from transformers import AutoTokenizer

        folder = Path(tempfile.mkdtemp())
        AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name).save_pretrained(folder)
    hf, load_s, mem = loaded("hf", lambda: HFTokenizer.from_file(str(folder / "tokenizer.json")))
    hf_agree = sum(hf.encode(t, add_special_tokens=False).ids == tok.encode(t) for t in sample)  # type: ignore[attr-defined]
    rows.append(("HF tokenizers", speed(lambda t: hf.encode(t, add_special_tokens=False), texts), load_s, mem))  # type: ignore[attr-defined]

    from llama_cpp import Llama

    llm, load_s, mem = loaded("llama", lambda: Llama(model_path=str(path), vocab_only=True, verbose=False))
    rows.append(("llama.cpp", speed(lambda t: llm.tokenize(t.encode("utf-8"), add_bos=False), texts),  # type: ignore[attr-defined]
                 load_s, mem))

    twin_tok = native_tokenizer(path, use_c=False)
    assert twin_tok is not None
    rows.append(("native twin (Python)", speed(twin_tok.encode, texts[:40]), float("nan"), float("nan")))

    base = {name: mbs for name, mbs, _, _ in rows}
    print(f"\n{'tokenizer':<22}{'MB/s':>8}{'load s':>9}{'vocab RSS MB':>14}")
    for name, mbs, load_s, mem in rows:
        print(f"{name:<22}{mbs:>8.2f}{load_s:>9.2f}{mem:>14.1f}")
    print(f"\nnative / tiktoken = {base['native (C)'] / base['tiktoken']:.2f}x, "
          f"native / HF = {base['native (C)'] / base['HF tokenizers']:.2f}x, "
          f"native / llama.cpp = {base['native (C)'] / base['llama.cpp']:.2f}x")
    print(f"same ids as native on {len(sample)} files: tiktoken {agree}, HF {hf_agree}")

    # A keystroke in a 5,000-line file: the engine counts per line and caches by content.
    from engine.config import Settings
    from engine.service import CompletionService

    service = CompletionService(Settings(model=str(path)))
    service.load()
    print(f"the engine counts with: {type(service.load().tokenizer).__module__}")  # type: ignore[attr-defined]
    lines = "".join(texts).splitlines(keepends=True)[:5000]
    started = time.perf_counter()
    cold = sum(service.count_tokens(line) for line in lines)
    cold_ms = (time.perf_counter() - started) * 1000
    lines[2500] = lines[2500].rstrip("\n") + "x\n"
    started = time.perf_counter()
    warm = sum(service.count_tokens(line) for line in lines)
    warm_ms = (time.perf_counter() - started) * 1000
    print(f"5,000-line file: first count {cold_ms:.1f} ms ({cold} tokens); after a keystroke {warm_ms:.2f} ms "
          f"({warm} tokens)")


if __name__ == "__main__":
    main()

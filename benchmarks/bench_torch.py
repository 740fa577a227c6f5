"""The torch backend's prefill and decode speed at batch 1 vs transformers' own `generate()`.

    python benchmarks/bench_torch.py [--model NAME_OR_PATH]... [--prompt-tokens 512] [--new-tokens 128]
                                     [--compile]

Meant for a GPU (bf16; `--compile` adds torch.compile of the decode step with CUDA graphs); on a
CPU it runs in float32 and tells the same story more slowly. For each model: our prefill tokens/s
and decode tokens/s (greedy, a fixed prompt, EOS ignored), then transformers' `generate()` on the
same weights, device and dtype with its default (dynamic) cache and then its static cache, and
the decode ratio. Both decode exactly `--new-tokens` tokens.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def bench_ours(backend: object, prompt_ids: list[int], new_tokens: int) -> tuple[float, float]:
    import torch

    from engine.backends.base import GenerationRequest
    from engine.backends.sampling import sample
    from engine.prompt import Prompt, Text

    request = GenerationRequest(prompt=Prompt((Text(""),), "prefix"))
    backend.cached = []  # type: ignore[attr-defined]
    sync()
    started = time.perf_counter()
    logits, _, _ = backend.prefill(prompt_ids, request)  # type: ignore[attr-defined]
    sync()
    prefill_s = time.perf_counter() - started
    none = torch.tensor([], dtype=torch.long)
    started = time.perf_counter()
    for _ in range(new_tokens):
        token = sample(logits, none, temperature=0.0, k=0, p=1.0, min_prob=0.0, penalty=1.0)
        logits = backend.decode_one(token)  # type: ignore[attr-defined]
    sync()
    decode_s = time.perf_counter() - started
    return len(prompt_ids) / prefill_s, new_tokens / decode_s


def bench_generate(folder: Path, prompt_ids: list[int], new_tokens: int, cache: str | None) -> float:
    import torch
    from transformers import AutoModelForCausalLM

    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=dtype).to(device).eval()
    ids = torch.tensor([prompt_ids], device=device)
    kwargs = {"max_new_tokens": new_tokens, "min_new_tokens": new_tokens, "do_sample": False}
    if cache:
        kwargs["cache_implementation"] = cache
    with torch.inference_mode():
        model.generate(ids, max_new_tokens=4, do_sample=False)  # warm up
        sync()
        started = time.perf_counter()
        model.generate(ids, max_new_tokens=1, do_sample=False)
        sync()
        first = time.perf_counter() - started
        started = time.perf_counter()
        model.generate(ids, **kwargs)
        sync()
        total = time.perf_counter() - started
    del model
    return new_tokens / max(total - first, 1e-9)  # decode only: the prefill (one token) subtracted


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", action="append", default=None)
    parser.add_argument("--prompt-tokens", type=int, default=512)
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--compile", action="store_true")
    args = parser.parse_args()
    import torch

    from engine.backends.torch import TorchBackend
    from engine.config import Settings
    from engine.models import resolve_model

    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "CPU (float32)"
    print(f"device: {device}; torch {torch.__version__}; prompt {args.prompt_tokens} tokens, "
          f"decode {args.new_tokens} tokens, batch 1")
    source = Path(__file__).read_text() * 20
    for name in args.model or ["qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b"]:
        ref = resolve_model(name)
        backend = TorchBackend(ref, Settings(backend="torch", n_ctx=args.prompt_tokens + args.new_tokens + 64,
                                                  torch_compile=args.compile))
        started = time.perf_counter()
        backend.load()
        load_s = time.perf_counter() - started
        prompt_ids = backend.vocab.encode(source)[: args.prompt_tokens]  # type: ignore[union-attr]
        bench_ours(backend, prompt_ids[:32], 8)  # warm up (and compile)
        prefill, decode = bench_ours(backend, prompt_ids, args.new_tokens)
        folder = backend.folder  # the Hugging Face folder transformers' generate() reads
        backend.close()
        if folder is None:
            print(f"{name}: load {load_s:.1f} s | fimble prefill {prefill:,.0f} tok/s, decode {decode:,.1f} tok/s | "
                  "no kept folder for transformers' generate() (no room on disk)")
            continue
        dynamic = bench_generate(folder, prompt_ids, args.new_tokens, None)
        static = bench_generate(folder, prompt_ids, args.new_tokens, "static")
        print(f"{name}: load {load_s:.1f} s | fimble prefill {prefill:,.0f} tok/s, decode {decode:,.1f} tok/s | "
              f"generate() decode {dynamic:,.1f} tok/s (dynamic cache), {static:,.1f} tok/s (static cache) | "
              f"decode ratio {decode / dynamic:.2f}x / {decode / static:.2f}x")


if __name__ == "__main__":
    main()

"""The torch backend on a CUDA GPU: right first, then fast. One script for a short lease.

    python benchmarks/gpu_check.py --tokenizer FOLDER [--out FILE.json] [--compile]

No model hub is reachable from a lent GPU machine and the default model's weights are too big to
carry there, so the checks run on models built on the spot: a tiny random Qwen2, and random
weights in the real shapes of Qwen2.5-Coder-0.5B and 1.5B, with the real tokenizer files from
`--tokenizer` (a kept torch folder, e.g. $FIMBLE_HOME/torch/qwen2.5-coder-0.5b-…). Random weights
cost the same arithmetic as trained ones, so the speeds hold; what they cannot show (greedy text
agreeing with llama.cpp) tests/test_torch_backend.py checks on the CPU with the real weights.

Checks, each printed as one line (`ok` / `FAIL`), the exit status 1 if any fails:
  1. our model's logits against transformers' Qwen2 on the GPU: float32 and bfloat16;
  2. a prefill in pieces over stale cache entries, then one-token steps, equal to one full pass;
  3. the decode step compiled (CUDA graphs) against eager, step by step;
  4. TorchBackend.generate on the GPU: a cancel from another thread and a time budget stop it;
then prefill / decode tokens/s against transformers' generate() (bench_torch.py's measures).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

SHAPES = {  # Qwen2.5-Coder's published configs
    "0.5b": dict(hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
                 num_key_value_heads=2, tie_word_embeddings=True),
    "1.5b": dict(hidden_size=1536, intermediate_size=8960, num_hidden_layers=28, num_attention_heads=12,
                 num_key_value_heads=2, tie_word_embeddings=True),
}
RESULTS: list[tuple[str, bool, str]] = []
DEVICE = "cuda"  # --device cpu: a dry run of the script itself, here


def check(name: str, ok: bool, detail: str) -> None:
    RESULTS.append((name, ok, detail))
    print(f"{'ok  ' if ok else 'FAIL'} {name}: {detail}", flush=True)


def random_folder(root: Path, shape: dict, tokenizer: Path | None, vocab: int, seed: int) -> Path:
    import torch
    import transformers

    config = transformers.Qwen2Config(vocab_size=vocab, max_position_embeddings=32768, rope_theta=1e6,
                                      rms_norm_eps=1e-6, bos_token_id=151643, eos_token_id=151645, **shape)
    torch.manual_seed(seed)
    with torch.device(DEVICE):
        model = transformers.Qwen2ForCausalLM(config).to(torch.bfloat16)
    with torch.no_grad():  # random biases, so a missing bias would show
        for layer in model.model.layers:
            for proj in (layer.self_attn.q_proj, layer.self_attn.k_proj, layer.self_attn.v_proj):
                proj.bias.normal_(0, 0.5)
    folder = root / f"random-{vocab}-{shape['hidden_size']}"
    model.save_pretrained(folder, safe_serialization=True)
    if tokenizer is not None:
        for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "generation_config.json"):
            if (tokenizer / name).exists():
                shutil.copy(tokenizer / name, folder / name)
    return folder


def rel(a, b) -> float:
    return float((a.float() - b.float()).norm() / b.float().norm())


def check_logits(folder: Path) -> None:
    import torch
    import transformers

    from engine.backends.torch_model import load_transformer

    torch.backends.cuda.matmul.allow_tf32 = False
    cuda = torch.device(DEVICE)
    ids = torch.randint(0, 151936, (200,), generator=torch.Generator().manual_seed(1)).tolist()
    ref_model = transformers.Qwen2ForCausalLM.from_pretrained(str(folder), dtype=torch.float32).to(cuda).eval()
    with torch.no_grad():
        ref = ref_model(torch.tensor([ids], device=cuda)).logits[0]  # [T, vocab]
    del ref_model
    for dtype, bound in ((torch.float32, 1e-4), (torch.bfloat16, 3e-2)):
        net = load_transformer(folder, dtype, cuda)
        net.setup_cache(256)
        with torch.no_grad():
            ours = net(torch.tensor([ids], device=cuda), torch.arange(200, device=cuda))[0]
        err = rel(ours, ref)
        check(f"logits vs transformers, {str(dtype)[6:]}", err < bound, f"relative error {err:.1e} (< {bound:.0e})")
        if dtype is torch.bfloat16:
            other = torch.randint(0, 151936, (200,), generator=torch.Generator().manual_seed(2)).tolist()
            with torch.no_grad():
                net(torch.tensor([ids[:50] + other[50:]], device=cuda), torch.arange(200, device=cuda))
                net(torch.tensor([ids[50:150]], device=cuda), torch.arange(50, 150, device=cuda))
                steps = torch.stack([net(torch.tensor([[t]], device=cuda), torch.tensor([i], device=cuda))[0, -1]
                                     for i, t in enumerate(ids[150:], start=150)])
            err = rel(steps, ours[150:])
            check("stale cache reused, then one-token steps, bfloat16", err < 3e-2,
                  f"relative error {err:.1e} against one full pass (< 3e-02)")
            compiled_vs_eager(net, ids)
        del net
    torch.cuda.empty_cache()


def compiled_vs_eager(net, ids: list[int]) -> None:
    """The compiled step (static shapes, CUDA graphs) must give eager's logits at every step,
    including after the graph's output buffer was reused by the next replay."""
    import torch

    cuda = torch.device(DEVICE)
    with torch.no_grad():
        net(torch.tensor([ids[:100]], device=cuda), torch.arange(100, device=cuda))
        eager = [net(torch.tensor([[t]], device=cuda), torch.tensor([i], device=cuda))[0, -1].clone()
                 for i, t in enumerate(ids[100:140], start=100)]
        net.static_shapes = True
        step = torch.compile(net, mode="reduce-overhead", fullgraph=True)
        started = time.perf_counter()
        got = []
        for _ in range(2):  # the second pass replays the captured graphs
            got = [step(torch.tensor([[t]], device=cuda), torch.tensor([i], device=cuda))[0, -1].clone()
                   for i, t in enumerate(ids[100:140], start=100)]
        compile_s = time.perf_counter() - started
        net.static_shapes = False
    err = max(rel(a, b) for a, b in zip(got, eager, strict=True))
    same = sum(int(a.argmax()) == int(b.argmax()) for a, b in zip(got, eager, strict=True))
    check("compiled decode step vs eager, bfloat16", err < 3e-2,
          f"worst step relative error {err:.1e} (< 3e-02), argmax equal at {same}/40 steps, "
          f"compile + 80 steps {compile_s:.0f} s")


def check_generate(folder: Path, compile_step: bool) -> None:
    from engine.backends.base import GenerationRequest
    from engine.backends.torch import TorchBackend
    from engine.config import Settings
    from engine.models import resolve_model
    from engine.prompt import FIM_TEMPLATES
    from native.cancel import CancelFlag

    backend = TorchBackend(resolve_model(str(folder)), Settings(backend="torch", n_ctx=2048,
                                                                torch_compile=compile_step))
    backend.load()
    label = "compiled" if compile_step else "eager"
    assert backend.device.type == DEVICE, backend.device
    fim = FIM_TEMPLATES[0].build("def fibonacci(n):\n    ", "\n")
    first = backend.generate(GenerationRequest(prompt=fim, max_tokens=32, temperature=0.0, time_budget_s=None))
    again = backend.generate(GenerationRequest(prompt=fim, max_tokens=32, temperature=0.0, time_budget_s=None))
    check(f"generate greedy twice, {label}", first.text == again.text and again.stats.prompt_tokens_evaluated <= 1,
          f"{first.stats.generated_tokens} tokens, stop {first.stats.stop_reason}; again evaluated "
          f"{again.stats.prompt_tokens_evaluated} prompt tokens, same text: {first.text == again.text}")
    long = FIM_TEMPLATES[0].build("# a long story\n" * 100, "")
    request = GenerationRequest(prompt=long, max_tokens=1500, temperature=0.0, time_budget_s=None,
                                stop=[], cancel=CancelFlag())
    threading.Timer(0.3, request.cancel.set).start()
    stats = backend.generate(request).stats
    check(f"cancel from another thread, {label}", stats.stop_reason == "cancelled" and stats.generated_tokens < 1500,
          f"stop {stats.stop_reason} after {stats.generated_tokens} tokens")
    other = FIM_TEMPLATES[0].build("# another story\n" * 100, "")
    budget = backend.generate(GenerationRequest(prompt=other, max_tokens=1500, temperature=0.0,
                                                time_budget_s=0.25, stop=[]))
    check(f"time budget 0.25 s, {label}", budget.stats.stop_reason in ("time_budget", "eos", "stop"),
          f"stop {budget.stats.stop_reason} after {budget.stats.generated_tokens} tokens, "
          f"decode {budget.stats.decode_ms:.0f} ms")
    backend.close()


def speeds(folder: Path, compile_step: bool, prompt_tokens: int, new_tokens: int) -> dict:
    from bench_torch import bench_generate, bench_ours

    from engine.backends.torch import TorchBackend
    from engine.config import Settings
    from engine.models import resolve_model

    backend = TorchBackend(resolve_model(str(folder)), Settings(backend="torch", n_ctx=prompt_tokens + new_tokens + 64,
                                                                torch_compile=compile_step))
    backend.load()
    ids = backend.vocab.encode(Path(__file__).read_text() * 20)[:prompt_tokens]  # type: ignore[union-attr]
    bench_ours(backend, ids[:32], 8)  # warm up (and compile)
    bench_ours(backend, ids[:64], 16)
    prefill, decode = bench_ours(backend, ids, new_tokens)
    backend.close()
    row = {"prefill_tok_s": round(prefill), "decode_tok_s": round(decode, 1)}
    if not compile_step:
        row["generate_dynamic_tok_s"] = round(bench_generate(folder, ids, new_tokens, None), 1)
        row["generate_static_tok_s"] = round(bench_generate(folder, ids, new_tokens, "static"), 1)
    return row


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tokenizer", type=Path, required=True)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--compile", action="store_true", help="also check and time the compiled decode step")
    parser.add_argument("--prompt-tokens", type=int, default=512)
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--sizes", default="0.5b,1.5b")
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    args = parser.parse_args()
    import torch

    global DEVICE
    DEVICE = args.device
    if DEVICE == "cuda" and not torch.cuda.is_available():
        sys.exit("no CUDA device: this check is for a GPU machine")
    name = torch.cuda.get_device_name() if DEVICE == "cuda" else "CPU (dry run)"
    print(f"device: {name}; torch {torch.__version__}", flush=True)
    root = Path(tempfile.mkdtemp())
    timings: dict[str, dict] = {}
    for size in args.sizes.split(","):
        shape = SHAPES[size]
        folder = random_folder(root, shape, args.tokenizer, 151936, seed=3)
        if size == "0.5b":
            check_logits(folder)
            check_generate(folder, False)
            if args.compile:
                check_generate(folder, True)
        for compile_step in (False, True) if args.compile else (False,):
            key = f"{size} {'compiled' if compile_step else 'eager'}"
            timings[key] = speeds(folder, compile_step, args.prompt_tokens, args.new_tokens)
            print(f"{key}: {timings[key]}", flush=True)
    failed = [name for name, ok, _ in RESULTS if not ok]
    print(f"\n{len(RESULTS) - len(failed)}/{len(RESULTS)} checks passed"
          f"{'; failed: ' + ', '.join(failed) if failed else ''}")
    print(f"prompt {args.prompt_tokens} tokens, decode {args.new_tokens}, batch 1 (tokens/s):")
    for key, row in timings.items():
        print(f"  {key:14} " + ", ".join(f"{k} {v}" for k, v in row.items()))
    if args.out:
        args.out.write_text(json.dumps({"device": name, "torch": torch.__version__,
                                        "checks": RESULTS, "timings": timings}, indent=1))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()

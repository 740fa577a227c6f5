"""llama.cpp's speed with and without its extra weight buffers (AMX, REPACK), by prefill chunk size.

    python benchmarks/bench_kernels.py [--chunks 16 32 64 128] [--rounds 2] [--tokens 768]

fimble loads the model without llama.cpp's extra weight buffers where its AMX kernels would run
(engine/backends/llama_cpp.py: they die of an illegal instruction). This measures what that costs:
for each buffer choice this machine can run, `--tokens` prompt tokens of textwrap.py evaluated in
chunks of each size (the engine prefills in llama_cpp.PREFILL_CHUNK), then 32 one-token decode
steps after position 512, with as many threads as usable cores. On an AMX machine only the
choice fimble makes is run; to compare there, build llama-cpp-python once more with
CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX2=ON …" and run this with that build first on PYTHONPATH.
Also prints the best first tokens after Enter in tests/test_healing.py's hypotenuse, as a plain FIM
prompt with the indentation cut: a near-tie between a newline and the indentation, whose order can
move with the kernels (what `open_line` settles).
"""

from __future__ import annotations

import argparse
import sysconfig
import time
from pathlib import Path
from typing import Any

from engine.backends import llama_reach as reach
from engine.backends.cpu_load import usable_cores
from engine.backends.llama_reach import amx_compiled_in, model_params
from engine.models import resolve_model

HYPOTENUSE = ("import math\n\n\ndef hypotenuse(a: float, b: float) -> float:\n"
              '    """Length of the hypotenuse of a right triangle with legs a and b."""\n')
AFTER = "\n\n\nprint(hypotenuse(3, 4))\n"


def clear(llm: Any) -> None:
    reach.forget_from(llm, 0)


def prefill_rate(llm: Any, tokens: list[int], chunk: int) -> float:
    clear(llm)
    started = time.perf_counter()
    for i in range(0, len(tokens), chunk):
        llm.eval(tokens[i : i + chunk])
    return len(tokens) / (time.perf_counter() - started)


def decode_rate(llm: Any, tokens: list[int]) -> float:
    clear(llm)
    llm.eval(tokens[:512])
    started = time.perf_counter()
    for token in tokens[512:544]:
        llm.eval([token])
    return 32 / (time.perf_counter() - started)


def first_token_logits(llm: Any) -> list[tuple[str, float]]:
    """The best four first tokens after Enter in hypotenuse (indentation cut, as the engine does;
    the engine's prompt adds the file's path, so its logits differ a little)."""
    import numpy as np

    prompt = f"<|fim_prefix|>{HYPOTENUSE}<|fim_suffix|>{AFTER}<|fim_middle|>"
    clear(llm)
    llm.eval(llm.tokenize(prompt.encode(), add_bos=False, special=True))
    row = reach.logits_row(llm)
    best = np.argsort(-row)[:4]
    return [(llm.detokenize([int(i)]).decode(errors="replace"), round(float(row[i]), 2)) for i in best]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--chunks", type=int, nargs="+", default=[16, 32, 64, 128])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--tokens", type=int, default=768)
    args = parser.parse_args()
    import llama_cpp
    from llama_cpp import Llama

    amx = amx_compiled_in()
    print(f"llama-cpp-python {llama_cpp.__version__} from {Path(llama_cpp.__file__).parent}; AMX compiled in and "
          f"on this CPU: {amx}; fimble uses extra buffers: {not amx}")
    text = (Path(sysconfig.get_paths()["stdlib"]) / "textwrap.py").read_text()
    threads = usable_cores()
    for extra in ([False] if amx else [True, False]):
        with model_params(use_extra_bufts=extra):
            llm = Llama(model_path=str(resolve_model(None).path), n_ctx=2048, n_batch=512, n_threads=threads,
                        n_threads_batch=threads, verbose=False)
        tokens = llm.tokenize(text.encode())[: max(args.tokens, 544)]
        print(f"extra buffers {'on ' if extra else 'off'} ({threads} threads):")
        for chunk in args.chunks:
            rates = [prefill_rate(llm, tokens[: args.tokens], chunk) for _ in range(args.rounds)]
            print(f"  prefill in chunks of {chunk:>3}: {', '.join(f'{r:.0f}' for r in rates)} tokens/s")
        decode = [decode_rate(llm, tokens) for _ in range(args.rounds)]
        print(f"  decode after 512: {', '.join(f'{r:.1f}' for r in decode)} tokens/s")
        print(f"  after Enter in hypotenuse, the first token's best four: {first_token_logits(llm)}")
        llm.close()


if __name__ == "__main__":
    main()

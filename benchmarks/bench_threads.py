"""llama.cpp's decode speed by thread count beside busy processes, and what `nThreads` 0 chooses.

    python benchmarks/bench_threads.py [--busy 1] [--nice 0 19] [--rounds 5] [--tokens 32]

For each nice level (and idle first): `--busy` processes spinning a core each at that nice, then
`--rounds` rounds of `--tokens` one-token calls at position 900 of textwrap.py with each thread
count from 1 to the usable cores (ms a token, each round), and the count engine/backends/cpu_load.py
chooses there. Also checks that the logits do not depend on the thread count (the same answer,
whatever the load). The figures behind cpu_load.py's rule (eval/RESULTS.md).
"""

from __future__ import annotations

import argparse
import json
import sysconfig
import time
from pathlib import Path
from typing import Any

from bench_typing import busy

from engine.backends import llama_reach as reach
from engine.backends.cpu_load import LoadGauge, threads_for, usable_cores
from engine.models import resolve_model

POSITION = 900


def per_token_ms(llm: Any, tokens: list[int], threads: int, count: int) -> float:
    """ms a token for `count` one-token calls from POSITION on, with `threads` threads."""
    reach.set_threads(llm, threads)
    reach.forget_from(llm, POSITION)
    started = time.perf_counter()
    for token in tokens[POSITION : POSITION + count]:
        llm.eval([token])
    return (time.perf_counter() - started) * 1000 / count


def last_logits(llm: Any, tokens: list[int], threads: int) -> Any:
    reach.set_threads(llm, threads)
    llm.reset()
    llm.eval(tokens[:300])
    return reach.logits_row(llm).copy()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--busy", type=int, default=1, help="busy processes beside the model")
    parser.add_argument("--nice", type=int, nargs="*", default=[0, 19], help="their nice levels, one run each")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--tokens", type=int, default=32)
    args = parser.parse_args()

    from llama_cpp import Llama

    cores = usable_cores()
    llm = Llama(model_path=str(resolve_model(None).path), n_ctx=4096, n_batch=512, n_threads=cores,
                n_threads_batch=cores, verbose=False)
    text = (Path(sysconfig.get_paths()["stdlib"]) / "textwrap.py").read_text()
    tokens = llm.tokenize(text.encode())[: POSITION + args.tokens]
    rows = [last_logits(llm, tokens, threads) for threads in range(1, cores + 1)]
    differs = max(float(abs(row - rows[0]).max()) for row in rows)
    llm.reset()
    llm.eval(tokens[:POSITION])
    results: dict[str, Any] = {"cores": cores, "logits_max_difference_by_threads": differs, "runs": []}
    for label, n, nice in [("idle", 0, 0)] + [(f"{args.busy} busy at nice {k}", args.busy, k) for k in args.nice]:
        with busy(n, nice):
            ms: dict[int, list[float]] = {threads: [] for threads in range(1, cores + 1)}
            for _ in range(args.rounds):  # the counts in turn, so a change of load meets all of them
                for threads in ms:
                    ms[threads].append(round(per_token_ms(llm, tokens, threads, args.tokens), 1))
            chosen = threads_for(0, cores, LoadGauge().elsewhere())
        results["runs"].append({"beside": label, "ms_per_token_by_threads": ms, "nThreads_0_chooses": chosen})
        print(json.dumps(results["runs"][-1]), flush=True)
    print(json.dumps({k: v for k, v in results.items() if k != "runs"}))


if __name__ == "__main__":
    main()

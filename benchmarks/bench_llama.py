"""Foundation figures on this machine: assembly, load, prefill and decode speed, prefix reuse.

    python benchmarks/bench_llama.py [--model NAME_OR_PATH] [--threads N]

Assembly is timed into a fresh temp FIMBLE_HOME (the user's cache is not touched). Prefill and
decode are measured through the llama_cpp backend, the way completions run.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from engine.backends import GenerationRequest
from engine.config import Settings
from engine.models import DEFAULT_MODEL, KNOWN_MODELS
from engine.service import CompletionService


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as home:
        os.environ["FIMBLE_HOME"] = home
        model = args.model
        if model in KNOWN_MODELS:
            from engine.models import assemble

            started = time.perf_counter()
            path = assemble(model)
            print(f"assembly (concatenate + sha256 + rename): {time.perf_counter() - started:.2f} s -> {path.name}")
            model = str(path)
        service = CompletionService(Settings(model=model, n_threads=args.threads, n_ctx=4096))
        started = time.perf_counter()
        backend = service.load()
        print(f"load (resolve + GGUF header + llama.cpp): {time.perf_counter() - started:.2f} s")
        template = service.info.fim
        assert template is not None
        source = Path(__file__).resolve().parents[1] / "engine" / "prompt.py"
        shared = source.read_text()[:4200]

        def run(prefix: str, max_tokens: int) -> GenerationRequest:
            request = GenerationRequest.from_settings(template.build(prefix, ""), service.settings,
                                                      max_tokens=max_tokens, time_budget_s=None)
            return request

        cold = backend.generate(run(shared + "\ndef first_function(", 1))
        warm = backend.generate(run(shared + "\ndef second_function(", 1))
        for label, result in (("first request (cold)", cold), ("second request (shared prefix)", warm)):
            s = result.stats
            print(f"{label}: prompt {s.prompt_tokens} tokens, evaluated {s.prompt_tokens_evaluated}, "
                  f"prefill {s.prefill_ms:.0f} ms")
        print(f"prefill speed: {cold.stats.prompt_tokens_evaluated / (cold.stats.prefill_ms / 1000):.0f} tokens/s")

        backend.llm.reset()
        decode = backend.generate(GenerationRequest.from_settings(
            template.build("# A long list of prime numbers, one per line\nPRIMES = [\n", ""), service.settings,
            max_tokens=128, time_budget_s=None))
        s = decode.stats
        print(f"decode: {s.generated_tokens} tokens in {s.decode_ms:.0f} ms = "
              f"{s.generated_tokens / (s.decode_ms / 1000):.1f} tokens/s (stop: {s.stop_reason})")
        service.close()


if __name__ == "__main__":
    main()

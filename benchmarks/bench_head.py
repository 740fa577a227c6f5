"""The docstring moment's head (engine/instruct.py `ask_head`): how long the model takes to write
the lines above a function, with and without the head it wrote last under the same imports
drafted (`HeadGuesses`), on HumanEval's prompts (the cursor at the empty body).

    python benchmarks/bench_head.py [--limit 40] [--model NAME]

Each pass asks every prompt's head once, in order, with a fresh document memory; the second pass
drafts from guesses that start empty (the first prompt under each set of imports is guessed from
the imports alone). The heads written must be the same in both passes (a draft is verified as
any other); the figures are the head's decoding time (the question's prefill is the same in both).
"""

from __future__ import annotations

import argparse
import json
import statistics

from engine.anchor import PromptMemory
from engine.backends.base import GenerationStats
from engine.config import Settings
from engine.instruct import HEAD_TOKENS, HeadGuesses, ask_head, docstring_moment
from engine.service import CompletionService
from engine.syntax import SyntaxTree
from eval.data import load_problems
from native.cancel import CancelFlag


def heads(service: CompletionService, problems: list[dict], guesses: HeadGuesses | None,
          ) -> list[tuple[str, GenerationStats]]:
    backend = service.load()
    asked: list[GenerationStats] = []
    generate = backend.generate

    def recording(request, on_text=None):  # type: ignore[no-untyped-def]
        out = generate(request, on_text)
        if request.max_tokens == HEAD_TOKENS:
            asked.append(out.stats)
        return out

    backend.generate = recording  # type: ignore[method-assign]
    written = []
    try:
        for problem in problems:
            text = problem["prompt"] + "    \n"
            moment = docstring_moment(SyntaxTree(text, "python"), len(problem["prompt"]) + 4)
            if moment is None:
                continue
            head = ask_head(moment, PromptMemory(), service.info, backend, service.settings, CancelFlag(), True,
                            guesses)
            assert head is not None
            written.append((head, asked[-1]))
    finally:
        backend.generate = generate  # type: ignore[method-assign]
    return written


def summary(rows: list[tuple[str, GenerationStats]]) -> dict[str, object]:
    decode = [stats.decode_ms for _, stats in rows]
    return {"heads": len(rows), "decode_ms_p50": round(statistics.median(decode), 1),
            "decode_ms_mean": round(sum(decode) / len(decode), 1),
            "tokens": sum(stats.generated_tokens for _, stats in rows),
            "drafted": sum(stats.draft_tokens for _, stats in rows),
            "accepted": sum(stats.draft_accepted for _, stats in rows)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--limit", type=int, default=40)
    parser.add_argument("--model", help="a model name or path (default: the embedded default)")
    args = parser.parse_args()
    settings = Settings() if args.model is None else Settings(model=args.model)
    service = CompletionService(settings)
    problems = load_problems(limit=args.limit)
    plain = heads(service, problems, None)
    drafted = heads(service, problems, HeadGuesses())
    same = sum(a == b for (a, _), (b, _) in zip(plain, drafted, strict=True))
    print(json.dumps({"without guesses": summary(plain), "with guesses": summary(drafted),
                      "same heads": f"{same}/{len(plain)}"}, indent=2))


if __name__ == "__main__":
    main()

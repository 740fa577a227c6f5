"""Generation for the three modes, through the same CompletionService the editor uses.

- complete: the model continues the function header and docstring (a prefix-only prompt);
- chat: instruct models answer through their chat template; the fenced code block is the answer;
- fim: infilling — prefix and suffix go through `CompletionService.complete`, postprocessing
  included, so the score is what an editor user would get (`raw` turns the postprocessing off).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from engine.backends import GenerationRequest
from engine.instruct import INSTRUCTION as CHAT_INSTRUCTION
from engine.prompt import chat_prompt, prefix_only_prompt
from engine.service import CompletionRequest, CompletionService
from engine.text import position_at
from native.cancel import CancelFlag

from .holes import place_cursor

MODES = ("complete", "chat", "fim")
COMPLETE_STOPS = ("\ndef ", "\nclass ", "\nif __name__", "\nprint(", "\n#", "\nassert", '\n"""', "\n```")
_FENCE = re.compile(r"```(?:[a-zA-Z0-9_+-]*)\n(.*?)(?:```|$)", re.S)


@dataclass(frozen=True)
class Sample:
    task_id: str
    index: int
    completion: str  # what the model added (complete, fim) or the code it wrote (chat)
    program: str  # the program to execute, without the test
    stats: dict[str, Any]

    def row(self) -> dict[str, Any]:
        return {"task_id": self.task_id, "sample": self.index, "completion": self.completion,
                "program": self.program, **self.stats}


def extract_code(reply: str) -> str:
    """The first fenced block that defines something, else the first block, else the reply."""
    blocks = _FENCE.findall(reply)
    for block in blocks:
        if "def " in block:
            return block.rstrip()
    return blocks[0].rstrip() if blocks else reply.strip()


def generate(service: CompletionService, problem: dict[str, Any], mode: str, index: int, seed: int,
             raw: bool = False, cursor: str = "line-start") -> Sample:
    settings = service.settings.replace(seed=seed + index)
    service.settings = settings
    if mode == "fim":
        hole = place_cursor(problem, cursor, seed)
        pos = position_at(hole.document, len(hole.before))
        result = service.complete(CompletionRequest(hole.document, pos.line, pos.character, language="python",
                                                    path=f"{problem['task_id']}.py", raw=raw,
                                                    cancel=CancelFlag(), use_cache=False))
        stats = {**result.timings, "reason": result.reason, "cursor": cursor,
                 "typed": hole.before[len(problem["prompt"]):] if hole.before.startswith(problem["prompt"]) else "",
                 "exact": result.text.strip() == hole.expected.strip()}
        return Sample(problem["task_id"], index, result.text, hole.program(result.text), stats)
    if mode == "complete":
        prompt = prefix_only_prompt(problem["prompt"], add_bos=service.info.add_bos)
        out = service.generate(GenerationRequest.from_settings(prompt, settings, stop=list(COMPLETE_STOPS),
                                                               time_budget_s=None))
        return Sample(problem["task_id"], index, out.text, problem["prompt"] + out.text, out.stats.as_dict())
    if mode == "chat":
        info = service.info
        messages = [{"role": "user", "content": f"{CHAT_INSTRUCTION}\n\n```python\n{problem['prompt'].strip()}\n```"}]
        prompt = chat_prompt(messages, info.chat_template, bos_token=info.bos_token, eos_token=info.eos_token,
                             add_bos=info.add_bos)
        out = service.generate(GenerationRequest.from_settings(prompt, settings, time_budget_s=None))
        code = extract_code(out.text)
        # The prompt first (its imports and helpers), then the model's whole function over it.
        return Sample(problem["task_id"], index, code, problem["prompt"] + "\n    pass\n\n\n" + code,
                      {**out.stats.as_dict(), "reply": out.text})
    raise ValueError(f"unknown mode {mode!r}; use one of {', '.join(MODES)}")

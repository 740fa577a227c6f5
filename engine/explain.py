"""Explain this code: which code, the prompt, and the last pass over the answer.

One place for all three, so that the editor (`fimble.explain`), `fimble explain` and `fimble eval
explain` explain the same code the same way, and the eval scores the text the editor shows.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from typing import Any

from . import models
from .backends import Backend, GenerationRequest, GenerationResult
from .config import Settings
from .context import DEFINITION_TYPES, ancestors
from .errors import EngineError
from .models import ModelInfo
from .prompt import chat_prompt
from .text import split_lines

# The prompt asks for what a reader (and the eval's rewrite from the explanation alone) needs:
# what goes in, what comes out, the exact rule, the literal values, where ranges start and end;
# Markdown, no LaTeX. It gives no example formula: the 0.5B model copied `3.14159 * r ** 2` into
# explanations of unrelated code (eval/RESULTS.md). It no longer asks for "the edge cases it
# handles": judged by the 1.5B, half the explanations that lost a task the docstring passes had
# invented one ("an empty list, where both the sum and product are 0"); a special case is named
# only where the code has a branch for it. It asks for the statements as written: the 0.5B model
# described what a function's name suggests ("the 4th Fibonacci number" for fib4, "the sum is
# below zero" for a running balance).
SYSTEM = (
    "You are fimble, a concise assistant that explains code. Answer in Markdown: one short paragraph "
    "saying what the code does, then a few bullet points naming the inputs and the result. Be exact: give "
    "the rule or formula the code follows, the literal values it compares with or returns, where each range "
    "starts and ends (inclusive or not), and the condition of each branch. Describe the statements as they are "
    "written (the value each variable starts with, what each loop goes over and where it stops, what each "
    "condition tests), not what the function's name suggests. Mention a special case only when "
    "the code has a branch for it, and say what that branch returns; never guess. Under 120 words. Write any "
    "formula inline, in single backticks with the code's own names: no code blocks, never LaTeX. Do not "
    "repeat the code."
)


# An explanation is read, not glanced at, so it gets far more time than ghost text, but not forever:
# a server that streams without end is cut here (the openai backend also counts maxTokens itself).
TIME_BUDGET_S = 120.0
PROMPT_TOKENS = 128  # the prompt's own words and chat template, with room to spare
MIN_ANSWER_TOKENS = 512


def explaining_model(settings: Settings) -> str:
    """The model that explains: `explainModel`, else the largest known model this user has assembled
    when it is larger than the completion model. Explanations are read and asked for rarely, so the
    larger model's seconds are worth it there, while completions keep the small, fast one. Another
    backend (a server, torch) explains with its own model: code goes only where the user pointed it."""
    if settings.explain_model:
        return settings.explain_model
    if settings.backend != "llama_cpp":
        return settings.model
    installed = models.installed_known_models()
    if installed and installed[0].size > models.model_size(settings.model):
        return installed[0].name
    return settings.model


def explaining_settings(settings: Settings) -> Settings:
    """The settings the explaining model runs with: the user's, on that model. A second model keeps
    no saved prompt states (kvCacheMb 0): it explains one selection at a time and must not double
    the server's memory for caches that only completions use."""
    model = explaining_model(settings)
    if model == settings.model:
        return settings
    return settings.replace(model=model, kv_cache_mb=0, warm=False)


def generate(backend: Backend, info: ModelInfo, settings: Settings, code: str, language: str = "plaintext",
             on_text: Callable[[str], None] | None = None, cancel: threading.Event | None = None) -> GenerationResult:
    """Explain `code` in Markdown through the model's chat template, streaming to `on_text`; the
    answer is cleaned (`clean`) and comes with the generation's stats."""
    if not code.strip():
        raise EngineError("there is no code to explain in that range")
    max_tokens = max(settings.max_tokens, MIN_ANSWER_TOKENS)
    code = fit(code, backend.count_tokens, settings.n_ctx - max_tokens - PROMPT_TOKENS)
    prompt = chat_prompt(messages(code, language), info.chat_template, bos_token=info.bos_token,
                         eos_token=info.eos_token, add_bos=info.add_bos)
    request = GenerationRequest.from_settings(prompt, settings, max_tokens=max_tokens, time_budget_s=TIME_BUDGET_S,
                                              cancel=cancel or threading.Event(), stop_when=long_enough)
    result = backend.generate(request, on_text)
    return GenerationResult(clean(result.text, code), result.stats)


# The prompt asks for under 120 words; the 0.5B model can go on for 300 (a step-by-step breakdown
# that ends in what the function is "useful for"). At the first line end past this many words the
# explanation stops: its paragraphs and list items stay whole.
STOP_WORDS = 140


def long_enough(text: str) -> bool:
    """`stop_when` for an explanation (checked at each line end)."""
    return word_count(text) >= STOP_WORDS


def fit(code: str, count: Callable[[str], int], budget: int) -> str:
    """The selection, cut to what the context holds (the start of it, and a note saying so)."""
    tokens = count(code)
    if tokens <= budget:
        return code
    keep = code[: max(0, int(len(code) * budget / tokens * 0.9))]
    return keep + "\n… (the rest of the selection did not fit in the model's context)"


def messages(code: str, language: str) -> list[dict[str, str]]:
    fence = "" if language == "plaintext" else language
    return [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": f"Explain what this code does.\n\n```{fence}\n{code.rstrip()}\n```"},
    ]


def target(text: str, start_line: int, end_line: int, syntax: Any) -> str:
    """The code to explain: the selected lines; for an empty selection (one line), the innermost
    definition around the middle of that line, else the line and what is indented under it."""
    lines = split_lines(text)
    start_line = max(0, min(start_line, len(lines) - 1))
    end_line = max(start_line, min(end_line, len(lines) - 1))
    if start_line == end_line:
        node = None
        offset = min(sum(len(line) + 1 for line in lines[:start_line]) + len(lines[start_line]) // 2, len(text))
        if syntax is not None:
            syntax.focus(offset)  # (a large text is parsed around that line)
        if syntax is not None and syntax.tree is not None:
            node = _definition_at(syntax, offset)
        if node is not None:
            start_line, end_line = node.start_point[0], node.end_point[0]
        else:
            end_line = _indented_block_end(lines, start_line)
    return "\n".join(lines[start_line : end_line + 1]).rstrip()


def _definition_at(syntax: Any, offset: int) -> Any:
    """The innermost definition holding `offset` (with its decorators), never the whole file."""
    byte = syntax.byte_at(offset)
    path = ancestors(syntax, byte)[:-1]  # not the root: Python's is a `module` too
    for i, node in enumerate(path):
        if node.type in DEFINITION_TYPES and node.start_byte < byte <= node.end_byte:
            parent = path[i + 1] if i + 1 < len(path) else None
            return parent if parent is not None and parent.type == "decorated_definition" else node
    return None


def _indented_block_end(lines: list[str], line: int) -> int:
    """The last line of `line` and what is indented under it (no tree: plain text, unknown language)."""
    indent = len(lines[line]) - len(lines[line].lstrip())
    end = line
    for number in range(line + 1, len(lines)):
        following = lines[number]
        if following.strip() and len(following) - len(following.lstrip()) <= indent:
            break
        end = number
    while end > line and not lines[end].strip():
        end -= 1
    return end


# -- the last pass: LaTeX math becomes code spans ---------------------------------------------------

_MATH = re.compile(r"\$\$(.+?)\$\$|\\\[(.+?)\\\]|\\\((.+?)\\\)|(?<![\w$\\])\$(?!\s)([^$\n]+?)(?<!\s)\$(?![\w$])",
                   re.S)
_COMMANDS = {
    r"\times": "*", r"\cdot": "*", r"\div": "/", r"\leq": "<=", r"\le": "<=", r"\geq": ">=", r"\ge": ">=",
    r"\neq": "!=", r"\ne": "!=", r"\pi": "pi", r"\infty": "inf", r"\to": "->", r"\rightarrow": "->",
    r"\ldots": "...", r"\dots": "...", r"\cdots": "...", r"\pm": "+/-", r"\in": "in", r"\land": "and",
    r"\lor": "or", r"\lnot": "not ", r"\%": "%", r"\_": "_", r"\{": "{", r"\}": "}", r"\,": " ", r"\;": " ",
    r"\quad": " ", r"\left": "", r"\right": "", r"\lfloor": "floor(", r"\rfloor": ")", r"\lceil": "ceil(",
    r"\rceil": ")", r"\mod": "%", r"\bmod": "%",
}
_COMMAND = re.compile("|".join(re.escape(c) + r"(?![A-Za-z])" for c in sorted(_COMMANDS, key=len, reverse=True)))
_FRAC = re.compile(r"\\frac\s*\{([^{}]*)\}\s*\{([^{}]*)\}")
_SQRT = re.compile(r"\\sqrt\s*\{([^{}]*)\}")
_TEXT = re.compile(r"\\(?:text|mathrm|mathit|mathbf|operatorname|texttt)\s*\{([^{}]*)\}")
_POWER = re.compile(r"\^\{([^{}]*)\}")
_SUBSCRIPT = re.compile(r"_\{([^{}]*)\}")


def _plain_math(tex: str) -> str:
    text = tex.strip()
    for _ in range(3):  # nested \frac{\text{a}}{b}
        text = _TEXT.sub(r"\1", text)
        text = _FRAC.sub(r"(\1) / (\2)", text)
        text = _SQRT.sub(r"sqrt(\1)", text)
    text = _POWER.sub(r"**(\1)", text).replace("^", "**")
    text = _SUBSCRIPT.sub(r"_\1", text)
    text = _COMMAND.sub(lambda match: _COMMANDS[match.group(0)], text)
    text = re.sub(r"\\([A-Za-z]+)", r"\1", text)  # any other command: its name
    return " ".join(text.replace("{", "").replace("}", "").split())


def clean(answer: str, code: str = "") -> str:
    """The explanation as shown and scored: LaTeX math turned into code spans, outside code blocks;
    a code block of one short line (a formula) becomes a code span in the sentence, and a block
    that repeats the code explained (`code`) is dropped: the reader has the code beside it."""
    parts = re.split(r"(```.*?(?:```|$))", answer, flags=re.S)
    for i in range(0, len(parts), 2):  # even parts are outside fenced blocks
        parts[i] = _MATH.sub(lambda m: f"`{_plain_math(next(g for g in m.groups() if g is not None))}`", parts[i])
    for i in range(1, len(parts), 2):
        parts[i] = _block(parts[i], code)
    return _without_loop(re.sub(r"\n{3,}", "\n\n", "".join(parts)).strip())


_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def _without_loop(answer: str) -> str:
    """The answer up to where two sentences in a row repeat two earlier ones word for word: a
    small model can loop on a paragraph until its token limit (one 0.5B explanation said the same
    three sentences five times). One sentence said twice is left: branches are often described
    alike ("If it is not, it returns `False`.")."""
    pairs: set[tuple[str, str]] = set()
    previous, previous_start, start = "", 0, 0
    for match in [*_SENTENCE_END.finditer(answer), None]:
        end = match.start() if match is not None else len(answer)
        sentence = answer[start:end].strip()
        if (previous, sentence) in pairs:
            return answer[:previous_start].rstrip()
        pairs.add((previous, sentence))
        previous, previous_start = sentence, start
        if match is not None:
            start = match.end()
    return answer


FORMULA_CHARS = 100  # a one-line block no longer than this is a formula, not a program
REPEATED_SHARE = 0.6  # a block whose lines are mostly lines of the code explained repeats it


def _block(block: str, code: str) -> str:
    if not block.endswith("```") or block.count("```") < 2:
        return block  # still streaming: decided once the block is closed
    lines = [line.strip() for line in block.split("\n")[1:-1] if line.strip()]
    if len(lines) == 1 and len(lines[0]) <= FORMULA_CHARS and "`" not in lines[0]:
        return f"`{lines[0]}`"
    theirs = {line.strip() for line in code.split("\n") if line.strip()}
    if lines and theirs and sum(line in theirs for line in lines) >= REPEATED_SHARE * len(lines):
        return ""
    return block


_FENCED = re.compile(r"```.*?(?:```|$)", re.S)


def without_code_blocks(answer: str) -> tuple[str, int]:
    """The explanation without its fenced code blocks, and how many there were."""
    blocks = _FENCED.findall(answer)
    return _FENCED.sub("", answer).strip(), len(blocks)


def word_count(answer: str) -> int:
    return len(re.findall(r"[A-Za-z0-9_']+", answer))


__all__: list[str] = ["SYSTEM", "clean", "explaining_model", "explaining_settings", "messages", "target",
                      "without_code_blocks", "word_count"]

"""Prompts: fill-in-the-middle templates, chat templates, and the token budget.

A prompt is a sequence of parts. `Text` is the user's code and is tokenized with special tokens
*off*, so a file that happens to contain `<|fim_prefix|>` cannot steer the model; `Special` is
template text whose special tokens are honoured. Backends that take ids tokenize each part; those
that take strings call `render()`.

The FIM template is chosen from the model's vocabulary (which FIM tokens it has) and metadata,
never from its file name: a renamed file must still get the right prompt.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from .text import split_lines


@dataclass(frozen=True)
class Text:
    text: str


@dataclass(frozen=True)
class Special:
    text: str


Part = Text | Special


@dataclass(frozen=True)
class Prompt:
    parts: tuple[Part, ...]
    kind: str  # "fim", "prefix" or "chat"
    add_bos: bool = False
    # Special tokens (by text) that end generation for this prompt, beyond the model's EOG set.
    stop_tokens: tuple[str, ...] = ()
    # For chat prompts, the (role, content) messages it was rendered from: servers with a chat
    # endpoint take these instead of the rendered text.
    messages: tuple[tuple[str, str], ...] = ()
    # The first parts, which every prompt of its kind begins with (a chat prompt's instruction):
    # a backend that keeps KV states keeps theirs, and the next prompt of the kind starts from it.
    shared_parts: int = 0

    def render(self) -> str:
        return "".join(p.text for p in self.parts)


@dataclass(frozen=True)
class FimTemplate:
    name: str
    prefix: str
    suffix: str
    middle: str
    # Tokens that end a middle or start another file: seen in output, they end the completion.
    end_tokens: tuple[str, ...] = ()
    repo_name: str | None = None
    file_sep: str | None = None

    def build(self, prefix: str, suffix: str, *, context: Sequence[Part] = (), add_bos: bool = False,
              middle: str = "") -> Prompt:
        """`middle` is the start of the middle, given as if the model had written it: the text
        typed since the anchor (see engine/anchor.py), so that typing only appends to the prompt."""
        parts: list[Part] = [*context, Special(self.prefix), Text(prefix), Special(self.suffix), Text(suffix),
                             Special(self.middle), Text(middle)]
        stops = tuple(t for t in (self.prefix, self.suffix, self.middle, *self.end_tokens) if t)
        return Prompt(tuple(_merge(parts)), "fim", add_bos, stops)


FIM_TEMPLATES: tuple[FimTemplate, ...] = (
    FimTemplate(
        "qwen2.5-coder", "<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>",
        ("<|fim_pad|>", "<|endoftext|>", "<|file_sep|>", "<|repo_name|>", "<|im_end|>"),
        repo_name="<|repo_name|>", file_sep="<|file_sep|>",
    ),
    FimTemplate(
        "starcoder2", "<fim_prefix>", "<fim_suffix>", "<fim_middle>",
        ("<fim_pad>", "<|endoftext|>", "<file_sep>", "<repo_name>"),
        repo_name="<repo_name>", file_sep="<file_sep>",
    ),
    FimTemplate(
        "deepseek-coder", "<｜fim▁begin｜>", "<｜fim▁hole｜>", "<｜fim▁end｜>",
        ("<｜end▁of▁sentence｜>", "<|EOT|>"),
    ),
    FimTemplate("codellama", "▁<PRE>", "▁<SUF>", "▁<MID>", ("▁<EOT>",)),
)

# llama.cpp writes the FIM token ids into these keys for models it knows.
_FIM_ID_KEYS = (
    ("tokenizer.ggml.fim_pre_token_id", "tokenizer.ggml.fim_suf_token_id", "tokenizer.ggml.fim_mid_token_id"),
    ("tokenizer.ggml.prefix_token_id", "tokenizer.ggml.suffix_token_id", "tokenizer.ggml.middle_token_id"),
)


def detect_fim_template(tokens: Sequence[str], metadata: dict[str, Any]) -> FimTemplate | None:
    """The FIM template whose three tokens the vocabulary has; None when it has none."""
    vocab = set(tokens)
    for template in FIM_TEMPLATES:
        if {template.prefix, template.suffix, template.middle} <= vocab:
            return template
    for keys in _FIM_ID_KEYS:
        ids = [metadata.get(k) for k in keys]
        if all(isinstance(i, int) and 0 <= i < len(tokens) for i in ids):
            pre, suf, mid = (tokens[i] for i in ids)  # type: ignore[index]
            eot = metadata.get("tokenizer.ggml.eot_token_id")
            end = (tokens[eot],) if isinstance(eot, int) and 0 <= eot < len(tokens) else ()
            return FimTemplate("metadata", pre, suf, mid, end)
    return None


def prefix_only_prompt(prefix: str, *, add_bos: bool = False) -> Prompt:
    """For models without FIM tokens: complete from the text before the cursor."""
    return Prompt((Text(prefix),), "prefix", add_bos)


def _merge(parts: Sequence[Part]) -> list[Part]:
    """Join neighbouring parts of the same kind and drop empty text, so prompts compare simply."""
    merged: list[Part] = []
    for part in parts:
        if not part.text:
            continue
        if merged and type(merged[-1]) is type(part):
            merged[-1] = type(part)(merged[-1].text + part.text)
        else:
            merged.append(part)
    return merged


# ---------------------------------------------------------------------------------------------
# Chat prompts go through the model's own Jinja chat template (GGUF `tokenizer.chat_template`).

_FALLBACK_CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def chat_prompt(
    messages: Sequence[dict[str, str]],
    template: str | None,
    *,
    bos_token: str = "",
    eos_token: str = "",
    add_bos: bool = False,
) -> Prompt:
    """Render `messages` with the model's chat template.

    The messages' contents are rendered as sentinels and put back as `Text` parts afterwards, so
    code being explained is never read as template syntax or as special tokens.
    """
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message: str) -> None:
        raise ValueError(message)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.globals["raise_exception"] = raise_exception
    sentinels = {f"\x00{uuid.uuid4().hex}\x00": m["content"] for m in messages}
    masked = [{**m, "content": s} for m, s in zip(messages, sentinels, strict=True)]
    rendered = env.from_string(template or _FALLBACK_CHAT_TEMPLATE).render(
        messages=masked, add_generation_prompt=True, bos_token=bos_token, eos_token=eos_token
    )
    parts: list[Part] = []
    rest = rendered
    while rest:
        hits = [(rest.find(s), s) for s in sentinels if s in rest]
        if not hits:
            parts.append(Special(rest))
            break
        index, sentinel = min(hits)
        parts += [Special(rest[:index]), Text(sentinels[sentinel])]
        rest = rest[index + len(sentinel) :]
    stops = tuple(t for t in (eos_token, "<|im_end|>", "<|endoftext|>") if t)
    return Prompt(tuple(_merge(parts)), "chat", add_bos, stops, tuple((m["role"], m["content"]) for m in messages))


# ---------------------------------------------------------------------------------------------
# The token budget.

TokenCounter = Callable[[str], int]


@dataclass(frozen=True)
class Window:
    """What of the document fits the budget: prefix/suffix text and the lines they cover."""

    prefix: str
    suffix: str
    prefix_tokens: int
    suffix_tokens: int
    first_line: int  # first document line included in the prefix


# A token of code is rarely longer than this many characters: a line cut to N tokens is looked
# for in its nearest N * LONGEST_TOKEN_CHARS characters (a 2 MB line is never tokenized whole).
LONGEST_TOKEN_CHARS = 16


def fit_line(line: str, limit: int, count: TokenCounter, keep_end: bool) -> tuple[str, bool]:
    """`line` if it fits `limit` tokens, else its longest end (`keep_end`) or start that does,
    and whether it was cut."""
    reach = max(limit, 0) * LONGEST_TOKEN_CHARS
    if len(line) <= reach and count(line) <= limit:
        return line, False
    near = line[-reach:] if keep_end and reach else line[:reach]
    low, high = 0, len(near)  # the longest piece of `near` that fits: binary search on its length
    while low < high:
        middle = (low + high + 1) // 2
        piece = near[len(near) - middle:] if keep_end else near[:middle]
        if count(piece) <= limit:
            low = middle
        else:
            high = middle - 1
    return (near[len(near) - low:] if keep_end else near[:low]), True


def fit_window(prefix: str, suffix: str, count: TokenCounter, budget: int, prefix_share: float = 0.75,
               line_step: int = 1) -> Window:
    """Cut prefix and suffix at line boundaries to fit `budget` tokens, prefix favoured 3:1.

    Lines are added outward from the cursor, so what is nearest the cursor always stays; the
    cursor's own line is kept whole on both sides. Budget the suffix leaves unused goes to the
    prefix and the other way round.

    When the prefix is cut, its first line is rounded to a multiple of `line_step`: typing then
    moves the start of the prompt only every `line_step` lines, and a backend that reuses the
    cached prefix of the last prompt (llama.cpp) keeps reusing it.
    """
    before = split_lines(prefix)
    after = split_lines(suffix)
    head_line, tail_line = before.pop(), after.pop(0)
    prefix_budget = int(budget * prefix_share)
    suffix_budget = budget - prefix_budget
    # The cursor's own line is kept whole unless it alone is over its share (minified code, data
    # on one line): then only its part nearest the cursor, and no other line on that side.
    head_line, head_cut = fit_line(head_line, prefix_budget, count, keep_end=True)
    tail_line, tail_cut = fit_line(tail_line, suffix_budget, count, keep_end=False)
    if head_cut:
        before = []
    if tail_cut:
        after = []
    used_pre, used_suf = count(head_line), count(tail_line)

    def take(lines: list[str], limit: int, used: int, from_end: bool) -> tuple[int, int]:
        taken = 0
        order = reversed(lines) if from_end else iter(lines)
        for line in order:
            cost = count(line + "\n")
            if used + cost > limit:
                break
            used += cost
            taken += 1
        return taken, used

    n_suf, used_suf = take(after, suffix_budget, used_suf, from_end=False)
    n_pre, used_pre = take(before, budget - used_suf, used_pre, from_end=True)
    if n_pre < len(before) and line_step > 1:
        first = len(before) - n_pre
        first = -(-first // line_step) * line_step
        n_pre = len(before) - min(first, len(before))
        used_pre = count(head_line) + sum(count(line + "\n") for line in before[len(before) - n_pre :])
    if used_pre < prefix_budget and n_pre == len(before):
        # The whole prefix fits in less than its share: the suffix gets the rest. (What the
        # rounding to `line_step` leaves is not given: the suffix, evaluated anew at each place,
        # is the expensive part of a prompt — engine/backends/kv_reuse.py.)
        n_suf, used_suf = take(after, budget - used_pre, count(tail_line), from_end=False)
    while n_pre and not before[len(before) - n_pre].strip():
        # Start at a line with text: a run of newlines is one token, and a window that began
        # inside one would tokenize differently from the document around it (kv_reuse.py).
        used_pre -= count(before[len(before) - n_pre] + "\n")
        n_pre -= 1
    kept_before = before[len(before) - n_pre :] if n_pre else []
    kept_after = after[:n_suf]
    new_prefix = "".join(line + "\n" for line in kept_before) + head_line
    new_suffix = tail_line + "".join("\n" + line for line in kept_after)
    return Window(
        new_prefix, new_suffix, used_pre, used_suf,
        first_line=len(before) - n_pre)

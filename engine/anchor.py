"""The prompt for a place in a document: where its FIM prefix is anchored, what of the document
fits the budget, and which lines of other documents go before it.

The FIM prefix ends at an anchor — the start of the line where the user began typing — and
what was typed since goes after the middle token, as if the model had written it. While the
user types on from there (and the text around does not change), the prompt only grows at its
end, so llama.cpp evaluates just the new tokens on each keystroke. The layout keeps the stable
parts first (other documents, then the window from a line that moves in steps), so that a new
place shares most of its prompt with the last one (engine/backends/kv_reuse.py).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from .config import Settings
from .context import CursorInfo, OpenDocument, Snippet, extra_snippets, names_near, pinned_lines
from .healing import TokenHealer, indentation_split, strip_indentation
from .models import ModelInfo
from .postprocess import Site
from .prompt import FimTemplate, Part, Prompt, Special, Text, TokenCounter, fit_window, prefix_only_prompt
from .syntax import SyntaxTree
from .text import split_lines

# The prompt's first line moves in steps of this many lines (see prompt.fit_window).
WINDOW_LINE_STEP = 16
# Share of the local budget for the text before the cursor. Whatever follows the cursor in the
# prompt is evaluated again when the anchor moves (and a warmed document cannot serve it: it comes
# after the suffix token, see engine/backends/kv_reuse.py), so the suffix is kept short: 1:15,
# about 64 tokens, five or six lines.
PREFIX_SHARE = 0.9375
# A short window (a new place the cache does not hold: ShortWindow) gives what follows the cursor
# a larger share: it has few lines either way, and the suffix is what fill-in-the-middle is for.
SHORT_PREFIX_SHARE = 0.75
# An anchor is kept while the text typed after it stays this small.
ANCHOR_MAX_LINES = 12
ANCHOR_MAX_CHARS = 1200
# On a line longer than this before the cursor, the prompt's middle starts this far back.
LONG_LINE_MIDDLE_CHARS = 512


@dataclass(frozen=True)
class Heal:
    """Text typed before the cursor that the prompt stops short of (engine/healing.py): the
    backend's first tokens are masked to reproduce it (`masked`), or, for a backend that cannot
    mask, it is indentation cut from the answer's first line."""

    text: str = ""
    masked: bool = False

    def inserted(self, generated: str) -> str:
        """What of the backend's text is inserted at the cursor (a masked heal is cut by the backend)."""
        return strip_indentation(generated, self.text) if self.text and not self.masked else generated


class HeadCheck:
    """Whether the text before an anchor is as it was. The tree's edits since say it at once; the
    hash (a copy of a 2 MB head, then its hash, at every request) is taken only where they do not
    (another history, more edits than the tree keeps) or where one touched the head and may have
    undone itself. Each check that holds moves the mark on, so that typing on at one place never
    outruns the edits kept."""

    def __init__(self, tree: SyntaxTree, offset: int) -> None:
        self.offset = offset
        self.hash = hash(tree.text[:offset])
        self.mark = tree.mark()

    def holds(self, tree: SyntaxTree) -> bool:
        if tree.unchanged_before(self.offset, self.mark) or hash(tree.text[: self.offset]) == self.hash:
            self.mark = tree.mark()
            return True
        return False


@dataclass(frozen=True)
class Anchor:
    """Where the FIM prefix of the last prompt for a document ended, and what it was."""

    offset: int  # document offset of the line start where the middle begins
    head: HeadCheck  # the document text before `offset`, as it was
    prefix: str  # the prompt's prefix (pinned lines + window), ending at `offset`
    suffix: str  # the prompt's suffix: the text after the cursor, cut to the budget
    context: tuple[Part, ...]  # extra context placed before the prefix
    snippets: list[Snippet]
    settings_key: tuple[object, ...]
    short: bool = False  # cut to a ShortWindow's budget: widened when idle (CompletionService.widen)
    # A short anchor's answers are judged (postprocess.Site) against the whole window's prefix
    # and suffix, so that they are kept or cut as a whole window's would be: a short window
    # often starts inside a docstring, and a fragment with an unclosed string fails every line.
    judged: tuple[str, str] | None = None

    @staticmethod
    def key(settings: Settings) -> tuple[object, ...]:
        """The options an anchor (and a document's context) was built under: a change drops it."""
        return (settings.context_tokens, settings.model, settings.backend)

    def fits(self, tree: SyntaxTree, offset: int, settings: Settings) -> bool:
        """Still usable: only text between the anchor and the cursor changed, and not too much."""
        text = tree.text
        if offset < self.offset or Anchor.key(settings) != self.settings_key:
            return False
        middle = text[self.offset : offset]
        if len(middle) > ANCHOR_MAX_CHARS or middle.count("\n") > ANCHOR_MAX_LINES:
            return False
        return text.startswith(self.suffix, offset) and self.head.holds(tree)


# Prompt tokens per second assumed until the backend has measured its own (two CPU cores).
ASSUMED_PREFILL_RATE = 150.0
# A short window keeps at least this many tokens: a few lines either side of the cursor.
MIN_SHORT_TOKENS = 64


@dataclass(frozen=True)
class ShortWindow:
    """A new place should answer soon: when the whole window's prompt would evaluate more than
    `tokens` tokens the cache does not hold (`new_tokens` says how many, or None: unknown), the
    window is cut to `tokens`. The language server asks for this; the whole window is evaluated
    while it is idle and taken over from then on."""

    tokens: int
    new_tokens: Callable[[Prompt], int | None]

    @classmethod
    def for_speed(cls, settings: Settings, prefill_rate: float | None,
                  new_tokens: Callable[[Prompt], int | None]) -> ShortWindow | None:
        """The window budget a new place starts from: what the backend evaluates in
        settings.new_place_ms at the speed it measured (None: the whole window always)."""
        if settings.new_place_ms <= 0:
            return None
        tokens = max(MIN_SHORT_TOKENS, int((prefill_rate or ASSUMED_PREFILL_RATE) * settings.new_place_ms / 1000))
        return cls(tokens, new_tokens) if tokens < settings.context_tokens else None


@dataclass(frozen=True)
class Built:
    """A completion prompt, the site as the model saw it, the snippets in it, and its heal."""

    prompt: Prompt
    site: Site
    snippets: list[Snippet]
    heal: Heal


def pinned_text(lines: list[str], rows: Sequence[int], window_start: int) -> str:
    """The pinned lines, each with the blank lines that follow it in the document (up to the
    window): tokenized, they are then the same tokens as in the document, where a run of
    newlines is one token, and a warmed document serves them from the KV cache too."""
    out = []
    for row in rows:
        end = row + 1
        while end < window_start and end < len(lines) and not lines[end].strip():
            end += 1
        out.append("".join(line + "\n" for line in lines[row:end]))
    return "".join(out)


def repo_context(template: FimTemplate, snippets: Sequence[Snippet], path: str) -> list[Part]:
    """Snippets in the model's repository format: `<|repo_name|>` then `<|file_sep|>path` blocks."""
    assert template.repo_name and template.file_sep
    parts: list[Part] = [Special(template.repo_name), Text("fimble\n")]
    for snippet in snippets:
        parts += [Special(template.file_sep), Text(f"{snippet.path}\n{snippet.text}\n")]
    parts += [Special(template.file_sep), Text(f"{path or 'current'}\n")]
    return parts


def split_for_healing(middle: str, healer: TokenHealer | None) -> tuple[str, Heal]:
    """Where the prompt stops short of the cursor (engine/healing.py), and how it is made good.

    Typed indentation alone is cut from the prompt and from the answer's first line, for every
    backend: the model writes the line from its start, as it learnt to. (Masking measured worse
    there: where the model would rather leave the line blank, forcing the indentation token by
    token led it into runs of whitespace.) Any other partial token is healed under a mask by
    backends that have one."""
    kept, indentation = indentation_split(middle)
    if indentation:
        return kept, Heal(indentation, masked=False)
    if healer is not None:
        kept, text = healer.split(middle)
        return kept, Heal(text, masked=True)
    return middle, Heal()


@dataclass
class PromptMemory:
    """What is kept for one document between its prompts: the anchor of the last place asked
    about, and the repository context chosen for the document. The language server keeps one in
    each document's session (engine/session.py): closing the document drops it with the session."""

    anchor: Anchor | None = None
    context: tuple[object, tuple[Part, ...], list[Snippet]] | None = None  # (its key, parts, snippets)
    # At the docstring moment (engine/instruct.py): the question, and what the model wrote above
    # the function for it (`own_head`), kept for the question when decoding is greedy.
    head: tuple[str, str] | None = None

    @property
    def kept(self) -> bool:
        return self.anchor is not None or self.context is not None or self.head is not None

    @property
    def short(self) -> bool:
        """Whether the anchor kept is a short window."""
        return self.anchor is not None and self.anchor.short


class PromptBuilder:
    """Prompts for places in documents, from the anchor and the repository context each
    document's PromptMemory keeps. Runs where the service runs (the model worker)."""

    def __init__(self, info: ModelInfo, count: TokenCounter) -> None:
        self.info = info
        self.count = count

    def completion(self, settings: Settings, tree: SyntaxTree, offset: int, cursor: CursorInfo,
                   others: Sequence[OpenDocument] = (), path: str = "", *, memory: PromptMemory, reuse: bool = False,
                   healer: TokenHealer | None = None, healing: bool = True,
                   short_window: ShortWindow | None = None, whole: bool = False) -> Built:
        """The prompt for a cursor. With `reuse`, the anchor `memory` keeps is kept when it still
        fits; with `healing`, the prompt ends at the last token boundary the model would have
        produced before the cursor, and the generation reproduces the rest; with `short_window`, a new
        anchor is cut short where the whole window would take long; with `whole`, a short anchor
        kept is not reused."""
        anchor = memory.anchor if reuse else None
        if anchor is None or not anchor.fits(tree, offset, settings) or (whole and anchor.short):
            anchor = self._new_anchor(settings, tree, offset, others, path, memory)
            if short_window is not None and self.info.fim is not None:
                cost = short_window.new_tokens(self._prompt(anchor, ""))
                if cost is not None and cost > short_window.tokens:
                    short = self._new_anchor(settings, tree, offset, others, path, memory,
                                             short_budget=short_window.tokens)
                    anchor = replace(short, judged=(anchor.prefix, anchor.suffix))
            memory.anchor = anchor
        return self._built(anchor, tree, offset, cursor, healer, healing)

    def widened(self, settings: Settings, tree: SyntaxTree, offset: int, cursor: CursorInfo,
                others: Sequence[OpenDocument], path: str, memory: PromptMemory,
                healer: TokenHealer | None) -> tuple[Anchor, Built] | None:
        """The whole window for the place, when the anchor kept is a short one that still fits
        (else None). Not kept yet: `memory.anchor` becomes it once its prompt is evaluated, so
        that a request in between still finds the short prompt it was answered from."""
        current = memory.anchor
        if current is None or not current.short or not current.fits(tree, offset, settings):
            return None
        anchor = self._new_anchor(settings, tree, offset, others, path, memory)
        return anchor, self._built(anchor, tree, offset, cursor, healer, True)

    def _prompt(self, anchor: Anchor, middle: str) -> Prompt:
        fim = self.info.fim
        if fim is None:
            return prefix_only_prompt(anchor.prefix + middle, add_bos=self.info.add_bos)
        return fim.build(anchor.prefix, anchor.suffix, context=anchor.context, add_bos=self.info.add_bos,
                         middle=middle)

    def _built(self, anchor: Anchor, tree: SyntaxTree, offset: int, cursor: CursorInfo,
               healer: TokenHealer | None, healing: bool) -> Built:
        middle = tree.text[anchor.offset : offset]
        judged_prefix, judged_suffix = anchor.judged or (anchor.prefix, anchor.suffix)
        site = Site(judged_prefix + middle, judged_suffix, cursor, tree.spec)
        kept, heal = split_for_healing(middle, healer) if healing else (middle, Heal())
        return Built(self._prompt(anchor, kept), site, anchor.snippets if self.info.fim else [], heal)

    def document(self, settings: Settings, tree: SyntaxTree, offset: int, others: Sequence[OpenDocument],
                 path: str, memory: PromptMemory) -> Prompt:
        """The document itself the way prompts begin — its context, the FIM prefix token, then
        its text from the top (the region around the cursor when it is longer than the context
        window): a request at any place in it then takes its window from there (kv_reuse.py)."""
        region = self._document_region(tree.text, offset, settings.n_ctx - 64)
        fim = self.info.fim
        if fim is None:
            parts: tuple[Part, ...] = (Text(region),)
        else:
            context, _ = self._document_context(settings, tree, offset, others, path, memory, region)
            parts = (*context, Special(fim.prefix), Text(region))
        return Prompt(parts, "warm", self.info.add_bos)

    def _new_anchor(self, settings: Settings, tree: SyntaxTree, offset: int, others: Sequence[OpenDocument],
                    path: str, memory: PromptMemory, short_budget: int | None = None) -> Anchor:
        text, count, fim = tree.text, self.count, self.info.fim
        start = text.rfind("\n", 0, offset) + 1  # the start of the cursor's line
        # On a very long line the middle begins a little before the cursor; the window keeps
        # what of the line before that fits (prompt.fit_line): the prompt stays in the budget.
        start = max(start, offset - LONG_LINE_MIDDLE_CHARS)
        prefix, suffix = text[:start], text[offset:]
        budget = settings.context_tokens
        repo_format = fim is not None and fim.file_sep is not None and bool(others)
        local_budget = budget - (budget // 4 if repo_format else 0)
        share, step = PREFIX_SHARE, WINDOW_LINE_STEP
        if short_budget is not None:  # lines are few: no rounding of the first one
            local_budget, share, step = min(local_budget, short_budget), SHORT_PREFIX_SHARE, 1
        window = fit_window(prefix, suffix, count, local_budget, share, step)
        pinned = ""
        lines: list[str] = []
        if window.first_line > 0 and (rows := self._pinned_rows(tree, offset, window.first_line, local_budget,
                                                                  short_budget is not None, lines)):
            lines = lines or split_lines(text)
            pinned = pinned_text(lines, rows, window.first_line)
            window = fit_window(prefix, suffix, count, max(local_budget - count(pinned), 0), share, step)
            pinned = pinned_text(lines, [r for r in rows if r < window.first_line], window.first_line)
        local_prefix = pinned + window.prefix
        context, snippets = self._document_context(settings, tree, offset, others, path, memory,
                                                   local_prefix + window.suffix)
        return Anchor(start, HeadCheck(tree, start), local_prefix, window.suffix, context, snippets,
                      Anchor.key(settings), short=short_budget is not None)

    def _pinned_rows(self, tree: SyntaxTree, offset: int, first_line: int, budget: int, short: bool,
                     lines: list[str]) -> list[int]:
        """The lines kept above the window. A short window keeps, before the lines around the
        cursor, the enclosing headers and the innermost docstring (what the code is for), not the
        imports; the docstring only while it leaves the cursor's neighbourhood half the budget.
        `lines`: filled with the document's lines when they were split here (the caller reuses them)."""
        if not short:
            return pinned_lines(tree, offset, first_line)
        rows = pinned_lines(tree, offset, first_line, imports=False, docstring=True)
        if rows:
            lines[:] = split_lines(tree.text)
        if rows and self.count(pinned_text(lines, rows, first_line)) > budget // 2:
            rows = pinned_lines(tree, offset, first_line, imports=False)
        return rows

    def _document_context(self, settings: Settings, tree: SyntaxTree, offset: int, others: Sequence[OpenDocument],
                          path: str, memory: PromptMemory, window_text: str) -> tuple[tuple[Part, ...], list[Snippet]]:
        """The other documents' snippets for `path`, in the model's repository format.

        They open the prompt, so they stay the same for a document while the other documents do
        not change: a new place in the same file then shares everything up to its own window
        with the prompts before (engine/backends/kv_reuse.py). They are chosen at the first
        place that needs them (names near it, recent edits elsewhere)."""
        fim = self.info.fim
        if not (fim and fim.file_sep and fim.repo_name and others):
            return (), []
        key = (Anchor.key(settings), tuple((d.path, hash(d.tree.text), d.recent_lines) for d in others))
        cached = memory.context
        if cached is not None and cached[0] == key:
            return cached[1], cached[2]
        snippets = extra_snippets(names_near(tree.text, offset), others, window_text, settings.context_tokens // 4,
                                  self.count)
        context = tuple(repo_context(fim, snippets, path))
        memory.context = (key, context, snippets)
        return context, snippets

    def _document_region(self, text: str, offset: int, budget: int) -> str:
        """The document's lines that fit `budget` tokens: all of them, or a block around the
        cursor's line (three quarters above it) starting at a multiple of WINDOW_LINE_STEP."""
        lines = split_lines(text)
        costs = [self.count(line + "\n") for line in lines]
        if sum(costs) <= budget:
            return text
        row = text.count("\n", 0, offset)
        first, used = row, 0
        while first > 0 and used + costs[first - 1] <= budget * 3 // 4:
            first -= 1
            used += costs[first]
        first = -(-first // WINDOW_LINE_STEP) * WINDOW_LINE_STEP if first else 0
        used, last = 0, first
        while last < len(lines) and used + costs[last] <= budget:
            used += costs[last]
            last += 1
        return "".join(line + "\n" for line in lines[first:last])

"""The docstring moment: an empty body under a definition's header and docstring is asked for as
an instruction, not as fill-in-the-middle.

Enter after a new function's docstring, nothing yet in its body, is natural language → code: the
task instruct models are tuned for. Fill-in-the-middle there is pulled by the code below the
function (a `__main__` block calling it) into calls of the function itself. So at that place the
prompt is the model's chat template asking to complete the function (the instruction of
`fimble eval humaneval --mode chat`), with the file's imports and the definition as the code, and the
assistant's answer begun for it: a code fence, the lines the model itself writes above the
function (its imports: `ask_head`, asked first; what it wrote last under the same imports is
drafted, `HeadGuesses`), then the definition's header and docstring as they stand in the file. The
model goes on with the body, at the body's indentation, and the answer is cut at the closing
fence; what it writes then goes through the same healing, postprocessing, early answers and caches
as a fill-in-the-middle answer. The place's warm-up (idle work after the edit) builds the same
prompt (`instruct_place`), so the request finds the head asked and its prompt evaluated, or goes
on from where the warm-up was; an edit on the line that closes the docstring warms it one Enter
ahead (`enter_after_docstring`).

Where fill-in-the-middle is right instead — a body half written, code below the cursor in the
same block, any other language for now — `docstring_moment` says None.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass

from .anchor import Built, Heal, PromptMemory
from .backends.base import Backend, GenerationRequest
from .cache import LRUCache
from .config import Settings
from .context import CursorInfo, ancestors, line_at
from .models import ModelInfo
from .postprocess import Site
from .prompt import Prompt, Text, chat_prompt
from .reasons import StopReason
from .syntax import SyntaxTree

# The instruction (the one `fimble eval humaneval --mode chat` scores with).
INSTRUCTION = "Complete the following Python function. Reply with the whole function in one ```python block."
FENCE = "```"
# A function's body often runs past maxTokens' default (128): the answer here may have this many.
MIN_BODY_TOKENS = 320
# The file's import lines kept in the prompt (the names the body may use), at most this many.
MAX_IMPORT_LINES = 20
# What the model writes above the function (`own_head`): at most this many tokens, up to these.
HEAD_TOKENS = 48
HEAD_STOPS = ("def ", "class ", "async ", FENCE)
# Sets of imports whose head is remembered (`HeadGuesses`).
HEADS_KEPT = 64
QUOTES = ('"', "'")  # what a docstring ends with
_IMPORT = re.compile(r"(?:from\s+([\w.]+)\s+)?import\s+(.+)")
_DEFINITIONS = frozenset({"function_definition"})


@dataclass(frozen=True)
class DocstringMoment:
    """An empty body under a header and docstring, the cursor on its first line."""

    name: str
    header: str  # the definition from its first line through its docstring, as in the file
    imports: str  # the file's import lines
    statement_start: int  # offset of the line where the top-level statement holding the definition begins


def docstring_moment(tree: SyntaxTree, offset: int) -> DocstringMoment | None:
    """The definition whose empty body the cursor opens, or None where fill-in-the-middle is right.

    The cursor's line is blank (indentation at most) and indented deeper than the definition; the
    definition's body holds only its docstring (and comments); the next line with code below the
    cursor is back at the definition's level or further out (nothing of this body is below)."""
    if tree.spec is None or tree.spec.name != "python" or tree.tree is None:
        return None
    text = tree.text
    before, after = line_at(text, offset)
    if before.strip() or after.strip():
        return None
    line_start = offset - len(before)
    end = line_start  # the end of the code above the cursor's line: blank lines are skipped
    while end > 0 and text[end - 1].isspace():
        end -= 1
    if end == 0 or text[end - 1] not in "\"'":
        return None  # a docstring ends in a quote: the common case costs nothing more
    byte = len(text[:end].encode("utf-8", errors="surrogatepass"))
    nodes = ancestors(tree, byte)
    definition = next((n for n in nodes if n.type in _DEFINITIONS), None)
    if definition is None or definition.end_byte != byte:
        return None  # the line above the cursor does not end a definition
    body = definition.child_by_field_name("body")
    if body is None or not _only_docstring(body):
        return None
    start = text.rfind("\n", 0, _offset_of(text, definition.start_byte)) + 1
    def_indent = _indent(text[start: text.find("\n", start)])
    if len(before) <= def_indent:
        return None
    if not _nothing_below_in_block(text, offset, def_indent):
        return None
    name_node = definition.child_by_field_name("name")
    name = name_node.text.decode("utf-8", errors="replace") if name_node is not None else ""
    top = nodes[-2] if len(nodes) >= 2 else definition  # the module's child that holds the definition
    top_start = text.rfind("\n", 0, _offset_of(text, top.start_byte)) + 1
    return DocstringMoment(name, text[start:line_start].rstrip() + "\n", _imports(tree), top_start)


def line_ends_in_quote(text: str, offset: int) -> bool:
    """Whether the line at `offset` ends (trailing blanks aside) in a quote: it may close a
    docstring. Bounded (the line's last 256 characters): the server asks after every edit."""
    end = text.find("\n", offset)
    end = len(text) if end < 0 else end
    return text[max(0, end - 256): end].rstrip().endswith(QUOTES)


def enter_after_docstring(tree: SyntaxTree, offset: int) -> tuple[SyntaxTree, int] | None:
    """The docstring moment one Enter away: where the cursor's line ends a definition's docstring
    (its closing quotes last on the line) and the body is otherwise empty, the tree of the text
    with Enter pressed at the line's end (the new line at the docstring's indentation) and the
    offset after it; else None. The warm-up asks that place's question before the user presses
    Enter (session.JobKind.AHEAD): the question does not depend on the new line."""
    if tree.spec is None or tree.spec.name != "python":
        return None
    text = tree.text
    if not line_ends_in_quote(text, offset):
        return None  # (the common case)
    start = text.rfind("\n", 0, offset) + 1
    end = text.find("\n", offset)
    line = text[start: len(text) if end < 0 else end]
    at = start + len(line.rstrip())
    indentation = line[: len(line) - len(line.lstrip(" \t"))]
    ahead = tree.snapshot()
    ahead.edit(at, at, "\n" + indentation)
    place = at + 1 + len(indentation)
    return (ahead, place) if docstring_moment(ahead, place) is not None else None


def instruct_prompt(moment: DocstringMoment, info: ModelInfo, head: str | None = None) -> Prompt:
    """The chat prompt that asks for the function, the answer begun down to its docstring, below
    `head` (what the model wrote above the function, `own_head`). Without a head: the answer
    begun with the fence alone, for the model to write its head."""
    code = (moment.imports + "\n\n" if moment.imports else "") + moment.header.rstrip()
    asked = f"{INSTRUCTION}\n\n{FENCE}python\n"
    messages = [{"role": "user", "content": f"{asked}{code}\n{FENCE}"}]
    prompt = chat_prompt(messages, info.chat_template, bos_token=info.bos_token, eos_token=info.eos_token,
                         add_bos=info.add_bos)
    begun = f"{FENCE}python\n" if head is None else f"{FENCE}python\n{head}{moment.header}"
    # The template's text before the user's message and the instruction are the same at every
    # docstring moment: they are parts of their own, shared, so that the backend keeps their state.
    parts = list(prompt.parts)
    at = next((i for i, part in enumerate(parts) if isinstance(part, Text) and part.text.startswith(asked)), None)
    shared = 0
    if at is not None:
        parts[at: at + 1] = [Text(asked), Text(parts[at].text[len(asked):])]
        shared = at + 1
    return Prompt((*parts, Text(begun)), "instruct", prompt.add_bos, prompt.stop_tokens, prompt.messages, shared)


def own_head(written: str, whole: bool) -> str:
    """The lines the model wrote above the function (decoded from `instruct_prompt(moment, info)`
    up to HEAD_STOPS; `whole`: it reached one), as the answer is begun with them: verbatim when
    they are imports and blank lines, else their import lines alone."""
    lines = written.split("\n")
    if whole and all(not line.strip() or _IMPORT.fullmatch(line.strip()) for line in lines):
        return written
    imports = [line for line in lines if _IMPORT.fullmatch(line.strip()) and line == line.lstrip()]
    return "\n".join(imports) + "\n\n\n" if imports else ""


def imported_names(line: str) -> list[str]:
    """The names an import line binds (none for `import *`, which a function body may not hold)."""
    found = _IMPORT.fullmatch(line.strip())
    if found is None:
        return []
    names = [n.strip().split(" as ")[-1].strip() for n in found.group(2).strip("()").split(",")]
    if found.group(1) is None:  # `import os.path` binds `os`
        names = [n.split(".")[0] for n in names]
    return [] if "*" in names else [n for n in names if n.isidentifier()]


@dataclass(frozen=True)
class HeadImports(Heal):
    """The docstring moment's heal: what the backend writes is inserted as any answer is, and an
    import line of the model's head that the answer uses and the file lacks is put at its top."""

    # (line, a pattern matching any name it binds): compiled once, since the decode loop's judges
    # call `inserted` after every token.
    imports: tuple[tuple[str, re.Pattern[str]], ...] = ()
    head: str = ""  # the model's lines above the function that the prompt was built below

    def inserted(self, generated: str) -> str:
        body = super().inserted(generated)
        used = [line for line, names in self.imports if names.search(body)]
        return "".join(f"{line}\n{self.text}" for line in used) + body if used and body.strip() else body

    @classmethod
    def of(cls, head: str, file_text: str, indentation: str) -> HeadImports:
        """The head's imports none of whose names the file binds (imports, defines or assigns)."""
        imports = []
        for line in head.split("\n"):
            names = imported_names(line)
            if names and not any(_binds(file_text, name) for name in names):
                imports.append((line.strip(), re.compile(rf"\b(?:{'|'.join(map(re.escape, names))})\b")))
        return cls(indentation, masked=False, imports=tuple(imports), head=head)


def _binds(text: str, name: str) -> bool:
    """Whether a line of `text` imports, defines or assigns `name` (a mention in a docstring or a
    comment does not count: `Return the sqrt of x` leaves `sqrt` to be imported)."""
    word = re.escape(name)
    return re.search(rf"^[ \t]*(?:(?:from\s+\S+\s+)?import\b.*\b{word}\b|(?:async\s+)?(?:def|class)\s+{word}\b"
                     rf"|{word}\s*(?::[^=\n]*)?=(?!=))", text, re.MULTILINE) is not None


def _only_docstring(body: object) -> bool:
    children = [c for c in body.named_children if c.type != "comment"]  # type: ignore[attr-defined]
    return (len(children) == 1 and children[0].type == "expression_statement"
            and children[0].named_child_count == 1 and children[0].named_children[0].type == "string")


def _nothing_below_in_block(text: str, offset: int, def_indent: int) -> bool:
    end = text.find("\n", offset)
    while end >= 0:
        start = end + 1
        end = text.find("\n", start)
        line = text[start: len(text) if end < 0 else end]
        if line.strip() and not line.lstrip().startswith("#"):
            return _indent(line) <= def_indent
    return True


def _imports(tree: SyntaxTree) -> str:
    """The file's top-level import statements, in order (at most MAX_IMPORT_LINES lines)."""
    root = tree.tree.root_node if tree.tree is not None else None
    if root is None:
        return ""
    lines: list[str] = []
    for node in root.named_children:
        if node.type in ("import_statement", "import_from_statement", "future_import_statement"):
            lines += node.text.decode("utf-8", errors="replace").splitlines()
        if len(lines) >= MAX_IMPORT_LINES:
            break
    return "\n".join(lines[:MAX_IMPORT_LINES])


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" \t"))


def _offset_of(text: str, byte: int) -> int:
    return len(text.encode("utf-8", errors="surrogatepass")[:byte].decode("utf-8", errors="surrogatepass"))


# An answer at the docstring moment is judged against this many lines below the cursor.
SITE_LINES_BELOW = 60



def instruct_built(moment: DocstringMoment, tree: SyntaxTree, offset: int, cursor: CursorInfo,
                   info: ModelInfo, head: str) -> Built:
    """The docstring moment's prompt, built below the model's `head`: the answer is judged like a
    fill-in-the-middle answer at the cursor, against the definition's top-level statement
    above and the lines below (SITE_LINES_BELOW)."""
    text = tree.text
    before, _ = line_at(text, offset)
    top = moment.statement_start
    below = text.find("\n", offset)
    for _ in range(SITE_LINES_BELOW):
        if below < 0:
            break
        below = text.find("\n", below + 1)
    site = Site(text[top:offset], text[offset:] if below < 0 else text[offset:below + 1], cursor, tree.spec)
    return Built(instruct_prompt(moment, info, head), site, [], HeadImports.of(head, text, before))


class HeadGuesses:
    """What the model wrote above a function (up to HEAD_STOPS) under each set of the file's
    imports, across documents: the guess drafted when it is asked again (the model writes much the
    same lines under the same imports: under `from typing import List`, that line; under none, its
    own habit). A guess is verified as any draft, so a wrong one changes nothing but the time."""

    def __init__(self) -> None:
        self._written = LRUCache(HEADS_KEPT)  # imports → (the head written, "")

    def guess(self, moment: DocstringMoment) -> str:
        """The expected answer to the head's question: the head written last under these imports
        (else the imports themselves), then the definition's first word (`def`: the token after
        it, where the answer stops at HEAD_STOPS, comes from the draft's own batch)."""
        kept = self._written.get(moment.imports)
        written = kept[0] if kept is not None else moment.imports + "\n\n" if moment.imports else ""
        return written + next(iter(moment.header.split(maxsplit=1)), "")

    def remember(self, moment: DocstringMoment, written: str) -> None:
        self._written.put(moment.imports, written, "")


def instruct_place(moment: DocstringMoment, tree: SyntaxTree, offset: int, cursor: CursorInfo, info: ModelInfo,
                   memory: PromptMemory, backend: Backend, settings: Settings, cancel: threading.Event,
                   reuse: bool, heads: HeadGuesses | None = None) -> Built | None:
    """The docstring moment's prompt: the model's head asked first (or taken from `memory`), then
    the body's prompt below it. None: cancelled. The completion and the place's warm-up both
    build it, so that a warm-up at the moment evaluates the question the request will ask (a
    fill-in-the-middle prompt evaluated there would be thrown away)."""
    head = ask_head(moment, memory, info, backend, settings, cancel, reuse, heads)
    return None if head is None else instruct_built(moment, tree, offset, cursor, info, head)


def ask_head(moment: DocstringMoment, memory: PromptMemory, info: ModelInfo, backend: Backend, settings: Settings,
             cancel: threading.Event, reuse: bool, heads: HeadGuesses | None = None) -> str | None:
    """What the model writes above the function (`own_head`), asked once for each question and
    kept in the document's memory (greedy only: sampled answers each sample their own), with
    `heads`' guess drafted. None: cancelled."""
    question = moment.imports + "\n" + moment.header
    if memory.head is not None and memory.head[0] == question:
        return memory.head[1]
    out = backend.generate(GenerationRequest.from_settings(
        instruct_prompt(moment, info), settings, cancel=cancel, reuse=reuse, stop=list(HEAD_STOPS),
        max_tokens=HEAD_TOKENS, time_budget_s=None, expected=heads.guess(moment) if heads is not None else ""))
    if out.stats.stop_reason == StopReason.CANCELLED:
        return None
    whole = out.stats.stop_reason == StopReason.SEQUENCE
    head = own_head(out.text, whole)
    if settings.temperature <= 0:
        memory.head = (question, head)
        if heads is not None and whole:
            heads.remember(moment, out.text)
    else:
        memory.head = None
    return head

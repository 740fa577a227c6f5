"""The docstring moment: an empty body under a definition's header and docstring is asked for as
an instruction, not as fill-in-the-middle.

Enter after a new function's docstring, nothing yet in its body, is natural language → code:
the task instruct models are tuned for. Fill-in-the-middle there is pulled by the code below the
function (a `__main__` block calling it) into calls of the function itself. So at that place the
prompt is the model's chat template asking to complete the function (the instruction of
`fimble eval humaneval --mode chat`), with the file's imports and the definition as the code,
and the assistant's answer begun for it: a code fence, then the definition's header and
docstring as they stand in the file. The model goes on with the body, at the body's
indentation, and the answer is cut at the closing fence; what it writes then goes through the
same healing, postprocessing, early answers and caches as a fill-in-the-middle answer.

Where fill-in-the-middle is right instead — a body half written, code below the cursor in the
same block, any other language for now — `docstring_moment` says None.
"""

from __future__ import annotations

from dataclasses import dataclass

from .anchor import Built, Heal
from .context import CursorInfo, ancestors, line_at
from .models import ModelInfo
from .postprocess import Site
from .prompt import Prompt, Text, chat_prompt
from .syntax import SyntaxTree

# The instruction (the one `fimble eval humaneval --mode chat` scores with).
INSTRUCTION = "Complete the following Python function. Reply with the whole function in one ```python block."
FENCE = "```"
# A function's body often runs past maxTokens' default (128): the answer here may have this many.
MIN_BODY_TOKENS = 320
# The file's import lines kept in the prompt (the names the body may use), at most this many.
MAX_IMPORT_LINES = 20
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


def instruct_prompt(moment: DocstringMoment, info: ModelInfo) -> Prompt:
    """The chat prompt that asks for the function, the answer begun down to its docstring."""
    code = (moment.imports + "\n\n" if moment.imports else "") + moment.header.rstrip()
    messages = [{"role": "user", "content": f"{INSTRUCTION}\n\n{FENCE}python\n{code}\n{FENCE}"}]
    prompt = chat_prompt(messages, info.chat_template, bos_token=info.bos_token, eos_token=info.eos_token,
                         add_bos=info.add_bos)
    # The assistant's answer begun: the fence and the definition; the model writes the body next.
    return Prompt((*prompt.parts, Text(f"{FENCE}python\n{moment.header}")), "instruct", prompt.add_bos,
                  prompt.stop_tokens, prompt.messages)


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
                   info: ModelInfo) -> Built:
    """The docstring moment's prompt, built: the answer is judged like a
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
    return Built(instruct_prompt(moment, info), site, [], Heal(before, masked=False))

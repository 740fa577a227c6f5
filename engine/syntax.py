"""tree-sitter: the grammars we ship, parsing, incremental edits, error counting.

Grammars come from the official per-language packages (`tree-sitter-python`, …), imported the
first time a language is used. A language we have no grammar for is `None` here, and everything
downstream takes the plain-text path: no parse, no crash.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from typing import Any

# LSP languageId → (grammar module, function returning the language pointer, block style).
# Block style says how a block ends: by indentation, by a closing brace, or by a keyword.
_GRAMMARS: dict[str, tuple[str, str, str]] = {
    "python": ("tree_sitter_python", "language", "indent"),
    "javascript": ("tree_sitter_javascript", "language", "brace"),
    "javascriptreact": ("tree_sitter_javascript", "language", "brace"),
    "typescript": ("tree_sitter_typescript", "language_typescript", "brace"),
    "typescriptreact": ("tree_sitter_typescript", "language_tsx", "brace"),
    "go": ("tree_sitter_go", "language", "brace"),
    "rust": ("tree_sitter_rust", "language", "brace"),
    "java": ("tree_sitter_java", "language", "brace"),
    "c": ("tree_sitter_c", "language", "brace"),
    "cpp": ("tree_sitter_cpp", "language", "brace"),
    "csharp": ("tree_sitter_c_sharp", "language", "brace"),
    "ruby": ("tree_sitter_ruby", "language", "keyword"),
    "php": ("tree_sitter_php", "language_php", "brace"),
    "lua": ("tree_sitter_lua", "language", "keyword"),
    "shellscript": ("tree_sitter_bash", "language", "keyword"),
}
_ALIASES = {"py": "python", "js": "javascript", "ts": "typescript", "tsx": "typescriptreact", "c++": "cpp",
            "cs": "csharp", "c#": "csharp", "rb": "ruby", "sh": "shellscript", "bash": "shellscript"}

SUPPORTED_LANGUAGES = tuple(_GRAMMARS)

# Node types (over all grammars) that hold text the model should not break out of.
STRING_TYPES = frozenset({
    "string", "string_content", "string_fragment", "template_string", "raw_string_literal", "string_literal",
    "interpreted_string_literal", "char_literal", "character_literal", "heredoc_body", "encapsed_string",
    "verbatim_string_literal", "interpolated_string_expression", "raw_string",
})
COMMENT_TYPES = frozenset({"comment", "line_comment", "block_comment", "doc_comment"})
# Definitions whose header we keep in the prompt, and whose names we look up in other files.
DEFINITION_TYPES = frozenset({
    "function_definition", "class_definition", "decorated_definition", "function_declaration", "class_declaration",
    "method_definition", "method_declaration", "function_item", "impl_item", "struct_item", "enum_item",
    "trait_item", "interface_declaration", "type_declaration", "struct_specifier", "class_specifier",
    "method", "class", "module", "function_signature", "lexical_declaration", "arrow_function",
    "generator_function_declaration",
    "namespace_definition", "constructor_declaration", "local_function", "function_definition_statement",
})
IMPORT_TYPES = frozenset({
    "import_statement", "import_from_statement", "future_import_statement", "import_declaration",
    "use_declaration", "preproc_include", "using_directive", "namespace_use_declaration", "extern_crate_declaration",
})


def canonical_language(language_id: str | None) -> str:
    lang = (language_id or "plaintext").lower()
    return _ALIASES.get(lang, lang)


@dataclass(frozen=True)
class LanguageSpec:
    name: str
    language: Any  # tree_sitter.Language
    block_style: str

    def parser(self) -> Any:
        import tree_sitter

        return tree_sitter.Parser(self.language)


@cache
def get_language(language_id: str | None) -> LanguageSpec | None:
    """The grammar for an LSP languageId, or None (plain text) when we have none."""
    name = canonical_language(language_id)
    entry = _GRAMMARS.get(name)
    if entry is None:
        return None
    module_name, attribute, style = entry
    try:
        import tree_sitter

        module = importlib.import_module(module_name)
        language = tree_sitter.Language(getattr(module, attribute)())
    except (ImportError, AttributeError, ValueError):
        return None  # a grammar that is missing or built for another ABI: plain text, not a crash
    return LanguageSpec(name, language, style)


def parse(spec: LanguageSpec, text: str) -> Any:
    return spec.parser().parse(text.encode("utf-8", errors="surrogatepass"))


def iter_nodes(node: Any) -> Iterator[Any]:
    """Every node under `node`, depth first, without recursion (deep trees stay safe)."""
    cursor = node.walk()
    while True:
        yield cursor.node
        if cursor.goto_first_child():
            continue
        while not cursor.goto_next_sibling():
            if not cursor.goto_parent():
                return


def error_count(tree: Any) -> int:
    """ERROR and MISSING nodes in a tree: what a completion must not add to."""
    root = tree.root_node
    if not root.has_error:
        return 0
    return sum(1 for n in iter_nodes(root) if n.is_error or n.is_missing)


def point_of(text_before: str) -> tuple[int, int]:
    """tree-sitter point (row, utf-8 byte column) at the end of `text_before`."""
    row = text_before.count("\n")
    line_start = text_before.rfind("\n") + 1
    return row, len(text_before[line_start:].encode("utf-8", errors="surrogatepass"))


class SyntaxTree:
    """A document's text and its tree, kept in step by incremental edits.

    `edit()` takes code-point offsets (what LSP positions become), describes the change to
    tree-sitter in bytes and points, and reparses with the old tree so only the touched region
    is parsed again.
    """

    def __init__(self, text: str, language_id: str | None) -> None:
        self.spec = get_language(language_id)
        self.text = text
        self._parser = self.spec.parser() if self.spec else None
        self.tree: Any = self._parser.parse(self._bytes(text)) if self._parser else None

    @staticmethod
    def _bytes(text: str) -> bytes:
        return text.encode("utf-8", errors="surrogatepass")

    def edit(self, start: int, end: int, new_text: str) -> None:
        """Replace text[start:end] (code points) with new_text and reparse incrementally."""
        old = self.text
        self.text = old[:start] + new_text + old[end:]
        if self.tree is None or self._parser is None:
            return
        before = old[:start]
        start_byte = len(self._bytes(before))
        old_end_byte = start_byte + len(self._bytes(old[start:end]))
        new_end_byte = start_byte + len(self._bytes(new_text))
        start_point = point_of(before)
        self.tree.edit(
            start_byte=start_byte,
            old_end_byte=old_end_byte,
            new_end_byte=new_end_byte,
            start_point=start_point,
            old_end_point=_advance(start_point, old[start:end]),
            new_end_point=_advance(start_point, new_text),
        )
        self.tree = self._parser.parse(self._bytes(self.text), self.tree)

    def snapshot(self) -> SyntaxTree:
        """A frozen copy for another thread: edits to this one will not reach it."""
        copy = SyntaxTree.__new__(SyntaxTree)
        copy.spec, copy.text, copy._parser = self.spec, self.text, None
        copy.tree = self.tree.copy() if self.tree is not None else None
        return copy

    def replace_all(self, text: str) -> None:
        self.text = text
        if self._parser is not None:
            self.tree = self._parser.parse(self._bytes(text))


def _advance(point: tuple[int, int], text: str) -> tuple[int, int]:
    row, column = point
    newlines = text.count("\n")
    if not newlines:
        return row, column + len(text.encode("utf-8", errors="surrogatepass"))
    tail = text[text.rfind("\n") + 1 :]
    return row + newlines, len(tail.encode("utf-8", errors="surrogatepass"))

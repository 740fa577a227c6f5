"""Where people type, over a real LSP client on a fresh server: a file just opened, Enter and the
editor's auto-indent, an inline completion at the indented cursor."""

from __future__ import annotations

import pytest
from lsprotocol import types
from pytest_lsp import LanguageClient
from test_lsp_e2e import URI, client, inline_params, status

pytestmark = pytest.mark.model
__all__ = ["client"]  # the fixture: a server of this module's own


HYPOTENUSE = ('import math\n\n\ndef hypotenuse(a: float, b: float) -> float:\n'
              '    """Length of the hypotenuse of a right triangle with legs a and b."""\n\n\n'
              'print(hypotenuse(3, 4))\n')
PALINDROME = 'def is_palindrome(s: str) -> bool:\n    """Return True if s reads the same backwards."""\n'


@pytest.mark.asyncio(loop_scope="module")
@pytest.mark.parametrize(("text", "line"), [(HYPOTENUSE, 4), (PALINDROME, 1)], ids=["hypotenuse", "palindrome"])
async def test_after_enter_and_auto_indent_the_body_parses_in_place(client: LanguageClient, text, line):
    """A file just opened; the user presses Enter at the end of the docstring and the editor
    indents the new line: the suggestion there must fit in place (it used to be empty, or one
    space too deep)."""
    uri = f"file:///work/example/typed_{line}.py"
    # Alone in the editor, on a fresh server (this module's own): after the other e2e tests had
    # edited shapes.py and filled the KV cache, the 0.5B model answered the hypotenuse with a
    # markdown fence (a near-tie at its first token).
    client.text_document_did_close(types.DidCloseTextDocumentParams(text_document=types.TextDocumentIdentifier(uri=URI)))
    client.text_document_did_open(types.DidOpenTextDocumentParams(
        text_document=types.TextDocumentItem(uri=uri, language_id="python", version=1, text=text)))
    end = len(text.split("\n")[line])
    client.text_document_did_change(types.DidChangeTextDocumentParams(
        text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=2),
        content_changes=[types.TextDocumentContentChangePartial(
            range=types.Range(types.Position(line, end), types.Position(line, end)), text="\n    ")]))
    result = await client.text_document_inline_completion_async(inline_params(line + 1, 4, uri))
    assert len(result.items) == 1, (await status(client, uri))["requests"][-1]
    lines = text.split("\n")
    lines.insert(line + 1, "    " + result.items[0].insert_text)
    compile("\n".join(lines), uri, "exec")  # the compiler, not only tree-sitter, accepts the file
    assert "return" in result.items[0].insert_text
    client.text_document_did_close(types.DidCloseTextDocumentParams(
        text_document=types.TextDocumentIdentifier(uri=uri)))

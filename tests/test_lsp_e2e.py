"""The language server end to end: a real LSP client over stdio, the real model."""

from __future__ import annotations

import ast
import asyncio
import json
import os
import sys
from pathlib import Path

import pytest
import pytest_lsp
from lsprotocol import types
from pytest_lsp import ClientServerConfig, LanguageClient

pytestmark = pytest.mark.model

SOURCE = '''import math


def circle_area(radius: float) -> float:
    """Area of a circle of the given radius."""
    return 


def main():
    print(circle_area(2.0))
'''
URI = "file:///work/example/shapes.py"


@pytest_lsp.fixture(
    scope="module",
    config=ClientServerConfig(server_command=[sys.executable, "-m", "lsp_server"], server_env=dict(os.environ)),
)
async def client(lsp_client: LanguageClient, model_path):
    capabilities = types.ClientCapabilities(
        general=types.GeneralClientCapabilities(position_encodings=[types.PositionEncodingKind.Utf16]),
        window=types.WindowClientCapabilities(work_done_progress=True),
    )
    result = await lsp_client.initialize_session(types.InitializeParams(
        capabilities=capabilities, initialization_options={"debounceMs": 10, "timeBudgetMs": 8000,
                                                           "notAnOption": 1}))
    lsp_client.init_result = result  # type: ignore[attr-defined]
    lsp_client.text_document_did_open(types.DidOpenTextDocumentParams(
        text_document=types.TextDocumentItem(uri=URI, language_id="python", version=1, text=SOURCE)))
    yield
    await lsp_client.shutdown_session()


def plain(value):
    """pygls gives results of custom methods as namedtuples: back to dicts and lists."""
    if hasattr(value, "_asdict"):
        return {k: plain(v) for k, v in value._asdict().items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


async def status(client, uri=None):
    return plain(await client.protocol.send_request_async("fimble/status", {"uri": uri} if uri else {}))


def inline_params(line: int, character: int, uri: str = URI) -> types.InlineCompletionParams:
    return types.InlineCompletionParams(
        text_document=types.TextDocumentIdentifier(uri=uri), position=types.Position(line=line, character=character),
        context=types.InlineCompletionContext(trigger_kind=types.InlineCompletionTriggerKind.Automatic))


@pytest.mark.asyncio(loop_scope="module")
async def test_initialize_advertises_the_surface(client: LanguageClient):
    caps = client.init_result.capabilities  # type: ignore[attr-defined]
    assert caps.inline_completion_provider is not None
    # vscode-languageclient registers each advertised command in VS Code: accepting a suggestion runs
    # the item's `fimble.accepted` there, and VS Code sends it here.
    assert sorted(caps.execute_command_provider.commands) == ["fimble.accepted", "fimble.explain"]
    assert caps.text_document_sync.save  # a save is when what was accepted is counted again
    assert caps.text_document_sync.change == types.TextDocumentSyncKind.Incremental
    assert caps.position_encoding == types.PositionEncodingKind.Utf16
    assert any("unknown option 'notAnOption'" in m.message for m in client.messages)


@pytest.mark.asyncio(loop_scope="module")
async def test_inline_completion_parses_in_place(client: LanguageClient):
    result = await client.text_document_inline_completion_async(inline_params(5, 11))
    assert len(result.items) == 1, await status(client)
    item = result.items[0]
    assert item.range == types.Range(types.Position(5, 11), types.Position(5, 11))
    lines = SOURCE.split("\n")
    lines[5] = lines[5][:11] + item.insert_text + lines[5][11:]
    ast.parse("\n".join(lines))
    assert "radius" in item.insert_text


@pytest.mark.asyncio(loop_scope="module")
async def test_typing_the_suggestion_is_answered_from_the_cache(client: LanguageClient):
    first = await client.text_document_inline_completion_async(inline_params(5, 11))
    suggestion = first.items[0].insert_text
    client.text_document_did_change(types.DidChangeTextDocumentParams(
        text_document=types.VersionedTextDocumentIdentifier(uri=URI, version=2),
        content_changes=[types.TextDocumentContentChangePartial(
            range=types.Range(types.Position(5, 11), types.Position(5, 11)), text=suggestion[:2])]))
    second = await client.text_document_inline_completion_async(inline_params(5, 13))
    assert second.items[0].insert_text == suggestion[2:]
    state = await status(client, URI)
    assert state["requests"][-1]["outcome"] == "cache"
    assert state["document"]["version"] == 2 and state["document"]["length"] == len(SOURCE) + 2
    client.text_document_did_change(types.DidChangeTextDocumentParams(
        text_document=types.VersionedTextDocumentIdentifier(uri=URI, version=3),
        content_changes=[types.TextDocumentContentChangePartial(
            range=types.Range(types.Position(5, 11), types.Position(5, 13)), text="")]))


@pytest.mark.asyncio(loop_scope="module")
async def test_explain_streams_progress_and_names_the_function(client: LanguageClient):
    token = "explain-1"
    answer = await client.workspace_execute_command_async(types.ExecuteCommandParams(
        command="fimble.explain", work_done_token=token,
        arguments=[{"uri": URI, "range": {"start": {"line": 3, "character": 0}, "end": {"line": 5, "character": 0}}}]))
    assert isinstance(answer, str) and "circle_area" in answer
    reports = client.progress_reports.get(token, [])
    assert isinstance(reports[0], types.WorkDoneProgressBegin)
    assert isinstance(reports[-1], types.WorkDoneProgressEnd)
    partial = [r.message for r in reports if isinstance(r, types.WorkDoneProgressReport)]
    assert len(partial) > 3 and answer.startswith(partial[0].strip()[:5])


@pytest.mark.asyncio(loop_scope="module")
async def test_explain_with_bad_arguments_is_a_jsonrpc_error(client: LanguageClient):
    with pytest.raises(Exception, match="takes"):
        await client.workspace_execute_command_async(types.ExecuteCommandParams(
            command="fimble.explain", arguments=["not a dict"]))


@pytest.mark.asyncio(loop_scope="module")
async def test_cancelled_request_answers_at_once_and_the_server_goes_on(client: LanguageClient):
    client.workspace_did_change_configuration(types.DidChangeConfigurationParams(
        # No early answer: on a quiet machine the first lines came back before the cancel did.
        settings={"fimble": {"multiline": "always", "maxTokens": 200, "timeBudgetMs": 20000, "firstAnswerMs": 0}}))
    primes = "file:///work/example/primes.py"
    client.text_document_did_open(types.DidOpenTextDocumentParams(text_document=types.TextDocumentItem(
        uri=primes, language_id="python", version=1, text="PRIMES = [\n    2, 3, 5, 7, 11,\n    \n]\n")))
    msg_id = "cancel-me"
    pending = asyncio.ensure_future(client.protocol.send_request_async(
        "textDocument/inlineCompletion", inline_params(2, 4, primes), msg_id=msg_id))
    await asyncio.sleep(1.0)  # (whether the request waits or generates by now, the cancel must stop it)
    client.protocol.notify("$/cancelRequest", types.CancelParams(id=msg_id))
    with pytest.raises(Exception, match="cancel"):
        await pending  # answered as cancelled, not with a 200-token completion
    # The worker is free again quickly: the next request is answered.
    client.workspace_did_change_configuration(types.DidChangeConfigurationParams(
        settings={"fimble": {"multiline": "auto", "maxTokens": 64, "timeBudgetMs": 8000, "firstAnswerMs": 200}}))
    result = await client.text_document_inline_completion_async(inline_params(5, 11))
    assert result.items
    state = await status(client)
    assert "cancelled" in state["outcomes"]


@pytest.mark.asyncio(loop_scope="module")
async def test_bad_config_warns_and_falls_back(client: LanguageClient):
    client.workspace_did_change_configuration(types.DidChangeConfigurationParams(
        settings={"fimble": {"maxTokens": 48, "multiline": "always"}}))  # this test's own starting point
    client.workspace_did_change_configuration(types.DidChangeConfigurationParams(
        settings={"fimble": {"maxTokens": "lots", "multiline": "sideways"}}))
    state = await status(client)
    # Each bad value is refused with a warning; the option keeps the value it had.
    assert state["settings"]["maxTokens"] == 48 and state["settings"]["multiline"] == "always"
    assert any("option 'maxTokens'" in m.message for m in client.messages)
    assert state["state"] == "ready" and state["model"] == "qwen2.5-coder-0.5b"


@pytest.mark.asyncio(loop_scope="module")
async def test_hostile_documents_do_not_stall_the_others(client: LanguageClient):
    client.workspace_did_change_configuration(types.DidChangeConfigurationParams(
        settings={"fimble": {"multiline": "auto", "maxTokens": 64, "timeBudgetMs": 8000}}))
    for uri, lang, text in (("file:///bin.dat", "python", "\x00\x01\x02" * 1000),
                            ("file:///huge.py", "python", "x = 1\n" * 3_500_000),
                            ("file:///odd.zz", "zzlang", "some text in no known language\n")):
        client.text_document_did_open(types.DidOpenTextDocumentParams(
            text_document=types.TextDocumentItem(uri=uri, language_id=lang, version=1, text=text)))
    assert not (await client.text_document_inline_completion_async(inline_params(0, 2, "file:///bin.dat"))).items
    out_of_range = await client.text_document_inline_completion_async(inline_params(999, 0))
    assert not out_of_range.items
    state = await status(client, "file:///huge.py")
    assert state["document"]["length"] == 21_000_000 and state["document"]["parsed"] is False
    result = await client.text_document_inline_completion_async(inline_params(5, 11))
    assert result.items  # the first document still completes



@pytest.mark.asyncio(loop_scope="module")
async def test_an_accepted_suggestion_is_counted_and_followed_to_the_save(client: LanguageClient):
    client.workspace_did_change_configuration(types.DidChangeConfigurationParams(
        settings={"fimble": {"multiline": "auto", "maxTokens": 64, "timeBudgetMs": 8000, "stats": True}}))
    uri = "file:///work/example/accept.py"
    client.text_document_did_open(types.DidOpenTextDocumentParams(text_document=types.TextDocumentItem(
        uri=uri, language_id="python", version=1, text="def double(x):\n    return \n")))
    before = (await status(client))["acceptance"].get("python", {})
    result = await client.text_document_inline_completion_async(inline_params(1, 11, uri))
    item = result.items[0]
    assert item.command.command == "fimble.accepted" and len(item.command.arguments) == 1
    # As VS Code does: the text goes in, then the item's command runs, later the file is saved.
    client.text_document_did_change(types.DidChangeTextDocumentParams(
        text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=2),
        content_changes=[types.TextDocumentContentChangePartial(
            range=types.Range(types.Position(1, 11), types.Position(1, 11)), text=item.insert_text)]))
    await client.workspace_execute_command_async(types.ExecuteCommandParams(
        command=item.command.command, arguments=item.command.arguments))
    client.text_document_did_save(types.DidSaveTextDocumentParams(text_document=types.TextDocumentIdentifier(uri)))
    after = (await status(client))["acceptance"]["python"]
    grew = {k: after[k] - before.get(k, 0) for k in after}
    n = len(item.insert_text)
    assert grew == {"shown": 1, "accepted": 1, "acceptedChars": n, "retainedChars30s": 0, "checkedChars30s": 0,
                    "retainedCharsAtSave": n, "checkedCharsAtSave": n}
    written = (Path(os.environ["FIMBLE_HOME"]) / "stats.json").read_text()  # the server's home (conftest)
    assert json.loads(written)["languages"]["python"]["accepted"] >= 1
    assert item.insert_text.strip() not in written and "accept.py" not in written  # counts, never code

    client.workspace_did_change_configuration(types.DidChangeConfigurationParams(settings={"fimble": {"stats": False}}))
    off = await client.text_document_inline_completion_async(inline_params(5, 11))
    assert off.items and off.items[0].command is None
    assert (await status(client))["acceptance"] == {}
    client.workspace_did_change_configuration(types.DidChangeConfigurationParams(settings={"fimble": {"stats": True}}))

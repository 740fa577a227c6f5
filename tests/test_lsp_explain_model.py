"""A second model that explains, over stdio with a real client: loaded on the first explanation with
progress, named in status, completions untouched; a model that fails to load is a request failure
(not bad params), and the server goes on."""

from __future__ import annotations

import os
import sys

import pytest
import pytest_lsp
from lsprotocol import types
from pygls.exceptions import JsonRpcException
from pytest_lsp import ClientServerConfig, LanguageClient
from test_lsp_e2e import inline_params, status

pytestmark = pytest.mark.model

SOURCE = '''def clamp(value, low, high):
    if value < low:
        return low
    if value > high:
        return high
    return value


def scale(values, factor):
    return [v * 
'''
URI = "file:///work/example/clamp.py"
WHOLE_CLAMP = {"start": {"line": 0, "character": 0}, "end": {"line": 0, "character": 0}}


@pytest.fixture(scope="module")
def explain_model(model_path, tmp_path_factory):
    """The same weights under another path: a second model as far as the server can tell."""
    link = tmp_path_factory.mktemp("explainer") / "explainer.gguf"
    link.symlink_to(model_path)
    return str(link)


@pytest_lsp.fixture(
    scope="module",
    config=ClientServerConfig(server_command=[sys.executable, "-m", "lsp_server"], server_env=dict(os.environ)),
)
async def client(lsp_client: LanguageClient, explain_model):
    await lsp_client.initialize_session(types.InitializeParams(
        capabilities=types.ClientCapabilities(window=types.WindowClientCapabilities(work_done_progress=True)),
        initialization_options={"explainModel": explain_model, "timeBudgetMs": 8000, "firstAnswerMs": 0}))
    lsp_client.text_document_did_open(types.DidOpenTextDocumentParams(
        text_document=types.TextDocumentItem(uri=URI, language_id="python", version=1, text=SOURCE)))
    yield
    await lsp_client.shutdown_session()


async def _explain(client: LanguageClient, token: str) -> str:
    answer: str = await client.workspace_execute_command_async(types.ExecuteCommandParams(
        command="fimble.explain", work_done_token=token, arguments=[{"uri": URI, "range": WHOLE_CLAMP}]))
    return answer


@pytest.mark.asyncio(loop_scope="module")
async def test_the_second_model_loads_on_the_first_explanation_and_completions_keep_theirs(
        client: LanguageClient, explain_model):
    before = (await status(client))["explain"]
    assert before == {"model": explain_model, "secondModel": True, "state": "not loaded", "loadMs": None,
                      "lastExplainedBy": None}
    answer = await _explain(client, "explain-first")
    assert "clamp" in answer
    messages = [r.message for r in client.progress_reports["explain-first"]
                if isinstance(r, types.WorkDoneProgressReport)]
    assert messages[0] == f"loading {explain_model} to explain (first use)"
    assert any("clamp" in (m or "") for m in messages[1:])  # then the answer, streamed
    after = await status(client)
    assert after["explain"]["state"] == "ready" and after["explain"]["lastExplainedBy"] == explain_model
    assert after["explain"]["loadMs"] > 0
    assert after["model"] == "qwen2.5-coder-0.5b" and after["state"] == "ready"
    # The completion model's load was queued before the explanation (it began, then ended ready).
    loads = [reports for token, reports in client.progress_reports.items() if str(token).startswith("fimble-load-")]
    assert len(loads) == 1 and isinstance(loads[0][0], types.WorkDoneProgressBegin)
    assert isinstance(loads[0][-1], types.WorkDoneProgressEnd) and loads[0][-1].message == "ready"
    # The second explanation finds the model loaded: no loading message.
    await _explain(client, "explain-second")
    assert not any("loading" in (r.message or "") for r in client.progress_reports["explain-second"]
                   if isinstance(r, types.WorkDoneProgressReport))
    completion = await client.text_document_inline_completion_async(inline_params(9, 17, URI))
    assert completion is not None and completion.items and completion.items[0].insert_text.strip()


@pytest.mark.asyncio(loop_scope="module")
async def test_an_explaining_model_that_cannot_load_is_a_request_failure_and_the_server_goes_on(
        client: LanguageClient, tmp_path_factory):
    broken = tmp_path_factory.mktemp("broken") / "broken.gguf"
    broken.write_bytes(b"GGUF" + b"\0" * 64)  # a GGUF header and nothing usable
    client.workspace_did_change_configuration(types.DidChangeConfigurationParams(
        settings={"fimble": {"explainModel": str(broken)}}))
    with pytest.raises(JsonRpcException) as failure:
        await _explain(client, "explain-broken")
    assert failure.value.code == -32803 and "explain failed" in str(failure.value) and "broken.gguf" in str(
        failure.value)
    said = (await status(client))["explain"]
    assert said["model"] == str(broken) and said["state"] == "error" and said["lastExplainedBy"] != str(broken)
    completion = await client.text_document_inline_completion_async(inline_params(9, 17, URI))
    assert completion is not None and completion.items
    # Back to the completion model: no second model is kept.
    client.workspace_did_change_configuration(types.DidChangeConfigurationParams(
        settings={"fimble": {"explainModel": "qwen2.5-coder-0.5b"}}))
    assert "clamp" in await _explain(client, "explain-own")
    said = (await status(client))["explain"]
    assert said == {"model": "qwen2.5-coder-0.5b", "secondModel": False, "state": "ready", "loadMs": None,
                    "lastExplainedBy": "qwen2.5-coder-0.5b"}

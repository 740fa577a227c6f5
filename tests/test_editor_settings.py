"""The editors' settings mirror the server's options, so a setting in VS Code or Neovim means
what the same name means to `fimble serve --set`."""

import dataclasses
import json
from pathlib import Path

from engine.config import Settings, describe, to_camel

EDITORS = Path(__file__).resolve().parent.parent / "editors"
CLIENT_ONLY = {"path", "enable"}


def test_vscode_settings_are_the_server_options_with_their_defaults():
    properties = json.loads((EDITORS / "vscode" / "package.json").read_text())["contributes"]["configuration"][
        "properties"]
    server = {name[len("fimble."):]: spec for name, spec in properties.items() if name[len("fimble."):] not in
              CLIENT_ONLY}
    assert set(server) == {to_camel(f.name) for f in dataclasses.fields(Settings)}
    for name, default, _doc in describe():
        assert server[name]["default"] == default, name


def test_vscode_enums_and_bounds_match_the_server_checks():
    properties = json.loads((EDITORS / "vscode" / "package.json").read_text())["contributes"]["configuration"][
        "properties"]
    for f in dataclasses.fields(Settings):
        spec = properties["fimble." + to_camel(f.name)]
        assert spec.get("enum") == (list(f.metadata["choices"]) if f.metadata["choices"] else None)
        assert spec.get("minimum") == f.metadata["lo"] and spec.get("maximum") == f.metadata["hi"]


def test_vscode_explain_command_is_on_the_editor_context_menu():
    manifest = json.loads((EDITORS / "vscode" / "package.json").read_text())
    commands = {c["command"]: c["title"] for c in manifest["contributes"]["commands"]}
    assert commands["fimble.explainCode"] == "Explain this code"
    assert any(m["command"] == "fimble.explainCode" for m in manifest["contributes"]["menus"]["editor/context"])
    # The server's own command name is left to vscode-languageclient, which registers it itself.
    assert "fimble.explain" not in commands

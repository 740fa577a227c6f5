// Accepting a suggestion runs its `fimble.accepted` command, which reaches the server: the path
// goes through vscode-languageclient's own code (its converter and its executeCommand feature),
// with the item exactly as `fimble serve` sends it. VS Code runs an item's command on accept.
import "./vscode-mock";
import { test } from "node:test";
import * as assert from "node:assert/strict";
import * as vscode from "vscode";
import { createConverter } from "vscode-languageclient/$test/common/protocolConverter";
import { ExecuteCommandFeature } from "vscode-languageclient/$test/common/executeCommand";

const FROM_SERVER = {
  items: [
    {
      insertText: "radius ** 2 * 3.14159",
      range: { start: { line: 2, character: 11 }, end: { line: 2, character: 11 } },
      command: { title: "fimble: suggestion accepted", command: "fimble.accepted", arguments: ["1a2b-7"] },
    },
  ],
};

test("accepting a suggestion sends fimble.accepted with the item's id to the server", async () => {
  const sent: { method: string; params: unknown }[] = [];
  const client = {
    middleware: {},
    sendRequest: async (type: { method: string }, params: unknown) => {
      sent.push({ method: type.method, params });
      return null;
    },
    handleFailedRequest: () => undefined,
  };
  // The client registers every command the server advertises (what it does at initialize with
  // the server's executeCommandProvider).
  const feature = new ExecuteCommandFeature(client as never);
  feature.register({ id: "fimble", registerOptions: { commands: ["fimble.explain", "fimble.accepted"] } });

  const converted = await createConverter(undefined, true, true, true).asInlineCompletionResult(FROM_SERVER as never);
  const items = (Array.isArray(converted) ? converted : (converted as unknown as { items: vscode.InlineCompletionItem[] }).items);
  assert.equal(items.length, 1);
  const command = items[0].command;
  assert.ok(command && command.command === "fimble.accepted");
  assert.equal(items[0].insertText, "radius ** 2 * 3.14159");

  // What VS Code does when the user presses Tab on the ghost text.
  await vscode.commands.executeCommand(command.command, ...(command.arguments ?? []));
  assert.deepEqual(sent, [
    { method: "workspace/executeCommand", params: { command: "fimble.accepted", arguments: ["1a2b-7"] } },
  ]);
  feature.clear();
});

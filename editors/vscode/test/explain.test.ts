import { beforeEach, test } from "node:test";
import * as assert from "node:assert/strict";
import { fake, recorded, reset } from "./vscode-mock";
import { explain, ExplainClient, explainRange, LspRange } from "../src/explain";

function editor(selection: LspRange) {
  return { document: { uri: { toString: () => "file:///tmp/shapes.py" }, fileName: "/tmp/shapes.py" }, selection };
}

beforeEach(reset);

test("the cursor alone is sent as an empty range (the server picks the function)", () => {
  const cursor = { start: { line: 4, character: 2 }, end: { line: 4, character: 2 } };
  assert.deepEqual(explainRange(cursor), cursor);
});

test("the answer streams into a panel beside the editor, rendered as markdown", async () => {
  const selection = { start: { line: 0, character: 0 }, end: { line: 2, character: 0 } };
  fake.window.activeTextEditor = editor(selection);
  const calls: unknown[] = [];
  const client: ExplainClient = {
    async explain(uri, range, token, onText) {
      calls.push({ uri, range, token });
      onText("`area` computes");
      onText("`area` computes the area of a circle.");
      return "`area` computes the area of a circle.\n\n- uses pi";
    },
  };
  await explain(client);
  assert.deepEqual(calls, [{ uri: "file:///tmp/shapes.py", range: selection, token: "fimble-explain-1" }]);
  const panel = recorded.panels[0];
  assert.equal(panel.title, "Explain: shapes.py");
  assert.match(panel.htmlHistory[0], /reading the code/);
  assert.ok(panel.htmlHistory.some((html) => html.includes("<p>`area` computes</p>")), "a partial answer was shown");
  assert.match(panel.webview.html, /<p>`area` computes the area of a circle.\n\n- uses pi<\/p>/);
  assert.match(panel.webview.html, /Content-Security-Policy/);
});

test("a server error is shown in the panel, not thrown", async () => {
  fake.window.activeTextEditor = editor({ start: { line: 0, character: 0 }, end: { line: 0, character: 0 } });
  await explain({ explain: async () => Promise.reject(new Error("explain failed: there is no code")) });
  assert.match(recorded.panels.at(-1)?.webview.html ?? recorded.rendered.at(-1) ?? "", /there is no code/);
});

test("without an editor or a server it says what to do", async () => {
  await explain(undefined);
  assert.match(recorded.info[0], /open a file/);
  fake.window.activeTextEditor = editor({ start: { line: 0, character: 0 }, end: { line: 0, character: 0 } });
  await explain(undefined);
  assert.match(recorded.errors[0], /server is not running/);
});

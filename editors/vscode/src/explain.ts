// "fimble: Explain this code": the server writes the answer; this shows it, as it streams, in a
// panel beside the editor.
import * as vscode from "vscode";

/** The server's command (workspace/executeCommand). */
export const EXPLAIN_COMMAND = "fimble.explain";
/** The editor's command. Not the server's name: vscode-languageclient registers a VS Code command
 * for each command the server advertises, and a second registration of one name fails. */
export const EXPLAIN_EDITOR_COMMAND = "fimble.explainCode";

/** The client calls the extension makes; a LanguageClient in use, a fake in tests. */
export interface ExplainClient {
  explain(uri: string, range: LspRange, token: string, onText: (text: string) => void): Promise<string>;
}

export interface LspRange {
  start: { line: number; character: number };
  end: { line: number; character: number };
}

/** The selection, or the cursor alone (the server then picks the function around it). */
export function explainRange(selection: {
  start: { line: number; character: number };
  end: { line: number; character: number };
}): LspRange {
  return {
    start: { line: selection.start.line, character: selection.start.character },
    end: { line: selection.end.line, character: selection.end.character },
  };
}

function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/** Markdown to HTML with VS Code's own renderer; plain text if that is not available. */
async function render(markdown: string): Promise<string> {
  try {
    const html = await vscode.commands.executeCommand<string>("markdown.api.render", markdown);
    if (typeof html === "string") {
      return html;
    }
  } catch {
    // the built-in markdown extension is disabled
  }
  return `<pre>${escapeHtml(markdown)}</pre>`;
}

export function page(body: string, title: string): string {
  return `<!DOCTYPE html><html><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline';">
<title>${escapeHtml(title)}</title></head><body>${body}</body></html>`;
}

let panel: vscode.WebviewPanel | undefined;
let serial = 0;

export async function explain(client: ExplainClient | undefined): Promise<void> {
  const editor = vscode.window.activeTextEditor;
  if (!editor) {
    void vscode.window.showInformationMessage("fimble: open a file and put the cursor in the code to explain");
    return;
  }
  if (!client) {
    void vscode.window.showErrorMessage("fimble: the server is not running (see the fimble output channel)");
    return;
  }
  const title = `Explain: ${editor.document.fileName.split(/[\\/]/).pop() ?? ""}`;
  if (!panel) {
    panel = vscode.window.createWebviewPanel("fimble.explain", title, vscode.ViewColumn.Beside, {});
    panel.onDidDispose(() => (panel = undefined));
  }
  panel.title = title;
  panel.webview.html = page("<p><em>fimble is reading the code…</em></p>", title);
  const token = `fimble-explain-${++serial}`;
  const mine = serial;
  const show = async (markdown: string) => {
    const html = await render(markdown);
    if (panel && mine === serial) {
      panel.webview.html = page(html, title);
    }
  };
  try {
    const answer = await client.explain(
      editor.document.uri.toString(),
      explainRange(editor.selection),
      token,
      (partial) => void show(partial),
    );
    await show(answer);
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    await show(`**fimble could not explain this code:** ${message}`);
  }
}

// fimble for VS Code: a thin client of `fimble serve`.
//
// Inline completions go through vscode-languageclient's inline completion feature into VS Code's
// own suggestion UI (Tab accepts; word and line partial accept work as for any provider). All
// completion logic lives in the server; this file starts it, passes settings, times requests for
// the status bar, and wires the explain command.
import * as vscode from "vscode";
import {
  LanguageClient,
  LanguageClientOptions,
  ServerOptions,
  State,
  WorkDoneProgress,
} from "vscode-languageclient/node";
import { explain, EXPLAIN_COMMAND, EXPLAIN_EDITOR_COMMAND, ExplainClient, LspRange } from "./explain";
import { serverCommand, serverKeys, serverOptions } from "./options";
import { ServerStatus, statusView } from "./status";

const SECTION = "fimble";
// The server decoded the rest of an answer it gave early: ask again, and VS Code shows the whole.
const COMPLETION_READY = "fimble/completionReady";
let client: LanguageClient | undefined;
let lastLatencyMs: number | undefined;

function settings(): vscode.WorkspaceConfiguration {
  return vscode.workspace.getConfiguration(SECTION);
}

function createClient(output: vscode.LogOutputChannel, keys: string[],
                      onCompletion: () => void): LanguageClient {
  const { command, args } = serverCommand(settings().get<string>("path"));
  const server: ServerOptions = { command, args };
  const options: LanguageClientOptions = {
    documentSelector: [{ scheme: "file" }, { scheme: "untitled" }],
    initializationOptions: serverOptions(settings(), keys),
    outputChannel: output,
    middleware: {
      async provideInlineCompletionItems(document, position, context, token, next) {
        if (!settings().get<boolean>("enable", true)) {
          return undefined;
        }
        const started = Date.now();
        const result = await next(document, position, context, token);
        if (!token.isCancellationRequested) {
          lastLatencyMs = Date.now() - started;
          onCompletion();
        }
        return result;
      },
    },
  };
  return new LanguageClient("fimble", "fimble", server, options);
}

/** Explain through the running client, streaming `$/progress` reports to `onText`. */
function explainClient(): ExplainClient | undefined {
  const running = client;
  if (!running || running.state !== State.Running) {
    return undefined;
  }
  return {
    async explain(uri: string, range: LspRange, token: string, onText: (text: string) => void) {
      const progress = running.onProgress(WorkDoneProgress.type, token, (value) => {
        if (value.kind === "report" && value.message) {
          onText(value.message);
        }
      });
      try {
        return await running.sendRequest<string>("workspace/executeCommand", {
          command: EXPLAIN_COMMAND,
          arguments: [{ uri, range }],
          workDoneToken: token,
        });
      } finally {
        progress.dispose();
      }
    },
  };
}

export async function activate(context: vscode.ExtensionContext): Promise<void> {
  const output = vscode.window.createOutputChannel("fimble", { log: true });
  const keys = serverKeys(context.extension.packageJSON);
  const item = vscode.window.createStatusBarItem(vscode.StatusBarAlignment.Right, 100);
  item.command = "fimble.status";
  item.show();

  let status: ServerStatus | undefined;
  const refresh = async () => {
    try {
      status = client?.state === State.Running ? await client.sendRequest<ServerStatus>("fimble/status", {}) : undefined;
    } catch {
      status = undefined;
    }
    const view = statusView(status, lastLatencyMs);
    item.text = view.text;
    item.tooltip = view.tooltip;
    item.backgroundColor = view.error ? new vscode.ThemeColor("statusBarItem.errorBackground") : undefined;
  };
  // Poll while the model loads; after that, each completion refreshes the item.
  const timer = setInterval(() => {
    if (!status || status.state !== "ready") {
      void refresh();
    }
  }, 1000);

  const start = async () => {
    client = createClient(output, keys, () => void refresh());
    client.onNotification(COMPLETION_READY, (params: { uri: string }) => {
      const editor = vscode.window.activeTextEditor;
      if (editor && editor.document.uri.toString() === params.uri) {
        void vscode.commands.executeCommand("editor.action.inlineSuggest.trigger");
      }
    });
    try {
      await client.start();
    } catch (error) {
      output.appendLine(`fimble: the server did not start: ${String(error)}`);
      void vscode.window.showErrorMessage(
        `fimble: could not start "${serverCommand(settings().get<string>("path")).command} serve" ` +
          "(is fimble installed? set fimble.path)",
      );
    }
    void refresh();
  };

  context.subscriptions.push(
    output,
    item,
    { dispose: () => clearInterval(timer) },
    vscode.commands.registerCommand(EXPLAIN_EDITOR_COMMAND, () => explain(explainClient())),
    vscode.commands.registerCommand("fimble.status", async () => {
      await refresh();
      output.appendLine(JSON.stringify(status ?? { state: "not running" }, null, 2));
      output.show(true);
    }),
    vscode.commands.registerCommand("fimble.restart", async () => {
      await client?.stop();
      await start();
    }),
    vscode.workspace.onDidChangeConfiguration(async (event) => {
      if (!event.affectsConfiguration(SECTION) || !client) {
        return;
      }
      if (event.affectsConfiguration(`${SECTION}.path`)) {
        await client.stop();
        await start();
        return;
      }
      // Only the server's own options, as the user set them: the server keeps its defaults.
      await client.sendNotification("workspace/didChangeConfiguration", {
        settings: { fimble: serverOptions(settings(), keys) },
      });
    }),
  );
  await start();
}

export async function deactivate(): Promise<void> {
  await client?.stop();
  client = undefined;
}

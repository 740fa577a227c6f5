// A small stand-in for the `vscode` module, installed before the code under test loads it.
// Only what the extension's own logic touches; it records what was shown.
import Module from "node:module";

export interface FakePanel {
  title: string;
  webview: { html: string };
  htmlHistory: string[];
  onDidDispose(listener: () => void): void;
  dispose(): void;
}

export const recorded = {
  info: [] as string[],
  errors: [] as string[],
  panels: [] as FakePanel[],
  rendered: [] as string[],
};

export const fake = {
  window: {
    activeTextEditor: undefined as unknown,
    showInformationMessage: async (message: string) => void recorded.info.push(message),
    showErrorMessage: async (message: string) => void recorded.errors.push(message),
    createWebviewPanel(_type: string, title: string): FakePanel {
      const history: string[] = [];
      let disposeListener = () => {};
      const panel: FakePanel = {
        title,
        htmlHistory: history,
        webview: {
          set html(value: string) {
            history.push(value);
          },
          get html() {
            return history[history.length - 1] ?? "";
          },
        },
        onDidDispose: (listener) => (disposeListener = listener),
        dispose: () => disposeListener(),
      };
      recorded.panels.push(panel);
      return panel;
    },
  },
  commands: {
    async executeCommand(command: string, markdown: string): Promise<string | undefined> {
      if (command !== "markdown.api.render") {
        return undefined;
      }
      recorded.rendered.push(markdown);
      return `<p>${markdown}</p>`;
    },
  },
  ViewColumn: { Beside: -2 },
};

type Resolver = (request: string, ...rest: unknown[]) => string;
const moduleWithResolver = Module as unknown as { _resolveFilename: Resolver };
const original = moduleWithResolver._resolveFilename;
moduleWithResolver._resolveFilename = function (request: string, ...rest: unknown[]) {
  return request === "vscode" ? "vscode" : original.call(this, request, ...rest);
};
require.cache["vscode"] = { id: "vscode", filename: "vscode", loaded: true, exports: fake } as unknown as NodeJS.Module;

export function reset(): void {
  recorded.info.length = recorded.errors.length = recorded.panels.length = recorded.rendered.length = 0;
  fake.window.activeTextEditor = undefined;
}

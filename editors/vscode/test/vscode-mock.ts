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

// The few vscode classes vscode-languageclient's converter builds inline completions from.
class Position {
  constructor(public line: number, public character: number) {}
}
class Range {
  start: Position;
  end: Position;
  constructor(startLine: number, startCharacter: number, endLine: number, endCharacter: number) {
    this.start = new Position(startLine, startCharacter);
    this.end = new Position(endLine, endCharacter);
  }
}
class InlineCompletionItem {
  constructor(public insertText: unknown, public range?: Range, public command?: { command: string; arguments?: unknown[] }) {}
}
class InlineCompletionList {
  constructor(public items: InlineCompletionItem[]) {}
}
const registeredCommands = new Map<string, (...args: unknown[]) => unknown>();

export const fake = {
  Position,
  Range,
  InlineCompletionItem,
  InlineCompletionList,
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
    registerCommand(command: string, handler: (...args: unknown[]) => unknown) {
      registeredCommands.set(command, handler);
      return { dispose: () => registeredCommands.delete(command) };
    },
    async executeCommand(command: string, markdown: string, ...rest: unknown[]): Promise<unknown> {
      const registered = registeredCommands.get(command);
      if (registered) {
        return registered(markdown, ...rest);
      }
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
// Any other class vscode-languageclient extends or builds when it loads: an empty stand-in.
// (`__esModule` makes `import * as code from "vscode"` take this object as it is.)
const exported = new Proxy(fake as Record<string | symbol, unknown>, {
  get: (target, name) => {
    if (name === "__esModule") {
      return true;
    }
    return name in target || typeof name !== "string" || !/^[A-Z]/.test(name) ? target[name] : class {};
  },
});
require.cache["vscode"] = { id: "vscode", filename: "vscode", loaded: true, exports: exported } as unknown as NodeJS.Module;

export function reset(): void {
  recorded.info.length = recorded.errors.length = recorded.panels.length = recorded.rendered.length = 0;
  fake.window.activeTextEditor = undefined;
}

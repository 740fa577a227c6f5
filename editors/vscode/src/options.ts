// Which settings go to the server. Everything under `fimble.` mirrors a server option, except the
// client's own keys below; only values the user actually set are sent, so the server's defaults
// stay the one source of truth.

/** Settings the extension reads itself; never sent to the server. */
export const CLIENT_KEYS: readonly string[] = ["path", "enable"];

/** The part of vscode.WorkspaceConfiguration this module needs (tests pass a plain object). */
export interface ConfigLike {
  get<T>(key: string): T | undefined;
  inspect<T>(key: string):
    | { globalValue?: T; workspaceValue?: T; workspaceFolderValue?: T; globalLanguageValue?: T }
    | undefined;
}

/** The server option names, read from the extension manifest's `fimble.*` settings. */
export function serverKeys(packageJson: {
  contributes?: { configuration?: { properties?: Record<string, unknown> } };
}): string[] {
  const properties = packageJson.contributes?.configuration?.properties ?? {};
  return Object.keys(properties)
    .filter((name) => name.startsWith("fimble."))
    .map((name) => name.slice("fimble.".length))
    .filter((key) => !CLIENT_KEYS.includes(key));
}

/** The options the user set, as the server's camelCase `initializationOptions`. */
export function serverOptions(config: ConfigLike, keys: readonly string[]): Record<string, unknown> {
  const options: Record<string, unknown> = {};
  for (const key of keys) {
    const seen = config.inspect<unknown>(key);
    const set =
      seen !== undefined &&
      [seen.globalValue, seen.workspaceValue, seen.workspaceFolderValue, seen.globalLanguageValue].some(
        (value) => value !== undefined,
      );
    if (set) {
      options[key] = config.get<unknown>(key);
    }
  }
  return options;
}

/** `fimble.path` split into the command and `serve`; a path with spaces stays one word. */
export function serverCommand(path: string | undefined): { command: string; args: string[] } {
  const command = (path ?? "").trim() || "fimble";
  return { command, args: ["serve"] };
}

import { test } from "node:test";
import * as assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { CLIENT_KEYS, ConfigLike, serverCommand, serverKeys, serverOptions } from "../src/options";

const manifest = JSON.parse(fs.readFileSync(path.join(__dirname, "..", "..", "package.json"), "utf8"));

function config(values: Record<string, unknown>, defaults: Record<string, unknown> = {}): ConfigLike {
  return {
    get: <T>(key: string) => (key in values ? values[key] : defaults[key]) as T,
    inspect: <T>(key: string) => ({ defaultValue: defaults[key] as T, globalValue: values[key] as T }),
  };
}

test("server keys are the manifest's fimble.* settings without the client's own", () => {
  const keys = serverKeys(manifest);
  assert.ok(keys.includes("model") && keys.includes("maxTokens") && keys.includes("openaiBaseUrl"));
  for (const key of CLIENT_KEYS) {
    assert.ok(!keys.includes(key), key);
  }
});

test("only values the user set are sent, by their camelCase server names", () => {
  const keys = serverKeys(manifest);
  const options = serverOptions(config({ maxTokens: 32, path: "/opt/fimble", enable: false }, { temperature: 0 }), keys);
  assert.deepEqual(options, { maxTokens: 32 });
});

test("an unset fimble.path starts `fimble serve` from PATH", () => {
  assert.deepEqual(serverCommand(undefined), { command: "fimble", args: ["serve"] });
  assert.deepEqual(serverCommand("  "), { command: "fimble", args: ["serve"] });
  assert.deepEqual(serverCommand("/home/me/my tools/fimble"), { command: "/home/me/my tools/fimble", args: ["serve"] });
});

import { test } from "node:test";
import * as assert from "node:assert/strict";
import { statusView } from "../src/status";

test("no server: an error item that says so", () => {
  const view = statusView(undefined);
  assert.equal(view.error, true);
  assert.match(view.tooltip, /not running/);
});

test("loading spins and names the model", () => {
  const view = statusView({ state: "loading", model: "qwen2.5-coder-0.5b", backend: "llama_cpp" });
  assert.equal(view.text, "$(loading~spin) fimble");
  assert.equal(view.tooltip, "fimble: loading qwen2.5-coder-0.5b on llama_cpp");
});

test("ready shows the last latency and the last request's outcome", () => {
  const view = statusView(
    { state: "ready", model: "m", backend: "torch", requests: [{ outcome: "empty", ms: 3, why: "binary" }] },
    212.4,
  );
  assert.equal(view.text, "$(sparkle) fimble 212 ms");
  assert.equal(view.tooltip, "fimble: m on torch ready\nlast request: empty (binary)");
  assert.equal(view.error, false);
});

test("a failed load is an error with the reason", () => {
  const view = statusView({ state: "error", model: "m", backend: "llama_cpp", requests: [{ outcome: "error", ms: 1, error: "bad gguf" }] });
  assert.equal(view.error, true);
  assert.match(view.tooltip, /failed to load: bad gguf/);
});

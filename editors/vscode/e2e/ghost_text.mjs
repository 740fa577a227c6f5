// The extension in a real VS Code: code-server in headless Chromium, driven by playwright-core.
//
//   node editors/vscode/e2e/ghost_text.mjs E2E_DIR VSIX FIMBLE MODEL OUT_DIR
//
// E2E_DIR is what setup.sh installed (code-server, playwright-core). Opens a Python file, types at
// the end of a `return`, waits for the inline suggestion, screenshots it, accepts it with Tab,
// saves, and checks the file on disk; then runs "fimble: Explain this code" and screenshots the
// panel. Prints a JSON summary; exits 1 when a check fails.
import { spawn, spawnSync } from "node:child_process";
import { createRequire } from "node:module";
import * as fs from "node:fs";
import * as net from "node:net";
import * as os from "node:os";
import * as path from "node:path";

const [e2eDir, vsix, fimble, model, outDir] = process.argv.slice(2);
const require = createRequire(path.join(e2eDir, "package.json"));
const { chromium } = require("playwright-core");
const codeServer = path.join(e2eDir, "node_modules", "code-server", "out", "node", "entry.js");

const SOURCE = `def circle_area(radius: float) -> float:
    """Area of a circle of the given radius."""
    return 


def main():
    print(circle_area(2.0))
`;

function freePort() {
  return new Promise((resolve) => {
    const server = net.createServer().listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function waitFor(check, timeoutMs, what) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const value = await check();
    if (value) return value;
    await sleep(250);
  }
  throw new Error(`timed out waiting for ${what}`);
}

const root = fs.mkdtempSync(path.join(os.tmpdir(), "fimble-vscode-"));
const userData = path.join(root, "user-data");
const extensions = path.join(root, "extensions");
const workspace = path.join(root, "workspace");
fs.mkdirSync(path.join(userData, "User"), { recursive: true });
fs.mkdirSync(workspace);
fs.mkdirSync(outDir, { recursive: true });
const file = path.join(workspace, "shapes.py");
fs.writeFileSync(file, SOURCE);
fs.writeFileSync(
  path.join(userData, "User", "settings.json"),
  JSON.stringify({
    "fimble.path": fimble,
    "fimble.model": model,
    "fimble.timeBudgetMs": 10000,
    "fimble.debounceMs": 10,
    "editor.inlineSuggest.enabled": true,
    "workbench.startupEditor": "none",
    "workbench.tips.enabled": false,
    "security.workspace.trust.enabled": false,
    "extensions.autoCheckUpdates": false,
    "telemetry.telemetryLevel": "off",
  }),
);

const install = spawnSync(process.execPath, [codeServer, "--install-extension", vsix, "--extensions-dir", extensions,
  "--user-data-dir", userData], { encoding: "utf8" });
if (install.status !== 0) {
  console.error(install.stdout, install.stderr);
  process.exit(1);
}

const port = await freePort();
const server = spawn(process.execPath, [codeServer, "--auth", "none", "--bind-addr", `127.0.0.1:${port}`,
  "--disable-workspace-trust", "--disable-telemetry", "--extensions-dir", extensions, "--user-data-dir", userData,
  workspace], { stdio: ["ignore", "pipe", "pipe"] });
let serverLog = "";
server.stdout.on("data", (d) => (serverLog += d));
server.stderr.on("data", (d) => (serverLog += d));

const summary = { installed: install.stdout.trim().split("\n").pop() };
let browser;
let failed = false;
try {
  await waitFor(async () => {
    try {
      return (await fetch(`http://127.0.0.1:${port}/healthz`)).ok;
    } catch {
      return false;
    }
  }, 60000, "code-server");
  browser = await chromium.launch({
    executablePath: "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
      "--disable-sync", "--no-first-run", "--disable-quic"],
  });
  const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
  await page.goto(`http://127.0.0.1:${port}/?folder=${encodeURIComponent(workspace)}`);
  await page.waitForSelector(".monaco-workbench", { timeout: 60000 });
  await sleep(3000);

  await page.keyboard.press("Control+P");
  await page.keyboard.type("shapes.py");
  await sleep(800);
  await page.keyboard.press("Enter");
  await page.waitForSelector(".monaco-editor .view-lines", { timeout: 30000 });
  await page.click(".monaco-editor .view-lines");

  // The server starts when the extension activates; wait until the status bar says it is ready.
  summary.statusReady = await waitFor(async () => {
    const items = await page.$$eval(".statusbar-item", (els) => els.map((e) => e.getAttribute("aria-label") || e.textContent || ""));
    return items.find((t) => /fimble: .* ready/.test(t)) ?? false;
  }, 120000, "the fimble status bar item to say ready").catch(async (error) => {
    summary.statusItems = await page.$$eval(".statusbar-item", (els) => els.map((e) => e.getAttribute("aria-label")));
    await page.screenshot({ path: path.join(outDir, "not-ready.png") });
    throw error;
  });

  await page.keyboard.press("Control+G");
  await page.keyboard.type("3");
  await page.keyboard.press("Enter");
  await page.keyboard.press("End");
  const ghost = async () =>
    (await page.$$eval(".ghost-text-decoration, .ghost-text-decoration-preview, .ghost-text",
      (els) => els.map((e) => e.textContent).join(""))).trim();
  let text = "";
  for (let attempt = 0; attempt < 4 && !text; attempt++) {
    await page.keyboard.type(attempt === 0 ? "3" : "");
    if (attempt > 0) {
      await page.keyboard.press("Backspace");
      await page.keyboard.type("3");
    }
    text = await waitFor(ghost, 20000, "ghost text").catch(() => "");
  }
  summary.ghostText = text;
  await page.screenshot({ path: path.join(outDir, "ghost-text.png") });
  if (!text) throw new Error("no ghost text appeared");

  await page.keyboard.press("Tab");
  await sleep(500);
  await page.keyboard.press("Control+S");
  await sleep(1500);
  const saved = fs.readFileSync(file, "utf8");
  summary.line3 = saved.split("\n")[2];
  summary.accepted = saved.split("\n")[2].startsWith("    return 3") && saved.length > SOURCE.length + 1;
  await page.screenshot({ path: path.join(outDir, "accepted.png") });
  summary.statusAfter = await page.$$eval(".statusbar-item", (els) =>
    els.map((e) => e.textContent || "").find((t) => /fimble/.test(t)) ?? "");

  await page.keyboard.press("Control+Shift+P");
  await page.keyboard.type("fimble: Explain this code");
  await sleep(800);
  await page.keyboard.press("Enter");
  summary.explainTab = await waitFor(async () => {
    const tabs = await page.$$eval(".tab", (els) => els.map((e) => e.textContent || ""));
    return tabs.find((t) => t.includes("Explain: shapes.py")) ?? false;
  }, 30000, "the explain panel");
  await sleep(20000); // the answer streams for a while; then take the picture
  await page.screenshot({ path: path.join(outDir, "explain.png") });
  failed = !summary.accepted;
} catch (error) {
  summary.error = String(error);
  failed = true;
} finally {
  await browser?.close();
  server.kill();
  if (failed) summary.serverLog = serverLog.slice(-3000);
  console.log(JSON.stringify(summary, null, 2));
  process.exit(failed ? 1 : 0);
}

import { readFile } from "node:fs/promises";

export async function countLines(path) {
  const text = await readFile(path, "utf8");
  <CURSOR>
}

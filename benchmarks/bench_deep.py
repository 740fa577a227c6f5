"""A file nested 50,000 deep, through the real server (issue 12's bound: an answer within 2 s).

    python benchmarks/bench_deep.py [--depth 50000] [--model qwen2.5-coder-0.5b]

Opens `x = [[[…]]]` (--depth brackets) followed by a small function in `fimble serve` over stdio,
as an editor would, waits for the model, and asks for inline completions inside the brackets,
after them, in the function below, and explains the function; prints each answer's wall time.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from lsp_raw import RawServer


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--depth", type=int, default=50_000)
    parser.add_argument("--model", default="qwen2.5-coder-0.5b")
    args = parser.parse_args()
    depth = args.depth
    text = "x = " + "[" * depth + "]" * depth + "\n\ndef area(w, h):\n    return \n"
    server = RawServer()
    server.request("initialize", {"processId": None, "rootUri": None, "capabilities": {},
                                  "initializationOptions": {"model": args.model}})
    server.notify("initialized", {})
    uri = "file:///deep.py"
    server.notify("textDocument/didOpen", {"textDocument": {"uri": uri, "languageId": "python", "version": 0,
                                                           "text": text}})
    while server.request("fimble/status", {})["result"]["state"] == "loading":
        time.sleep(0.2)
    places = {"inside the brackets": (0, 4 + depth), "after the brackets": (0, 4 + 2 * depth),
              "in the function below": (3, 11)}
    for name, (line, character) in places.items():
        started = time.perf_counter()
        answer = server.request("textDocument/inlineCompletion", {
            "textDocument": {"uri": uri}, "position": {"line": line, "character": character},
            "context": {"triggerKind": 1}}, timeout=120)
        items = answer.get("result", {}).get("items", [])
        shown = items[0]["insertText"][:40] if items else ""
        print(f"{name:24} {1000 * (time.perf_counter() - started):7.0f} ms  {shown!r}")
    started = time.perf_counter()
    answer = server.request("workspace/executeCommand", {"command": "fimble.explain", "arguments": [
        {"uri": uri, "range": {"start": {"line": 0, "character": 10}, "end": {"line": 0, "character": 10}}}]},
        timeout=300)
    print(f"{'explain (line 0)':24} {1000 * (time.perf_counter() - started):7.0f} ms  "
          f"{'error' if 'error' in answer else 'answered'}")
    print("server alive:", server.proc.poll() is None, "| exit status:", server.close())


if __name__ == "__main__":
    main()

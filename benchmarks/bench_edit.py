"""What one keystroke costs the event loop in a large open document (issue 12's bound: ≤ 5 ms).

    python benchmarks/bench_edit.py [--chars 2000000] [--edits 200]
    python benchmarks/bench_edit.py --lsp [--shape lines|one-line] [--edits 200] [--rate 200]

Opens a Python document of about --chars characters (real source, repeated) in the server's
DocumentStore and applies single-character didChange edits at random places, as an editor sends
them; prints the per-edit time (p50, p95, max) and checks the text against a plain reference.

`--lsp` measures the whole event loop as an independent client meets it: `fimble serve` over
stdio (the fake backend, so that the model's time is not counted: it runs on its own thread
anyway), the document opened, then at the end of its last line (`--shape lines`: 2 MB of code
lines; `one-line`: one 2 M-character line, minified code) one keystroke after another: a
didChange, an inline-completion request, and a `fimble/status` request whose round trip is the
loop's lag. `--rate R` sends R keystrokes a second without waiting (a flood; a status request
every tenth), then counts the completion requests answered or cancelled. It then prints what the
server's own clock says of its event loop (`fimble/status` `loop`): the time from reading each
message to the end of its handler, by method, and the inline completion's own steps.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lsp_server.documents import DocumentStore


def change(line: int, character: int, text: str) -> SimpleNamespace:
    position = SimpleNamespace(line=line, character=character)
    return SimpleNamespace(range=SimpleNamespace(start=position, end=position), text=text)


class Client:
    """A JSON-RPC client over a child's stdin/stdout: requests by id, replies read on a thread."""

    def __init__(self, command: list[str]) -> None:
        import subprocess
        import threading

        self.proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL)
        self.replies: dict[int, tuple[float, dict]] = {}
        self.arrived = threading.Condition()
        self.next_id = 0
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        import json

        out = self.proc.stdout
        assert out is not None
        while True:
            length = 0
            while (line := out.readline()) not in (b"\r\n", b""):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            if not line:
                return
            message = json.loads(out.read(length))
            if "id" in message and "method" not in message:
                with self.arrived:
                    self.replies[message["id"]] = (time.perf_counter(), message)
                    self.arrived.notify_all()

    def send(self, method: str, params: object, request: bool = True) -> int:
        import json

        message: dict[str, object] = {"jsonrpc": "2.0", "method": method, "params": params}
        if request:
            self.next_id += 1
            message["id"] = self.next_id
        body = json.dumps(message).encode()
        assert self.proc.stdin is not None
        self.proc.stdin.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)
        self.proc.stdin.flush()
        return self.next_id

    def wait(self, msg_id: int, timeout: float = 60) -> tuple[float, dict]:
        with self.arrived:
            self.arrived.wait_for(lambda: msg_id in self.replies, timeout)
            return self.replies[msg_id]


def lsp_loop(args: argparse.Namespace) -> None:
    """Keystrokes through a real server: the status round trip per keystroke is the loop's lag."""
    source = (Path(__file__).resolve().parent.parent / "engine" / "postprocess.py").read_text()
    if args.shape == "one-line":
        text = " ".join(line.strip() for line in source.split("\n") if line.strip())
        text = (text * (args.chars // len(text) + 1))[: args.chars] + "\n"
    else:
        text = (source * (args.chars // len(source) + 1))[: args.chars]
        text = text[: text.rfind("\n") + 1]
    uri = "file:///big.py"
    client = Client([sys.executable, "-m", "lsp_server"])
    client.wait(client.send("initialize", {"processId": None, "rootUri": None, "capabilities": {},
                                           "initializationOptions": {"backend": "fake"}}))
    client.send("initialized", {}, request=False)
    client.send("textDocument/didOpen", {"textDocument": {"uri": uri, "languageId": "python", "version": 0,
                                                          "text": text}}, request=False)
    client.wait(client.send("fimble/status", {}))  # opened (and parsed) before the clock starts
    lines = text.split("\n")
    line = len(lines) - 2
    character = len(lines[line])  # (ASCII: utf-16 units are characters)
    lags, completions = [], []
    gap = 1.0 / args.rate if args.rate else 0.0
    for version in range(1, args.edits + 1):
        position = {"line": line, "character": character}
        client.send("textDocument/didChange", {"textDocument": {"uri": uri, "version": version},
                                               "contentChanges": [{"range": {"start": position, "end": position},
                                                                   "text": "x"}]}, request=False)
        character += 1
        completions.append(client.send("textDocument/inlineCompletion", {
            "textDocument": {"uri": uri}, "position": {"line": line, "character": character},
            "context": {"triggerKind": 2}}))
        if not args.rate or version % 10 == 0:
            sent = time.perf_counter()
            arrived, _ = client.wait(client.send("fimble/status", {"history": 0}))
            lags.append((arrived - sent) * 1000)
        if gap:
            time.sleep(gap)
    answered = sum(1 for msg_id in completions if client.wait(msg_id, timeout=120)[1].get("id") == msg_id)
    _, reply = client.wait(client.send("fimble/status", {"history": 0}))
    client.proc.kill()
    lags.sort()
    print(f"document: {len(text):,} chars, {len(lines) - 1:,} lines ({args.shape}); {args.edits} keystrokes at the end "
          f"of its last line{f', {args.rate}/s' if args.rate else ', each waiting for its status'}")
    print(f"loop lag (status round trip): p50 {statistics.median(lags):.1f} ms, "
          f"p95 {lags[max(0, int(len(lags) * 0.95) - 1)]:.1f} ms, max {lags[-1]:.1f} ms; "
          f"completion requests answered or cancelled: {answered}/{len(completions)}")
    print("the server's event loop per message (its own clock, the last 512 of each kind):")
    for kind, figures in sorted(reply["result"]["loop"].items()):
        print(f"  {kind}: {figures['count']}, p50 {figures['p50Ms']:.2f} ms, p95 {figures['p95Ms']:.2f} ms, "
              f"max {figures['maxMs']:.2f} ms")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--chars", type=int, default=1_990_000, help="stays under the 2 M parse cap")
    parser.add_argument("--edits", type=int, default=200)
    parser.add_argument("--ascii", action="store_true", help="drop the source's few non-ASCII characters")
    parser.add_argument("--where", choices=("random", "typing"), default="random",
                        help="random: each edit at a new random place; typing: one after another at one place")
    parser.add_argument("--lsp", action="store_true", help="through a real server over stdio (see the docstring)")
    parser.add_argument("--shape", choices=("lines", "one-line"), default="lines")
    parser.add_argument("--rate", type=float, default=0.0, help="--lsp: keystrokes a second, not waiting (a flood)")
    args = parser.parse_args()
    if args.lsp:
        lsp_loop(args)
        return
    source = (Path(__file__).resolve().parent.parent / "engine" / "postprocess.py").read_text()
    if args.ascii:
        source = source.encode("ascii", "ignore").decode()
    text = (source * (args.chars // len(source) + 1))[: args.chars]
    text = text[: text.rfind("\n") + 1]
    store = DocumentStore()
    started = time.perf_counter()
    opened = store.open("file:///big.py", "python", 0, text)
    assert opened is not None and (opened.syntax.tree is not None) == opened.syntax.parsed  # parsed, as after a request
    open_ms = (time.perf_counter() - started) * 1000
    lines = text.split("\n")
    rng = random.Random(0)
    times = []
    line = rng.randrange(len(lines) - 1)
    character = rng.randrange(len(lines[line]) + 1)
    for version in range(1, args.edits + 1):
        if args.where == "random":
            line = rng.randrange(len(lines) - 1)
            character = rng.randrange(len(lines[line]) + 1)
        else:
            character += 1 if version > 1 else 0
        started = time.perf_counter()
        store.change("file:///big.py", version, [change(line, character, "x")], "utf-16")
        times.append((time.perf_counter() - started) * 1000)
        lines[line] = lines[line][:character] + "x" + lines[line][character:]
    doc = store.get("file:///big.py")
    assert doc is not None and doc.text == "\n".join(lines), "the document drifted from the reference"
    times.sort()
    kind = "ASCII" if text.isascii() else "not ASCII"
    print(f"document: {len(text):,} chars ({kind}), {len(lines):,} lines, parsed: {doc.syntax.tree is not None}; "
          f"open {open_ms:.0f} ms")
    print(f"per edit ({args.edits} one-character edits, {args.where}): p50 {statistics.median(times):.2f} ms, "
          f"p95 {times[int(len(times) * 0.95) - 1]:.2f} ms, max {times[-1]:.2f} ms")


if __name__ == "__main__":
    main()

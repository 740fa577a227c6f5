"""fimble/status: what the server is doing, for a user, an editor's status line and the benchmarks.

Model and load state, the explaining model, documents, caches, idle work done, memory, outcomes
and the last requests. Settings are shown through Settings.to_dict, which never shows a secret.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .server import FimbleServer


def of(server: FimbleServer, uri: str | None = None, history: int = 20) -> dict[str, Any]:
    service = server.service
    document = None
    if uri and (doc := server.documents.get(uri)) is not None:
        # Lets a client check that the server sees the text it sees.
        document = {"uri": uri, "version": doc.version, "languageId": doc.language_id, "length": len(doc.text),
                    "sha256": hashlib.sha256(doc.text.encode("utf-8", "surrogatepass")).hexdigest(),
                    "parsed": doc.syntax.parsed, "binary": doc.binary, "overSizeCap": doc.capped}
    elif uri and uri in server.documents.refused:
        document = {"uri": uri, "tracked": False, "why": server.documents.refused[uri]}
    return {
        "model": server.settings.model,
        "modelPath": str(service.model_ref.path) if service.model_ref else None,
        "backend": server.settings.backend,
        "state": server.load_state,
        "loadMs": round(service.load_ms, 1) if service.load_ms else None,
        "explain": server.explainer.status(server),
        "positionEncoding": server.encoding,
        "documents": len(server.documents),
        "documentChars": server.documents.total_chars,
        "cache": {"hits": service.cache.hits, "misses": service.cache.misses,
                  "typeThrough": server.type_through_hits, "kv": service.cache_summary(),
                  "documentsKept": server.documents.prompts_kept(),
                  "warmed": dict(server.idle.warmed)},
        "memory": process_memory(),
        "loop": server.protocol.loop_time.summary(),
        "outcomes": dict(server.outcomes),
        "followUps": dict(server.idle.follow_ups),
        "rules": dict(service.rule_counts),
        "acceptance": server.acceptance.summary() if server.acceptance is not None else {},
        "requests": list(server.history)[len(server.history) - min(max(0, history), len(server.history)):],
        "settings": server.settings.to_dict(),
        "document": document,
    }


def process_memory() -> dict[str, float | None]:
    """The server's resident memory now and at its peak, in MiB (model, KV caches, documents)."""
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    current = None
    with contextlib.suppress(OSError, ValueError, IndexError):
        pages = int(os.pread(_statm(), 128, 0).split()[1])
        current = round(pages * _PAGE_SIZE / 2**20, 1)
    return {"rssMb": current, "peakRssMb": round(peak, 1)}


_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
_statm_fd: dict[int, int] = {}  # pid → descriptor (a forked child opens its own)


def _statm() -> int:
    """This process's /proc/PID/statm, opened once: a status is then one read, not an open, a
    read and a close (each system call gives the GIL up, and the event loop waits to get it
    back while the model worker runs Python)."""
    pid = os.getpid()
    if pid not in _statm_fd:
        _statm_fd[pid] = os.open(f"/proc/{pid}/statm", os.O_RDONLY | os.O_CLOEXEC)
    return _statm_fd[pid]

"""Acceptance counts, kept on this machine only: per language, how many suggestions were shown,
how many accepted (and how many characters), and how much of the accepted text the user kept.

Each suggestion the server shows carries the command `fimble.accepted` with its id; the editor
runs it when the user accepts (VS Code by itself; the Neovim plugin on accept, line and word,
with the accepted length). An accepted text is followed through the document's edits, and what
of it is still there is counted 30 seconds later and at the document's next save.

Only counts are kept — never code, names or paths — in `$FIMBLE_HOME/stats.json`, added to under
a lock so that several servers (two editors) can share it. The option `stats: false` turns it off.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import itertools
import json
import os
import re
import tempfile
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from difflib import SequenceMatcher
from pathlib import Path
from typing import Any

ACCEPTED_COMMAND = "fimble.accepted"
STATS_FILE = "stats.json"
RETAIN_AFTER_S = 30.0
SHOWN_KEPT = 256  # the newest suggestions shown, for an accept that names one
PENDING_KEPT = 256  # accepted texts followed until their checks are done
SAVE_EVERY_S = 10.0  # shown counts are written at most this often (accepts at once)
LANGUAGE_ID = re.compile(r"[a-z][a-z0-9_.+#-]{0,39}")  # what LSP language ids look like


@dataclass
class Counts:
    shown: int = 0
    accepted: int = 0
    accepted_chars: int = 0
    retained_chars_30s: int = 0  # of the accepted characters checked 30 s after the accept
    checked_chars_30s: int = 0
    retained_chars_at_save: int = 0  # of those checked at the document's next save
    checked_chars_at_save: int = 0

    def add(self, other: Counts) -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))

    def as_dict(self) -> dict[str, int]:
        """camelCase, as fimble/status speaks."""
        return {_camel(k): v for k, v in asdict(self).items()}


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


@dataclass
class Offered:
    uri: str
    language: str
    text: str
    offset: int  # where it would be inserted, in the document as it was


@dataclass
class Followed:
    """An accepted text, followed through the document's edits: it lies in [start, end)."""

    uri: str
    language: str
    text: str
    start: int
    end: int
    checks: set[str] = field(default_factory=lambda: {"30s", "at_save"})
    # The editor said "accepted" before its edit that inserts the text arrived (Neovim sends its
    # changes a moment later): that insertion puts the text where it already is.
    awaiting_insert: bool = False

    def edit(self, start: int, end: int, inserted: int) -> None:
        if self.awaiting_insert and start <= self.start <= end and inserted >= len(self.text):
            # The insertion itself (an editor may send it as a whole line replaced): the text
            # before the cursor is unchanged, so the accepted text starts where it was shown.
            self.awaiting_insert = False
            return
        delta = inserted - (end - start)
        if end <= self.start:
            self.start, self.end = self.start + delta, self.end + delta
        elif start < self.end:  # the edit touches the text: the region takes it in
            self.start, self.end = min(self.start, start), max(self.end + delta, start + inserted)

    def retained(self, document: str) -> int:
        """Characters of the accepted text still in its region, in order. (A region widened by a
        whole-document change is read only near its start: the match stays cheap.)"""
        start = max(0, self.start)
        region = document[start : min(max(start, self.end), start + 4 * len(self.text) + 2000)]
        blocks = SequenceMatcher(None, self.text, region, autojunk=False).get_matching_blocks()
        return sum(block.size for block in blocks)


class Acceptance:
    """The counts of one server; `path` is the shared stats file (None: not written)."""

    def __init__(self, path: Path | None, text_of: Callable[[str], str | None] = lambda uri: None) -> None:
        self.path = path
        self.text_of = text_of  # a document's text now, by URI (None: not open)
        self._ids = itertools.count(1)
        self._prefix = f"{os.getpid():x}-{time.monotonic_ns() % 1_000_000:x}"
        self._shown: OrderedDict[str, Offered] = OrderedDict()
        self._followed: list[Followed] = []
        self._saved: dict[str, Counts] = self._read() if path else {}  # the file, when last read
        self._unsaved: dict[str, Counts] = {}
        self._last_save = time.monotonic()

    def _counts(self, language: str) -> Counts:
        return self._unsaved.setdefault(language_key(language), Counts())

    # -- events ------------------------------------------------------------------------------------

    def shown(self, uri: str, language: str, text: str, offset: int, *, new: bool = True) -> str:
        """A suggestion shown at `offset`; its id for the item's command. Counted unless not `new`
        (the rest of a suggestion the user is typing through: still the one shown before)."""
        item_id = f"{self._prefix}-{next(self._ids)}"
        self._shown[item_id] = Offered(uri, language, text, offset)
        while len(self._shown) > SHOWN_KEPT:
            self._shown.popitem(last=False)
        if new:
            self._counts(language).shown += 1
            self.save(force=False)
        return item_id

    def accepted(self, item_id: str, length: int | None = None) -> Followed | None:
        """Count an accept of the suggestion `item_id` (`length` characters of it; all by default).
        None for an id this server did not show (or no longer remembers): nothing is counted."""
        shown = self._shown.get(item_id)
        if shown is None:
            return None
        text = shown.text if length is None else shown.text[: max(0, min(length, len(shown.text)))]
        counts = self._counts(shown.language)
        counts.accepted += 1
        counts.accepted_chars += len(text)
        followed = Followed(shown.uri, shown.language, text, shown.offset, shown.offset + len(text))
        document = self.text_of(shown.uri)
        followed.awaiting_insert = document is not None and document[followed.start : followed.end] != text
        del self._shown[item_id]  # one accept per suggestion shown
        self._followed.append(followed)
        del self._followed[:-PENDING_KEPT]
        self.save(force=True)
        return followed

    def command(self, args: list[Any]) -> None:
        """`fimble.accepted` [id] (VS Code) or [id, accepted length] (Neovim's partial accepts):
        counted, and what is still there RETAIN_AFTER_S later (on the running event loop)."""
        if not args or not isinstance(args[0], str):
            return
        length = args[1] if len(args) > 1 and isinstance(args[1], int) and not isinstance(args[1], bool) else None
        followed = self.accepted(args[0], length)
        if followed is not None:
            asyncio.get_running_loop().call_later(
                RETAIN_AFTER_S, lambda: self.check(followed, self.text_of(followed.uri), "30s"))

    def edited(self, uri: str, edits: list[tuple[int, int, int]]) -> None:
        """Follow the accepted texts of `uri` through edits (start, end, inserted length), in order."""
        for followed in self._followed:
            if followed.uri == uri:
                for start, end, inserted in edits:
                    followed.edit(start, end, inserted)

    def check(self, followed: Followed, document: str | None, when: str) -> None:
        """Count what of `followed` is still there (`when`: "30s" or "at_save"), once each."""
        if when not in followed.checks:
            return
        followed.checks.discard(when)
        counts = self._counts(followed.language)
        kept = followed.retained(document) if document is not None else 0  # a closed document kept none
        if when == "30s":
            counts.retained_chars_30s += kept
            counts.checked_chars_30s += len(followed.text)
        else:
            counts.retained_chars_at_save += kept
            counts.checked_chars_at_save += len(followed.text)
        if not followed.checks and followed in self._followed:
            self._followed.remove(followed)
        self.save(force=True)

    def saved(self, uri: str, document: str | None, *, closed: bool = False) -> None:
        """The document was saved: check the texts accepted in it since its last save. When it
        is being closed, every check left is made now, on the text as it is at the close."""
        for followed in [f for f in self._followed if f.uri == uri]:
            for when in ("at_save", "30s") if closed else ("at_save",):
                self.check(followed, document, when)

    # -- reading and writing ---------------------------------------------------------------------------

    def summary(self) -> dict[str, dict[str, int]]:
        """Per language: this machine's counts (the file's and this server's not yet written)."""
        total: dict[str, Counts] = {}
        for source in (self._saved, self._unsaved):
            for language, counts in source.items():
                total.setdefault(language, Counts()).add(counts)
        return {language: counts.as_dict() for language, counts in sorted(total.items())}

    def _read(self) -> dict[str, Counts]:
        return read_stats(self.path) if self.path else {}

    def save(self, force: bool = True) -> None:
        """Add this server's new counts to the file, under its lock (several servers share it)."""
        if self.path is None or not self._unsaved:
            return
        if not force and time.monotonic() - self._last_save < SAVE_EVERY_S:
            return
        self._last_save = time.monotonic()
        with contextlib.suppress(OSError):  # counting must never disturb completions
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # Opened without following a link or truncating: a planted stats.lock → some file
            # of the user's must not be emptied.
            lock_fd = os.open(self.path.with_suffix(".lock"), os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
            with os.fdopen(lock_fd, "r+b") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                totals = read_stats(self.path)
                for language, counts in self._unsaved.items():
                    totals.setdefault(language, Counts()).add(counts)
                _write_atomically(self.path, {"version": 1, "languages": {
                    lang: asdict(c) for lang, c in sorted(totals.items())}})
                self._saved, self._unsaved = totals, {}


def language_key(language: object) -> str:
    """The key counts are kept under: the client's language id when it looks like one (`python`,
    `typescriptreact`, `c++`), else "other" — the file holds no text the client chose."""
    if isinstance(language, str) and LANGUAGE_ID.fullmatch(language):
        return language
    return "other"


def read_stats(path: Path) -> dict[str, Counts]:
    """The stats file's counts per language; empty when it is missing or unreadable."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        known = {f.name for f in fields(Counts)}
        counts: dict[str, Counts] = {}
        for lang, values in data.get("languages", {}).items():
            if isinstance(values, dict):
                counts.setdefault(language_key(lang), Counts()).add(
                    Counts(**{k: int(v) for k, v in values.items() if k in known}))
        return counts
    except (OSError, ValueError, TypeError, AttributeError):
        return {}


def _write_atomically(path: Path, data: dict[str, Any]) -> None:
    handle, temp = tempfile.mkstemp(prefix=".stats-", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            json.dump(data, out, indent=2)
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise


def table(counts: dict[str, dict[str, int]]) -> str:
    """`fimble stats`: one line per language."""
    if not counts:
        return "no suggestions counted yet\n"
    head = ("language", "shown", "accepted", "rate", "accepted chars", "kept after 30 s", "kept at save")
    rows = [head]
    for language, c in counts.items():
        rate = f"{c['accepted'] / c['shown']:.0%}" if c["shown"] else "-"
        kept_30 = f"{c['retainedChars30s'] / c['checkedChars30s']:.0%}" if c["checkedChars30s"] else "-"
        kept_save = f"{c['retainedCharsAtSave'] / c['checkedCharsAtSave']:.0%}" if c["checkedCharsAtSave"] else "-"
        rows.append((language, str(c["shown"]), str(c["accepted"]), rate, str(c["acceptedChars"]), kept_30, kept_save))
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    return "".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() + "\n"
                   for row in rows)

"""Syntax-aware postprocessing: make the model's raw output something worth showing.

The default model is an instruct model: asked to fill a hole it often fills it and runs on —
repeating the suffix, writing test calls, closing a markdown fence, explaining itself. Each rule
below is a named function `(candidate, Site) -> candidate`; `postprocess` runs them in order and
records which ones changed the text, so `fimble/status` and `--json` can say why a completion is
shorter, or why there is none (`filtered:<rule>`).
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache

from .context import BLOCK_OPENERS, LINE, CursorInfo
from .syntax import LanguageSpec, error_count, parse
from .text import split_lines

_CLOSERS = {")": "(", "]": "[", "}": "{"}
_QUOTES = "\"'`"


@dataclass(frozen=True)
class Site:
    """Where the candidate goes: the text before and after it, and what the cursor looks like."""

    prefix: str
    suffix: str
    cursor: CursorInfo
    spec: LanguageSpec | None


@dataclass
class Postprocessed:
    text: str
    fired: list[str] = field(default_factory=list)
    emptied_by: str | None = None


def _indent(line: str) -> int:
    expanded = line.expandtabs(4)
    return len(expanded) - len(expanded.lstrip())


def _cursor_line_before(site: Site) -> str:
    return site.prefix[site.prefix.rfind("\n") + 1 :]


# -- the rules ----------------------------------------------------------------------------------


def markdown_fence(text: str, site: Site) -> str:
    """An instruct model closing or opening a markdown fence has left the code."""
    lines = split_lines(text)
    for i, line in enumerate(lines):
        if line.lstrip().startswith("```"):
            return "\n".join(lines[:i])
    return text


def loop(text: str, site: Site) -> str:
    """The same non-empty line three times in a row: cut before the repetition starts."""
    lines = split_lines(text)
    for i in range(len(lines) - 2):
        if lines[i].strip() and lines[i] == lines[i + 1] == lines[i + 2]:
            return "\n".join(lines[:i])
    return text


def single_line(text: str, site: Site) -> str:
    """In line mode only the first line counts (a stop sequence usually did this already) —
    unless, at the end of a line, that line opens a block: `for x in xs:` without its body
    breaks the file, so the body stays (the lines indented under it, or up to the closing brace)."""
    if site.cursor.mode != LINE:
        return text
    first, newline, _ = text.partition("\n")
    header = _cursor_line_before(site) + first
    if not newline or site.cursor.why != "end_of_line" or not opens_block(header, site.spec):
        return first
    if site.spec is not None and site.spec.block_style == "brace":
        return _through_closing_brace(text)
    level = _indent(header)
    lines = split_lines(text)
    for i in range(1, len(lines)):
        if lines[i].strip() and _indent(lines[i]) <= level:
            return "\n".join(lines[:i])
    return text


def opens_block(line: str, spec: LanguageSpec | None) -> bool:
    style = spec.block_style if spec else "brace"
    stripped = line.split("#", 1)[0].rstrip() if style == "indent" else line.rstrip()
    return bool(stripped.strip()) and any(stripped.endswith(o) for o in BLOCK_OPENERS[style])


def _through_closing_brace(text: str) -> str:
    """Up to the end of the line where the brackets opened on the first line are closed."""
    depth = 0
    for i, char in enumerate(text):
        depth += 1 if char in "([{" else -1 if char in ")]}" else 0
        if depth <= 0 and "\n" in text[:i]:
            end = text.find("\n", i)
            return text if end < 0 else text[:end]
    return text


def block_end(text: str, site: Site) -> str:
    """Cut where the completion leaves the block it started in."""
    style = site.spec.block_style if site.spec else "indent"
    if style == "brace":
        return _brace_block_end(text, site)
    lines = split_lines(text)
    before = _cursor_line_before(site)
    if site.cursor.why == "block_header":
        # After `def f():` the body is indented deeper; a line back at the header's level ends it.
        limit, inclusive = _indent(before), True
    else:
        first = (before + lines[0]) if not before.strip() else before
        limit, inclusive = _indent(first), False
        if before and not before.strip():
            # After typed indentation the user's level is the block's, however the answer starts.
            limit = _indent(before)
    # The function ends after the cursor (nothing of it follows in the suffix): the answer may end
    # with the function's last statement further out, as `return result` after a loop body —
    # that line, and nothing after it (a longer answer is slower to come and rarely wanted).
    function = _function_indent(site.prefix, limit) if site.cursor.why == "blank_line" else None
    ends_here = function is not None and _suffix_leaves(site.suffix, function)
    for i in range(1, len(lines)):
        line = lines[i]
        if not line.strip():
            continue
        level = _indent(line)
        if level < limit or (inclusive and level <= limit):
            if ends_here and function is not None and level > function and _FINAL.match(line):
                return "\n".join(lines[: i + 1])
            return "\n".join(lines[:i])
    return text


_FINAL = re.compile(r"\s*(return|raise|yield)\b")


_DEF = re.compile(r"\s*(async\s+)?def\s")


def _function_indent(prefix: str, level: int) -> int | None:
    """Indentation of the `def` that holds a line at `level` (walking out through the blocks
    above it), or None when no function holds it."""
    lines = split_lines(prefix)[:-1]  # the cursor's own line is not a header
    for line in reversed(lines):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        indent = _indent(line)
        if indent < level:
            if _DEF.match(line):
                return indent
            if indent == 0:
                return None
            level = indent
    return None


def _suffix_leaves(suffix: str, function: int) -> bool:
    """Whether the first code line after the cursor's line is outside the function (or there is none)."""
    for line in split_lines(suffix)[1:]:
        if line.strip():
            return _indent(line) <= function
    return True


def _brace_block_end(text: str, site: Site) -> str:
    depth = 0
    quote = ""
    for i, char in enumerate(text):
        if quote:
            if char == quote and text[i - 1] != "\\":
                quote = ""
            continue
        if char in _QUOTES:
            quote = char
        elif char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
            if depth < 0:
                line_start = text.rfind("\n", 0, i) + 1
                suffix_head = site.suffix.lstrip()
                if suffix_head.startswith(char) or line_start == 0:
                    # The closer is already in the document: stop before the line that adds it again.
                    return text[:line_start] if line_start else text[:i]
                line_end = text.find("\n", i)
                return text if line_end < 0 else text[:line_end]
    return text


def suffix_repeat(text: str, site: Site) -> str:
    """Drop trailing lines that repeat the first lines of the suffix."""
    lines = split_lines(text)
    suffix_lines = [line.strip() for line in split_lines(site.suffix)]
    # The rest of the cursor's line belongs to the completion's first line, not to a repeat.
    suffix_lines = [line for line in suffix_lines[1:] if line] if site.suffix and not site.suffix.startswith("\n") \
        else [line for line in suffix_lines if line]
    if not suffix_lines:
        return text
    suffix_lines = [_code(line) for line in suffix_lines]
    start = 0 if not _cursor_line_before(site).strip() else 1
    for i in range(start, len(lines)):
        tail = [_code(line) for line in lines[i:] if line.strip()]
        if not tail or len(tail) > len(suffix_lines) or tail[0] != suffix_lines[0]:
            continue
        # The last line may be cut short (by maxTokens or the time budget): a prefix counts.
        if tail[:-1] == suffix_lines[: len(tail) - 1] and suffix_lines[len(tail) - 1].startswith(tail[-1]):
            return "\n".join(lines[:i])
    return text


# A tail shorter than this that matches the rest of the line is left alone (a closer, a space).
MIN_LINE_OVERLAP = 3


def line_overlap(text: str, site: Site) -> str:
    """Mid-line, a one-line answer whose end writes out the rest of the cursor's line (`turn
    string` before `urn string.swapcase()`): the repeated end is cut, the rest of the line is
    already there."""
    rest = site.suffix.split("\n", 1)[0]
    if site.cursor.mode != LINE or not rest.strip() or "\n" in text:
        return text
    for size in range(min(len(text), len(rest)), MIN_LINE_OVERLAP - 1, -1):
        tail = text[-size:]
        if rest.startswith(tail) and tail.strip() and len(tail.strip()) >= MIN_LINE_OVERLAP:
            return text[:-size]
    return text


def _code(line: str) -> str:
    """A line as compared for repeats: without its indentation and a trailing `  # comment`."""
    return line.split("  #", 1)[0].strip()


def closers(text: str, site: Site) -> str:
    """Don't add a closing bracket or quote that the rest of the line already has."""
    rest = site.suffix.split("\n", 1)[0]
    if not rest.strip() or "\n" in text.rstrip("\n"):
        return text
    out = text.rstrip()
    balance = 0
    for char in out:
        if char in "([{":
            balance += 1
        elif char in ")]}":
            balance -= 1
    changed = True
    while changed and out:
        changed = False
        last = out[-1]
        if last in _CLOSERS and balance < 0 and rest.lstrip().startswith(last):
            out, balance, changed = out[:-1], balance + 1, True
        elif last in _QUOTES and out.count(last) % 2 == 1 and rest.lstrip().startswith(last):
            out, changed = out[:-1], True
    # A completion that ends with the whole rest of the line would write it twice.
    if rest.strip() and out.endswith(rest.strip()) and len(out) > len(rest.strip()):
        trimmed = out[: len(out) - len(rest.strip())]
        if _bracket_balance(trimmed) >= 0:
            out = trimmed
    # Nothing removed: the text as it was (its trailing space may separate it from the rest of the line).
    return text if out == text.rstrip() else out


def _bracket_balance(text: str) -> int:
    return sum(1 if c in "([{" else -1 if c in ")]}" else 0 for c in text)


def indentation(text: str, site: Site) -> str:
    """Python: a completion whose indentation breaks the file in place (one space too many after
    typed indentation, say) is re-indented when that makes the file compile."""
    if site.spec is None or site.spec.name != "python" or python_verdict(text, site) is not False:
        return text
    for fixed in _reindented(text, site):
        if fixed != text and python_verdict(fixed, site) is True:
            return fixed
    return text


def _reindented(text: str, site: Site) -> list[str]:
    first, newline, rest = text.partition("\n")
    extra = len(first) - len(first.lstrip(" \t"))
    if not extra or _cursor_line_before(site).strip():
        return []
    dedented = [line[min(extra, len(line) - len(line.lstrip(" \t"))) :] for line in split_lines(rest)]
    return [first[extra:] + newline + "\n".join(dedented), first[extra:] + newline + rest]


def syntax(text: str, site: Site) -> str:
    """Keep the longest line-prefix of the candidate that adds no ERROR or MISSING node — and,
    for Python, that the compiler accepts in place (tree-sitter tolerates a wrong indentation;
    Python does not)."""
    if site.spec is None or not text:
        return text
    lines = split_lines(text)
    if (broken := _broken_from_cursor(site)) is not None:
        # The file is broken at the cursor already (the user is mid-edit): an answer is kept
        # when it makes it no worse — the first error no earlier than it was.
        for keep in range(len(lines), 0, -1):
            candidate = "\n".join(lines[:keep])
            if candidate.strip() and _no_worse(candidate, site, broken):
                return candidate
        return ""
    baseline = error_count(parse(site.spec, site.prefix + site.suffix))
    for keep in range(len(lines), 0, -1):
        candidate = "\n".join(lines[:keep])
        if not candidate.strip():
            continue
        if error_count(parse(site.spec, site.prefix + candidate + site.suffix)) > baseline:
            continue
        if site.spec.name == "python" and python_verdict(candidate, site) is False:
            continue
        return candidate
    return _before_a_quote(lines[0], site, baseline)


def _before_a_quote(line: str, site: Site, baseline: int) -> str:
    """The first line cut before a quote, when no whole line is valid: inside a docstring or a
    string the model often closes it where the document goes on (it writes the closing quotes
    at the end of the sentence), and the words before the quote are still the suggestion."""
    assert site.spec is not None
    quotes = [i for i, char in enumerate(line) if char in "\"'" and (i == 0 or line[i - 1] != char)]
    for cut in reversed(quotes):  # before each run of quotes, the longest first
        candidate = line[:cut].rstrip()
        if not candidate.strip():
            continue
        if error_count(parse(site.spec, site.prefix + candidate + site.suffix)) > baseline:
            continue
        if site.spec.name == "python" and python_verdict(candidate, site) is False:
            continue
        return candidate
    return ""


# Files larger than this are not compiled for every candidate (tree-sitter alone judges).
COMPILE_MAX_CHARS = 400_000


def python_verdict(candidate: str, site: Site) -> bool | None:
    """Does the file compile with `candidate` in place? True, False, or None when the compiler
    cannot say (the file is broken before the cursor or far below it; too large).

    The compiler reports the first error only. An error before the completion is the user's; on
    the completion's lines or the line after them (a block left without its body), it is the
    completion's — unless the file had that same error without it; further down, it is unrelated.
    The code is compiled, never run."""
    source = site.prefix + candidate + site.suffix
    if len(source) > COMPILE_MAX_CHARS:
        return None
    error = _compile_error_line(source)
    if error == 0:
        return True
    start = site.prefix.count("\n") + 1
    added = candidate.count("\n")
    # The compiler reports a block left without its body at the next line of code, past blank ones.
    after = start + added + 1 + _blank_lines_after_cursor_line(site.suffix)
    if error < 0 or error < start or error > after:
        return None
    return error - added == _compile_error_line(site.prefix + site.suffix) and error > start + added


def _broken_from_cursor(site: Site) -> int | None:
    """For Python with the cursor inside a line, the cursor's line when the file's first
    SyntaxError without a completion is on it (the user's edit in progress: the rest of the line
    waits for what goes before it); else None — the file compiles there, or the cursor is at a
    line's end (an empty body is "broken" too, and must stay judged strictly), or the file is too
    large to compile per candidate."""
    if (site.spec is None or site.spec.name != "python" or site.cursor.why != "mid_line"
            or len(site.prefix) + len(site.suffix) > COMPILE_MAX_CHARS):
        return None
    line = site.prefix.count("\n") + 1
    return line if _compile_error_line(site.prefix + site.suffix) == line else None


def _no_worse(candidate: str, site: Site, broken: int) -> bool:
    """The file with `candidate` compiles, or its first error is where the file's was (shifted by
    the lines the candidate adds) or further down: not on a line the candidate broke."""
    error = _compile_error_line(site.prefix + candidate + site.suffix)
    return error == 0 or error - candidate.count("\n") >= broken


def _blank_lines_after_cursor_line(suffix: str) -> int:
    count = 0
    for line in split_lines(suffix)[1:]:
        if line.strip() and not line.lstrip().startswith("#"):
            break
        count += 1
    return count


@lru_cache(maxsize=32)
def _compile_error_line(source: str) -> int:
    """0 when `source` compiles; else the line of the first SyntaxError, or -1 when there is none."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            compile(source, "<completion>", "exec", dont_inherit=True)
    except SyntaxError as exc:
        return exc.lineno or -1
    except (ValueError, RecursionError, MemoryError, OverflowError):
        return -1
    return 0


def trailing_whitespace(text: str, site: Site) -> str:
    """No whitespace at line ends — except the space before the rest of the cursor's line, when
    a one-line answer is its middle (`for x ` before `in xs:`)."""
    rest = site.suffix.split("\n", 1)[0]
    one_line = text.rstrip("\r\n")
    if "\n" not in one_line and rest[:1].strip() and one_line.strip():
        return one_line
    return "\n".join(line.rstrip() for line in split_lines(text)).rstrip()


def left_block(text: str, site: Site) -> bool:
    """While streaming: has the completion already run past what any rule would keep?"""
    complete = text[: text.rfind("\n")]  # judge whole lines only
    return any(rule(complete + "\n", site) != complete + "\n"
               for rule in (single_line, markdown_fence, loop, block_end))


def unfinished(text: str, site: Site, beyond: str = "") -> bool:
    """Would stopping now leave nothing usable? The first line is not finished, or the last
    finished line opens a block whose body has not begun. (The time budget gives such an answer
    a little longer: a block is never cut before its body.) With `beyond` (lines the editor has
    already), nothing usable is also no finished line past them."""
    if "\n" not in text:
        return True
    lines = split_lines(text)[:-1]  # whole lines only
    while lines and not lines[-1].strip():
        lines.pop()
    if beyond and len(lines) <= beyond.count("\n") + 1:
        return True
    last = (_cursor_line_before(site) + lines[-1]) if len(lines) == 1 else (lines[-1] if lines else "")
    return opens_block(last, site.spec)


Rule = Callable[[str, Site], str]

RULES: tuple[tuple[str, Rule], ...] = (
    ("single_line", single_line),
    ("markdown_fence", markdown_fence),
    ("loop", loop),
    ("block_end", block_end),
    ("suffix_repeat", suffix_repeat),
    ("line_overlap", line_overlap),
    ("closers", closers),
    ("indentation", indentation),
    ("syntax", syntax),
    ("trailing_whitespace", trailing_whitespace),
)


def postprocess(text: str, site: Site, rules: tuple[tuple[str, Rule], ...] = RULES) -> Postprocessed:
    outcome = Postprocessed(text)
    for name, rule in rules:
        if not outcome.text.strip():
            break
        new = rule(outcome.text, site)
        if new != outcome.text:
            outcome.fired.append(name)
            if not new.strip() and name != "trailing_whitespace":
                outcome.emptied_by = name
            outcome.text = new
    if not outcome.text.strip():
        outcome.text = ""
    return outcome

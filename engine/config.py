"""Settings: one fully defaulted dataclass, read from camelCase keys.

The same names are the LSP `initializationOptions` / `fimble` configuration section and the
CLI's `--set KEY=VALUE`. A bad key or value never stops anything: it becomes a warning and the
default stays, so a typo in an editor config cannot take completions away.
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass, field
from typing import Any

MULTILINE_MODES = ("auto", "always", "never")
DOCSTRING_PROMPTS = ("instruct", "fim")


def _opt(default: Any, doc: str, *, choices: tuple[str, ...] | None = None, lo: float | None = None,
         hi: float | None = None, secret: bool = False) -> Any:
    return field(default=default, repr=not secret,
                 metadata={"doc": doc, "choices": choices, "lo": lo, "hi": hi, "secret": secret})


REDACTED = "(set)"  # what status, options and warnings show instead of a secret's value


@dataclass(frozen=True)
class Settings:
    model: str = _opt("qwen2.5-coder-0.5b", "a GGUF file, a Hugging Face folder, or a known model name")
    backend: str = _opt("llama_cpp", "which backend runs the model: llama_cpp, torch or openai")
    openai_base_url: str = _opt("", "base URL of an OpenAI-compatible server (else $OPENAI_BASE_URL, else "
                                "http://127.0.0.1:8080/v1)")
    openai_api_key: str = _opt("", "API key for the OpenAI-compatible server (else $OPENAI_API_KEY, sent only to "
                               "$OPENAI_BASE_URL); shown nowhere, and dropped when openaiBaseUrl changes without it",
                               secret=True)
    openai_model: str = _opt("", "model name the OpenAI-compatible server serves (else the first it lists)")
    max_tokens: int = _opt(128, "most tokens generated for one completion", lo=1, hi=8192)
    temperature: float = _opt(0.0, "0 is greedy: the same prompt gives the same completion", lo=0, hi=5)
    top_k: int = _opt(40, "sample only from the k most likely tokens (temperature > 0)", lo=0, hi=100000)
    top_p: float = _opt(0.95, "nucleus sampling threshold (temperature > 0)", lo=0, hi=1)
    min_p: float = _opt(0.05, "drop tokens less likely than min_p times the best (temperature > 0)", lo=0, hi=1)
    repeat_penalty: float = _opt(1.0, "1.0 is off; >1 discourages repeating tokens", lo=0.1, hi=5)
    seed: int = _opt(0, "sampling seed, so sampled runs can be reproduced", lo=0, hi=2**31 - 1)
    debounce_ms: int = _opt(0, "wait this long after a keystroke before asking the model (a newer request cancels "
                            "an older one anyway, and editors debounce their own requests)", lo=0, hi=5000)
    context_tokens: int = _opt(1024, "prompt budget: prefix, suffix and extra context together", lo=64, hi=32768)
    multiline: str = _opt("auto", "auto decides from the syntax at the cursor", choices=MULTILINE_MODES)
    time_budget_ms: int = _opt(1500, "stop decoding after this long and keep what is there (the prompt's "
                               "evaluation is not counted); 0: no limit", lo=0, hi=600_000)
    n_threads: int = _opt(0, "CPU threads for llama.cpp; 0 means all cores, fewer while other processes keep "
                             "cores busy", lo=0, hi=1024)
    n_ctx: int = _opt(8192, "context window in tokens (prompt plus output): llama.cpp's, and the torch KV cache; "
                      "llama.cpp also warms up to this much of an open document", lo=256, hi=131072)
    kv_cache_mb: int = _opt(256, "memory for saved prompt states (the KV cells of warmed documents and of places "
                            "worked at) besides the live one, in MiB; 0 keeps only the live one", lo=0, hi=65536)
    speculative_tokens: int = _opt(7, "prompt-lookup speculative decoding: up to this many tokens copied from the "
                                   "context are proposed and verified in one batch (greedy decoding, llama_cpp and "
                                   "torch): 7 after a match of 8 tokens or more, 3 after a shorter one; 0 turns it "
                                   "off. The output is plain greedy decoding's except at near-ties", lo=0, hi=64)
    new_place_ms: int = _opt(1000, "at a place whose prompt the KV cache does not hold, the language server first "
                             "cuts the window around the cursor to what evaluates in about this long at the "
                             "measured prompt speed, then widens it to contextTokens while idle; 0: always the "
                             "whole window", lo=0, hi=600_000)
    first_answer_ms: int = _opt(200, "the language server answers once decoding has run this long and the lines "
                                "so far are usable, decodes the rest while idle, then sends fimble/completionReady "
                                "(the editor asks again and gets the whole); 0: only whole answers", lo=0,
                                hi=600_000)
    docstring_prompt: str = _opt("instruct", "an empty body under a definition's header and docstring is asked for "
                                 "with the model's chat template (instruct: the function from its docstring) or "
                                 "like any other place (fim)", choices=DOCSTRING_PROMPTS)
    explain_model: str = _opt("", "the model that explains code (fimble.explain, `fimble explain`): a known name, a "
                              "GGUF file or a Hugging Face folder; empty: the largest known model assembled in "
                              "$FIMBLE_HOME if it is larger than `model` (llama_cpp backend), else `model`. The "
                              "language server loads it on the first explanation and keeps both loaded")
    warm: bool = _opt(True, "evaluate the prompt of the place just opened or edited while the server is idle, "
                      "so the first request there finds it ready")
    stats: bool = _opt(True, "count suggestions shown and accepted per language, and how much of the accepted text "
                       "is kept, in $FIMBLE_HOME/stats.json (counts only, never code; `fimble stats` prints them)")
    torch_compile: bool = _opt(False, "torch backend on a GPU: compile the decode step (CUDA graphs); the first "
                               "requests are slow while it compiles")

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Every option by its camelCase name; a secret shows only whether it is set."""
        return {to_camel(f.name): _shown(f, getattr(self, f.name)) for f in dataclasses.fields(self)}

    def secrets(self) -> list[str]:
        """The values of secret options that are set: what must never be printed."""
        return [value for f in dataclasses.fields(self) if f.metadata["secret"] and (value := getattr(self, f.name))]


def _shown(f: dataclasses.Field[Any], value: Any) -> Any:
    return (REDACTED if value else "") if f.metadata["secret"] else value


def to_camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.capitalize() for part in rest)


def to_snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


_FIELDS = {f.name: f for f in dataclasses.fields(Settings)}


def _coerce(f: dataclasses.Field[Any], value: Any) -> Any:
    kind = type(f.default)
    if isinstance(value, bool) != (kind is bool):
        raise ValueError(f"expected {'true or false' if kind is bool else kind.__name__}, got {value!r}")
    if kind is int and isinstance(value, float) and value.is_integer():
        value = int(value)
    if kind is float and isinstance(value, int):
        value = float(value)
    if not isinstance(value, kind):
        expected = {int: "an integer", float: "a number", str: "a string"}.get(kind, kind.__name__)
        raise ValueError(f"expected {expected}, got {value!r}")
    meta = f.metadata
    if meta["choices"] and value not in meta["choices"]:
        raise ValueError(f"expected one of {', '.join(meta['choices'])}, got {value!r}")
    if meta["lo"] is not None and value < meta["lo"]:
        raise ValueError(f"must be at least {meta['lo']}, got {value!r}")
    if meta["hi"] is not None and value > meta["hi"]:
        raise ValueError(f"must be at most {meta['hi']}, got {value!r}")
    return value


def apply_options(base: Settings, options: dict[str, Any] | None) -> tuple[Settings, list[str]]:
    """Merge camelCase options into `base`. Returns the new settings and a warning per bad key."""
    warnings: list[str] = []
    changes: dict[str, Any] = {}
    for key, value in (options or {}).items():
        f = _FIELDS.get(to_snake(key))
        if f is None:
            known = ", ".join(sorted(to_camel(n) for n in _FIELDS))
            warnings.append(f"fimble: unknown option {key!r} ignored (known: {known})")
            continue
        if value is None:
            continue
        try:
            changes[f.name] = _coerce(f, value)
        except ValueError as exc:
            kept = _shown(f, getattr(base, f.name))
            reason = "expected a string" if f.metadata["secret"] else str(exc)  # the value may be a secret too
            warnings.append(f"fimble: option {key!r} {reason}; keeping {kept!r}")
    new_url = changes.get("openai_base_url", base.openai_base_url)
    if new_url != base.openai_base_url and base.openai_api_key and "openai_api_key" not in changes:
        # A key goes only where it was given for: a new server must be given its own.
        changes["openai_api_key"] = ""
        warnings.append("fimble: openaiBaseUrl changed without an openaiApiKey: the previous key is not sent to "
                        "the new server; give the key again with the new URL")
    return base.replace(**changes), warnings


def parse_set_arguments(pairs: list[str]) -> dict[str, Any]:
    """`--set KEY=VALUE` pairs → options; VALUE is read as JSON when it parses, else as text."""
    options: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"--set expects KEY=VALUE, got {pair!r}")
        try:
            options[key] = json.loads(raw)
        except ValueError:
            options[key] = raw
    return options


def describe() -> list[tuple[str, Any, str]]:
    """(camelCase name, default, doc) for every option: the README table and `--help` use it."""
    return [(to_camel(f.name), _shown(f, f.default), f.metadata["doc"]) for f in dataclasses.fields(Settings)]

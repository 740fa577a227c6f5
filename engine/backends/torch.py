"""The PyTorch backend (`pip install fimble[torch]`): bf16 on a GPU, float32 on the CPU.

It runs a Hugging Face model folder, or a GGUF file dequantized once through transformers' GGUF
reader and kept as safetensors under `$FIMBLE_HOME/torch/` (the first load takes about a minute on
two cores, later ones seconds) where the disk has room to keep them; where it has not, they are
used from memory and dequantized again at the next load. Generation follows gpt-fast: `prefill`
and `decode_one` are small functions over a model with a preallocated KV cache; sampling is pure
functions (sampling.py).

Like the llama.cpp backend, it keeps the KV cache of the last prompt and evaluates only what a
new prompt does not share with it, in chunks so that cancel and the time budget are seen during
a long prefill; what was evaluated before a stop stays for the next request.
"""

from __future__ import annotations

import codecs
import json
import logging
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..errors import BackendError
from ..healing import TokenHealer
from ..prompt import Prompt
from ..reasons import StopReason
from .base import (
    Backend,
    GenerationRequest,
    GenerationResult,
    GenerationStats,
    TextCallback,
    TextSink,
    blank_tokens,
    common_prefix,
    open_line_choice,
    prefill_chunks,
    prompt_ids,
    room_after,
)
from .decoding import decode
from .lookup import NEAR_TIE
from .sampling import allow_only, sample
from .torch_model import Transformer, build_transformer, cache_bytes, read_weights

PREFILL_CHUNK = 64
# Room the kept weights must leave free: a cache never fills the user's disk (nor CI's).
KEEP_HEADROOM = 1 << 30
_convert_lock = threading.Lock()
log = logging.getLogger(__name__)


def converted_folder(gguf: Path) -> Path:
    """Where the dequantized safetensors of `gguf` live (keyed by its name, size and mtime)."""
    from ..models import fimble_home

    st = gguf.stat()
    return fimble_home() / "torch" / f"{gguf.stem}-{st.st_size}-{int(st.st_mtime)}"


@dataclass
class HFWeights:
    """A model under transformers' names: config.json's dict, the tensors, the tokenizer, and the
    folder they were read from or kept in (None when a dequantized GGUF could not be kept)."""

    config: dict[str, Any]
    state: dict[str, torch.Tensor]
    tokenizer: Any
    eos_ids: set[int]
    folder: Path | None


def read_folder(folder: Path) -> HFWeights:
    """A Hugging Face model folder: config.json, *.safetensors and the tokenizer's files."""
    from transformers import AutoTokenizer

    config, state = read_weights(folder)
    eos = _ids(config.get("eos_token_id"))
    if (generation := folder / "generation_config.json").is_file():
        eos |= _ids(json.loads(generation.read_text()).get("eos_token_id"))
    return HFWeights(config, state, AutoTokenizer.from_pretrained(str(folder)), eos, folder)


def _ids(value: Any) -> set[int]:
    """An `eos_token_id` as config files write it: one id, a list of them, or null."""
    return set(value if isinstance(value, list) else [value] if isinstance(value, int) else [])


def dequantize_gguf(gguf: Path) -> HFWeights:
    """`gguf` dequantized to float32 by transformers' GGUF reader, in memory, then kept as a Hugging
    Face folder (atomic, so a killed run leaves nothing) when the disk has room for it; when it has
    not, the weights are used from memory and the next load dequantizes again (a warning says so)."""
    target = converted_folder(gguf)
    with _convert_lock:
        if (target / "config.json").is_file():
            return read_folder(target)
        try:
            from transformers import AutoModelForCausalLM, AutoTokenizer
        except ImportError as exc:
            raise BackendError(f"the torch backend needs transformers: pip install 'fimble[torch]' ({exc})") from exc
        try:
            model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
            tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        except (OSError, ValueError, RuntimeError, KeyError) as exc:
            raise BackendError(f"transformers could not dequantize {gguf}: {exc}") from exc
        # transformers refuses `save_pretrained` for a model it read from GGUF, although the weights
        # it holds are plain dequantized tensors: they are taken and written here.
        model.config.architectures = [type(model).__name__]
        state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
        if model.config.tie_word_embeddings:
            state.pop("lm_head.weight", None)  # shares memory with the embeddings
        eos = _ids(model.config.eos_token_id) | _ids(getattr(model.generation_config, "eos_token_id", None))
        weights = HFWeights(model.config.to_dict(), state, tokenizer, eos, None)
        why = keep_weights(weights, model, target)
        del model
        if why:
            log.warning("fimble: the dequantized weights of %s were not kept (%s); they are used from memory "
                        "and the next load dequantizes again", gguf.name, why)
        else:
            weights.folder = target
        return weights


def keep_weights(weights: HFWeights, model: Any, target: Path) -> str | None:
    """Write `weights` as a Hugging Face folder at `target` → None, or why they were not written."""
    from safetensors import SafetensorError
    from safetensors.torch import save_file

    need = sum(t.numel() * t.element_size() for t in weights.state.values())
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        free = shutil.disk_usage(target.parent).free
    except OSError as exc:
        return f"{target.parent}: {exc.strerror or exc}"
    if free < need + KEEP_HEADROOM:
        return (f"they take {need / 1e9:.1f} GB and {target.parent} has {free / 1e9:.1f} GB free; "
                f"{KEEP_HEADROOM >> 30} GiB is left free beside them")
    tmp = Path(tempfile.mkdtemp(prefix=".convert-", dir=target.parent))
    try:
        save_file(weights.state, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        model.config.to_json_file(str(tmp / "config.json"))
        model.generation_config.to_json_file(str(tmp / "generation_config.json"))
        weights.tokenizer.save_pretrained(tmp)
        os.replace(tmp, target)
    except (OSError, SafetensorError) as exc:  # a full disk is SafetensorError ("os error 28")
        return f"writing {target}: {getattr(exc, 'strerror', None) or exc}"
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return None


class HFVocab:
    """The model's Hugging Face tokenizer: ids for prompt parts, text for streamed ids."""

    def __init__(self, weights: HFWeights) -> None:
        self.tok: Any = weights.tokenizer
        self.eos_ids = set(weights.eos_ids)
        if self.tok.eos_token_id is not None:
            self.eos_ids.add(self.tok.eos_token_id)
        self.bos_id: int | None = self.tok.bos_token_id

    def encode(self, text: str, allow_special: bool = False) -> list[int]:
        if not text:
            return []
        out = self.tok(text, add_special_tokens=False, split_special_tokens=not allow_special)
        return list(out["input_ids"])

    def count(self, text: str) -> int:
        return len(self.encode(text))

    def token_id(self, text: str) -> int | None:
        ids = self.encode(text, allow_special=True)
        return ids[0] if len(ids) == 1 else None

    def healer(self) -> TokenHealer | None:
        """Tables for token healing, for byte-level BPE vocabularies (Qwen, Llama 3); None for others."""
        backend = getattr(self.tok, "backend_tokenizer", None)
        pre = getattr(backend, "pre_tokenizer", None)
        if backend is None or pre is None or "ByteLevel" not in type(backend.decoder).__name__:
            return None
        from native.tokenizer import TOKEN_CONTROL, TOKEN_NORMAL, token_bytes

        special = set(self.tok.all_special_ids) | {int(i) for i in getattr(self.tok, "added_tokens_decoder", {})}
        kinds = [TOKEN_CONTROL if i in special else TOKEN_NORMAL for i in range(len(self.tok))]
        names = self.tok.convert_ids_to_tokens(list(range(len(self.tok))))
        table = [token_bytes(name or "", kind) for name, kind in zip(names, kinds, strict=True)]

        def pieces(text: str) -> list[str]:
            return [text[start:end] for _, (start, end) in pre.pre_tokenize_str(text)]

        return TokenHealer(table, lambda i: kinds[i] == TOKEN_NORMAL, pieces)


class TextStream:
    """Turns ids into text as they come, decoding only a few ids at a time (as vLLM and TGI
    do): the ids from the last whole-character point on, against the same ids less the newest.
    A partial UTF-8 character is held back until the token that completes it."""

    def __init__(self, vocab: HFVocab) -> None:
        self.vocab = vocab
        self.ids: list[int] = []
        self.prefix_at = 0  # decoding starts here: a few ids before the text not yet sent
        self.read_at = 0  # the ids before this were sent as text

    def push(self, token: int) -> str:
        self.ids.append(token)
        decode = self.vocab.tok.decode
        before = decode(self.ids[self.prefix_at : self.read_at], skip_special_tokens=False)
        text = decode(self.ids[self.prefix_at :], skip_special_tokens=False)
        if len(text) <= len(before) or text.endswith("\ufffd"):
            return ""
        self.prefix_at, self.read_at = self.read_at, len(self.ids)
        return text[len(before) :]


class TorchBackend(Backend):
    name = "torch"

    def __init__(self, model: Any, settings: Any) -> None:
        super().__init__(model, settings)
        self.net: Transformer | None = None
        self.vocab: HFVocab | None = None
        self.folder: Path | None = None  # the Hugging Face folder the weights came from or were kept in
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.dtype = torch.bfloat16 if self.device.type == "cuda" else torch.float32
        self.cached: list[int] = []  # the tokens whose keys/values the cache holds, in order
        self._decode: Any = None
        self._healer: TokenHealer | None = None
        self._healer_built = False
        self._blank: Any = None  # [vocab] bool: tokens that begin with a newline (open_line)

    @property
    def healer(self) -> TokenHealer | None:
        if not self._healer_built and self.vocab is not None:
            self._healer, self._healer_built = self.vocab.healer(), True
        return self._healer

    # -- loading -------------------------------------------------------------------------------

    def load(self) -> None:
        if self.net is not None:
            return
        if self.model is None:
            raise BackendError("the torch backend needs a model: a Hugging Face folder or a GGUF file")
        path = self.model.path
        try:
            weights = dequantize_gguf(path) if self.model.is_gguf else read_folder(path)
            net = build_transformer(weights.config, weights.state, self.dtype, self.device, str(weights.folder or path))
        except (OSError, ValueError, KeyError) as exc:
            raise BackendError(f"the torch backend could not load {path}: {exc}") from exc
        self.vocab = HFVocab(weights)
        self.folder = weights.folder
        net.setup_cache(self.settings.n_ctx)
        self._decode = net
        if self.device.type == "cuda" and self.settings.torch_compile:
            # Static shapes let torch.compile capture the decode step as a CUDA graph.
            net.static_shapes = True
            self._decode = torch.compile(net, mode="reduce-overhead", fullgraph=True)
        self.net = net

    def count_tokens(self, text: str) -> int:
        self.load()
        assert self.vocab is not None
        return self.vocab.count(text)

    def prompt_tokens(self, prompt: Prompt) -> list[int]:
        assert self.vocab is not None
        return prompt_ids(prompt, self.vocab.encode, self.vocab.bos_id)

    # -- the two steps ---------------------------------------------------------------------------

    @torch.inference_mode()
    def prefill(self, tokens: list[int], request: GenerationRequest) -> tuple[torch.Tensor | None, int, str]:
        """Evaluate what the cache lacks of `tokens` → (last logits [vocab], evaluated, stop reason)."""
        assert self.net is not None
        net = self.net
        keep = common_prefix(self.cached, tokens[:-1])  # the last token is always evaluated
        self.cached = self.cached[:keep]
        last: list[torch.Tensor] = []

        def evaluate(chunk: list[int], start: int) -> None:
            ids = torch.tensor([chunk], device=self.device)  # [1, T]
            positions = torch.arange(start, start + len(chunk), device=self.device)  # [T]
            last[:] = [net(ids, positions)[0, -1]]  # [vocab]
            self.cached += chunk

        reason = prefill_chunks(tokens, keep, PREFILL_CHUNK, request.cancel, evaluate)
        return (last[0] if last and not reason else None), len(self.cached) - keep, reason

    @torch.inference_mode()
    def decode_one(self, token: int) -> torch.Tensor:
        """Append one token to the cache → logits [vocab] for the next."""
        position = len(self.cached)
        ids = torch.tensor([[token]], device=self.device)  # [1, 1]
        positions = torch.tensor([position], device=self.device)  # [1]
        logits = self._decode(ids, positions)[0, -1]  # [vocab]
        self.cached.append(token)
        return logits

    @torch.inference_mode()
    def decode_batch(self, tokens: list[int]) -> torch.Tensor:
        """Append tokens to the cache → logits [T, vocab], row i for what follows tokens[i]
        (a prompt-lookup draft's verification; engine/backends/lookup.py)."""
        assert self.net is not None
        position = len(self.cached)
        ids = torch.tensor([tokens], device=self.device)  # [1, T]
        positions = torch.arange(position, position + len(tokens), device=self.device)  # [T]
        logits = self.net(ids, positions)[0]  # [T, vocab]
        self.cached += tokens
        return logits

    # -- generation (engine/backends/decoding.py drives the steps) -------------------------------

    def generate(self, request: GenerationRequest, on_text: TextCallback | None = None) -> GenerationResult:
        self.load()
        assert self.net is not None and self.vocab is not None
        stats = GenerationStats()
        started = time.perf_counter()
        tokens = self.prompt_tokens(request.prompt)
        room_after(tokens, self.net.max_len)  # (refuses a prompt that leaves no room)
        stats.prompt_tokens = len(tokens)
        logits, stats.prompt_tokens_evaluated, reason = self.prefill(tokens, request)
        stats.prefill_ms = (time.perf_counter() - started) * 1000
        if reason or logits is None:
            stats.stop_reason = reason or StopReason.CANCELLED
            return GenerationResult("", stats)
        decode_start = time.perf_counter()
        expected = self.vocab.encode(request.expected) if request.expected and self.vocab is not None else None
        text, stats.stop_reason = decode(TorchSteps(self, request, tokens, logits), tokens, request, stats,
                                         TextSink(request, on_text), started, expected)
        stats.decode_ms = (time.perf_counter() - decode_start) * 1000
        return GenerationResult(text, stats)

    def cache_summary(self) -> dict[str, object]:
        """The preallocated KV cache: the tokens it holds and the memory it takes (fimble/status)."""
        if self.net is None:
            return {"liveTokens": 0}
        kv_bytes = cache_bytes(self.net.args, self.net.max_len, self.dtype)
        return {"liveTokens": len(self.cached), "kvCacheBytes": kv_bytes}

    def close(self) -> None:
        self.net = None
        self._decode = None
        self.cached = []
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


class TorchSteps:
    """The decode loop's steps (engine/backends/decoding.py) on the torch backend, for one request."""

    def __init__(self, backend: TorchBackend, request: GenerationRequest, tokens: list[int],
                 logits: torch.Tensor) -> None:
        assert backend.net is not None and backend.vocab is not None
        self.backend, self.request, self.net = backend, request, backend.net
        self.healer = backend.healer
        vocab = backend.vocab
        self.stop_ids = set(vocab.eos_ids) | {
            i for t in request.prompt.stop_tokens if (i := vocab.token_id(t)) is not None}
        self.rows = logits[None]  # [T, vocab]: the last evaluation's logits, row i after its token i
        self.history = torch.tensor(tokens, device=backend.device)  # [n] (repeat penalty)
        self.generator = torch.Generator(device=backend.device).manual_seed(request.seed)
        self.stream = TextStream(vocab)
        self.healed_text = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def n_ctx(self) -> int:
        return int(self.net.max_len)

    def cells(self) -> int:
        return len(self.backend.cached)

    def evaluate(self, batch: list[int]) -> None:
        backend = self.backend
        self.rows = backend.decode_one(batch[0])[None] if len(batch) == 1 else backend.decode_batch(batch)

    def best(self, i: int, lead: bool) -> tuple[int, bool]:
        row = self.rows[i]  # [vocab]
        if not lead:
            return int(torch.argmax(row)), False
        top = torch.topk(row, 2)
        return int(top.indices[0]), float(top.values[0] - top.values[1]) < NEAR_TIE

    def truncate(self, n: int) -> None:
        self.backend.cached = self.backend.cached[:n]

    def _sample(self, logits: torch.Tensor) -> int:
        request = self.request
        token = sample(logits, self.history, temperature=request.temperature, k=request.top_k, p=request.top_p,
                       min_prob=request.min_p, penalty=request.repeat_penalty, generator=self.generator)
        if request.repeat_penalty != 1.0:
            self.history = torch.cat([self.history, torch.tensor([token], device=self.history.device)])
        return token

    def pick(self, allowed: list[int]) -> int:
        row = self.rows[-1]
        return self._sample(allow_only(row, torch.tensor(allowed, device=row.device)))

    def open_line(self) -> int | None:
        backend, row = self.backend, self.rows[-1]
        if backend.healer is None:
            return None
        if backend._blank is None:
            backend._blank = blank_tokens(backend.healer.table, (), row.shape[-1])
        return open_line_choice(row.float().cpu().numpy(), backend._blank, self.stop_ids)

    def sampled(self, tokens: list[int]) -> Generator[int, None, None]:
        while True:
            token = self._sample(self.rows[-1])
            yield token
            self.evaluate([token])

    def text(self, token: int) -> str:
        return self.stream.push(token)

    def text_after_heal(self, data: bytes) -> str:
        # (Healed tokens skip the stream, which is fine for whole characters, i.e. nearly always.)
        return self.healed_text.decode(data, final=True)

    def flush(self) -> str:
        return ""

    def is_end(self, token: int) -> bool:
        return token in self.stop_ids


__all__ = ["HFWeights", "TorchBackend", "converted_folder", "dequantize_gguf", "keep_weights", "read_folder"]

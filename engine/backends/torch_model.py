"""A Llama-family decoder (Qwen2, Llama, …) in plain PyTorch, in the manner of gpt-fast.

The model owns a preallocated KV cache of `max_len` positions. `forward(ids, start)` writes the
keys and values of positions [start, start + T) and attends to everything before them, so the
backend can keep the first `start` positions of the previous prompt and evaluate only the rest.
Positions past `start + T` may hold stale entries of an older prompt: the causal mask hides them.

Weights are read from a Hugging Face folder's safetensors by their transformers names; nothing of
transformers runs at inference time.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

SUPPORTED_ARCHITECTURES = {"Qwen2ForCausalLM", "LlamaForCausalLM", "MistralForCausalLM"}


@dataclass(frozen=True)
class ModelArgs:
    vocab_size: int
    dim: int
    n_layers: int
    n_heads: int
    n_kv_heads: int
    intermediate_size: int
    norm_eps: float
    rope_theta: float
    qkv_bias: bool
    tie_embeddings: bool

    @property
    def head_dim(self) -> int:
        return self.dim // self.n_heads

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> ModelArgs:
        arch = (config.get("architectures") or ["?"])[0]
        if arch not in SUPPORTED_ARCHITECTURES:
            raise ValueError(f"architecture {arch} is not one the torch backend runs "
                             f"({', '.join(sorted(SUPPORTED_ARCHITECTURES))})")
        rope = config.get("rope_parameters") or config.get("rope_scaling") or {}
        if rope.get("rope_type", rope.get("type", "default")) not in ("default", None):
            raise ValueError(f"rope scaling {rope.get('rope_type')!r} is not supported by the torch backend")
        theta = config.get("rope_theta") or rope.get("rope_theta") or 10000.0
        return cls(
            vocab_size=config["vocab_size"],
            dim=config["hidden_size"],
            n_layers=config["num_hidden_layers"],
            n_heads=config["num_attention_heads"],
            n_kv_heads=config.get("num_key_value_heads") or config["num_attention_heads"],
            intermediate_size=config["intermediate_size"],
            norm_eps=config.get("rms_norm_eps", 1e-6),
            rope_theta=float(theta),
            qkv_bias=arch == "Qwen2ForCausalLM" or bool(config.get("attention_bias", False)),
            tie_embeddings=bool(config.get("tie_word_embeddings", False)),
        )


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x32 = x.float()
        x32 = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x32.to(x.dtype)


def rope_tables(args: ModelArgs, max_len: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin for every position: [max_len, head_dim] each (the halves-rotated layout)."""
    inv_freq = 1.0 / (args.rope_theta ** (torch.arange(0, args.head_dim, 2, device=device).float() / args.head_dim))
    angles = torch.outer(torch.arange(max_len, device=device).float(), inv_freq)  # [max_len, head_dim/2]
    angles = torch.cat([angles, angles], dim=-1)  # [max_len, head_dim]
    return angles.cos(), angles.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x [B, H, T, D] rotated by cos/sin [T, D]."""
    half = x.shape[-1] // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return (x.float() * cos + rotated.float() * sin).to(x.dtype)


class Attention(nn.Module):
    def __init__(self, args: ModelArgs) -> None:
        super().__init__()
        self.args = args
        hd = args.head_dim
        self.q_proj = nn.Linear(args.dim, args.n_heads * hd, bias=args.qkv_bias)
        self.k_proj = nn.Linear(args.dim, args.n_kv_heads * hd, bias=args.qkv_bias)
        self.v_proj = nn.Linear(args.dim, args.n_kv_heads * hd, bias=args.qkv_bias)
        self.o_proj = nn.Linear(args.n_heads * hd, args.dim, bias=False)
        self.k_cache: torch.Tensor | None = None  # [1, n_kv_heads, max_len, head_dim]
        self.v_cache: torch.Tensor | None = None

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, positions: torch.Tensor,
                mask: torch.Tensor, attend: int) -> torch.Tensor:
        bsz, t, _ = x.shape  # [1, T, dim]
        hd = self.args.head_dim
        q = self.q_proj(x).view(bsz, t, self.args.n_heads, hd).transpose(1, 2)  # [1, H, T, D]
        k = self.k_proj(x).view(bsz, t, self.args.n_kv_heads, hd).transpose(1, 2)  # [1, KV, T, D]
        v = self.v_proj(x).view(bsz, t, self.args.n_kv_heads, hd).transpose(1, 2)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        assert self.k_cache is not None and self.v_cache is not None
        self.k_cache.index_copy_(2, positions, k)
        self.v_cache.index_copy_(2, positions, v)
        keys, values = self.k_cache[:, :, :attend], self.v_cache[:, :, :attend]  # [1, KV, S, D]
        groups = self.args.n_heads // self.args.n_kv_heads
        if groups > 1:
            keys = keys.repeat_interleave(groups, dim=1)  # [1, H, S, D]
            values = values.repeat_interleave(groups, dim=1)
        out = F.scaled_dot_product_attention(q, keys, values, attn_mask=mask)  # [1, H, T, D]
        return self.o_proj(out.transpose(1, 2).reshape(bsz, t, -1))


class MLP(nn.Module):
    def __init__(self, args: ModelArgs) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(args.dim, args.intermediate_size, bias=False)
        self.up_proj = nn.Linear(args.dim, args.intermediate_size, bias=False)
        self.down_proj = nn.Linear(args.intermediate_size, args.dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Block(nn.Module):
    def __init__(self, args: ModelArgs) -> None:
        super().__init__()
        self.input_layernorm = RMSNorm(args.dim, args.norm_eps)
        self.self_attn = Attention(args)
        self.post_attention_layernorm = RMSNorm(args.dim, args.norm_eps)
        self.mlp = MLP(args)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, positions: torch.Tensor,
                mask: torch.Tensor, attend: int) -> torch.Tensor:
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, positions, mask, attend)
        return x + self.mlp(self.post_attention_layernorm(x))


class Transformer(nn.Module):
    def __init__(self, args: ModelArgs) -> None:
        super().__init__()
        self.args = args
        self.embed_tokens = nn.Embedding(args.vocab_size, args.dim)
        self.layers = nn.ModuleList(Block(args) for _ in range(args.n_layers))
        self.norm = RMSNorm(args.dim, args.norm_eps)
        self.lm_head = nn.Linear(args.dim, args.vocab_size, bias=False)
        self.max_len = 0
        self.cos = self.sin = torch.empty(0)
        # Attend to the whole cache (static shapes, for torch.compile and CUDA graphs) or only to
        # the positions in use (less work in eager mode).
        self.static_shapes = False

    def setup_cache(self, max_len: int) -> None:
        """Allocate the KV cache once; the backend never grows it."""
        param = self.embed_tokens.weight
        shape = (1, self.args.n_kv_heads, max_len, self.args.head_dim)
        for layer in self.layers:
            attn = layer.self_attn
            assert isinstance(attn, Attention)
            attn.k_cache = torch.zeros(shape, dtype=param.dtype, device=param.device)
            attn.v_cache = torch.zeros(shape, dtype=param.dtype, device=param.device)
        self.cos, self.sin = rope_tables(self.args, max_len, param.device)
        self.max_len = max_len

    def forward(self, ids: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """ids [1, T] at `positions` [T] (consecutive) → logits [1, T, vocab]."""
        t = ids.shape[1]
        attend = self.max_len if self.static_shapes else int(positions[-1]) + 1
        key_pos = torch.arange(attend, device=ids.device)  # [S]
        mask = key_pos[None, :] <= positions[:, None]  # [T, S]: causal, hides stale entries too
        cos, sin = self.cos[positions], self.sin[positions]  # [T, D]
        x = self.embed_tokens(ids)  # [1, T, dim]
        for layer in self.layers:
            x = layer(x, cos, sin, positions, mask, attend)
        assert x.shape[1] == t
        return self.lm_head(self.norm(x)).float()


def read_weights(folder: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """`folder`/config.json and its safetensors weights, under transformers' names."""
    from safetensors.torch import load_file

    config = json.loads((folder / "config.json").read_text())
    ModelArgs.from_config(config)  # an architecture it cannot run is refused before gigabytes are read
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise ValueError(f"{folder} holds no .safetensors weights")
    state: dict[str, torch.Tensor] = {}
    for file in files:
        state.update(load_file(str(file)))
    return config, state


def build_transformer(config: dict[str, Any], state: dict[str, torch.Tensor], dtype: torch.dtype,
                      device: torch.device, name: str) -> Transformer:
    """The model of `config` with the weights of `state` (transformers' names; `name` says where
    they came from in errors). Tensors already of `dtype` are used as they are, not copied."""
    args = ModelArgs.from_config(config)
    with torch.device("meta"):
        model = Transformer(args)
    state = {k.removeprefix("model."): v for k, v in state.items()}
    if "lm_head.weight" not in state:
        if not args.tie_embeddings:
            raise ValueError(f"{name}: lm_head.weight is missing and embeddings are not tied")
        state["lm_head.weight"] = state["embed_tokens.weight"]
    missing = set(model.state_dict()) - set(state)
    if missing:
        raise ValueError(f"{name}: weights missing: {', '.join(sorted(missing)[:5])}")
    model.load_state_dict({k: v.to(dtype) for k, v in state.items() if k in model.state_dict()}, assign=True,
                          strict=True)
    model.cos = model.sin = torch.empty(0)
    return model.to(device).eval()


def load_transformer(folder: Path, dtype: torch.dtype, device: torch.device) -> Transformer:
    """Build the model from `folder`/config.json and its safetensors weights."""
    config, state = read_weights(folder)
    return build_transformer(config, state, dtype, device, str(folder))


def cache_bytes(args: ModelArgs, max_len: int, dtype: torch.dtype) -> int:
    element = torch.empty((), dtype=dtype).element_size()
    return 2 * args.n_layers * args.n_kv_heads * max_len * args.head_dim * element


__all__ = ["ModelArgs", "Transformer", "build_transformer", "cache_bytes", "load_transformer", "read_weights"]

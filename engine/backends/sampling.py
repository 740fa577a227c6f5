"""Sampling as pure functions on a logits vector (the torch backend's; gpt-fast's shape).

Each step takes logits of shape [vocab] and returns new logits of the same shape, with the tokens it
rules out set to -inf. `sample` chains them in llama.cpp's order — repetition penalty, top-k,
top-p, min-p, temperature — so the same settings mean the same thing on every backend.
"""

from __future__ import annotations

import torch


def repetition_penalty(logits: torch.Tensor, previous: torch.Tensor, penalty: float) -> torch.Tensor:
    """Make tokens in `previous` ([n] ids) less likely: positive logits divided, negative multiplied."""
    if penalty == 1.0 or previous.numel() == 0:
        return logits
    logits = logits.clone()
    seen = previous.unique()
    chosen = logits[seen]  # [n_unique]
    logits[seen] = torch.where(chosen > 0, chosen / penalty, chosen * penalty)
    return logits


def top_k(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Keep the k largest logits; k <= 0 keeps all."""
    if k <= 0 or k >= logits.numel():
        return logits
    kth = torch.topk(logits, k).values[-1]  # scalar: the k-th largest
    return logits.masked_fill(logits < kth, float("-inf"))


def top_p(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Keep the smallest set of most likely tokens whose probability reaches p (at least one)."""
    if p >= 1.0:
        return logits
    sorted_logits, order = torch.sort(logits, descending=True)  # [vocab], [vocab]
    cumulative = sorted_logits.softmax(-1).cumsum(-1)  # [vocab]
    # Drop a token when the tokens before it already reach p; the first always stays.
    drop_sorted = (cumulative - sorted_logits.softmax(-1)) >= p  # [vocab]
    drop = torch.zeros_like(drop_sorted).scatter(0, order, drop_sorted)
    return logits.masked_fill(drop, float("-inf"))


def min_p(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Drop tokens whose probability is below p times the most likely token's."""
    if p <= 0.0:
        return logits
    probs = logits.softmax(-1)  # [vocab]
    return logits.masked_fill(probs < p * probs.max(), float("-inf"))


def allow_only(logits: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
    """Keep the logits of the ids in `allowed` ([n]); the rest -inf (token healing's mask)."""
    masked = torch.full_like(logits, float("-inf"))  # [vocab]
    masked[allowed] = logits[allowed]
    return masked


def sample(
    logits: torch.Tensor,
    previous: torch.Tensor,
    *,
    temperature: float,
    k: int,
    p: float,
    min_prob: float,
    penalty: float,
    generator: torch.Generator | None = None,
) -> int:
    """The next token id from logits [vocab]; temperature 0 is greedy (argmax)."""
    logits = repetition_penalty(logits.float(), previous, penalty)
    if temperature <= 0.0:
        return int(logits.argmax())
    logits = min_p(top_p(top_k(logits, k), p), min_prob)
    probs = (logits / temperature).softmax(-1)  # [vocab]
    return int(torch.multinomial(probs, 1, generator=generator))


__all__ = ["allow_only", "min_p", "repetition_penalty", "sample", "top_k", "top_p"]

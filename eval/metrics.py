"""pass@k (the unbiased estimator of Chen et al. 2021) and latency percentiles."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from math import comb


def pass_at_k(n: int, c: int, k: int) -> float:
    """Probability that at least one of k samples, drawn from n of which c pass, passes."""
    if k > n:
        raise ValueError(f"k={k} is larger than the {n} samples")
    if n - c < k:
        return 1.0
    return 1.0 - comb(n - c, k) / comb(n, k)


def mean_pass_at_k(counts: Sequence[tuple[int, int]], k: int) -> float:
    """Mean pass@k over tasks given (samples, passed) per task."""
    if not counts:
        return 0.0
    return sum(pass_at_k(n, c, k) for n, c in counts) / len(counts)


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile, q in [0, 100], linearly interpolated between the two nearest values
    (`statistics.quantiles`' inclusive method, numpy's default); NaN for no values."""
    if not values:
        return float("nan")
    if len(values) == 1 or q <= 0:
        return float(min(values))
    if q >= 100:
        return float(max(values))
    # 1000 cut points make every tenth of a percent a cut point: q = 95 is cut 950.
    return statistics.quantiles(values, n=1000, method="inclusive")[round(q * 10) - 1]


def levenshtein(a: str, b: str) -> int:
    """Edits (insert, delete, substitute one character) that turn `a` into `b`; O(len(a) * len(b))."""
    if len(a) < len(b):
        a, b = b, a
    previous = list(range(len(b) + 1))
    for i, char_a in enumerate(a, 1):
        current = [i]
        for j, char_b in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (char_a != char_b)))
        previous = current
    return previous[-1]


def edit_similarity(got: str, want: str) -> float:
    """1 - Levenshtein distance / the longer length: 1.0 is the same text, 0.0 nothing in common
    (the measure of CrossCodeEval and RepoBench)."""
    longest = max(len(got), len(want))
    return 1.0 if not longest else 1.0 - levenshtein(got, want) / longest

"""Means with cluster-robust standard errors, and the 2-SE rule the reports use.

Rounds of one prompt share a context, so positions are not independent; the
unit of repetition is the (seed, prompt) pair.  ``cluster_mean`` returns the
pooled mean and its cluster-robust (sandwich) standard error.
"""

from __future__ import annotations

import math
from collections.abc import Iterable


def mean_se(values: list[float]) -> tuple[float | None, float | None]:
    """(mean, standard error of the mean) of independent values; SE None below 2 values."""
    n = len(values)
    if not n:
        return None, None
    mean = sum(values) / n
    if n < 2:
        return mean, None
    var = sum((v - mean) ** 2 for v in values) / (n - 1)
    return mean, math.sqrt(var / n)


def cluster_mean(pairs: Iterable[tuple[object, float]]) -> tuple[float | None, float | None, int, int]:
    """(mean, SE, values, clusters) of values given as (cluster, value); SE None below 2 clusters."""
    sums: dict[object, list[float]] = {}
    for c, v in pairs:
        if v is None:
            continue
        s = sums.setdefault(c, [0.0, 0])
        s[0] += v
        s[1] += 1
    n = sum(s[1] for s in sums.values())
    if not n:
        return None, None, 0, 0
    mean = sum(s[0] for s in sums.values()) / n
    k = len(sums)
    if k < 2:
        return mean, None, n, k
    # Σ_c (Σ_i (v_i − mean))² / n², with the small-sample factor k / (k − 1)
    var = sum((s[0] - s[1] * mean) ** 2 for s in sums.values()) / n**2 * k / (k - 1)
    return mean, math.sqrt(var), n, k


def distinguishable(diff: float | None, se: float | None) -> bool:
    """A difference is stated only when it exceeds twice its standard error."""
    return diff is not None and se is not None and se > 0 and abs(diff) > 2 * se


def ratio_se(a: float, se_a: float, b: float, se_b: float) -> float:
    """SE of a / b for independent a and b (first-order propagation)."""
    return abs(a / b) * math.sqrt((se_a / a) ** 2 + (se_b / b) ** 2) if a and b else float("nan")


def ratio_of_sums(triples: Iterable[tuple[object, float, float]]) -> tuple[float | None, float | None]:
    """(Σ num / Σ den, cluster-robust SE) from (cluster, num, den) per unit, linearised at the estimate."""
    triples = list(triples)
    den = sum(d for _, _, d in triples)
    if not den:
        return None, None
    r = sum(n for _, n, _ in triples) / den
    _, se, _, _ = cluster_mean((c, n - r * d) for c, n, d in triples)
    return r, (se * len(triples) / den if se is not None else None)

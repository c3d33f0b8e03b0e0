"""Batched verification: several sequences' target forward passes in one.

Each agent's session keeps its own target KV cache (``agent.lm.CachedLM``).
To verify several agents' drafts at once, ``batched_logits`` rolls every
cache back to what its sequence shares, left-pads the caches to a common
length, right-pads the new tokens, runs **one** forward pass with an
attention mask that hides the padding and per-row position ids, and hands
each session back its own cache (its real positions only) and the logits of
its rows.  The result equals the separate forward passes up to
floating-point reduction order (tests/controller/test_batch.py checks it).

Cost beyond the forward pass: one copy of the batch's caches in and one
out, O(Σ cached positions) memory traffic, small next to reading the
weights once for all rows instead of once per row (BENCHMARKS.md,
``specbed bench verify``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from agent.lm import CachedLM


@torch.no_grad()
def batched_logits(
    lms: Sequence[CachedLM], sequences: Sequence[list[int]], starts: Sequence[int]
) -> list[torch.Tensor]:
    """``[lm.logits(seq, start) for ...]`` in one forward pass of the shared model.

    All ``lms`` must wrap the same model.  Returns, per row, logits
    [len(sequence) - start, V]: row j predicts token start + j + 1.
    """
    if not (len(lms) == len(sequences) == len(starts)):
        raise ValueError("lms, sequences and starts differ in length")
    if len(lms) == 1:
        return [lms[0].logits(sequences[0], starts[0])]
    model = lms[0].model
    if any(lm.model is not model for lm in lms):
        raise ValueError("batched rows must share one model")
    device = lms[0].device
    news, keeps = [], []
    for lm, seq, start in zip(lms, sequences, starts, strict=True):
        news.append(lm.prepare(seq, start))
        keeps.append(len(lm.fed))
    batch = len(lms)
    past_max, new_max = max(keeps), max(len(n) for n in news)
    ids = torch.zeros(batch, new_max, dtype=torch.long, device=device)
    mask = torch.zeros(batch, past_max + new_max, dtype=torch.long, device=device)
    positions = torch.zeros(batch, new_max, dtype=torch.long, device=device)
    for i, (keep, new) in enumerate(zip(keeps, news, strict=True)):
        ids[i, : len(new)] = torch.tensor(new, dtype=torch.long, device=device)
        mask[i, past_max - keep : past_max + len(new)] = 1
        positions[i] = keep + torch.arange(new_max, device=device)
    cache = _stack_caches([lm.cache for lm in lms], keeps, past_max)
    out = model(input_ids=ids, attention_mask=mask, position_ids=positions, past_key_values=cache, use_cache=True)
    layers = _layers(out.past_key_values)
    from transformers import DynamicCache

    results = []
    for i, (lm, keep, new, start) in enumerate(zip(lms, keeps, news, starts, strict=True)):
        lo, hi = past_max - keep, past_max + len(new)
        lm.cache = DynamicCache([(k[i : i + 1, :, lo:hi].clone(), v[i : i + 1, :, lo:hi].clone()) for k, v in layers])
        lm.fed.extend(new)
        results.append(out.logits[i, start - keep : len(new)])
    return results


def _layers(cache) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(layer.keys, layer.values) for layer in cache.layers if layer.is_initialized]


def _stack_caches(caches: list, keeps: list[int], past_max: int):
    """One DynamicCache [B, H, past_max, D] per layer, each row's positions right-aligned."""
    from transformers import DynamicCache

    if past_max == 0:
        return DynamicCache()
    per_row = [_layers(c) for c in caches]
    n_layers = max(len(rows) for rows in per_row)
    ref = next(rows for rows in per_row if len(rows) == n_layers)
    stacked = []
    for layer in range(n_layers):
        ks, vs = [], []
        for rows, keep in zip(per_row, keeps, strict=True):
            if keep == 0 or len(rows) <= layer:  # an empty cache: all padding
                k0, v0 = ref[layer]
                ks.append(k0.new_zeros(1, k0.shape[1], past_max, k0.shape[3]))
                vs.append(v0.new_zeros(1, v0.shape[1], past_max, v0.shape[3]))
                continue
            k, v = rows[layer]
            ks.append(F.pad(k, (0, 0, past_max - keep, 0)))
            vs.append(F.pad(v, (0, 0, past_max - keep, 0)))
        stacked.append((torch.cat(ks), torch.cat(vs)))
    return DynamicCache(stacked)

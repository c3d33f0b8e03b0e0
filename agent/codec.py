"""The top-K codec shared by agent and controller: rebuilding q̃ from a payload.

ALGORITHMS.md section 2.  The controller reconstructs the drafter's
distribution from the K values on the wire; the agent runs the same code on
its own payload to measure how far the reconstruction is from the
distribution it really sampled (the total-variation distance it reports).
"""

from __future__ import annotations

import torch

from agent.protocol.wire import RECONSTRUCTIONS


def reconstruct(
    topk_indices: torch.Tensor,  # [γ, K] long
    topk_probs: torch.Tensor,  # [γ, K] float
    vocab_size: int,
    strategy: str,
) -> torch.Tensor:
    """Dense q̃ [γ, V] float32 from a top-K payload.

    ``renormalise``: the top-K values rescaled to sum to 1, zero elsewhere
    (exactly q^K when the drafter sampled top-K).  ``tail-fill``: the K
    values kept, the missing mass 1 - Σ top-K spread uniformly over the other
    V - K tokens.
    """
    if strategy not in RECONSTRUCTIONS:
        raise ValueError(f"reconstruction must be one of {RECONSTRUCTIONS}, got {strategy!r}")
    values = topk_probs.float()
    gamma, k = values.shape
    if strategy == "renormalise":
        values = values / values.sum(dim=-1, keepdim=True)
        q = torch.zeros(gamma, vocab_size, dtype=torch.float32, device=values.device)
    else:
        tail = (1.0 - values.sum(dim=-1, keepdim=True)).clamp(min=0)
        fill = tail / max(vocab_size - k, 1)
        q = fill.expand(gamma, vocab_size).clone()
    q.scatter_(1, topk_indices.long(), values)
    return q


def tail_mass(topk_probs: torch.Tensor) -> torch.Tensor:
    """[γ] probability mass outside the top K (from the wire values)."""
    return (1.0 - topk_probs.float().sum(dim=-1)).clamp(min=0)


def total_variation(q: torch.Tensor, q_tilde: torch.Tensor) -> torch.Tensor:
    """[γ] total-variation distance ½ Σ |q − q̃| between rows of two distributions."""
    return 0.5 * (q.double() - q_tilde.double()).abs().sum(dim=-1)

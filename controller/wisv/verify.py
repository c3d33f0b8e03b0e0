"""Semantic greedy verification: strict greedy acceptance, plus the head's say at mismatches.

Words as in ALGORITHMS.md: x_i the draft token, p_i the target's
distribution at draft position i.  Strict greedy keeps x_i iff x_i = argmax
p_i.  Semantic keeps x_i also when it is a mismatch and the decision head
accepts it (``semantic_ok[i]``); the first position kept by neither rule
ends the round with the correction argmax p_i, and a round whose γ drafts
are all kept ends with the bonus argmax p_{γ+1}.  With ``semantic_ok`` all
False this is exactly strict greedy verification.
"""

from __future__ import annotations

import torch


def mismatches(drafts: torch.Tensor, logits: torch.Tensor) -> list[int]:
    """Draft positions i with x_i != argmax p_i (drafts [γ] long, logits [γ + 1, V])."""
    target = logits[: len(drafts)].argmax(-1)
    return [int(i) for i in torch.nonzero(drafts != target).flatten()]


def semantic_greedy_verify(
    drafts: torch.Tensor,  # [γ] long
    logits: torch.Tensor,  # [γ + 1, V]
    semantic_ok: torch.Tensor,  # [γ] bool: the head accepts the mismatch at i
) -> tuple[int, int, int]:
    """(n_accepted, next_token, n_semantic): drafts kept, the correction or bonus, how many the head kept."""
    gamma = len(drafts)
    target = logits.argmax(-1)  # [γ + 1]
    match = drafts == target[:gamma]
    kept = match | semantic_ok
    rejected = torch.nonzero(~kept).flatten()
    n = int(rejected[0]) if len(rejected) else gamma
    return n, int(target[n]), int((~match[:n]).sum())

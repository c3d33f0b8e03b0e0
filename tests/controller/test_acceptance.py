"""Exact expected acceptance Σ min(p, q), and the top-K counterfactual, against the verifier itself."""

from __future__ import annotations

import pytest
import torch

from controller.acceptance import expected_acceptance, round_expectations, topk_expected_acceptance
from controller.verify import speculative_verify


def _dists(seed: int, gamma: int = 3, vocab: int = 50) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    p = torch.softmax(torch.randn(gamma + 1, vocab, generator=g) * 2, dim=-1)
    q = torch.softmax(torch.randn(gamma, vocab, generator=g) * 2, dim=-1)
    return p, q


def test_expected_acceptance_matches_the_verifiers_frequency():
    """α = Σ min(p, q): the first draft's acceptance frequency over 20,000 seeded verifications."""
    p, q = _dists(0, gamma=1)
    alpha = expected_acceptance(p, q)[0]
    gen = torch.Generator().manual_seed(1)
    accepted = 0
    trials = 20_000
    for _ in range(trials):
        x = torch.multinomial(q[0], 1, generator=gen)
        n, _ = speculative_verify(x, q, p, gen)
        accepted += n
    se = (alpha * (1 - alpha) / trials) ** 0.5
    assert abs(accepted / trials - alpha) < 4 * se  # fixed seeds; 4 SE


def test_topk_counterfactual_is_the_acceptance_of_the_renormalised_wire_values():
    p, q = _dists(2)
    got = topk_expected_acceptance(p, q, "float16", ks=(1, 4, 50))
    for k in (1, 4):
        values, idx = torch.topk(q, k, dim=-1)
        qk = torch.zeros_like(q).scatter_(1, idx, values.half().float())
        qk = qk / qk.sum(dim=-1, keepdim=True)
        assert got[str(k)] == pytest.approx(expected_acceptance(p, qk), abs=1e-6)
    # K = V: only the float16 rounding separates it from the dense value
    assert got["50"] == pytest.approx(expected_acceptance(p, q), abs=1e-3)
    # K = 1: the target's probability of the drafter's argmax
    assert got["1"] == pytest.approx(p[:3].gather(1, q.argmax(-1, keepdim=True)).squeeze(1).tolist(), abs=1e-6)


def test_round_expectations_only_where_q_is_exact():
    p, q = _dists(3)
    assert set(round_expectations(p, q, True, "full")) == {"expected_acceptance", "expected_acceptance_topk"}
    assert set(round_expectations(p, q, False, "top-k")) == {"expected_acceptance"}
    assert round_expectations(p, q, False, "full") == {}  # q̃ is a reconstruction: not the sampled q

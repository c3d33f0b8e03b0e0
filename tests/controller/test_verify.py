"""The verifier: losslessness (statistical), greedy rule, reconstruction.

Statistical tests use fixed seeds.  Tolerances: the emitted-token
histogram must pass a chi-square goodness-of-fit test against p at
significance 0.001, and the acceptance rate must lie within 4 standard
errors of sum(min(p, q)).
"""

from __future__ import annotations

import math

import torch

from agent.drafter import DraftSettings, select_token
from controller.verify import greedy_verify, reconstruct, speculative_verify, tail_mass

# chi-square critical values at significance 0.001 by degrees of freedom
CHI2_CRIT_0_001 = {4: 18.467, 5: 20.515, 7: 24.322}


def random_dist(v: int, gen: torch.Generator, sharpness: float = 2.0) -> torch.Tensor:
    return torch.softmax(sharpness * torch.randn(v, generator=gen, dtype=torch.float64), dim=0)


def chi_square(counts: torch.Tensor, probs: torch.Tensor) -> float:
    expected = probs * counts.sum()
    return float(((counts - expected) ** 2 / expected).sum())


def run_trials(p: torch.Tensor, q: torch.Tensor, n: int, seed: int, q_sample: torch.Tensor | None = None):
    """Draft with q (or q_sample), verify against p; returns first-token counts and acceptance of draft 1."""
    gen = torch.Generator().manual_seed(seed)
    gamma, v = q.shape
    counts = torch.zeros(v, dtype=torch.float64)
    accepted_first = 0
    sample_from = q if q_sample is None else q_sample
    for _ in range(n):
        drafts = torch.multinomial(sample_from, 1, generator=gen).squeeze(1)
        n_acc, nxt = speculative_verify(drafts, q, p, gen)
        first = int(drafts[0]) if n_acc > 0 else nxt
        counts[first] += 1
        accepted_first += n_acc > 0
    return counts, accepted_first / n


def test_first_token_follows_p_and_acceptance_is_sum_min():
    gen = torch.Generator().manual_seed(1234)
    v, gamma, n = 6, 3, 30000
    p = torch.stack([random_dist(v, gen) for _ in range(gamma + 1)])
    q = torch.stack([random_dist(v, gen) for _ in range(gamma)])
    counts, alpha = run_trials(p, q, n, seed=7)
    assert chi_square(counts, p[0]) < CHI2_CRIT_0_001[v - 1]
    expected_alpha = float(torch.minimum(p[0], q[0]).sum())
    se = math.sqrt(expected_alpha * (1 - expected_alpha) / n)
    assert abs(alpha - expected_alpha) < 4 * se, (alpha, expected_alpha)


def test_a_biased_verifier_would_fail_the_same_test():
    """The chi-square test has power: accepting every draft emits q, not p."""
    gen = torch.Generator().manual_seed(1234)
    v, n = 6, 30000
    p = random_dist(v, gen)
    q = random_dist(v, gen)
    draws = torch.multinomial(q, n, replacement=True, generator=torch.Generator().manual_seed(3))
    counts = torch.bincount(draws, minlength=v).double()
    assert chi_square(counts, p) > CHI2_CRIT_0_001[v - 1]


def test_bonus_token_follows_p_next_when_all_accepted():
    gen = torch.Generator().manual_seed(99)
    v, n = 5, 20000
    p0 = random_dist(v, gen)
    p = torch.stack([p0, random_dist(v, gen)])
    q = p0.unsqueeze(0).clone()  # q == p: every draft is accepted
    rng = torch.Generator().manual_seed(5)
    counts = torch.zeros(v, dtype=torch.float64)
    for _ in range(n):
        drafts = torch.multinomial(q, 1, generator=rng).squeeze(1)
        n_acc, nxt = speculative_verify(drafts, q, p, rng)
        assert n_acc == 1
        counts[nxt] += 1
    assert chi_square(counts, p[1]) < CHI2_CRIT_0_001[v - 1]


def test_top_k_sampling_with_renormalised_reconstruction_is_lossless():
    """Drafter samples q^K from the wire-rounded top K; the server rebuilds it exactly."""
    gen = torch.Generator().manual_seed(42)
    v, k, n = 8, 3, 30000
    p = torch.stack([random_dist(v, gen), random_dist(v, gen)])
    q_full = random_dist(v, gen).float()
    settings = DraftSettings(temperature=1.0, top_k=k, sampling="top-k", prob_dtype="float16", index_dtype="uint8")
    rng = torch.Generator().manual_seed(11)
    counts = torch.zeros(v, dtype=torch.float64)
    accepted = 0
    for _ in range(n):
        token, qx, idx, wire = select_token(q_full, settings, rng)
        q_tilde = reconstruct(idx.unsqueeze(0), wire.unsqueeze(0), v, "renormalise")
        assert abs(float(q_tilde[0, token]) - qx) < 1e-6  # the server sees the sampled distribution
        n_acc, nxt = speculative_verify(torch.tensor([token]), q_tilde, p, rng, draft_token_probs=torch.tensor([qx]))
        counts[token if n_acc else nxt] += 1
        accepted += n_acc
    assert chi_square(counts, p[0]) < CHI2_CRIT_0_001[v - 1]
    q_k = reconstruct(idx.unsqueeze(0), wire.unsqueeze(0), v, "renormalise")[0].double()
    alpha_k = float(torch.minimum(p[0], q_k).sum())
    se = math.sqrt(alpha_k * (1 - alpha_k) / n)
    assert abs(accepted / n - alpha_k) < 4 * se


def test_greedy_verify():
    p = torch.zeros(4, 10)
    p[0, 3] = p[1, 5] = p[2, 7] = p[3, 1] = 1.0
    assert greedy_verify(torch.tensor([3, 5, 7]), p) == (3, 1)  # all accepted, bonus argmax p_4
    assert greedy_verify(torch.tensor([3, 4, 7]), p) == (1, 5)  # mismatch at 2, correction 5
    assert greedy_verify(torch.tensor([0, 5, 7]), p) == (0, 3)


def test_reconstruction_strategies():
    idx = torch.tensor([[2, 0, 5]])
    vals = torch.tensor([[0.5, 0.2, 0.1]])
    renorm = reconstruct(idx, vals, 8, "renormalise")
    fill = reconstruct(idx, vals, 8, "tail-fill")
    assert torch.allclose(renorm.sum(-1), torch.ones(1))
    assert torch.allclose(fill.sum(-1), torch.ones(1))
    assert torch.allclose(renorm[0, [2, 0, 5]], vals[0] / 0.8)
    assert torch.allclose(fill[0, [2, 0, 5]], vals[0])
    assert torch.allclose(fill[0, [1, 3, 4, 6, 7]], torch.full((5,), 0.2 / 5))
    assert (renorm[0, [1, 3, 4, 6, 7]] == 0).all()
    assert torch.allclose(tail_mass(vals), torch.tensor([0.2]))


def test_same_seed_same_result():
    gen = torch.Generator().manual_seed(0)
    p = torch.stack([random_dist(50, gen) for _ in range(5)])
    q = torch.stack([random_dist(50, gen) for _ in range(4)])
    drafts = torch.tensor([1, 2, 3, 4])
    a = [speculative_verify(drafts, q, p, torch.Generator().manual_seed(s)) for s in range(20)]
    b = [speculative_verify(drafts, q, p, torch.Generator().manual_seed(s)) for s in range(20)]
    assert a == b
    assert len(set(a)) > 1  # the seed matters

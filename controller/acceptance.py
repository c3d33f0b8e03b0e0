"""Exact expected acceptance per draft position: α_i = Σ_x min(p_i(x), q_i(x)).

Speculative sampling accepts draft i with probability min(1, p(x)/q(x)) for
x ~ q, so its expected acceptance is Σ_x min(p(x), q(x)) (Leviathan et al.
2023, section 3.4).  Recording α_i beside the accept/reject coin flip turns
a Bernoulli outcome into its expectation: the same quantity with far less
variance.  Where the verifier holds the dense q the drafter sampled (a dense
payload, or a top-K payload sampled top-K, whose renormalised wire values are
exactly the sampled distribution), α_i is measured on the round itself.

On a dense round the same positions also give, for every K, the expected
acceptance had the drafter sampled its top K as sent on the wire
(``sampling: top-k``, the TK-SLT scheme): the paired comparison of top-K
against the dense baseline on identical positions.  With ``sampling: full``
the payload carries the exact q(x), so the expected acceptance is the dense
one for every K.
"""

from __future__ import annotations

import torch

from agent.drafter import TORCH_PROB_DTYPES

#: K values at which a dense round records the top-K counterfactual.
COUNTERFACTUAL_KS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 1024)


def expected_acceptance(p: torch.Tensor, q: torch.Tensor) -> list[float]:
    """[γ] Σ_x min(p, q) per row; ``p`` [≥γ, V] target, ``q`` [γ, V] the distribution drafts were drawn from."""
    gamma = q.shape[0]
    return torch.minimum(p[:gamma].double(), q.double()).sum(dim=-1).tolist()


def topk_expected_acceptance(
    p: torch.Tensor,  # [≥γ, V] target probabilities
    q: torch.Tensor,  # [γ, V] the drafter's dense distribution
    prob_dtype: str = "float16",
    ks: tuple[int, ...] = COUNTERFACTUAL_KS,
) -> dict[str, list[float]]:
    """{K: [γ] expected acceptance when drafting from top-K of q, rounded to ``prob_dtype`` and renormalised}."""
    gamma, vocab = q.shape
    p = p[:gamma].double()
    kmax = min(max(ks), vocab)
    values, indices = torch.topk(q.float(), kmax, dim=-1)  # sorted, descending
    wire = values.to(TORCH_PROB_DTYPES[prob_dtype]).double()
    p_top = torch.gather(p, 1, indices)
    out = {}
    for k in ks:
        k = min(k, vocab)
        qk = wire[:, :k] / wire[:, :k].sum(dim=-1, keepdim=True)
        out[str(k)] = torch.minimum(p_top[:, :k], qk).sum(dim=-1).tolist()
    return out


def round_expectations(p: torch.Tensor, q: torch.Tensor, dense: bool, sampling: str) -> dict:
    """The RoundRecord fields for one sampled round; empty when q is only a reconstruction."""
    if dense:
        return {
            "expected_acceptance": expected_acceptance(p, q),
            "expected_acceptance_topk": topk_expected_acceptance(p, q),
        }
    if sampling == "top-k":
        return {"expected_acceptance": expected_acceptance(p, q)}
    return {}

"""The verifier: lossless speculative sampling and top-K reconstruction.

Leviathan et al., "Fast Inference from Transformers via Speculative
Decoding" (2023), and Chen et al., "Accelerating Large Language Model
Decoding with Speculative Sampling" (2023); ALGORITHMS.md sections 1-2.

Words, fixed once (as in vLLM's rejection sampler): *accepted* tokens are
drafts the target keeps; a *recovered* token is sampled from
normalize(max(0, p - q)) after a rejection; a *bonus* token is sampled from
p_{γ+1} when every draft was accepted.  ``next_token`` is whichever of the
two a round ends with.
"""

from __future__ import annotations

import torch

from agent.codec import RECONSTRUCTIONS, reconstruct, tail_mass

__all__ = ["RECONSTRUCTIONS", "greedy_verify", "reconstruct", "speculative_verify", "tail_mass"]


def speculative_verify(
    draft_tokens: torch.Tensor,  # [γ] long, x_1..x_γ
    q: torch.Tensor,  # [γ, V] draft probabilities (dense, possibly reconstructed)
    p: torch.Tensor,  # [γ + 1, V] target probabilities, temperature applied
    generator: torch.Generator,
    draft_token_probs: torch.Tensor | None = None,  # [γ] exact q_i(x_i), overrides q[i, x_i]
    uniforms: torch.Tensor | None = None,  # [γ] U(0, 1) to use instead of the generator's
    exponentials: torch.Tensor | None = None,  # [V] Exp(1): next token = argmax(dist / e)
) -> tuple[int, int]:
    """Accept a prefix of the drafts; returns (n_accepted, next_token).

    Draft i is accepted with probability min(1, p_i(x_i) / q_i(x_i)).  The
    emitted tokens are distributed exactly as samples from p when q is the
    distribution the drafts were drawn from.  With a reconstructed q̃, pass
    the exact q_i(x_i) as ``draft_token_probs``: the acceptance test then
    stays exact and only the recovered token's distribution depends on q̃.
    Consumes γ uniforms and one categorical draw of ``generator`` per call,
    so a seeded run is reproducible.  Given ``uniforms`` and ``exponentials``
    (the device verifier's draws, ``controller.device_verify``) it uses those
    instead, so both paths can be compared on the same randomness.
    """
    gamma = int(draft_tokens.shape[0])
    rows = torch.arange(gamma)
    p64, q64 = p.double(), q.double()
    p_x = p64[rows, draft_tokens]
    q_x = q64[rows, draft_tokens] if draft_token_probs is None else draft_token_probs.double()
    r = torch.rand(gamma, generator=generator, dtype=torch.float64) if uniforms is None else uniforms.double()
    ratio = torch.where(q_x > 0, p_x / q_x.clamp(min=1e-300), torch.ones_like(p_x))
    rejected = (r >= ratio.clamp(max=1.0)).nonzero()
    n = int(rejected[0]) if rejected.numel() else gamma
    if n == gamma:
        dist = p64[gamma]
    else:
        dist = (p64[n] - q64[n]).clamp(min=0)
        if not dist.sum() > 0:
            # p_n <= q̃_n everywhere: only possible with a reconstructed q̃
            # (with the true q a rejection has probability 0 then); fall back
            # to the target's own distribution.
            dist = p64[n]
    if exponentials is not None:
        return n, int((dist / exponentials.double()).argmax())
    next_token = int(torch.multinomial(dist / dist.sum(), 1, generator=generator))
    return n, next_token


def greedy_verify(
    draft_tokens: torch.Tensor,  # [γ] long
    p: torch.Tensor,  # [γ + 1, V] target logits or probabilities
) -> tuple[int, int]:
    """Temperature 0: accept while x_i == argmax p_i; next token is argmax at the first mismatch."""
    target = p.argmax(dim=-1)  # [γ + 1]
    mismatch = (draft_tokens != target[:-1]).nonzero()
    n = int(mismatch[0]) if mismatch.numel() else int(draft_tokens.shape[0])
    return n, int(target[n])

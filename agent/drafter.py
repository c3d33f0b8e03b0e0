"""The drafter: proposes γ tokens per round and packs what the verifier needs.

Words as in ALGORITHMS.md: q_i is the drafter's distribution at draft
position i (temperature applied), x_i the drafted token.  Two sampling modes:

``full``
    x_i ~ q_i.  The payload carries q_i(x_i) exactly and the top K of q_i;
    the server reconstructs the rest (renormalise or tail-fill).
``top-k``
    x_i ~ q_i^K, the top-K values *as rounded to the wire dtype*,
    renormalised.  The server rebuilds q_i^K from the same rounded values,
    so verification stays exactly lossless; only the acceptance rate moves.

At temperature 0 the drafter takes the argmax (greedy) and the payload still
carries the top K of the temperature-1 distribution.

With index dtype ``none`` the payload is dense: K equals the vocabulary and
every probability travels in token order (the full-distribution baseline).

When sampling a top-K payload, the drafter also rebuilds q̃ from its own payload the way the
server will (``reconstruction``) and reports the total-variation distance
between q̃ and the distribution it sampled, per draft token.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from agent.codec import reconstruct, total_variation
from agent.lm import CachedLM, probs_from_logits
from agent.protocol import DENSE, PROB_DTYPES

TORCH_PROB_DTYPES = {"float16": torch.float16, "float32": torch.float32}


@dataclass(frozen=True)
class DraftSettings:
    """How to draft and how to pack: ``agent.settings.Settings.draft_settings()`` (validated there), or code's own."""

    temperature: float = 0.0
    top_k: int = 8
    sampling: str = "full"  # "full" | "top-k"
    prob_dtype: str = "float16"
    index_dtype: str = "uint16"  # or "none": dense, top_k is the vocabulary
    reconstruction: str = "tail-fill"  # what the server rebuilds q from (sampling "full")


@dataclass
class Draft:
    """One round's drafts, ready for ``DraftPayload``."""

    token_ids: np.ndarray  # [γ] int64
    draft_probs: np.ndarray  # [γ] float32, q_i(x_i) of the distribution sampled
    topk_indices: np.ndarray  # [γ, K] int64
    topk_probs: np.ndarray  # [γ, K] wire dtype (float16 or float32)
    tv: np.ndarray | None = None  # [γ] float32 TV(sampled q, server's q̃); None when greedy


def select_token(
    probs: torch.Tensor,  # [V] float32, q_i
    settings: DraftSettings,
    generator: torch.Generator,
) -> tuple[int, float, torch.Tensor, torch.Tensor]:
    """Draw x_i; returns (x_i, q(x_i), top-K indices [K], top-K values [K] in wire dtype)."""
    if settings.index_dtype == DENSE:
        values, indices = probs, torch.arange(probs.shape[0])
    else:
        values, indices = torch.topk(probs, settings.top_k)
    wire = values.to(TORCH_PROB_DTYPES[settings.prob_dtype])
    if settings.temperature == 0:
        # the argmax of q itself: a dense payload's values are in token order, not sorted
        token = int(probs.argmax())
        return token, float(probs[token]), indices, wire
    if settings.sampling == "top-k":
        dist = wire.float()
        dist = dist / dist.sum()
        j = int(torch.multinomial(dist, 1, generator=generator))
        return int(indices[j]), float(dist[j]), indices, wire
    token = int(torch.multinomial(probs, 1, generator=generator))
    return token, float(probs[token]), indices, wire


class Drafter:
    """Drafts from one model with a KV cache; one request (prompt) at a time."""

    def __init__(self, model: torch.nn.Module, settings: DraftSettings, device: str = "cpu") -> None:
        self.settings = settings
        self.lm = CachedLM(model, device)
        self.tokens: list[int] = []
        # on the device of the probabilities it samples (CUDA generators are Philox)
        self.generator = torch.Generator(device=torch.device(device))

    def start(self, tokens: list[int], seed: int) -> None:
        """Begin a request from its committed tokens, with a fresh cache and RNG."""
        self.tokens = list(tokens)
        self.lm.reset()
        self.generator.manual_seed(seed)

    def draft(self, draft_length: int) -> Draft:
        """Propose ``draft_length`` tokens after the committed ones."""
        tokens = np.empty(draft_length, dtype=np.int64)
        qx = np.empty(draft_length, dtype=np.float32)
        # A dense payload is the distribution itself: nothing to reconstruct, no O(V) TV per token.
        measure = self.settings.temperature > 0 and self.settings.index_dtype != DENSE
        idx, vals, tvs = [], [], []  # on the model's device until one copy each at the end
        seq = list(self.tokens)
        for i in range(draft_length):
            logits = self.lm.logits(seq, len(seq) - 1)[-1]
            probs = probs_from_logits(logits, self.settings.temperature)
            token, q, top_idx, top_vals = select_token(probs, self.settings, self.generator)
            tokens[i], qx[i] = token, q
            idx.append(top_idx)
            vals.append(top_vals)
            if measure:
                tvs.append(self._tv(probs, top_idx, top_vals))
            seq.append(token)
        idx_host = torch.stack(idx).cpu().numpy().astype(np.int64, copy=False)  # [γ, K]
        vals_host = torch.stack(vals).cpu().numpy().astype(PROB_DTYPES[self.settings.prob_dtype], copy=False)
        tv = torch.stack(tvs).float().cpu().numpy() if measure else None
        return Draft(tokens, qx, idx_host, vals_host, tv)

    def _tv(self, probs: torch.Tensor, top_idx: torch.Tensor, top_vals: torch.Tensor) -> torch.Tensor:
        """TV between the distribution x_i was drawn from and the server's rebuild of it."""
        vocab = probs.shape[0]
        # where the probabilities are (the model's device): no O(V) copy to the host
        idx, vals = top_idx.to(probs.device).unsqueeze(0), top_vals.float().unsqueeze(0)
        if self.settings.sampling == "top-k":
            # drawn from the renormalised wire values; the server renormalises the same values
            sampled = reconstruct(idx, vals, vocab, "renormalise")
            rebuilt = sampled
        else:
            sampled = probs.unsqueeze(0)
            rebuilt = reconstruct(idx, vals, vocab, self.settings.reconstruction)
        return total_variation(sampled, rebuilt)[0]

    def accept(self, accepted: list[int], next_token: int) -> None:
        """Apply a verdict: keep the accepted drafts, roll the cache back, append the new token."""
        self.tokens.extend(accepted)
        self.tokens.append(next_token)
        # Cache positions past the accepted drafts hold rejected tokens.
        self.lm.rollback(min(len(self.lm.fed), len(self.tokens) - 1))

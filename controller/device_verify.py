"""Verification of a ragged batch where the target's probabilities are: on the device.

In the words and layout of vLLM's rejection sampler
(``vllm/v1/sample/rejection_sampler.py``): the batch's draft tokens are
flattened into one vector of ``num_tokens`` entries with
``cu_num_draft_tokens`` [B] the cumulative draft counts; each draft is
*accepted* with probability min(1, p(x) / q(x)); at the first rejection a
*recovered* token is drawn from normalize(max(0, p - q)), and when every
draft is accepted a *bonus* token from the last position's p.  A
categorical draw from a distribution d is argmax(d / e) with e ~ Exp(1)
per token (vLLM's exponential race), so no normalisation or host sync is
needed.  q is rebuilt on the device from the top-K payload
(``agent.codec.reconstruct``: renormalise or tail-fill), only for the B
rows that reach a rejection.  Only (n_accepted, next_token) per agent is
copied back.

Randomness: each session has its own generator on the device (Philox on
CUDA), seeded as the host path's, drawing γ uniforms and V exponentials per
round, so a seeded run is reproducible.  ``controller.verify.speculative_verify``
in float64 on the host stays the reference: given the same uniforms and
exponentials it returns the same verdicts (tests/controller/test_device_verify.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from agent.lm import probs_from_logits


@dataclass
class Payload:
    """One agent's drafts as they arrived (host arrays), with what verification needs."""

    drafts: np.ndarray  # [γ] int
    draft_probs: np.ndarray  # [γ] float32, exact q_i(x_i)
    topk_indices: np.ndarray | None  # [γ, K] int; None for a dense payload (K = V, token order)
    topk_probs: np.ndarray  # [γ, K] float16/float32


def rebuild_q(
    indices: torch.Tensor | None, values: torch.Tensor, vocab: int, strategy: str, dtype=torch.float32
) -> torch.Tensor:
    """Dense q̃ [R, V] from top-K rows (indices [R, K], values [R, K]) on their device.

    The same arithmetic as ``agent.codec.reconstruct``: renormalise the K values, or keep them and
    spread 1 - ΣK uniformly over the other V - K tokens (tail-fill).  ``indices`` None: the values
    are the dense distribution already.
    """
    values = values.to(dtype)
    if indices is None:
        return values
    rows, k = values.shape
    if strategy == "renormalise":
        values = values / values.sum(dim=-1, keepdim=True)
        q = torch.zeros(rows, vocab, dtype=dtype, device=values.device)
    else:
        tail = (1.0 - values.sum(dim=-1, keepdim=True)).clamp(min=0)
        q = (tail / max(vocab - k, 1)).expand(rows, vocab).clone()
    return q.scatter_(1, indices.long(), values)


def rejection_sample(
    draft_token_ids: torch.Tensor,  # [num_tokens] long
    cu_num_draft_tokens: torch.Tensor,  # [B] long, cumulative
    draft_token_probs: torch.Tensor,  # [num_tokens] exact q(x)
    target_probs: torch.Tensor,  # [num_tokens, V] p at the draft positions
    bonus_probs: torch.Tensor,  # [B, V] p after the last draft
    topk_indices: torch.Tensor | None,  # [num_tokens, K] (None: topk_probs is dense q)
    topk_probs: torch.Tensor,  # [num_tokens, K] or [num_tokens, V]
    uniforms: torch.Tensor,  # [num_tokens] U(0, 1)
    exponentials: torch.Tensor,  # [B, V] Exp(1)
    strategy: str = "tail-fill",
) -> torch.Tensor:
    """[B, 2] long: (n_accepted, next_token) per request, computed on the tensors' device."""
    dtype = target_probs.dtype
    batch = cu_num_draft_tokens.shape[0]
    num = cu_num_draft_tokens - torch.cat([cu_num_draft_tokens.new_zeros(1), cu_num_draft_tokens[:-1]])
    starts = cu_num_draft_tokens - num
    seg = torch.repeat_interleave(torch.arange(batch, device=num.device), num, output_size=draft_token_ids.shape[0])
    rows = torch.arange(draft_token_ids.shape[0], device=num.device)
    p_x = target_probs[rows, draft_token_ids]
    q_x = draft_token_probs.to(dtype)
    ratio = torch.where(q_x > 0, p_x / q_x.clamp(min=torch.finfo(dtype).tiny), torch.ones_like(p_x))
    rejected = uniforms.to(dtype) >= ratio.clamp(max=1.0)
    first = torch.where(rejected, rows - starts[seg], num[seg])
    n_accepted = num.clone().scatter_reduce_(0, seg, first, reduce="amin", include_self=True)
    recovered = n_accepted < num
    at = (starts + n_accepted).clamp(max=max(draft_token_ids.shape[0] - 1, 0))  # the rejected draft's row
    if draft_token_ids.shape[0]:
        idx = None if topk_indices is None else topk_indices[at]
        q = rebuild_q(idx, topk_probs[at], target_probs.shape[1], strategy, dtype)  # [B, V]
        p = target_probs[at]
        residual = (p - q).clamp(min=0)
        # p <= q̃ everywhere (only with a reconstructed q̃): fall back to p, as the host reference does
        residual = torch.where(residual.sum(dim=-1, keepdim=True) > 0, residual, p)
        dist = torch.where(recovered[:, None], residual, bonus_probs)
    else:
        dist = bonus_probs
    next_token = (dist / exponentials.to(dtype)).argmax(dim=-1)
    return torch.stack([n_accepted, next_token], dim=1)


def greedy_sample(
    draft_token_ids: torch.Tensor, cu_num_draft_tokens: torch.Tensor, target_argmax: torch.Tensor
) -> torch.Tensor:
    """[B, 2]: accept while x_i == argmax p_i; next token is the argmax at the first mismatch.

    ``target_argmax`` is [num_tokens + B]: each request's γ_b + 1 positions in order.
    """
    batch = cu_num_draft_tokens.shape[0]
    num = cu_num_draft_tokens - torch.cat([cu_num_draft_tokens.new_zeros(1), cu_num_draft_tokens[:-1]])
    starts = cu_num_draft_tokens - num
    dev = num.device
    seg = torch.repeat_interleave(torch.arange(batch, device=dev), num, output_size=draft_token_ids.shape[0])
    rows = torch.arange(draft_token_ids.shape[0], device=dev)
    # position of draft row i among the per-request γ_b + 1 target rows
    target_at = rows + seg
    mismatch = draft_token_ids != target_argmax[target_at]
    first = torch.where(mismatch, rows - starts[seg], num[seg])
    n_accepted = num.clone().scatter_reduce_(0, seg, first, reduce="amin", include_self=True)
    next_token = target_argmax[starts + torch.arange(batch, device=dev) + n_accepted]
    return torch.stack([n_accepted, next_token], dim=1)


def session_generator(device: str | torch.device, seed: int) -> torch.Generator:
    """A session's generator on the device that verification runs on (Philox on CUDA)."""
    return torch.Generator(device=torch.device(device)).manual_seed(seed)


def verify_on_device(
    logits: torch.Tensor,  # [B', T, V] target logits, device
    offsets: list[int],  # row b's first position is logits[b, offsets[b]]
    payloads: list[Payload],
    generators: list[torch.Generator],
    temperature: float,
    strategy: str = "tail-fill",
) -> torch.Tensor:
    """The batch's verdicts as a host tensor [B, 2] (n_accepted, next_token): the one copy back."""
    dev = logits.device
    vocab = logits.shape[-1]
    nums = [len(p.drafts) for p in payloads]
    n_tok = sum(nums)
    t_len = logits.shape[1]
    # flat row of each request's γ_b + 1 positions inside logits.view(-1, V); the last one is the bonus row
    flat = np.concatenate(
        [b * t_len + o + np.arange(n + 1) for b, (o, n) in enumerate(zip(offsets, nums, strict=True))]
    )
    bonus_at = np.cumsum([n + 1 for n in nums]) - 1
    draft_at = np.setdiff1d(np.arange(len(flat)), bonus_at)
    dense = payloads[0].topk_indices is None
    greedy = temperature == 0
    parts = [flat, bonus_at, draft_at, np.concatenate([p.drafts for p in payloads]), np.cumsum(nums)]
    if not (greedy or dense):
        parts.append(np.concatenate([p.topk_indices for p in payloads]).ravel())
    ints = torch.from_numpy(np.concatenate([x.astype(np.int64, copy=False).ravel() for x in parts]))
    ints = ints.to(dev, non_blocking=True)  # one copy of every index the batch needs
    pieces = ints.split([len(x.ravel()) for x in parts])
    flat_d, bonus_d, draft_d, drafts_d, cu_d = pieces[:5]
    rows = logits.reshape(-1, vocab).index_select(0, flat_d)  # [num_tokens + B, V]
    if greedy:
        return greedy_sample(drafts_d, cu_d, rows.argmax(dim=-1)).cpu()
    probs = probs_from_logits(rows, temperature)
    floats = np.concatenate(
        [np.concatenate([p.draft_probs for p in payloads]).astype(np.float32)]
        + [np.concatenate([p.topk_probs for p in payloads]).astype(np.float32).ravel()]
    )
    floats_d = torch.from_numpy(floats).to(dev, non_blocking=True)
    qx, vals = floats_d[:n_tok], floats_d[n_tok:].view(n_tok, -1)
    idx = None if dense else pieces[5].view(n_tok, -1)
    uniforms = torch.cat([torch.rand(n, generator=g, device=dev) for n, g in zip(nums, generators, strict=True)])
    exps = torch.stack([torch.empty(vocab, device=dev).exponential_(generator=g) for g in generators])
    out = rejection_sample(
        drafts_d,
        cu_d,
        qx,
        probs.index_select(0, draft_d),
        probs.index_select(0, bonus_d),
        idx,
        vals,
        uniforms,
        exps,
        strategy,
    )
    return out.cpu()


def verify_round(
    core,  # controller.target.StaticTarget
    slots: list,
    sequences: list[list[int]],
    starts: list[int],
    payloads: list[Payload],
    generators: list[torch.Generator],
    temperature: float,
    strategy: str = "tail-fill",
    on_logits=None,  # callable(logits [B', T, V], offsets): measurement after the timed part, or None
) -> tuple[list[tuple[int, int]], int, int]:
    """One batch's target pass and verification: (verdicts, forward-done ns, verified ns).

    ``on_logits`` sees the pass's logits once both times are taken (row b's first
    draft position is ``logits[b, offsets[b]]``), so what it measures is not timed.

    Both times are on ``time.monotonic_ns`` and mark when the device work ended: on CUDA the
    forward's end is read from an event after the verdicts' copy back (which synchronises), so
    ``target_forward`` is not closed before the GPU finished it and no sync splits the two.
    """
    import time

    cuda = core.device.type == "cuda"
    if cuda:
        fwd_done, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    out, offsets = core.forward(slots, sequences, starts)
    if cuda:
        fwd_done.record()
    else:
        t_target = time.monotonic_ns()
    verdicts = verify_on_device(out, offsets, payloads, generators, temperature, strategy)
    if cuda:
        end.record()
        end.synchronize()
    t_verified = time.monotonic_ns()
    if cuda:
        t_target = t_verified - int(fwd_done.elapsed_time(end) * 1e6)
    if on_logits is not None:
        on_logits(out, offsets)
    return [(int(n), int(x)) for n, x in verdicts.tolist()], t_target, t_verified

"""Drafter and KV-cache bookkeeping on a tiny random Llama."""

from __future__ import annotations

import numpy as np
import torch

from agent.drafter import Drafter, DraftSettings
from agent.lm import CachedLM


def greedy_reference(model, tokens: list[int], n: int) -> list[int]:
    """Argmax continuation computed without any cache."""
    seq = list(tokens)
    with torch.no_grad():
        for _ in range(n):
            seq.append(int(model(torch.tensor([seq])).logits[0, -1].argmax()))
    return seq[len(tokens) :]


def test_greedy_drafts_match_uncached_argmax(tiny_pair):
    _, drafter_model = tiny_pair
    d = Drafter(drafter_model.model, DraftSettings(temperature=0, top_k=4, index_dtype="uint8"))
    prompt = [0, 5, 9, 12]
    d.start(prompt, seed=0)
    draft = d.draft(5)
    assert draft.token_ids.tolist() == greedy_reference(drafter_model.model, prompt, 5)
    assert draft.topk_indices[:, 0].tolist() == draft.token_ids.tolist()
    assert draft.topk_probs.dtype.name == "float16"


def test_rollback_then_draft_equals_fresh_start(tiny_pair):
    _, drafter_model = tiny_pair
    settings = DraftSettings(temperature=0, top_k=4, index_dtype="uint8")
    d = Drafter(drafter_model.model, settings)
    prompt = [0, 33, 2, 7]
    d.start(prompt, seed=0)
    first = d.draft(4).token_ids.tolist()
    # accept two drafts, then a correction different from draft 3
    correction = (first[2] + 1) % 64
    d.accept(first[:2], correction)
    assert len(d.lm.fed) <= len(d.tokens) - 1
    again = d.draft(3).token_ids.tolist()
    fresh = Drafter(drafter_model.model, settings)
    fresh.start(prompt + first[:2] + [correction], seed=0)
    assert again == fresh.draft(3).token_ids.tolist()


def test_cached_logits_equal_full_forward(tiny_pair):
    target, _ = tiny_pair
    lm = CachedLM(target.model)
    seq = [0, 1, 2, 3, 4, 5, 6, 7]
    lm.logits(seq[:5], 4)
    rows = lm.logits(seq, 4)  # reuses 4 cached positions
    with torch.no_grad():
        full = target.model(torch.tensor([seq])).logits[0, 4:]
    assert rows.shape == full.shape
    assert torch.allclose(rows, full, atol=1e-5)


def test_sampling_is_reproducible_per_seed(tiny_pair):
    _, drafter_model = tiny_pair
    settings = DraftSettings(temperature=1.0, top_k=8, index_dtype="uint8")
    runs = []
    for seed in (5, 5, 6):
        d = Drafter(drafter_model.model, settings)
        d.start([0, 18], seed=seed)
        runs.append(d.draft(8).token_ids.tolist())
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]


def test_drafter_reports_the_tv_of_the_servers_reconstruction(tiny_pair):
    """TV(q, q̃): the tail mass for renormalise, at most that for tail-fill, 0 when top-K sampled, none when dense."""
    from agent.codec import tail_mass

    drafter_model = tiny_pair[1]
    tvs = {}
    for sampling, recon, index in (
        ("full", "renormalise", "uint8"),
        ("full", "tail-fill", "uint8"),
        ("top-k", "tail-fill", "uint8"),
        ("full", "tail-fill", "none"),
    ):
        k = drafter_model.vocab_size if index == "none" else 4
        settings = DraftSettings(
            temperature=1.0, top_k=k, sampling=sampling, prob_dtype="float32", index_dtype=index, reconstruction=recon
        )
        d = Drafter(drafter_model.model, settings)
        d.start([0, 5, 9], seed=3)
        draft = d.draft(4)
        tvs[(sampling, recon, index)] = draft
    renorm = tvs[("full", "renormalise", "uint8")]
    tail = tail_mass(torch.from_numpy(renorm.topk_probs)).numpy()
    assert np.allclose(renorm.tv, tail, atol=1e-5)
    fill = tvs[("full", "tail-fill", "uint8")]
    assert (fill.tv <= tail_mass(torch.from_numpy(fill.topk_probs)).numpy() + 1e-5).all()
    assert np.allclose(tvs[("top-k", "tail-fill", "uint8")].tv, 0, atol=1e-6)
    assert tvs[("full", "tail-fill", "none")].tv is None

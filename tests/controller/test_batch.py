"""Batched target forward passes against one-by-one ones (tiny random Llama)."""

from __future__ import annotations

import random

import torch

from agent.lm import CachedLM
from controller.batch import batched_logits


def _sequences(vocab: int, rng: random.Random, n: int, lo: int, hi: int) -> list[list[int]]:
    return [[rng.randrange(vocab) for _ in range(rng.randint(lo, hi))] for _ in range(n)]


def test_batched_logits_match_separate_passes_over_rounds(tiny_pair):
    target, _ = tiny_pair
    vocab = target.vocab_size
    rng = random.Random(0)
    n = 4
    batched = [CachedLM(target.model) for _ in range(n)]
    single = [CachedLM(target.model) for _ in range(n)]
    for lm in batched + single:
        lm.reset()
    committed = _sequences(vocab, rng, n, 3, 12)  # unequal prompt lengths
    for _round in range(6):
        # each row drafts its own number of tokens; some rows skip a round
        rows = [i for i in range(n) if rng.random() < 0.8] or [0]
        seqs, starts = [], []
        for i in rows:
            drafts = [rng.randrange(vocab) for _ in range(rng.randint(1, 5))]
            seqs.append(committed[i] + drafts)
            starts.append(len(committed[i]) - 1)
        got = batched_logits([batched[i] for i in rows], seqs, starts)
        for i, seq, start, logits in zip(rows, seqs, starts, got, strict=True):
            want = single[i].logits(seq, start)
            assert logits.shape == want.shape == (len(seq) - start, vocab)
            torch.testing.assert_close(logits, want, atol=2e-4, rtol=1e-4)
            assert batched[i].fed == single[i].fed == seq
            # accept a random prefix of the drafts and a next token (a rollback next round)
            n_draft = len(seq) - len(committed[i])
            keep = rng.randint(0, n_draft)
            committed[i] = seq[: len(committed[i]) + keep] + [rng.randrange(vocab)]


def test_batched_rows_with_empty_caches(tiny_pair):
    target, _ = tiny_pair
    rng = random.Random(1)
    lms = [CachedLM(target.model) for _ in range(3)]
    seqs = _sequences(target.vocab_size, rng, 3, 2, 7)
    got = batched_logits(lms, seqs, [0, 1, 0])
    for seq, start, logits in zip(seqs, [0, 1, 0], got, strict=True):
        ref = CachedLM(target.model)
        torch.testing.assert_close(logits, ref.logits(seq, start), atol=2e-4, rtol=1e-4)

"""The device verifier (controller.device_verify) and the static target (controller.target).

Tolerances: on the same uniforms and exponentials the device path and the
float64 host reference must return the same verdicts in >= 99.9% of
rounds; emitted-token histograms must pass a chi-square goodness-of-fit
test against p at significance 0.001 (fixed seeds); the static target's
logits must equal the eager CachedLM's to 1e-4 in float32.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from agent.codec import reconstruct
from agent.lm import CachedLM
from agent.random_models import random_model
from controller.device_verify import (
    Payload,
    greedy_sample,
    rejection_sample,
    session_generator,
    verify_round,
)
from controller.target import StaticTarget
from controller.verify import greedy_verify, speculative_verify

CHI2_CRIT_0_001 = {5: 20.515}


def _dist(rows: int, v: int, gen: torch.Generator, sharpness: float = 2.5) -> torch.Tensor:
    return torch.softmax(sharpness * torch.randn(rows, v, generator=gen, dtype=torch.float64), dim=-1)


def test_device_verdicts_equal_the_host_reference_on_the_same_draws():
    gen = torch.Generator().manual_seed(11)
    vocab, k = 50, 8
    rounds = agree = 0
    for batch_no in range(300):
        strategy = ("tail-fill", "renormalise")[batch_no % 2]
        gammas = torch.randint(1, 7, (5,), generator=gen).tolist()
        ps, drafts, qx, idx, vals, us, host = [], [], [], [], [], [], []
        for gamma in gammas:
            p, q = _dist(gamma + 1, vocab, gen), _dist(gamma, vocab, gen)
            x = torch.multinomial(q, 1, generator=gen).squeeze(1)
            top_v, top_i = torch.topk(q, k)
            ps.append(p)
            drafts.append(x)
            qx.append(q[torch.arange(gamma), x])
            idx.append(top_i)
            vals.append(top_v.half().float())  # as on the wire
            us.append(torch.rand(gamma, generator=gen, dtype=torch.float64))
        exps = torch.empty(len(gammas), vocab, dtype=torch.float64).exponential_(generator=gen)
        got = rejection_sample(
            torch.cat(drafts),
            torch.tensor(np.cumsum(gammas)),
            torch.cat(qx),
            torch.cat([p[:-1] for p in ps]),
            torch.stack([p[-1] for p in ps]),
            torch.cat(idx),
            torch.cat(vals),
            torch.cat(us),
            exps,
            strategy,
        ).tolist()
        for b in range(len(gammas)):
            q_rebuilt = reconstruct(idx[b], vals[b], vocab, strategy)
            want = speculative_verify(
                drafts[b], q_rebuilt, ps[b], None, draft_token_probs=qx[b], uniforms=us[b], exponentials=exps[b]
            )
            host.append(want)
            rounds += 1
            agree += tuple(got[b]) == want
    assert rounds == 1500
    assert agree / rounds >= 0.999, f"{agree}/{rounds} verdicts agree"


def test_emitted_tokens_follow_p():
    """Drafts from q, verified on the device path: the first two emitted tokens are distributed as p."""
    gen = torch.Generator().manual_seed(5)
    vocab, gamma, n = 6, 3, 20000
    p, q = _dist(gamma + 1, vocab, gen, 1.5).float(), _dist(gamma, vocab, gen, 1.5).float()
    drafts = torch.stack([torch.multinomial(q[i], n, replacement=True, generator=gen) for i in range(gamma)], 1)
    flat = drafts.reshape(-1)
    pos = torch.arange(gamma).repeat(n)
    out = rejection_sample(
        flat,
        torch.arange(1, n + 1) * gamma,
        q[pos, flat],
        p[pos],
        p[gamma].expand(n, vocab),
        None,
        q[pos],  # dense payload: q itself
        torch.rand(n * gamma, generator=gen),
        torch.empty(n, vocab).exponential_(generator=gen),
    )
    n_acc, nxt = out[:, 0], out[:, 1]
    first = torch.where(n_acc >= 1, drafts[:, 0], nxt)
    second = torch.where(n_acc >= 2, drafts[:, 1], nxt)[n_acc >= 1]
    for tokens, target in ((first, p[0]), (second, p[1])):
        counts = torch.bincount(tokens, minlength=vocab).double()
        expected = target.double() * counts.sum()
        chi2 = float(((counts - expected) ** 2 / expected).sum())
        assert chi2 < CHI2_CRIT_0_001[vocab - 1], f"chi-square {chi2:.1f} over {int(counts.sum())} tokens"
    assert 0 < float((n_acc == gamma).float().mean()) < 1  # bonus and recovered tokens both exercised


def test_greedy_sample_matches_greedy_verify():
    gen = torch.Generator().manual_seed(3)
    for _ in range(50):
        gammas = torch.randint(1, 6, (4,), generator=gen).tolist()
        logits = [torch.randn(g + 1, 7, generator=gen) for g in gammas]
        # drafts that mostly follow the argmax, so runs of acceptances happen
        drafts = [
            torch.where(torch.rand(g, generator=gen) < 0.7, lg[:-1].argmax(-1), 0)
            for g, lg in zip(gammas, logits, strict=True)
        ]
        got = greedy_sample(torch.cat(drafts), torch.tensor(np.cumsum(gammas)), torch.cat(logits).argmax(-1))
        want = [greedy_verify(d, lg) for d, lg in zip(drafts, logits, strict=True)]
        assert [tuple(r) for r in got.tolist()] == want


@pytest.mark.parametrize("config", ["tiny", "tiny-qwen2"])
def test_static_target_logits_equal_cached_lm_over_rounds(config):
    """Ragged rows, rollbacks of any length, more sessions than rows, growth past max_len.

    The batches take the rows in order, out of order (both read in place) and as subsets that do
    not start at row 0 (gathered).
    """
    model = random_model(config, "cpu", torch.float32, 0)
    core = StaticTarget(model, "cpu", rows=2, max_len=32)
    slots = [core.slot() for _ in range(3)]
    assert [s.row for s in slots] == [0, 1, 2]
    lms = [CachedLM(model) for _ in slots]
    rng = np.random.default_rng(0)
    committed = [rng.integers(0, 1000, n).tolist() for n in (10, 30, 3)]
    batches = [[0, 1, 2], [2, 0, 1], [1, 2], [0], [2], [1, 0]]
    for r in range(18):
        batch = batches[r % len(batches)] if r >= 2 else [0, 1, 2]
        seqs = [committed[i] + rng.integers(0, 1000, 4).tolist() for i in batch]
        starts = [len(committed[i]) - 1 for i in batch]
        got = core.logits([slots[i] for i in batch], seqs, starts)
        for j, i in enumerate(batch):
            want = lms[i].logits(seqs[j], starts[j])
            assert got[j].shape == want.shape
            torch.testing.assert_close(got[j], want, atol=1e-4, rtol=1e-4)
            committed[i] = seqs[j][: len(committed[i]) + int(rng.integers(0, 5))] + [int(rng.integers(1000))]
    assert core.capacity - 1 >= 3 and core.max_len >= max(len(c) for c in committed)
    slots[0].release()
    assert core.slot().row == slots[0].row  # a released row is reused


def _draft_and_verify(device: str, rounds: int = 6) -> list[tuple[int, int]]:
    from agent.drafter import Drafter, DraftSettings

    target = random_model("tiny-qwen2", device, torch.float32, 0)
    drafter = Drafter(random_model("tiny", device, torch.float32, 1), DraftSettings(temperature=1.0, top_k=8), device)
    core = StaticTarget(target, device, rows=1, max_len=64)
    slot, gen = core.slot(), session_generator(device, 3)
    drafter.start([0, 5, 9, 12], 7)
    eager = CachedLM(target, device)
    verdicts = []
    for _ in range(rounds):
        d = drafter.draft(4)
        seq, start = drafter.tokens + d.token_ids.tolist(), len(drafter.tokens) - 1
        want = eager.logits(seq, start)
        got = core.logits([slot], [seq], [start])[0]
        torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)
        payload = Payload(d.token_ids, d.draft_probs, d.topk_indices, d.topk_probs)
        (n, nxt), *_ = verify_round(core, [slot], [seq], [start], [payload], [gen], 1.0)[0]
        assert 0 <= n <= 4 and 0 <= nxt < 1000
        assert d.tv is not None and (d.tv >= 0).all()
        drafter.accept(d.token_ids[:n].tolist(), nxt)
        verdicts.append((n, nxt))
    return verdicts


def test_drafts_and_verifies_on_cpu_reproducibly():
    assert _draft_and_verify("cpu") == _draft_and_verify("cpu")


@pytest.mark.gpu
def test_drafts_and_verifies_on_cuda():
    """The drafter samples on CUDA, the target replays captured graphs, verification runs on the GPU."""
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    first = _draft_and_verify("cuda")
    assert first == _draft_and_verify("cuda")  # per-session Philox generators: a seeded run repeats

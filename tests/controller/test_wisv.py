"""WISV pieces: semantic greedy verification, the threshold, the head file, the scorer."""

from __future__ import annotations

import pytest
import torch

from controller.verify import greedy_verify
from controller.wisv.head import DecisionHead, load_head, save_head, threshold, token_features
from controller.wisv.tasks import load_answers, score
from controller.wisv.verify import mismatches, semantic_greedy_verify


def test_no_semantic_acceptance_is_strict_greedy():
    gen = torch.Generator().manual_seed(0)
    for _ in range(200):
        gamma = int(torch.randint(1, 8, (1,), generator=gen))
        logits = torch.randn(gamma + 1, 11, generator=gen)
        drafts = torch.where(
            torch.rand(gamma, generator=gen) < 0.6,
            logits[:gamma].argmax(-1),
            torch.randint(0, 11, (gamma,), generator=gen),
        )
        n, nxt, sem = semantic_greedy_verify(drafts, logits, torch.zeros(gamma, dtype=torch.bool))
        assert (n, nxt) == greedy_verify(drafts, logits) and sem == 0


def test_head_acceptance_continues_the_chain():
    logits = torch.eye(5)[[1, 2, 3, 4, 0]] * 10  # argmax: 1, 2, 3, 4, then bonus 0
    drafts = torch.tensor([1, 9 % 5, 3, 0])  # mismatches at 1 and 3
    assert mismatches(drafts, logits) == [1, 3]
    ok = torch.tensor([False, True, False, False])
    assert semantic_greedy_verify(drafts, logits, ok) == (3, 4, 1)  # kept 1 by the head, rejected at 3
    ok[3] = True
    assert semantic_greedy_verify(drafts, logits, ok) == (4, 0, 2)  # all kept: bonus


def test_threshold_loosens_as_the_channel_worsens():
    rates = [8e3, 16e3, 64e3, 256e3, 1e6, 10e6]
    values = [threshold({"rate_bps": r}, "rate", 0.9, 0.5) for r in rates]
    assert values[0] == values[1] == 0.5 and values[-1] == values[-2] == pytest.approx(0.9)
    assert all(a < b for a, b in zip(values[1:-2], values[2:-1], strict=True))
    snrs = [threshold({"snr_db": s}, "snr", 0.9, 0.5) for s in (-5, 0, 10, 20, 30)]
    assert snrs == sorted(snrs) and snrs[0] == 0.5 and snrs[-1] == pytest.approx(0.9)
    assert threshold(None, "rate", 0.9, 0.5) == 0.9  # unknown channel: the good-channel threshold
    assert threshold({"rate_bps": 8e3}, "constant", 0.7, 0.1) == 0.7


def test_head_file_round_trip_and_bad_file(tmp_path):
    torch.manual_seed(0)
    head = DecisionHead(6, 4, rank=2, width=3)
    path = save_head(head, tmp_path / "h.pt", {"samples": 3})
    back = load_head(path)
    args = (torch.randn(5, 6), torch.randn(5, 4), torch.randn(5, 3), torch.randn(5, 2))
    scores = back(*args)
    assert scores.shape == (5,) and ((scores > 0) & (scores < 1)).all()
    assert torch.allclose(scores, head.half().float()(*args), atol=1e-3)
    assert back.meta == {"samples": 3}
    (tmp_path / "bad.pt").write_bytes(b"not a head")
    with pytest.raises(ValueError, match="bad.pt"):
        load_head(tmp_path / "bad.pt")


def test_token_features():
    logits = torch.tensor([[0.0, 5.0, 4.0]])
    emb = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 2.0]])
    f = token_features(logits, torch.tensor([2]), emb)[0]
    assert f[1] == pytest.approx(1.0, abs=1e-5) and f[2] == pytest.approx(1.0)  # gap 1 nat, parallel rows


def test_scorer_and_shipped_answers():
    assert score("The capital of Japan is Tokyo.", "Tokyo") == 1
    assert score("Bottles.", "bottle") == 0
    assert score("4 + 7 = 11", "11") == 1 and score("4 + 7 = 110", "11") == 0
    answers = load_answers("profiles/prompts/wisv.jsonl")
    assert len(answers) == 24 and answers["sum-24"] == "9"


def test_bundled_head_records_its_training_and_the_never_accepting_head_never_accepts():
    from pathlib import Path

    from controller.wisv.head import never_accepting_head

    head = load_head(Path("profiles/wisv/smollm2-135m/head.pt"))
    # trained by `specbed wisv train` on the wisv-collect run: how is in the file, no machine paths
    assert head.meta["samples"] > 0 and head.meta["seed"] == 0 and head.meta["runs"] == ["wisv-collect"]
    args = (torch.randn(64, 576), torch.randn(64, 576), torch.randn(64, 3), torch.rand(64, 2))
    scores = head(*args)
    assert scores.shape == (64,) and bool(((scores >= 0) & (scores <= 1)).all())
    assert (
        never_accepting_head(8, 4)(*(torch.randn(3, 8), torch.randn(3, 4), torch.randn(3, 3), torch.randn(3, 2))).max()
        < 1e-6
    )

"""``specbed bench verify``: its result on a CPU, and on a GPU batching's accuracy and gain."""

from __future__ import annotations

import random

import pytest
import torch

from agent.lm import CachedLM
from agent.random_models import random_model
from controller.batch import batched_logits
from controller.bench.eager import bench_verify, format_verify_table


def test_bench_verify_tiny_on_cpu():
    gamma = 3
    result = bench_verify(
        config="tiny", agents=[1, 3], gamma=gamma, context=24, rounds=3, warmup=1, device="cpu", bandwidth_bytes=1 << 20
    )
    for key in ("device", "torch", "transformers", "config", "top_k", "context", "rounds", "floor_ms"):
        assert key in result
    assert result["config"] == "tiny" and result["gamma"] == gamma and result["top_k"] == 8
    assert result["bandwidth_gb_s"] > 0 and result["target_weight_bytes"] > 0
    assert [row["agents"] for row in result["rows"]] == [1, 3]
    for row in result["rows"]:
        n = row["agents"]
        assert row["positions_per_round"] == n * (gamma + 1)
        for way in ("batched", "one_by_one"):
            stats = row[way]
            assert stats["ms_per_round"] > 0 and stats["forward_ms_per_round"] > 0
            assert stats["tokens_per_s"] > 0 and stats["ms_per_position"] > 0
        assert row["speedup"] > 0
        assert n <= row["emitted_per_round"] <= n * (gamma + 1)
        assert 0 <= row["acceptance_rate"] <= 1 and 0 <= row["verdicts_agree"] <= 1
    table = format_verify_table(result)
    assert table.count("\n| 3 | 12 |") == 1
    assert result["rows"][0]["batched"]["gpu_kernel_ms_per_round"] is None  # CPU: no profiled GPU round


# A model big enough on a GPU for one pass over 8 rows to beat 8 passes.
GPU_TARGET = {
    "hidden_size": 2048,
    "intermediate_size": 8192,
    "num_hidden_layers": 8,
    "num_attention_heads": 16,
    "num_key_value_heads": 8,
    "vocab_size": 32000,
    "max_position_embeddings": 4096,
}
GPU_DRAFTER = {
    "hidden_size": 256,
    "intermediate_size": 512,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "vocab_size": 32000,
    "max_position_embeddings": 4096,
    "tie_word_embeddings": True,
}


@pytest.mark.gpu
def test_batched_verification_on_gpu():
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    model = random_model(GPU_TARGET, "cuda", torch.bfloat16)
    rng = random.Random(0)
    vocab = GPU_TARGET["vocab_size"]
    n = 8
    batched = [CachedLM(model, "cuda") for _ in range(n)]
    single = [CachedLM(model, "cuda") for _ in range(n)]
    committed = [[rng.randrange(vocab) for _ in range(rng.randint(40, 120))] for _ in range(n)]
    worst = 0.0
    for _round in range(3):
        seqs = [c + [rng.randrange(vocab) for _ in range(4)] for c in committed]
        starts = [len(c) - 1 for c in committed]
        got = batched_logits(batched, seqs, starts)
        for i, (seq, start) in enumerate(zip(seqs, starts, strict=True)):
            want = single[i].logits(seq, start)
            assert got[i].shape == want.shape == (5, vocab)
            worst = max(worst, float((got[i].float() - want.float()).abs().max()))
            torch.testing.assert_close(got[i].float(), want.float(), atol=0.1, rtol=0.05)
            committed[i] = seq[: len(committed[i]) + rng.randint(0, 4)] + [rng.randrange(vocab)]
    print(f"largest |batched - single| logit difference: {worst:.4f}")
    del batched, single, model
    torch.cuda.empty_cache()

    result = bench_verify(
        config={"target": GPU_TARGET, "drafter": GPU_DRAFTER},
        agents=[8],
        context=256,
        rounds=6,
        warmup=2,
        device="cuda",
        bandwidth_bytes=1 << 30,
    )
    print(format_verify_table(result))
    row = result["rows"][0]
    assert row["batched"]["ms_per_position"] < row["one_by_one"]["ms_per_position"]
    assert 0 < row["batched"]["gpu_kernel_ms_per_position"] < row["one_by_one"]["gpu_kernel_ms_per_position"]


def test_bench_verify_core_records_the_contract_fields_on_cpu():
    from controller.bench.core import bench_verify_core, format_core_table

    result = bench_verify_core(
        "tiny",
        agents=[1, 2],
        rounds=2,
        warmup=1,
        context=16,
        device="cpu",
        eager_rounds=1,
        command="specbed bench verify",
    )
    assert result["floor_ms"] > 0 and result["command"] == "specbed bench verify" and result["machine"]
    assert [r["agents"] for r in result["rows"]] == [1, 2]
    for row in result["rows"]:
        assert row["batched_ms_per_round"] > 0 and row["one_by_one_ms_per_round"] > 0
        assert row["verdicts_agree"] == 1.0  # float32 on the CPU: both ways see the same logits and draws
    assert [r["agents"] for r in result["eager"]["rows"]] == [1, 2]
    assert result["logits_check"]["argmax_agree"].split("/")[0] == result["logits_check"]["argmax_agree"].split("/")[1]
    assert "| 2 |" in format_core_table(result)

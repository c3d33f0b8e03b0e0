"""SpecFed's math: weights, aggregation, and each measured quantity against its bound."""

from __future__ import annotations

import pytest
import torch

from agent.worker import score_topk
from controller.federated import aggregate, measure_round, normalise_weights, worker_distribution
from controller.specfed_profile import _workers
from controller.specfed_report import BOUND_TOLERANCE

VOCAB = 500


def peaked(rows: int, seed: int) -> torch.Tensor:
    """Distributions with a long tail, like an LM's next-token distribution."""
    g = torch.Generator().manual_seed(seed)
    return torch.softmax(torch.randn(rows, VOCAB, generator=g) * 3.0, dim=-1)


def compress(p: torch.Tensor, k: int, prob_dtype: str) -> tuple[torch.Tensor, torch.Tensor]:
    idx, vals = score_topk(p, k, "uint16" if k < VOCAB else "none", prob_dtype)
    return torch.from_numpy(idx), torch.from_numpy(vals.astype("float32"))


def round_metrics(k: int, strategy: str, prob_dtype: str, weights: dict[str, float]):
    gamma = 4
    dense = {name: peaked(gamma + 1, seed) for seed, name in enumerate(weights)}
    q = peaked(gamma, 99)
    idx, vals, rebuilt = {}, {}, {}
    for name, p in dense.items():
        idx[name], vals[name] = compress(p, k, prob_dtype)
        rebuilt[name] = worker_distribution(idx[name], vals[name], VOCAB, strategy, dense=k == VOCAB)
    return measure_round(dense, rebuilt, idx, vals, normalise_weights(weights), q), dense, rebuilt


@pytest.mark.parametrize("strategy", ["renormalise", "tail-fill"])
@pytest.mark.parametrize("k", [1, 4, 32, 256])
@pytest.mark.parametrize("prob_dtype", ["float16", "float32"])
def test_every_quantity_lies_under_its_bound(strategy, k, prob_dtype):
    m, _, _ = round_metrics(k, strategy, prob_dtype, {"a": 3.0, "b": 2.0, "c": 1.0})
    for name in m.local_error:
        for e, b in zip(m.local_error[name], m.local_bound[name], strict=True):
            assert e <= b + BOUND_TOLERANCE
    for v, b in zip(m.aggregation_bias, m.aggregation_bound, strict=True):
        assert v <= b + BOUND_TOLERANCE
    for v, b in zip(m.acceptance_bias, m.acceptance_bound, strict=True):
        assert v <= b + BOUND_TOLERANCE
    assert all(v > 0 for v in m.aggregation_bias)  # compression does cost something here


def test_renormalise_with_exact_values_has_error_equal_to_twice_the_tail():
    m, _, _ = round_metrics(8, "renormalise", "float32", {"a": 1.0, "b": 1.0})
    for name in m.local_error:
        for e, tail in zip(m.local_error[name], m.tail_mass[name], strict=True):
            assert e == pytest.approx(2 * tail, abs=1e-6)
            assert tail > 0.01


def test_k_equal_to_the_vocabulary_has_no_bias():
    m, dense, rebuilt = round_metrics(VOCAB, "tail-fill", "float32", {"a": 1.0, "b": 2.0, "c": 3.0})
    assert max(m.aggregation_bias) < 1e-9 and max(m.acceptance_bias) < 1e-9
    assert max(max(v) for v in m.local_error.values()) < 1e-9
    assert m.alpha == pytest.approx(m.alpha_tilde, abs=1e-12)


def test_aggregation_renormalises_over_the_workers_present():
    d = {"a": peaked(2, 1).double(), "b": peaked(2, 2).double()}
    both = aggregate(d, {"a": 0.5, "b": 0.25, "c": 0.25})
    assert torch.allclose(both, (2 * d["a"] + d["b"]) / 3)
    assert torch.allclose(aggregate({"b": d["b"]}, {"a": 0.5, "b": 0.25}), d["b"])
    assert torch.allclose(both.sum(dim=-1), torch.ones(2, dtype=torch.float64))


def test_weights_from_data_sizes_and_profile_errors(tmp_path):
    spec = {"source": "tiny-llama", "vocab_size": 64}
    ws = _workers(
        tmp_path, [{"name": "a", "model": spec, "data_size": 3}, {"name": "b", "model": spec, "data_size": 1}]
    )
    assert [w.weight for w in ws] == [0.75, 0.25]
    from controller.profiles import ProfileError

    for bad, field in (
        ([{"name": "a", "model": spec}], "weight or data_size"),
        ([{"name": "a", "model": spec, "weight": -1}], "workers[0].weight"),
        ([{"name": "a", "model": spec, "weight": 1}, {"name": "a", "model": spec, "weight": 1}], "repeated"),
        ([{"name": "a", "model": spec, "weight": 1}, {"name": "b", "model": spec, "data_size": 1}], "every worker"),
        ([{"name": "a", "model": {"source": "nope"}, "weight": 1}], "workers[0].model.source"),
        ([], "at least one"),
    ):
        with pytest.raises(ProfileError, match=__import__("re").escape(field)):
            _workers(tmp_path, bad)


def test_the_bundled_specfed_profile_loads_with_its_grid(tmp_path):
    from controller.profiles import ProfileError
    from controller.specfed_profile import is_specfed, load_specfed

    x = load_specfed("specfed")
    assert is_specfed("specfed") and not is_specfed("k-sweep")
    assert [w.name for w in x.workers] == ["worker-fp32", "worker-int8", "worker-int4"]
    assert sum(w.weight for w in x.workers) == pytest.approx(1.0)
    grid = x.grid()
    assert len(grid) == 11 and grid[0].dense and {p.generation.top_k for p in grid[1:]} == {1, 4, 8, 32, 128}
    bad = tmp_path / "bad.yaml"
    bad.write_text("scheme: specfed\nmodels: tiny-llama\nprompts: tiny\nworkers: []\ntop_k: 3\n")
    with pytest.raises(ProfileError, match="unknown field 'top_k'"):
        load_specfed(str(bad))

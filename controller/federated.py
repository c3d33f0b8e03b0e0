"""SpecFed's server-side math: weights, aggregation and the paper's error quantities.

ALGORITHMS.md section 3.  M workers each send their distribution p_m at the
γ draft positions and the bonus position, compressed to top K; the server
reconstructs p̃_m (renormalise or tail-fill, ``agent.codec``), aggregates
p̃ = Σ_m w_m p̃_m and verifies the drafts against p̃.

Against the dense reference p = Σ_m w_m p_m (workers send their full p_m as
measurement traffic in the same round), every round measures, per draft
position i and exactly (no sampling):

* local reconstruction error e_m = ‖p_m − p̃_m‖₁, bound 2·tail_m + 2·δ_m, with
  tail_m the true mass of p_m outside the K sent and δ_m = Σ_top-K |p_m − v_m|
  the rounding of the K values v_m to the wire dtype (0 for float32), plus
  |Σp_m − 1| (the dense p_m is float32: its V terms sum to 1 only within
  about 1e-5).  For renormalise with exact values the error equals 2·tail_m
  (the paper's statement); the other terms cover float rounding;
* aggregation bias b = ‖p − p̃‖₁, bound Σ_m w_m e_m (triangle inequality);
* acceptance-rate bias |α − α̃|, α = Σ_x min(p(x), q(x)) and α̃ the same with
  p̃; bound ½‖p − p̃‖₁ + ½|Σp̃ − Σp| (the paper's ½‖p − p̃‖₁ when both sum to
  one; float16 values summing above one, or float32 sums, add the second).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from agent.codec import reconstruct


def normalise_weights(weights: dict[str, float]) -> dict[str, float]:
    """w_m scaled to sum to 1 (the live workers' share after a loss)."""
    total = sum(weights.values())
    if not total > 0:
        raise ValueError(f"weights must have a positive sum, got {weights}")
    return {name: w / total for name, w in weights.items()}


def worker_distribution(
    topk_indices: torch.Tensor,  # [γ + 1, K] long
    topk_probs: torch.Tensor,  # [γ + 1, K] wire values
    vocab_size: int,
    strategy: str,
    dense: bool,
) -> torch.Tensor:
    """p̃_m [γ + 1, V] float64 from one worker's payload (a dense payload is p_m itself)."""
    if dense:
        return topk_probs.double()
    return reconstruct(topk_indices, topk_probs, vocab_size, strategy).double()


def aggregate(dists: dict[str, torch.Tensor], weights: dict[str, float]) -> torch.Tensor:
    """Σ_m w_m p_m [γ + 1, V] float64 over the workers in ``dists`` (weights renormalised to them)."""
    w = normalise_weights({name: weights[name] for name in dists})
    return sum(w[name] * dists[name].double() for name in dists)


@dataclass
class RoundMetrics:
    """The paper's quantities for one round, per draft position (lists of γ floats).

    ``local_error[m]`` ‖p_m − p̃_m‖₁ and ``local_bound[m]`` its bound;
    ``aggregation_bias`` ‖p − p̃‖₁ and ``aggregation_bound`` Σ_m w_m e_m;
    ``acceptance_bias`` |α − α̃| and ``acceptance_bound``; ``alpha`` and
    ``alpha_tilde`` themselves; ``tail_mass[m]`` the true mass of p_m outside
    the K sent.  All dimensionless.
    """

    local_error: dict[str, list[float]]
    local_bound: dict[str, list[float]]
    tail_mass: dict[str, list[float]]
    aggregation_bias: list[float]
    aggregation_bound: list[float]
    acceptance_bias: list[float]
    acceptance_bound: list[float]
    alpha: list[float]
    alpha_tilde: list[float]

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def measure_round(
    dense: dict[str, torch.Tensor],  # name -> [γ + 1, V] float32, p_m as the worker computed it
    rebuilt: dict[str, torch.Tensor],  # name -> [γ + 1, V] float64, p̃_m
    topk_indices: dict[str, torch.Tensor],  # name -> [γ + 1, K] long
    topk_probs: dict[str, torch.Tensor],  # name -> [γ + 1, K] wire values
    weights: dict[str, float],  # w_m of these workers, summing to 1
    q: torch.Tensor,  # [γ, V] the drafter's distribution at the draft positions
) -> RoundMetrics:
    """Every quantity of the module docstring at the γ draft positions of one round."""
    gamma = q.shape[0]
    q64 = q.double()
    local_error, local_bound, tails = {}, {}, {}
    for name, p_m in dense.items():
        p_m = p_m[:gamma].double()
        p_tilde_m = rebuilt[name][:gamma]
        idx = topk_indices[name][:gamma].long()
        true_top = p_m.gather(1, idx)
        wire_top = topk_probs[name][:gamma].double()
        mass = p_m.sum(dim=1)  # 1 up to float32 rounding over V terms
        tail = (mass - true_top.sum(dim=1)).clamp(min=0)
        rounding = (true_top - wire_top).abs().sum(dim=1)
        local_error[name] = (p_m - p_tilde_m).abs().sum(dim=1).tolist()
        local_bound[name] = (2 * tail + 2 * rounding + (mass - 1).abs()).tolist()
        tails[name] = tail.tolist()
    p = sum(weights[n] * dense[n][:gamma].double() for n in dense)
    p_tilde = sum(weights[n] * rebuilt[n][:gamma] for n in dense)
    l1 = (p - p_tilde).abs().sum(dim=1)
    agg_bound = sum(weights[n] * torch.tensor(local_error[n], dtype=torch.float64) for n in dense)
    alpha = torch.minimum(p, q64).sum(dim=1)
    alpha_tilde = torch.minimum(p_tilde, q64).sum(dim=1)
    acc_bound = 0.5 * l1 + 0.5 * (p_tilde.sum(dim=1) - p.sum(dim=1)).abs()
    return RoundMetrics(
        local_error,
        local_bound,
        tails,
        l1.tolist(),
        agg_bound.tolist(),
        (alpha - alpha_tilde).abs().tolist(),
        acc_bound.tolist(),
        alpha.tolist(),
        alpha_tilde.tolist(),
    )

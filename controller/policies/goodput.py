"""The i.i.d. acceptance model of one device on one link: expected tokens, round time, goodput and the best γ (TK-SLT)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from agent.link import snr_to_rate


def expected_tokens(alpha: float, gamma: int) -> float:
    """E(γ) = (1 − α^{γ+1}) / (1 − α); γ + 1 when α = 1."""
    if gamma < 0:
        raise ValueError(f"γ must be >= 0, got {gamma}")
    if alpha >= 1.0:
        return float(gamma + 1)
    return (1.0 - alpha ** (gamma + 1)) / (1.0 - alpha)


@dataclass(frozen=True)
class LinkModel:
    """Round time T(γ) = γ·t_draft + (header + γ·bits)/rate + t_verify(γ) + t_down."""

    alpha: float
    t_draft: float
    rate: float  # bit/s
    bits: float  # per draft token
    header: float = 0.0  # bits per round
    t_verify: float = 0.0  # seconds per round (constant part)
    t_verify_per_token: float = 0.0  # seconds per verified position
    t_down: float = 0.0

    def round_time(self, gamma: int) -> float:
        up = (self.header + gamma * self.bits) / self.rate if self.rate > 0 else math.inf
        return gamma * self.t_draft + up + self.t_verify + self.t_verify_per_token * (gamma + 1) + self.t_down

    def goodput(self, gamma: int) -> float:
        return expected_tokens(self.alpha, gamma) / self.round_time(gamma)


def optimal_gamma(model: LinkModel, gamma_max: int = 16) -> tuple[int, float]:
    """TK-SLT: the γ in 1..γ_max that maximises G(γ) = E(γ)/T(γ) (exact integer search)."""
    best = max(range(1, gamma_max + 1), key=model.goodput)
    return best, model.goodput(best)


def snr_to_eta(snr_db: float) -> float:
    """Spectral efficiency log2(1 + SNR), bit/s/Hz: the Shannon rate of 1 Hz, as the agents' links compute it."""
    return snr_to_rate(snr_db, 1.0)

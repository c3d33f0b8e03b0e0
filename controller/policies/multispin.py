"""Many devices sharing one band (Multi-SPIN): bandwidth splits and draft lengths that maximise total goodput."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from controller.policies.goodput import expected_tokens


@dataclass(frozen=True)
class Device:
    """One device's estimates for the allocator."""

    alpha: float
    t_draft: float  # s per token
    eta: float  # bit/s/Hz


@dataclass(frozen=True)
class Allocation:
    """Bandwidth per device (Hz), draft length per device, and the model's predicted goodput (tokens/s)."""

    bandwidth: tuple[float, ...]
    gamma: tuple[int, ...]
    goodput: float
    per_device: tuple[float, ...] = field(default=())
    round_time: float | None = None  # homogeneous: the common round time

    def rates(self, etas: Sequence[float]) -> list[float]:
        """The uplink rate of each device, bit/s: B_u · η_u."""
        return [b * e for b, e in zip(self.bandwidth, etas, strict=True)]


VerifyTime = Callable[[int, int], float]  # (batch size, γ) -> seconds


def _const_verify(t: float) -> VerifyTime:
    return lambda batch, gamma: t


def homogeneous_goodput(
    devices: Sequence[Device],
    bandwidth: Sequence[float],
    gamma: int,
    bits: float,
    t_verify: VerifyTime,
    header: float = 0.0,
) -> tuple[float, float]:
    """(goodput, round time) when every device drafts γ and the server waits for all, then verifies one batch."""
    finish = max(
        gamma * d.t_draft + ((header + gamma * bits) / (b * d.eta) if b > 0 else math.inf)
        for d, b in zip(devices, bandwidth, strict=True)
    )
    t = finish + t_verify(len(devices), gamma)
    return sum(expected_tokens(d.alpha, gamma) for d in devices) / t, t


def equalise(
    devices: Sequence[Device], band: float, gamma: int, bits: float, header: float = 0.0
) -> tuple[list[float], float]:
    """The split of ``band`` that gives every device the same finishing time τ (bisection on τ).

    γ·t_u + (H + γ·L)/(B_u·η_u) = τ  ⇒  B_u = (H + γ·L) / (η_u (τ − γ·t_u)), with Σ B_u = B.
    """
    lo = max(gamma * d.t_draft for d in devices)
    payload = header + gamma * bits

    def split_at(tau: float) -> list[float]:
        return [payload / (d.eta * (tau - gamma * d.t_draft)) for d in devices]

    def need(tau: float) -> float:
        return sum(split_at(tau))

    hi = lo + 1.0
    while need(hi) > band:
        hi = lo + 2 * (hi - lo)
    lo_ = lo
    for _ in range(200):
        mid = (lo_ + hi) / 2
        if mid <= lo or need(mid) > band:
            lo_ = mid
        else:
            hi = mid
    tau = hi
    split = split_at(tau)
    scale = band / sum(split)  # absorb the bisection's last bit of slack
    return [b * scale for b in split], tau


def multispin_homogeneous(
    devices: Sequence[Device],
    band: float,
    bits: float,
    t_verify: VerifyTime | float,
    gamma_max: int = 16,
    header: float = 0.0,
) -> Allocation:
    """One γ for all, the finishing-time-equalising split for each γ, the best γ."""
    tv = t_verify if callable(t_verify) else _const_verify(float(t_verify))
    best: Allocation | None = None
    for gamma in range(1, gamma_max + 1):
        split, _ = equalise(devices, band, gamma, bits, header)
        g, t = homogeneous_goodput(devices, split, gamma, bits, tv, header)
        if best is None or g > best.goodput:
            per = tuple(expected_tokens(d.alpha, gamma) / t for d in devices)
            best = Allocation(tuple(split), (gamma,) * len(devices), g, per, t)
    assert best is not None
    return best


def heterogeneous_device_goodput(
    d: Device, b: float, gamma: int, bits: float, t_verify: float, t_down: float = 0.0, header: float = 0.0
) -> float:
    """A device on its own cycle: E(γ) / (γ·t + (H + γ·L)/(B·η) + t_verify + t_down)."""
    if b <= 0:
        return 0.0
    up = (header + gamma * bits) / (b * d.eta)
    return expected_tokens(d.alpha, gamma) / (gamma * d.t_draft + up + t_verify + t_down)


def best_gamma_for(
    d: Device, b: float, bits: float, t_verify: float, gamma_max: int, header: float = 0.0
) -> tuple[int, float]:
    def value(g: int) -> float:
        return heterogeneous_device_goodput(d, b, g, bits, t_verify, header=header)

    best = max(range(1, gamma_max + 1), key=value)
    return best, value(best)


def multispin_heterogeneous(
    devices: Sequence[Device],
    band: float,
    bits: float,
    t_verify: float,
    gamma_max: int = 16,
    quanta: int = 400,
    header: float = 0.0,
) -> Allocation:
    """Per-device γ_u and split B_u maximising Σ_u E_u(γ_u)/T_u(γ_u, B_u).

    The band is cut into ``quanta`` equal parts (every device gets at least
    one); an exact dynamic programme over the parts finds the best split on
    that grid, with each device's best γ for every share.  Exact on the grid,
    whatever the shape of the per-device goodput curves.
    """
    n = len(devices)
    if quanta < n:
        raise ValueError(f"quanta ({quanta}) must be at least the number of devices ({n})")
    unit = band / quanta
    # value[u][k]: device u's best goodput with k quanta
    value = [
        [0.0] + [best_gamma_for(d, k * unit, bits, t_verify, gamma_max, header)[1] for k in range(1, quanta + 1)]
        for d in devices
    ]
    neg = -math.inf
    best = [[neg] * (quanta + 1) for _ in range(n + 1)]
    choice = [[0] * (quanta + 1) for _ in range(n + 1)]
    best[0][0] = 0.0
    for u in range(1, n + 1):
        for total in range(u, quanta - (n - u) + 1):
            for k in range(1, total - (u - 1) + 1):
                prev = best[u - 1][total - k]
                if prev == neg:
                    continue
                v = prev + value[u - 1][k]
                if v > best[u][total]:
                    best[u][total], choice[u][total] = v, k
    shares, total = [], quanta
    for u in range(n, 0, -1):
        k = choice[u][total]
        shares.append(k)
        total -= k
    shares.reverse()
    split = [k * unit for k in shares]
    gammas, per = [], []
    for d, b in zip(devices, split, strict=True):
        g, v = best_gamma_for(d, b, bits, t_verify, gamma_max, header)
        gammas.append(g)
        per.append(v)
    return Allocation(tuple(split), tuple(gammas), sum(per), tuple(per))


def equal_split(
    devices: Sequence[Device],
    band: float,
    bits: float,
    gamma: int,
    t_verify: VerifyTime | float,
    header: float = 0.0,
) -> Allocation:
    """The heterogeneity-agnostic baseline: B/U each and one fixed γ; devices wait for each other."""
    tv = t_verify if callable(t_verify) else _const_verify(float(t_verify))
    split = [band / len(devices)] * len(devices)
    g, t = homogeneous_goodput(devices, split, gamma, bits, tv, header)
    per = tuple(expected_tokens(d.alpha, gamma) / t for d in devices)
    return Allocation(tuple(split), (gamma,) * len(devices), g, per, t)

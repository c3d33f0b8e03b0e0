"""Draft-length and bandwidth policies: the models of ALGORITHMS.md sections 4 and 5.

Words and units, fixed once:

``alpha``      per-token acceptance probability (i.i.d. model), in [0, 1)
``t_draft``    drafting time per token on the device, seconds
``bits``       uplink bits per draft token (payload framing included)
``header``     uplink bits per round independent of γ
``rate``       uplink rate, bit/s; under FDMA rate_u = B_u · η_u
``eta``        spectral efficiency of a device's channel, bit/s/Hz (log2(1 + SNR))
``t_verify``   server time to verify one round (a function of γ and batch size)
``t_down``     downlink time of a verdict, seconds; on the testbed, every per-round
               second the model does not break out (see ``Estimates``)

Expected tokens per round E(γ) = (1 − α^{γ+1}) / (1 − α) (accepted drafts plus
the recovered or bonus token).  Goodput is expected tokens per second.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from agent.link import snr_to_rate


def expected_tokens(alpha: float, gamma: int) -> float:
    """E(γ) = (1 − α^{γ+1}) / (1 − α); γ + 1 when α = 1."""
    if gamma < 0:
        raise ValueError(f"γ must be >= 0, got {gamma}")
    if alpha >= 1.0:
        return float(gamma + 1)
    return (1.0 - alpha ** (gamma + 1)) / (1.0 - alpha)


# --- one device on one link (TK-SLT) --------------------------------------------------------------


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


# --- many devices sharing one band (Multi-SPIN) ----------------------------------------------------


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


# --- online estimates ---------------------------------------------------------------------------


class Ema:
    """Exponential moving average; ``value`` is None until the first sample."""

    def __init__(self, weight: float = 0.2, initial: float | None = None) -> None:
        if not 0 < weight <= 1:
            raise ValueError(f"weight must be in (0, 1], got {weight}")
        self.weight = weight
        self.value = initial
        self.samples = 0

    def add(self, x: float) -> float:
        self.samples += 1
        self.value = x if self.value is None else (1 - self.weight) * self.value + self.weight * x
        return self.value


class RunningMedian:
    """Median of the last ``window`` samples: one spiking sample (a descheduled process) cannot move it."""

    def __init__(self, window: int = 15) -> None:
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        self.window = window
        self.values: list[float] = []
        self.samples = 0

    def add(self, x: float) -> float:
        self.samples += 1
        self.values.append(x)
        del self.values[: -self.window]
        return self.value  # type: ignore[return-value]

    @property
    def value(self) -> float | None:
        if not self.values:
            return None
        v = sorted(self.values)
        n = len(v)
        return v[n // 2] if n % 2 else (v[n // 2 - 1] + v[n // 2]) / 2


# --- draft-length policies on the testbed ---------------------------------------------------------


class Estimates:
    """Online estimates of one device's round-time model, updated after every round.

    ``alpha`` is the discounted maximum-likelihood estimate of the per-token
    acceptance probability (accepted drafts over accept/reject trials, a
    round ending in a rejection being one more trial); times are exponential
    moving averages; the uplink rate is the emulated link's reported rate
    when there is one (channel state), else bits over the measured uplink
    time; ``t_verify`` is fitted as c0 + c1·(positions in the pass) when
    those have varied.  What the model does not break out (downlink,
    transport, queueing behind other agents at the server, reply, rollback)
    enters as ``t_other``, the running median of each round's measured cycle
    minus its modelled parts, so that the prediction is of the round time
    actually seen and one spiking round does not move it.
    """

    def __init__(self, weight: float = 0.2, discount: float = 0.95) -> None:
        self.discount = discount
        self.acc = 0.0
        self.trials = 0.0
        self.t_draft = Ema(weight)
        self.rate = Ema(weight)
        self.bits_per_token = Ema(weight)
        self.header_bits = Ema(weight)
        self.t_down = Ema(weight)
        self.t_wait = Ema(weight)  # a payload waiting for the rest of its batch
        # a round's measured cycle (draft start to next draft start) minus its drafting, emulated
        # uplink, batching wait and server time: downlink, transport, queueing behind other
        # agents' passes, reply and rollback
        # a running median, not a mean: on a shared host one round can wait seconds for the CPU, and a
        # mean would carry that into every allocation until it decays (γ driven to its cap)
        self.t_other = RunningMedian()
        self.eta = Ema(weight)  # spectral efficiency log2(1 + SNR) of an SNR link, bit/s/Hz
        self.verify: list[tuple[int, float]] = []  # (positions in the forward pass, seconds), the last 64 rounds
        self.rounds = 0

    def add(
        self,
        gamma: int,
        accepted: int,
        t_draft_s: float,
        bytes_up: int,
        per_token_bytes: float,
        up_s: float | None,
        reported_rate: float | None,
        t_verify_s: float,
        t_down_s: float | None,
        verify_positions: int | None = None,
        t_wait_s: float = 0.0,
        snr_db: float | None = None,
        t_other_s: float | None = None,
    ) -> None:
        self.rounds += 1
        self.acc = self.discount * self.acc + accepted
        self.trials = self.discount * self.trials + accepted + (1 if accepted < gamma else 0)
        self.t_draft.add(t_draft_s / gamma)
        self.bits_per_token.add(8 * per_token_bytes)
        self.header_bits.add(max(0.0, 8 * (bytes_up - gamma * per_token_bytes)))
        if reported_rate:
            self.rate.add(reported_rate)
        elif up_s and up_s > 0:
            self.rate.add(8 * bytes_up / up_s)
        if t_down_s is not None and t_down_s >= 0:
            self.t_down.add(t_down_s)
        self.t_wait.add(max(0.0, t_wait_s))
        if t_other_s is not None:
            self.t_other.add(max(0.0, t_other_s))
        if snr_db is not None:
            self.eta.add(snr_to_eta(snr_db))
        self.verify.append((verify_positions or gamma + 1, t_verify_s))
        del self.verify[:-64]

    @property
    def alpha(self) -> float | None:
        if self.trials <= 0:
            return None
        return min(self.acc / self.trials, 0.999)

    def verify_model(self) -> tuple[float, float]:
        """(c0, c1) of t_verify = c0 + c1·(positions in the pass): least squares over recent rounds, c1 >= 0."""
        return fit_verify(self.verify)

    def link_model(self) -> LinkModel | None:
        if self.alpha is None or self.rate.value is None or not self.verify:
            return None
        c0, c1 = self.verify_model()
        return LinkModel(
            alpha=self.alpha,
            t_draft=self.t_draft.value or 0.0,
            rate=self.rate.value,
            bits=self.bits_per_token.value or 0.0,
            header=self.header_bits.value or 0.0,
            t_verify=max(c0, 0.0) + (self.t_wait.value or 0.0),
            t_verify_per_token=c1,
            t_down=self.rest(),
        )

    def rest(self) -> float:
        """Per-round seconds outside drafting, uplink, wait and server: the measured residual once there is one."""
        if self.t_other.value is not None:
            return self.t_other.value
        return self.t_down.value or 0.0


def fit_verify(samples: Sequence[tuple[int, float]]) -> tuple[float, float]:
    """(c0, c1) of seconds = c0 + c1·positions over (positions, seconds) samples, c1 >= 0."""
    xs = [x for x, _ in samples]
    ys = [y for _, y in samples]
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    if sxx < 1e-9:
        return my, 0.0
    c1 = max(0.0, sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx)
    return my - c1 * mx, c1


@dataclass
class Decision:
    """A policy's choice for a device's next round, with the model's prediction when it has one."""

    gamma: int
    predicted_goodput: float | None = None  # tokens/s the model expects at this γ


class DraftPolicy:
    """Chooses γ for a device's next round from its estimates.  Subclass and register to add one."""

    name = "base"

    def __init__(self, gamma: int, gamma_max: int = 16) -> None:
        self.gamma = gamma
        self.gamma_max = gamma_max

    def decide(self, est: Estimates) -> Decision:
        raise NotImplementedError


class FixedGamma(DraftPolicy):
    """Always the profile's γ; predicts its goodput from the same model, for comparison."""

    name = "fixed"

    def decide(self, est: Estimates) -> Decision:
        model = est.link_model()
        return Decision(self.gamma, model.goodput(self.gamma) if model else None)


class TkSlt(DraftPolicy):
    """TK-SLT: γ* = argmax E(γ)/T(γ) over 1..γ_max with the current estimates (profile γ until there are any)."""

    name = "tkslt"

    def __init__(self, gamma: int, gamma_max: int = 16, warmup_rounds: int = 2) -> None:
        super().__init__(gamma, gamma_max)
        self.warmup_rounds = warmup_rounds

    def decide(self, est: Estimates) -> Decision:
        model = est.link_model()
        if model is None or est.rounds < self.warmup_rounds:
            return Decision(self.gamma, model.goodput(self.gamma) if model else None)
        gamma, goodput = optimal_gamma(model, self.gamma_max)
        return Decision(gamma, goodput)


POLICIES: dict[str, type[DraftPolicy]] = {"fixed": FixedGamma, "tkslt": TkSlt}


def register_policy(name: str, cls: type[DraftPolicy]) -> None:
    """Make ``draft_policy: NAME`` usable in profiles."""
    if not (isinstance(cls, type) and issubclass(cls, DraftPolicy)):
        raise TypeError(f"{cls!r} is not a DraftPolicy subclass")
    POLICIES[name] = cls


def policy_class(name: str) -> type[DraftPolicy]:
    """A registered name, or ``package.module:Class`` (imported, then registered under that name)."""
    if name in POLICIES:
        return POLICIES[name]
    if ":" in name:
        import importlib

        module, _, attr = name.partition(":")
        try:
            cls = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as exc:
            raise ValueError(f"draft policy {name!r}: {exc}") from None
        register_policy(name, cls)
        return cls
    raise ValueError(f"unknown draft policy {name!r}; registered: {', '.join(sorted(POLICIES))}, or module:Class")


# --- a shared band on the testbed (Multi-SPIN) -------------------------------------------------------


def snr_to_eta(snr_db: float) -> float:
    """Spectral efficiency log2(1 + SNR), bit/s/Hz: the Shannon rate of 1 Hz, as the agents' links compute it."""
    return snr_to_rate(snr_db, 1.0)


class BandAllocator:
    """Shares one uplink band among a grid point's agents under a bandwidth policy.

    Starts from the equal split with the profile's γ (no estimates yet);
    ``resolve`` re-solves from the agents' current estimates once every
    agent has ``warmup_rounds`` rounds: ``equal-split`` keeps B/U and γ and
    only updates its prediction, ``multispin-homogeneous`` picks one γ and
    the finishing-time-equalising split, ``multispin-heterogeneous`` a γ and
    a share per agent (exact DP on ``quanta`` parts of the band).
    """

    def __init__(
        self,
        policy: str,
        band_hz: float,
        names: Sequence[str],
        snr_db: dict[str, float | None],
        gamma: int,
        gamma_max: int = 16,
        warmup_rounds: int = 2,
        quanta: int = 100,
    ) -> None:
        if policy not in ("equal-split", "multispin-homogeneous", "multispin-heterogeneous"):
            raise ValueError(f"unknown bandwidth policy {policy!r}")
        self.policy, self.band, self.names = policy, float(band_hz), sorted(names)
        self.snr_db, self.gamma_max = snr_db, gamma_max
        self.warmup_rounds, self.quanta = warmup_rounds, quanta
        self.gamma0 = gamma
        self.solves = 0
        self._equal_split()

    def _equal_split(self) -> None:
        n = len(self.names)
        share = self.band / n if n else 0.0
        self.allocation = Allocation((share,) * n, (self.gamma0,) * n, math.nan, (math.nan,) * n)

    # When the agents change (one leaves, or one joins or rejoins), the band is split equally among
    # those now present, with the profile's γ, and re-solved once every one of them is warmed up: the
    # band is never over-committed and no share is left unused.
    def add(self, name: str, snr_db: float | None) -> bool:
        """An agent joins the band; True when it was not in it already."""
        if name in self.names:
            return False
        self.names = sorted([*self.names, name])
        self.snr_db = {**self.snr_db, name: snr_db}
        self._equal_split()
        return True

    def remove(self, name: str) -> bool:
        """An agent leaves the band; True when it was in it."""
        if name not in self.names:
            return False
        self.names = [n for n in self.names if n != name]
        self._equal_split()
        return True

    def share(self, name: str) -> float:
        return self.allocation.bandwidth[self.names.index(name)]

    def gamma(self, name: str) -> int:
        return self.allocation.gamma[self.names.index(name)]

    def predicted(self, name: str) -> float | None:
        value = self.allocation.per_device[self.names.index(name)]
        return None if math.isnan(value) else value

    def devices(self, estimates: dict[str, Estimates]) -> list[Device] | None:
        """The allocator's view of every agent, or None while one lacks estimates."""
        devices = []
        for name in self.names:
            est = estimates.get(name)
            if est is None or est.rounds < self.warmup_rounds or est.alpha is None or not est.t_draft.value:
                return None
            eta = est.eta.value
            if eta is None and self.snr_db.get(name) is not None:
                eta = snr_to_eta(self.snr_db[name])
            if not eta:
                return None
            devices.append(Device(est.alpha, est.t_draft.value, eta))
        return devices

    def resolve(self, estimates: dict[str, Estimates]) -> bool:
        """Re-solve from the estimates; True when the allocation changed."""
        devices = self.devices(estimates)
        if devices is None:
            return False
        ests = [estimates[n] for n in self.names]
        bits = sum(e.bits_per_token.value or 0.0 for e in ests) / len(ests)
        header = sum(e.header_bits.value or 0.0 for e in ests) / len(ests)
        samples = [x for e in ests for x in e.verify]
        c0, c1 = fit_verify(samples)
        gamma0 = self.allocation.gamma[0]
        if self.policy == "multispin-heterogeneous":
            # each device on its own cycle: server time of its pass plus the batching wait
            t_verify = (
                max(c0, 0.0) + c1 * (gamma0 + 1) + sum((e.t_wait.value or 0.0) + e.rest() for e in ests) / len(ests)
            )
            new = multispin_heterogeneous(devices, self.band, bits, t_verify, self.gamma_max, self.quanta, header)
        else:
            # one pass over the whole batch once the last payload is in
            rest = sum(e.rest() for e in ests) / len(ests)

            def t_verify(batch: int, gamma: int) -> float:
                return max(c0, 0.0) + c1 * batch * (gamma + 1) + rest

            if self.policy == "multispin-homogeneous":
                new = multispin_homogeneous(devices, self.band, bits, t_verify, self.gamma_max, header)
            else:
                new = equal_split(devices, self.band, bits, gamma0, t_verify, header)
        changed = new.bandwidth != self.allocation.bandwidth or new.gamma != self.allocation.gamma
        self.allocation = new
        self.solves += 1
        return changed

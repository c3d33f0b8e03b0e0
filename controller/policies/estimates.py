"""Online estimates of a device's round-time model (acceptance, drafting, uplink, verify, the rest), updated every round."""

from __future__ import annotations

from collections.abc import Sequence

from controller.policies.goodput import LinkModel, snr_to_eta


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

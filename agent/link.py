"""Link emulation inside the agent's transport: rate, delay, jitter, loss, traces.

The agent holds a message back for as long as the emulated link would take
to carry it, then hands it to ZeroMQ (which, on loopback or a LAN, adds its
own real time on top).  It works anywhere, without root or tc; on hosts where
tc is available the link_shaping role enforces rates in the kernel instead.

A link direction is described by a mapping (every field optional):

``rate_bps``     bit/s (None or absent: no serialisation delay)
``delay_s``      one-way propagation delay, seconds
``jitter_s``     standard deviation of a normal delay added per message,
                 truncated at zero, seconds
``loss``         per-packet loss probability; a lost packet costs one
                 retransmission timeout (TCP delivers everything, late)
``rto_s``        that timeout, seconds (default 0.2)
``mss_bytes``    packet payload size for the loss model (default 1448)
``trace``        [[t_s, value], ...]: a time-varying rate (``trace_kind``
                 "rate", bit/s) or SNR (``trace_kind`` "snr", dB, mapped to
                 a rate as bandwidth_hz · log2(1 + SNR)); piecewise
                 constant, repeating after its last time stamp
``snr_db``       a constant SNR, dB: the same as ``trace: [[0, snr_db]]`` with
                 ``trace_kind: snr`` (needs ``bandwidth_hz``)
``bandwidth_hz`` the band an SNR trace is mapped through (required for "snr");
                 a controller sharing one band among agents changes it at run
                 time (``set_bandwidth``, a ``LINK`` message)

Times are measured from the link's start (``Link(..., start_s)``).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

LINK_FIELDS = {
    "rate_bps",
    "delay_s",
    "jitter_s",
    "loss",
    "rto_s",
    "mss_bytes",
    "trace",
    "trace_kind",
    "bandwidth_hz",
    "snr_db",
}


class LinkError(ValueError):
    """A link description that cannot be used; the message names the field."""


_RATE_UNITS = {"bit": 1.0, "kbit": 1e3, "mbit": 1e6, "gbit": 1e9, "bps": 1.0, "kbps": 1e3, "mbps": 1e6, "gbps": 1e9}
_TIME_UNITS = {"s": 1.0, "ms": 1e-3, "us": 1e-6}


def parse_quantity(value: object, units: dict[str, float], what: str) -> float:
    """A number, or a string such as "10mbit", "2e4", "20ms" (tc's spelling; case-insensitive)."""
    if isinstance(value, bool):
        raise LinkError(f"expected {what}, got {value!r}")
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        text = value.strip().lower().removesuffix("/s")
        for unit in sorted(units, key=len, reverse=True):
            if text.endswith(unit):
                try:
                    return float(text[: -len(unit)]) * units[unit]
                except ValueError:
                    break
        try:
            return float(text)
        except ValueError:
            pass
    raise LinkError(f"expected {what} (e.g. {next(iter(units))} units), got {value!r}")


def parse_rate(value: object) -> float:
    """bit/s from 20000, "2e4", "20kbit", "10mbit" (tc's units: kbit = 1000 bit/s)."""
    return parse_quantity(value, _RATE_UNITS, "a rate in bit/s")


_BAND_UNITS = {"hz": 1.0, "khz": 1e3, "mhz": 1e6, "ghz": 1e9}


def parse_bandwidth(value: object) -> float:
    """Hz from 1e7, "1e7", "10MHz", "250khz"."""
    return parse_quantity(value, _BAND_UNITS, "a bandwidth in Hz")


def parse_seconds(value: object) -> float:
    return parse_quantity(value, _TIME_UNITS, "a time in seconds")


def snr_to_rate(snr_db: float, bandwidth_hz: float) -> float:
    """Shannon rate of a band at an SNR: B · log2(1 + 10^(SNR/10)), bit/s."""
    return bandwidth_hz * math.log2(1.0 + 10.0 ** (snr_db / 10.0))


@dataclass
class LinkState:
    """What a message saw: the rate when it started, the SNR if traced, and the emulated seconds."""

    rate_bps: float | None
    snr_db: float | None
    seconds: float


class Link:
    """One direction of an emulated link."""

    def __init__(self, spec: dict | None, seed: int = 0, start_s: float = 0.0) -> None:
        spec = dict(spec or {})
        for key in ("rate_bps", "bandwidth_hz"):
            if isinstance(spec.get(key), str):
                spec[key] = parse_quantity(spec[key], {**_RATE_UNITS, **_BAND_UNITS}, key)
        for key in ("delay_s", "jitter_s", "rto_s"):
            if isinstance(spec.get(key), str):
                spec[key] = parse_seconds(spec[key])
        unknown = set(spec) - LINK_FIELDS
        if unknown:
            raise LinkError(f"unknown link field(s) {sorted(unknown)}; allowed: {sorted(LINK_FIELDS)}")
        self.rate = self._number(spec, "rate_bps", None, positive=True)
        self.delay = self._number(spec, "delay_s", 0.0)
        self.jitter = self._number(spec, "jitter_s", 0.0)
        self.loss = self._number(spec, "loss", 0.0)
        if not 0 <= self.loss < 1:
            raise LinkError(f"loss: expected a probability in [0, 1), got {self.loss}")
        self.rto = self._number(spec, "rto_s", 0.2)
        self.mss = int(self._number(spec, "mss_bytes", 1448, positive=True))
        self.kind = spec.get("trace_kind", "rate")
        if self.kind not in ("rate", "snr"):
            raise LinkError(f"trace_kind: expected rate or snr, got {self.kind!r}")
        self.bandwidth = self._number(spec, "bandwidth_hz", None, positive=True)
        self.trace: list[tuple[float, float]] = []
        if spec.get("trace") is not None:
            trace = spec["trace"]
            if not isinstance(trace, list) or not trace:
                raise LinkError("trace: expected a non-empty list of [t_s, value]")
            for i, row in enumerate(trace):
                if not (
                    isinstance(row, (list, tuple)) and len(row) == 2 and all(isinstance(v, (int, float)) for v in row)
                ):
                    raise LinkError(f"trace[{i}]: expected [t_s, value]")
            self.trace = sorted((float(t), float(v)) for t, v in trace)
            if self.trace[0][0] != 0:
                raise LinkError("trace: the first time stamp must be 0")
            if self.kind == "snr" and self.bandwidth is None:
                raise LinkError("bandwidth_hz: an SNR trace needs the band it is mapped through")
            if self.kind == "rate" and any(v <= 0 for _, v in self.trace):
                raise LinkError("trace: rates must be positive")
        if spec.get("snr_db") is not None:
            snr = spec["snr_db"]
            if isinstance(snr, bool) or not isinstance(snr, (int, float)) or not math.isfinite(snr):
                raise LinkError(f"snr_db: expected a number, got {snr!r}")
            if self.trace or spec.get("rate_bps") is not None:
                raise LinkError("snr_db: give a constant SNR, a trace or a rate, not several")
            if self.bandwidth is None:
                raise LinkError("bandwidth_hz: an SNR link needs the band it is mapped through")
            self.kind, self.trace = "snr", [(0.0, float(snr))]
        self.rng = random.Random(seed)
        self.start_s = start_s

    @staticmethod
    def _number(spec: dict, key: str, default, positive: bool = False):
        value = spec.get(key, default)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise LinkError(f"{key}: expected a number, got {value!r}")
        if value < 0 or (positive and value == 0):
            raise LinkError(f"{key}: expected a {'positive' if positive else 'non-negative'} number, got {value}")
        return float(value)

    @property
    def active(self) -> bool:
        return bool(self.rate or self.trace or self.delay or self.jitter or self.loss)

    def set_rate(self, rate_bps: float) -> None:
        """A new fixed rate (a bandwidth re-allocation); a trace, if any, is dropped."""
        if not rate_bps > 0:
            raise LinkError(f"rate_bps: expected a positive number, got {rate_bps}")
        self.rate, self.trace = float(rate_bps), []

    def set_bandwidth(self, bandwidth_hz: float) -> None:
        """A new share of the band for an SNR link (its SNR trace is kept)."""
        if self.kind != "snr" or not self.trace:
            raise LinkError("bandwidth_hz: only an SNR link (snr_db or an SNR trace) has a band to change")
        if not bandwidth_hz > 0:
            raise LinkError(f"bandwidth_hz: expected a positive number, got {bandwidth_hz}")
        self.bandwidth = float(bandwidth_hz)

    # -- the channel over time ------------------------------------------------------------
    def _segment(self, t: float) -> tuple[float, float, float | None]:
        """(rate at t, end of its constant piece, SNR at t) for t in link time."""
        if not self.trace:
            return (self.rate or math.inf), math.inf, None
        period = self.trace[-1][0] if len(self.trace) > 1 else 0.0
        if period <= 0:
            value = self.trace[0][1]
            return self._rate_of(value), math.inf, value if self.kind == "snr" else None
        base = math.floor(t / period) * period if t >= period else 0.0
        local = t - base
        i = max(j for j, (ts, _) in enumerate(self.trace[:-1]) if ts <= local) if local >= 0 else 0
        value = self.trace[i][1]
        end = base + self.trace[i + 1][0]
        return self._rate_of(value), end, value if self.kind == "snr" else None

    def _rate_of(self, value: float) -> float:
        return snr_to_rate(value, self.bandwidth) if self.kind == "snr" else value

    def state(self, now_s: float) -> tuple[float | None, float | None]:
        """(rate bit/s, SNR dB) at a time (seconds on the agent's monotonic clock)."""
        rate, _, snr = self._segment(max(0.0, now_s - self.start_s))
        return (None if math.isinf(rate) else rate), snr

    def transfer(self, nbytes: int, now_s: float) -> LinkState:
        """Seconds to carry ``nbytes`` starting now: serialisation over the (time-varying) rate,
        propagation delay, jitter and retransmissions of lost packets."""
        t = max(0.0, now_s - self.start_s)
        rate0, snr0 = self.state(now_s)
        bits = 8.0 * nbytes
        elapsed = 0.0
        guard = 0
        while bits > 0:
            rate, end, _ = self._segment(t + elapsed)
            if math.isinf(rate):
                break
            span = end - (t + elapsed)
            if bits <= rate * span:
                elapsed += bits / rate
                bits = 0
            else:
                bits -= rate * span
                elapsed += span
            guard += 1
            if guard > 100000:
                raise LinkError("trace: a transfer did not finish in 100000 trace pieces")
        seconds = elapsed + self.delay
        if self.jitter:
            seconds += max(0.0, self.rng.gauss(0.0, self.jitter))
        if self.loss:
            packets = max(1, math.ceil(nbytes / self.mss))
            seconds += self.rto * sum(1 for _ in range(packets) if self.rng.random() < self.loss)
        return LinkState(rate0, snr0, seconds)

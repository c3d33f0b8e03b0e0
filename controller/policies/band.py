"""The shared uplink band on the testbed: ``BandAllocator`` re-solves bandwidth shares and γ under a bandwidth policy."""

from __future__ import annotations

import math
from collections.abc import Sequence

from controller.policies.estimates import Estimates, fit_verify
from controller.policies.goodput import snr_to_eta
from controller.policies.multispin import (
    Allocation,
    Device,
    equal_split,
    multispin_heterogeneous,
    multispin_homogeneous,
)


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

"""Draft-length and bandwidth policies against brute force on small cases."""

from __future__ import annotations

import itertools
import math
import random

import pytest

from controller.policies import (
    Device,
    LinkModel,
    equal_split,
    equalise,
    expected_tokens,
    heterogeneous_device_goodput,
    homogeneous_goodput,
    multispin_heterogeneous,
    multispin_homogeneous,
    optimal_gamma,
)

BITS = 8 * 60.0  # a top-8 float16 payload is about 60 bytes per draft token


def test_expected_tokens():
    assert expected_tokens(0.0, 4) == 1.0
    assert expected_tokens(1.0, 4) == 5.0
    assert expected_tokens(0.5, 2) == pytest.approx(1 + 0.5 + 0.25)
    # Monte Carlo with i.i.d. acceptance: accepted prefix + 1
    rng = random.Random(0)
    n, total = 20000, 0
    for _ in range(n):
        k = 0
        while k < 4 and rng.random() < 0.7:
            k += 1
        total += k + 1
    assert total / n == pytest.approx(expected_tokens(0.7, 4), rel=0.02)


def test_optimal_gamma_is_the_brute_force_maximum_and_shrinks_with_the_rate():
    previous = None
    for rate in (1e4, 1e5, 1e6, 1e7):
        model = LinkModel(alpha=0.8, t_draft=0.01, rate=rate, bits=BITS, header=400, t_verify=0.02)
        gamma, g = optimal_gamma(model, 12)
        brute = max(range(1, 13), key=model.goodput)
        assert gamma == brute and g == pytest.approx(model.goodput(brute))
        if previous is not None:
            assert gamma >= previous, "a faster uplink never wants shorter drafts here"
        previous = gamma


def random_devices(rng: random.Random, n: int) -> list[Device]:
    return [
        Device(alpha=rng.uniform(0.3, 0.9), t_draft=rng.uniform(0.005, 0.05), eta=rng.uniform(0.5, 8)) for _ in range(n)
    ]


@pytest.mark.parametrize("seed", range(6))
def test_homogeneous_allocation_beats_every_split_on_a_grid(seed):
    rng = random.Random(seed)
    devices = random_devices(rng, 3)
    band, tv = 2e5, 0.03
    alloc = multispin_homogeneous(devices, band, BITS, tv, gamma_max=8)
    assert sum(alloc.bandwidth) == pytest.approx(band)
    # equal finishing times at the chosen γ
    gamma = alloc.gamma[0]
    finish = [gamma * d.t_draft + gamma * BITS / (b * d.eta) for d, b in zip(devices, alloc.bandwidth, strict=True)]
    assert max(finish) - min(finish) < 1e-6 * max(finish)
    # brute force: every split on a 1/40 grid and every γ
    steps = 40
    best = 0.0
    for parts in itertools.product(range(1, steps), repeat=2):
        if sum(parts) >= steps:
            continue
        split = [parts[0] / steps * band, parts[1] / steps * band, (steps - sum(parts)) / steps * band]
        for g in range(1, 9):
            best = max(best, homogeneous_goodput(devices, split, g, BITS, lambda b, g_: tv)[0])
    assert alloc.goodput >= best - 1e-9
    assert alloc.goodput <= best * 1.05, "the grid's best is within 5% of the continuous optimum"


def test_equalising_gives_weaker_devices_more_bandwidth():
    devices = [Device(0.7, 0.01, 1.0), Device(0.7, 0.01, 4.0)]
    split, _ = equalise(devices, 1e5, 4, BITS)
    assert split[0] > split[1]


def compositions(total: int, parts: int):
    if parts == 1:
        yield (total,)
        return
    for k in range(1, total - parts + 2):
        for rest in compositions(total - k, parts - 1):
            yield (k, *rest)


@pytest.mark.parametrize("seed", range(6))
def test_heterogeneous_allocation_is_the_brute_force_optimum_on_its_grid(seed):
    rng = random.Random(100 + seed)
    devices = random_devices(rng, 3)
    band, tv, quanta = 1e5, 0.02, 24
    alloc = multispin_heterogeneous(devices, band, BITS, tv, gamma_max=8, quanta=quanta)
    best, best_split = -1.0, None
    for parts in compositions(quanta, 3):
        value = 0.0
        for d, k in zip(devices, parts, strict=True):
            value += max(heterogeneous_device_goodput(d, k * band / quanta, g, BITS, tv) for g in range(1, 9))
        if value > best:
            best, best_split = value, parts
    assert alloc.goodput == pytest.approx(best, rel=1e-12)
    assert sum(alloc.bandwidth) == pytest.approx(band)
    assert tuple(round(b / (band / quanta)) for b in alloc.bandwidth) == best_split or math.isclose(
        alloc.goodput, best, rel_tol=1e-12
    )


def test_multispin_beats_the_equal_split_baseline_when_devices_differ():
    devices = [Device(0.8, 0.01, 1.0), Device(0.8, 0.01, 2.0), Device(0.8, 0.02, 5.0), Device(0.8, 0.03, 20.0)]
    band = 4e5
    base = equal_split(devices, band, BITS, 4, 0.03)
    homo = multispin_homogeneous(devices, band, BITS, 0.03)
    hetero = multispin_heterogeneous(devices, band, BITS, 0.03)
    assert homo.goodput > base.goodput
    assert hetero.goodput > base.goodput


def _estimates(alpha: float, t_draft: float, snr_db: float, rounds: int = 6):
    from controller.policies import Estimates

    est = Estimates(weight=1.0, discount=1.0)
    for _ in range(rounds):
        # accepted drafts and one rejection per round: α = accepted / (accepted + 1)
        accepted = round(4 * alpha / (1 - alpha)) if alpha < 1 else 4
        est.add(
            gamma=max(4, accepted + 1),
            accepted=accepted,
            t_draft_s=t_draft * max(4, accepted + 1),
            bytes_up=20 + 60 * max(4, accepted + 1),
            per_token_bytes=60,
            up_s=None,
            reported_rate=None,
            t_verify_s=0.03,
            t_down_s=0.0,
            snr_db=snr_db,
            t_other_s=0.0,
        )
    return est


@pytest.mark.parametrize("policy", ["equal-split", "multispin-homogeneous", "multispin-heterogeneous"])
def test_band_allocator_solves_the_model_from_the_estimates(policy):
    from controller.policies import BandAllocator, snr_to_eta

    snr = {"a": 0.0, "b": 4.77, "c": 14.9}
    alloc = BandAllocator(policy, 3e5, list(snr), snr, gamma=4, gamma_max=8, warmup_rounds=3)
    assert alloc.share("a") == pytest.approx(1e5) and alloc.gamma("b") == 4 and alloc.predicted("c") is None
    # not every agent warmed up: nothing changes
    few = {n: _estimates(0.5, 0.01, s, rounds=2) for n, s in snr.items()}
    assert not alloc.resolve(few) and alloc.solves == 0
    ests = {n: _estimates(0.5, 0.01, s) for n, s in snr.items()}
    alloc.resolve(ests)
    devices = [Device(ests[n].alpha, ests[n].t_draft.value, snr_to_eta(snr[n])) for n in sorted(snr)]
    bits = ests["a"].bits_per_token.value
    header = ests["a"].header_bits.value
    if policy == "multispin-heterogeneous":
        want = multispin_heterogeneous(devices, 3e5, bits, 0.03, 8, 100, header)
    elif policy == "multispin-homogeneous":
        want = multispin_homogeneous(devices, 3e5, bits, 0.03, 8, header)
    else:
        want = equal_split(devices, 3e5, bits, 4, 0.03, header)
    assert alloc.allocation.bandwidth == pytest.approx(want.bandwidth)
    assert alloc.allocation.gamma == want.gamma
    assert sum(alloc.predicted(n) for n in snr) == pytest.approx(want.goodput)
    if policy != "equal-split":
        assert alloc.share("a") > alloc.share("c")  # the weakest channel gets more of the band


def test_band_allocator_re_splits_when_agents_leave_or_join():
    from controller.policies import BandAllocator

    snr = {"a": 0.0, "b": 4.77, "c": 14.9}
    alloc = BandAllocator("multispin-heterogeneous", 3e5, list(snr), snr, gamma=4, gamma_max=8, warmup_rounds=3)
    ests = {n: _estimates(0.5, 0.01, s) for n, s in snr.items()}
    assert alloc.resolve(ests)
    # c leaves: a and b split the whole band equally until the next solve, with the profile's γ
    assert alloc.remove("c") and not alloc.remove("c")
    assert [alloc.share(n) for n in "ab"] == pytest.approx([1.5e5, 1.5e5])
    assert [alloc.gamma(n) for n in "ab"] == [4, 4] and alloc.predicted("a") is None
    assert alloc.resolve({n: ests[n] for n in "ab"})
    assert sum(alloc.share(n) for n in "ab") == pytest.approx(3e5)
    assert alloc.share("a") > alloc.share("b")
    # d joins: an equal third each, and no re-solve until d has warmed up
    assert alloc.add("d", 10.0) and not alloc.add("d", 10.0)
    assert [alloc.share(n) for n in "abd"] == pytest.approx([1e5] * 3)
    assert not alloc.resolve({**{n: ests[n] for n in "ab"}, "d": _estimates(0.5, 0.01, 10.0, rounds=1)})
    assert alloc.resolve({**{n: ests[n] for n in "ab"}, "d": _estimates(0.5, 0.01, 10.0)})
    assert sum(alloc.share(n) for n in "abd") == pytest.approx(3e5)
    # the last one leaves: nothing is shared
    for n in "abd":
        alloc.remove(n)
    assert alloc.allocation.bandwidth == ()

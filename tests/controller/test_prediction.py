"""Calibrated predictions: the rounds being predicted are not inputs to their prediction."""

from __future__ import annotations

import copy
import random

from controller.prediction import CALIBRATION_ROUNDS, point_prediction
from controller.stats import cluster_mean, distinguishable


def _rounds(agent: str, n: int, seed: int) -> list[dict]:
    rnd = random.Random(seed)
    t = 0
    out = []
    for i in range(n):
        gamma = rnd.choice([2, 4, 6])
        draft = int(gamma * 20e6 * rnd.uniform(0.8, 1.2))
        up = int(8 * (100 + 60 * gamma) / 32e3 * 1e9)
        server = int(30e6 * rnd.uniform(0.8, 1.5))
        phases = {
            "drafting": [t, t + draft],
            "uplink": [t + draft, t + draft + up],
            "target_forward": [t + draft + up, t + draft + up + server],
            "verification": [t + draft + up + server, t + draft + up + server + 1_000_000],
        }
        accepted = rnd.randint(0, gamma)
        out.append(
            {
                "agent": agent,
                "prompt_id": "p0",
                "round": i,
                "draft_length": gamma,
                "accepted": accepted,
                "emitted": accepted + 1,
                "bytes_up": 100 + 60 * gamma,
                "channel": {"rate_bps": 32e3},
                "phases": phases,
            }
        )
        t = phases["verification"][1] + int(5e6 * rnd.uniform(0.5, 3))
    return out


def test_predicted_rounds_are_not_inputs_to_the_prediction():
    rounds = _rounds("agent-0", 30, 0) + _rounds("agent-1", 30, 1)
    base = point_prediction(rounds)
    assert base is not None and base["agents"] == 2
    # rewrite every outcome of the predicted rounds: acceptance, times, bytes, emitted tokens
    changed = copy.deepcopy(rounds)
    for agent in ("agent-0", "agent-1"):
        later = [r for r in changed if r["agent"] == agent][CALIBRATION_ROUNDS:]
        for r in later:
            r["accepted"] = 0
            r["emitted"] = 1
            r["bytes_up"] *= 7
            for phase in ("target_forward", "verification"):
                a, b = r["phases"][phase]
                r["phases"][phase] = [a, a + 50 * (b - a)]
    after = point_prediction(changed)
    assert after["predicted_tokens_per_s"] == base["predicted_tokens_per_s"]
    assert after["measured_tokens_per_s"] < base["measured_tokens_per_s"]  # the measurement did see them
    # while the calibration rounds do move it
    calib = copy.deepcopy(rounds)
    for r in [r for r in calib if r["agent"] == "agent-0"][:CALIBRATION_ROUNDS]:
        r["accepted"] = r["draft_length"]
    assert point_prediction(calib)["predicted_tokens_per_s"] > base["predicted_tokens_per_s"]


def test_cluster_mean_and_the_two_se_rule():
    mean, se, n, k = cluster_mean([("a", 1.0), ("a", 1.0), ("b", 0.0), ("b", 0.0)])
    assert (mean, n, k) == (0.5, 4, 2)
    assert se == 0.5  # two clusters at 1 and 0: the spread of cluster means, not of positions
    assert cluster_mean([("a", 1.0)])[1] is None
    assert distinguishable(0.3, 0.1) and not distinguishable(0.15, 0.1) and not distinguishable(0.3, None)


def test_residual_estimate_ignores_one_spiking_round():
    """A round that waited 5 s for the CPU does not move the policies' residual estimate."""
    from controller.policies import RunningMedian

    m = RunningMedian()
    for _ in range(10):
        m.add(0.05)
    m.add(5.0)
    assert m.value == 0.05

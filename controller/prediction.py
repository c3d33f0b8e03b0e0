"""Goodput predicted before it is measured: a calibration phase, then a prediction of the rest.

The policies' own ``predicted_goodput`` (summary column
``predicted_tokens_per_s``) comes from online estimates that include the
round being predicted, and its ``t_other`` is each round's measured cycle
minus its modelled parts: a hindsight diagnostic, not a prediction.  Here,
per agent and grid point:

- *calibration*: the agent's first ``CALIBRATION_ROUNDS`` rounds of the point
  give the model's parameters: acceptance α (accepted / trials), drafting
  seconds per token, uplink bits per draft token and per round, uplink
  seconds per round when no emulated rate is known, server seconds per
  round (target pass + verification) and the residual cycle time;
- *prediction*: for each later round, E_α(γ) tokens in T(γ) seconds, from
  the calibrated parameters and only two inputs of that round that the
  controller chooses or knows before it runs: its γ (the policy's choice)
  and its emulated uplink rate (the channel state).  Nothing measured in a
  predicted round (acceptance, times, bytes) enters the prediction;
- *measured*: the same rounds' emitted tokens over their wall time.

The point's predicted and measured goodput are the sums over its agents.
"""

from __future__ import annotations

from collections import defaultdict

from controller.policies import expected_tokens

CALIBRATION_ROUNDS = 6
INPUTS = ("draft_length", "channel.rate_bps")  # what a predicted round contributes to its prediction


def _span_s(r: dict, phase: str) -> float:
    a, b = (r.get("phases") or {}).get(phase) or (0, 0)
    return max(0.0, (b - a) / 1e9)


def _start(r: dict) -> int:
    return ((r.get("phases") or {}).get("drafting") or [r.get("ctrl_recv_ns", 0)])[0]


def _end(r: dict) -> int:
    return ((r.get("phases") or {}).get("verification") or [0, r.get("ctrl_reply_ns", 0)])[1]


def _rate(r: dict) -> float | None:
    return (r.get("channel") or {}).get("rate_bps")


def calibrate(rounds: list[dict]) -> dict:
    """Model parameters from calibration rounds (one agent, in order)."""
    drafted = sum(r["draft_length"] for r in rounds)
    accepted = sum(r["accepted"] for r in rounds)
    trials = accepted + sum(1 for r in rounds if r["accepted"] < r["draft_length"])
    bits = [8 * r["bytes_up"] / r["draft_length"] for r in rounds]
    up_known = [
        (r, 8 * r["bytes_up"] / _rate(r)) for r in rounds if _rate(r)
    ]  # seconds the emulated link holds the payload
    others = []
    for a, b in zip(rounds, rounds[1:], strict=False):
        if a["prompt_id"] != b["prompt_id"]:
            continue
        cycle = (_start(b) - _start(a)) / 1e9
        modelled = _span_s(a, "drafting") + _span_s(a, "uplink") + _span_s(a, "target_forward")
        others.append(max(0.0, cycle - modelled - _span_s(a, "verification")))
    others.sort()
    return {
        "rounds": len(rounds),
        "alpha": min(accepted / trials, 0.999) if trials else 0.0,
        "t_draft_per_token_s": sum(_span_s(r, "drafting") for r in rounds) / drafted,
        "bits_per_token": sum(bits) / len(bits),
        # uplink seconds beyond the emulated serialisation (or all of it without an emulated rate)
        "t_up_extra_s": max(0.0, sum(_span_s(r, "uplink") - s for r, s in up_known) / len(up_known))
        if up_known
        else sum(_span_s(r, "uplink") for r in rounds) / len(rounds),
        "emulated": bool(up_known),
        "t_server_s": sum(_span_s(r, "target_forward") + _span_s(r, "verification") for r in rounds) / len(rounds),
        "t_other_s": others[len(others) // 2] if others else 0.0,  # the median: robust to one stalled round
    }


def predict_round(params: dict, gamma: int, rate_bps: float | None) -> tuple[float, float]:
    """(expected tokens, seconds) of a round with this γ on a link of this rate, from calibration alone."""
    up = params["t_up_extra_s"]
    if params["emulated"] and rate_bps:
        up += gamma * params["bits_per_token"] / rate_bps
    t = gamma * params["t_draft_per_token_s"] + up + params["t_server_s"] + params["t_other_s"]
    return expected_tokens(params["alpha"], gamma), t


def point_prediction(rounds: list[dict], calibration_rounds: int = CALIBRATION_ROUNDS) -> dict | None:
    """Predicted and measured goodput (tokens/s) of a point's rounds after each agent's calibration."""
    by_agent: dict[str, list[dict]] = defaultdict(list)
    for r in rounds:
        by_agent[r["agent"]].append(r)
    predicted = measured = 0.0
    used = 0
    for agent_rounds in by_agent.values():
        agent_rounds.sort(key=_start)
        calib, rest = agent_rounds[:calibration_rounds], agent_rounds[calibration_rounds:]
        if len(calib) < calibration_rounds or not rest:
            continue
        params = calibrate(calib)
        tokens = seconds = 0.0
        for r in rest:
            e, t = predict_round(params, r["draft_length"], _rate(r))
            tokens += e
            seconds += t
        predicted += tokens / seconds
        wall = (_end(rest[-1]) - _start(rest[0])) / 1e9
        if wall > 0:
            measured += sum(r["emitted"] for r in rest) / wall
        used += 1
    if not used:
        return None
    return {"predicted_tokens_per_s": predicted, "measured_tokens_per_s": measured, "agents": used}

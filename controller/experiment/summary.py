"""The figures of one distributed point measured live: totals, agents, and per-host energy.

``point_summary`` is what ``specbed local`` prints and returns; it is kept
in the manifest's segment (``summaries``) and in summary.json's ``points``.
Unlike summary.csv (``controller.analysis``, from the folder's files alone)
it holds what only the running controller knew: agent states, errors,
failed prompts, telemetry row counts.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from controller.energy import host_summary, read_series
from controller.results import RoundRecord, summarise
from controller.serve import Controller
from controller.shared_energy import attribute_shared, run_energy


def point_summary(
    rounds: list[RoundRecord],
    controller: Controller,
    telemetry_dir: Path,
    window: tuple[int, int],
    wall_s: float,
    seg: dict[str, Any],
    prompts: tuple[int, int],
) -> dict[str, Any]:
    """Totals of a point's ``rounds`` (``summarise``) with its hosts' energy (``host_summaries``).

    ``window`` is the point's generation window and ``wall_s`` its length
    (controller clock); ``prompts`` is (finished, requested).  Agent states,
    errors, failed prompts and exit codes are the controller's at the end of
    the segment (a one-point run: the point's own).
    """
    vocab_size = seg["target"]["vocab_size"]
    summary = summarise(rounds, vocab_size, wall_s, controller.errors, controller.agent_summaries())
    summary["total_wall_s"] = seg["wall_s"]  # including agent start-up and drafter loading
    summary["prompts"], summary["prompts_requested"] = prompts
    summary["prompts_failed"] = list(controller.failed_prompts)
    summary["agent_exit_codes"] = dict(seg.get("agent_exit_codes", {}))
    telemetry = seg["telemetry"]
    describes = {"controller": telemetry.get("controller")}
    describes |= {name: s["drafter"].get("telemetry") for name, s in summary["agents"].items()}
    tokens = summary["tokens_generated"]
    rate = telemetry["rate_hz"]
    summary["hosts"] = host_summaries(telemetry_dir, rounds, controller, window, tokens, rate, describes)
    summary["energy"] = run_energy(summary["hosts"], tokens)  # every physical device once
    summary["telemetry"] = {"rate_hz": rate, "rows": telemetry.get("rows"), "errors": telemetry.get("errors")}
    return summary


def host_summaries(
    telemetry_dir: Path,
    rounds: list[RoundRecord],
    controller: Controller,
    window: tuple[int, int],
    tokens: int,
    rate: float,
    describes: dict[str, list[dict] | None] | None = None,
) -> dict[str, dict]:
    """Per-host energy, power, memory and phase latency (see controller.energy).

    ``describes`` (host -> its samplers' ``describe()``) names the physical
    device each stream reads; a device read by several hosts is counted once
    and its energy split among them (controller.shared_energy).
    """
    records = [asdict(r) for r in rounds]
    clocks = controller.clocks()
    out, series = {}, {}
    hosts = {"controller": None, **{name: clocks[name] for name in clocks}}
    for host, clock in hosts.items():
        path = telemetry_dir / f"{host}.csv"
        to_ctrl = clock.to_controller if clock is not None and clock.samples else None
        cols = series[host] = read_series(path, to_ctrl) if path.is_file() else None
        out[host] = host_summary(cols, records, host, host == "controller", window, tokens)
        if cols:
            # The generation window (controller clock) as far as this host
            # was sampling: an agent that joined late is not short of samples.
            a, b = max(window[0], cols["t_ns"][0]), min(window[1], cols["t_ns"][-1])
            out[host]["samples_in_window"] = sum(1 for t in cols["t_ns"] if a <= t <= b)
            out[host]["samples_expected_in_window"] = int(rate * max(b - a, 0) / 1e9) + 1
    attribute_shared(out, series, describes or {}, window, tokens)
    return out

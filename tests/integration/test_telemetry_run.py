"""`specbed local` writes telemetry for every host at the configured rate."""

from __future__ import annotations

import csv
import dataclasses
import json

import pytest

from controller.local import run_local
from controller.profiles import load_experiment


@pytest.fixture(scope="module")
def telemetry_run(tmp_path_factory, tiny_pair):
    """A two-agent tiny run long enough to count telemetry samples; its result and folder."""
    tmp = tmp_path_factory.mktemp("telemetry")
    prompts = tmp / "prompts.jsonl"
    prompts.write_text("".join(f'{{"id": "q{i}", "prompt_token_ids": [0, {2 + i}]}}\n' for i in range(8)))
    experiment = load_experiment("tiny", prompts=str(prompts), max_new_tokens=48)
    # long enough on any machine: the seed fixes 64 rounds of 4 drafts, each draft held back 20 ms
    # (a sleep, no CPU), so >= 2.5 s with the two agents drafting side by side (3.7 s on the 2-core VM)
    slow = {"up": {}, "down": {}, "draft_delay_s": 0.02}
    links = {"up": {}, "down": {}, "seed": 0, "agents": {"agent-0": slow, "agent-1": slow}}
    experiment = dataclasses.replace(experiment, links=links)
    return run_local(experiment, tmp / "run", agents=2, target=tiny_pair[0]), tmp / "run"


def test_local_run_writes_telemetry_for_every_host(telemetry_run):
    run, out = telemetry_run
    summary = run.summary
    manifest = json.loads((out / "manifest.json").read_text())["segments"][0]
    assert summary["wall_s"] > 2.0, "the run must be long enough to count samples"
    assert set(summary["hosts"]) == {"controller", "agent-0", "agent-1"}
    for host, h in summary["hosts"].items():
        with open(out / "telemetry" / "segment-0" / f"{host}.csv") as fh:
            rows = list(csv.DictReader(fh))
        assert {"t_ns", "cpu_percent", "mem_used_bytes", "proc_rss_bytes"} <= set(rows[0])
        assert all(r["proc_rss_bytes"] for r in rows)
        expected = h["samples_expected_in_window"]
        assert h["samples_in_window"] >= 0.9 * expected, (host, h["samples_in_window"], expected)
        # no readable power sensor on this machine: null, with the reason
        assert h["energy_j"] is None and h["mean_power_w"] is None and h["joules_per_generated_token"] is None
        assert h["power_missing"] and manifest["telemetry"]["power_missing"][host] == h["power_missing"]
        assert h["peak_memory_bytes"] > 0
        assert all(isinstance(v, float) for p, v in h["phase_mean_s"].items() if v is not None)
    assert summary["hosts"]["controller"]["phase_mean_s"]["target_forward"] > 0
    assert summary["hosts"]["agent-0"]["phase_mean_s"]["drafting"] > 0
    assert manifest["telemetry"]["rate_hz"] == 20.0
    # CPU and memory from psutil, the default host sampler
    for host in ("controller", "agent-0", "agent-1"):
        assert [d["sampler"] for d in manifest["telemetry"][host]][0] == "psutil"


def test_report_draws_the_plots(tmp_path, telemetry_run):
    from controller.cli import main

    _, out = telemetry_run
    assert main(["report", str(out)]) == 0
    for name in ("power.png", "latency.png", "energy_per_token.png"):
        data = (out / "report" / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5_000, name
    assert main(["report", str(tmp_path)]) == 2  # not a run folder: a clear error

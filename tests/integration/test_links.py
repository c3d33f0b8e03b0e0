"""Emulated links on real agents: each round records the channel it saw and pays its time."""

from __future__ import annotations

import json

import yaml

from controller.experiment import run_experiment


def test_emulated_uplink_is_paid_and_recorded_per_round(tmp_path, tiny_pair):
    profile = {
        "name": "links",
        "models": "tiny-llama",
        "prompts": "tiny",
        "agents": 2,
        "generation": {"temperature": 1.0, "draft_length": 3, "top_k": 4, "max_new_tokens": 8},
        "links": {
            "up": {"rate_bps": "50kbit", "delay_s": "5ms"},
            "down": {"rate_bps": "1mbit"},
            "agents": {"agent-1": {"up": {"rate_bps": "20kbit"}, "draft_delay_s": 0.01}},
        },
        "sweep": {"draft_policy": ["fixed", "tkslt"]},
    }
    path = tmp_path / "links.yaml"
    path.write_text(yaml.safe_dump(profile))
    run_experiment(str(path), tmp_path / "run", target=tiny_pair[0])
    rounds = [json.loads(x) for x in (tmp_path / "run" / "rounds.jsonl").read_text().splitlines()]
    assert rounds
    want = {"agent-0": 50e3, "agent-1": 20e3}
    for r in rounds:
        channel = r["channel"]
        rate = want[r["agent"]]
        assert channel["rate_bps"] == rate
        # held back for the frame's serialisation plus the propagation delay
        assert channel["up_s"] == __import__("pytest").approx(8 * r["bytes_up"] / rate + 0.005, rel=1e-6)
        up = r["phases"]["uplink"]
        assert (up[1] - up[0]) / 1e9 >= channel["up_s"] * 0.99
        assert r["next_draft_length"] >= 1 and r["alpha_estimate"] is not None
        if r["agent"] == "agent-1":
            drafting = r["phases"]["drafting"]
            assert (drafting[1] - drafting[0]) / 1e9 >= 0.01 * r["draft_length"] * 0.99
    tkslt = [r for r in rounds if "draft_policy=tkslt" in r["point"]]
    assert tkslt and all(r["predicted_goodput"] is not None for r in tkslt[2:])

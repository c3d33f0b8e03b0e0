"""A remote agent killed mid-run: the controller sees its connection close and gives its prompt to the other."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter

import yaml

from controller.experiment.agents import spawn_agent
from tests.conftest import agent_key_args, free_port, read_finished_jsonl


def test_a_killed_remote_agent_is_lost_and_its_prompt_redone(tmp_path, keys):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(
        "".join(json.dumps({"id": f"c{i}", "prompt_token_ids": [0, 3 + 5 * i, 4 + i]}) + "\n" for i in range(8))
    )
    profile = {
        "name": "loss",
        "models": "tiny-llama",
        "prompts": str(prompts),
        "agents": 2,
        "seeds": [0],
        "generation": {"temperature": 1.0, "draft_length": 3, "top_k": 4, "max_new_tokens": 24},
    }
    path = tmp_path / "loss.yaml"
    path.write_text(yaml.safe_dump(profile, sort_keys=False))
    port, tele, out = free_port(), free_port(), tmp_path / "run"
    # the controller and the agents are separate processes, as on a testbed (no process to reap)
    run = subprocess.Popen(
        [sys.executable, "-m", "controller.cli", "run", str(path), "--out", str(out)]
        + ["--bind", f"tcp://127.0.0.1:{port}", "--telemetry-port", str(tele), "--keys", str(keys)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    agents = {  # forks of this process's agent fork server: python -m agent without its imports
        name: spawn_agent(f"tcp://127.0.0.1:{port}", name, tmp_path / f"{name}.log", None, agent_key_args(keys, name))
        for name in ("edge-0", "edge-1")
    }
    try:
        deadline = time.monotonic() + 400  # agent processes import torch first: slow on a loaded machine
        while sum(r["agent"] == "edge-1" for r in read_finished_jsonl(out / "rounds.jsonl")) < 2:
            assert time.monotonic() < deadline, "edge-1 never drafted two rounds"
            assert run.poll() is None, run.stdout.read()
            time.sleep(0.02)
        os.kill(agents["edge-1"].pid, signal.SIGKILL)
        killed_ns = time.monotonic_ns()
        held = [r for r in read_finished_jsonl(out / "rounds.jsonl") if r["agent"] == "edge-1"][-1]["prompt_id"]
        log, _ = run.communicate(timeout=180)  # hangs without the fix: the killed agent's prompt never finishes
        assert run.returncode == 0, log
    finally:
        for p in [run, *agents.values()]:
            if p.poll() is None:
                p.kill()
    assert "edge-1 left: its connection closed" in log
    outputs = read_finished_jsonl(out / "outputs.jsonl")
    assert sorted(o["prompt_id"] for o in outputs) == [f"c{i}" for i in range(8)]
    by_prompt = {o["prompt_id"]: o for o in outputs}
    if held not in {o["prompt_id"] for o in outputs if o["agent"] == "edge-1"}:
        assert by_prompt[held]["agent"] == "edge-0"  # unfinished when edge-1 died: redone by edge-0
    rounds = read_finished_jsonl(out / "rounds.jsonl")
    assert all(r["ctrl_recv_ns"] < killed_ns for r in rounds if r["agent"] == "edge-1")
    (segment,) = json.loads((out / "manifest.json").read_text())["segments"]
    assert segment["agents"]["edge-1"]["left"] == "its connection closed"
    assert segment["agents"]["edge-0"]["left"] is None and segment["agents"]["edge-0"]["prompts"] >= 1
    # the abandoned attempt's rounds left rounds.jsonl: each round of each prompt once, no gap
    assert max(Counter((r["prompt_id"], r["round"]) for r in rounds).values()) == 1
    for o in outputs:
        mine = sorted(r["round"] for r in rounds if r["prompt_id"] == o["prompt_id"])
        assert mine == list(range(len(mine))), f"{o['prompt_id']}: rounds {mine}"
        assert sum(r["emitted"] for r in rounds if r["prompt_id"] == o["prompt_id"]) == len(o["token_ids"])
    discarded = read_finished_jsonl(out / "discarded_rounds.jsonl")
    assert segment["abandoned_rounds"] == len(discarded) and all(r["agent"] == "edge-1" for r in discarded)
    if by_prompt[held]["agent"] == "edge-0":
        assert {r["prompt_id"] for r in discarded} == {held}
    # frames it sent before dying are dropped quietly, not counted as protocol errors
    assert not segment["errors"].get("unknown_agent"), segment["errors"]

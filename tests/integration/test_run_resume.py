"""`specbed run` killed mid-way and resumed: every round once, every prompt once, same tokens."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter

import psutil
import pytest
import yaml

from controller.experiment import RunError, expand_grid, run_experiment
from controller.experiment.agents import spawn_agent
from controller.profiles import load_experiment
from tests.conftest import agent_key_args, free_port, read_finished_jsonl

PROFILE = {
    "name": "resume-test",
    "models": "tiny-llama",
    "prompts": "tiny",
    "agents": 2,
    "seeds": [0],
    "generation": {"temperature": 1.0, "draft_length": 3, "top_k": 4, "max_new_tokens": 16},
    "sweep": {"top_k": [2, 8], "reconstruction": ["renormalise", "tail-fill"]},
    "baselines": ["target-only", "colocated", "full-distribution"],
    "telemetry": {"rate_hz": 10},
}


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture()
def profile(tmp_path):
    path = tmp_path / "resume-test.yaml"
    path.write_text(yaml.safe_dump(PROFILE, sort_keys=False))
    return str(path)


def kill_mid_point(profile, out):
    """Start `specbed run` and SIGKILL it while a distributed point has prompts in flight."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "controller.cli", "run", profile, "--out", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 240
    agents: list[psutil.Process] = []
    try:
        while time.monotonic() < deadline:
            assert proc.poll() is None, "the run finished before it could be killed"
            agents = agents or psutil.Process(proc.pid).children(recursive=True)
            outputs = read_finished_jsonl(out / "outputs.jsonl")
            done = {(o["point"], o["prompt_id"]) for o in outputs}
            rounds = read_finished_jsonl(out / "rounds.jsonl")
            in_flight = {(r["point"], r["prompt_id"]) for r in rounds} - done
            distributed = any(p.startswith(("top-k", "full-distribution")) for p, _ in in_flight)
            if len(outputs) >= 9 and distributed:
                proc.send_signal(signal.SIGKILL)
                proc.wait(timeout=10)
                return len(outputs), len(in_flight), agents
            time.sleep(0.01)
        raise AssertionError("no distributed point with prompts in flight within 240 s")
    finally:
        if proc.poll() is None:
            proc.kill()


def test_killed_run_resumes_with_no_duplicate_and_no_missing_round(tmp_path, profile, tiny_pair):
    experiment = load_experiment(profile)
    grid = expand_grid(experiment)
    reference = tmp_path / "reference"
    run_experiment(profile, reference, target=tiny_pair[0])
    # seven points, one segment: each agent's samplers are described once for the segment, whatever the point
    telemetry = json.loads((reference / "manifest.json").read_text())["segments"][0]["telemetry"]
    for agent in ("agent-0", "agent-1"):
        assert telemetry[agent] and telemetry[agent][0]["sampler"] == "psutil", (agent, telemetry[agent])

    out = tmp_path / "killed"
    finished_before, in_flight, agents = kill_mid_point(profile, out)
    assert in_flight >= 1
    # local agents die with the controller, even when it is killed with SIGKILL
    gone, alive = psutil.wait_procs(agents, timeout=15)
    assert not alive, f"agents outlived the killed controller: {alive}"

    run_experiment(None, out, resume=True, target=tiny_pair[0])

    manifest = json.loads((out / "manifest.json").read_text())
    assert len(manifest["segments"]) == 2
    assert manifest["segments"][1]["discarded_rounds"] >= in_flight

    outputs = read_jsonl(out / "outputs.jsonl")
    rounds = read_jsonl(out / "rounds.jsonl")
    keys = Counter((o["point"], o["prompt_id"]) for o in outputs)
    expected = {(p.id, q.id) for p in grid for q in experiment.prompts}
    assert set(keys) == expected, "a prompt is missing"
    assert max(keys.values()) == 1, "a prompt was recorded twice"
    per_prompt = Counter((r["point"], r["prompt_id"], r["round"]) for r in rounds)
    assert max(per_prompt.values()) == 1, "a round was recorded twice"
    for o in outputs:
        mine = sorted(r["round"] for r in rounds if (r["point"], r["prompt_id"]) == (o["point"], o["prompt_id"]))
        assert mine == list(range(len(mine))) and mine, f"rounds of {o['point']} {o['prompt_id']} have a gap"
        emitted = sum(r["emitted"] for r in rounds if (r["point"], r["prompt_id"]) == (o["point"], o["prompt_id"]))
        assert emitted == len(o["token_ids"]) == o["tokens"]
    assert sum(1 for o in outputs if o["segment"] == 0) == finished_before

    # the same seeds give the same tokens as the run that was never interrupted
    want = {(o["point"], o["prompt_id"]): o["token_ids"] for o in read_jsonl(reference / "outputs.jsonl")}
    got = {(o["point"], o["prompt_id"]): o["token_ids"] for o in outputs}
    assert got == want

    with open(out / "summary.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == len({p.config for p in grid})
    assert all(r["prompts"] == r["prompts_expected"] for r in rows)
    assert (out / "report.md").is_file() and (out / "report" / "k_sweep.png").is_file()

    # resuming a finished run runs nothing and changes no record
    before = (out / "rounds.jsonl").read_bytes()
    run_experiment(None, out, resume=True, target=tiny_pair[0])
    assert (out / "rounds.jsonl").read_bytes() == before


def test_a_used_folder_is_not_overwritten(tmp_path, profile):
    out = tmp_path / "used"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(RunError, match="--resume"):
        run_experiment(profile, out)
    assert (out / "keep.txt").read_text() == "mine"
    assert os.listdir(out) == ["keep.txt"]


def test_run_with_remote_agents_and_an_agent_sweep(tmp_path, tiny_pair, keys):
    """`specbed run --bind`: agents started elsewhere; the sweep over agents uses 1, then 2 of them."""
    data = dict(PROFILE, sweep={"agents": [1, 2]}, baselines=["full-distribution"], seeds=[0])
    data["generation"] = dict(PROFILE["generation"], max_new_tokens=6)
    path = tmp_path / "remote.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    port, tele = free_port(), free_port()
    agents = [  # forks of this process's agent fork server: python -m agent without its imports
        spawn_agent(
            f"tcp://127.0.0.1:{port}", f"edge-{i}", tmp_path / f"edge-{i}.log", None, agent_key_args(keys, f"edge-{i}")
        )
        for i in range(2)
    ]
    try:
        run_experiment(
            str(path),
            tmp_path / "run",
            bind=f"tcp://127.0.0.1:{port}",
            telemetry_port=tele,
            target=tiny_pair[0],
            keys_dir=keys,
        )
        # the agents left when the run said bye
        assert [a.wait(timeout=30) for a in agents] == [0, 0]
    finally:
        for a in agents:
            if a.poll() is None:
                a.kill()
    outputs = read_jsonl(tmp_path / "run" / "outputs.jsonl")
    by_point: dict[str, set] = {}
    for o in outputs:
        by_point.setdefault(o["point"], set()).add(o["agent"])
    one = next(p for p in by_point if p.startswith("top-k") and "agents=1" in p)
    two = next(p for p in by_point if p.startswith("top-k") and "agents=2" in p)
    assert len(by_point[one]) == 1, "a one-agent point used one agent"
    assert by_point[two] <= {"edge-0", "edge-1"}
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["segments"][0]["kind"] == "remote"
    assert set(manifest["segments"][0]["agents"]) == {"edge-0", "edge-1"}
    assert manifest["segments"][0]["telemetry"]["rows"].get("edge-0", 0) > 0

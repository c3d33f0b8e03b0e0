"""`specbed serve`'s remote mode: the controller binds, agents started elsewhere connect."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from controller.experiment.agents import AgentsMissing
from controller.local import local_summary, run_local
from controller.profiles import load_experiment
from tests.conftest import agent_key_args, free_port


def test_remote_agent_is_served_and_sends_telemetry_to_the_fixed_port(tmp_path, tiny_pair, keys):
    port, tele_port = free_port(), free_port()
    log = open(tmp_path / "edge.log", "w")
    agent = subprocess.Popen(
        [sys.executable, "-m", "agent", "--connect", f"tcp://127.0.0.1:{port}", "--name", "edge-1", "--threads", "1"]
        + agent_key_args(keys, "edge-1"),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        experiment = load_experiment("tiny", max_new_tokens=6)
        statuses: list[str] = []
        run = run_local(
            experiment,
            tmp_path / "run",
            agents=1,
            target=tiny_pair[0],
            bind=f"tcp://127.0.0.1:{port}",
            telemetry_port=tele_port,
            on_status=statuses.append,
            keys_dir=keys,
        )
    finally:
        agent.terminate()
        agent.wait(timeout=30)
    assert run.summary["prompts"] == len(experiment.prompts)
    assert set(run.summary["agents"]) == {"edge-1"}
    assert statuses and statuses[0] == "waiting for agents: 0/1 ready"
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())["segments"][0]
    assert manifest["kind"] == "remote"
    assert manifest["security"]["mode"] == "curve" and "edge-1" in manifest["security"]["enrolled"]
    assert run.summary["telemetry"]["rows"].get("edge-1", 0) > 0
    # the agent reports the sampler families it lacks, with reasons, not only those it has
    families = {d["sampler"]: d for d in manifest["telemetry"]["edge-1"]}
    assert {"rapl", "nvml", "jetson"} <= set(families)
    assert all(d["available"] or d["missing_reason"] for d in families.values())


def test_no_agent_in_time_is_an_error_and_the_run_folder_is_written(tmp_path, tiny_pair, keys):
    experiment = load_experiment("tiny")
    with pytest.raises(AgentsMissing, match=r"only 0 of 2 agents ready after 1 s \(ready: none\)"):
        run_local(
            experiment,
            tmp_path / "run",
            agents=2,
            target=tiny_pair[0],
            bind="tcp://127.0.0.1:*",
            wait_agents_s=1.0,
            keys_dir=keys,
        )
    summary = local_summary(tmp_path / "run")
    assert summary["prompts"] == 0 and summary["prompts_requested"] == len(experiment.prompts)

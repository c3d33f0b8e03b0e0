"""`local`, `serve` and `run` load each model on the profile's device and in the profile's dtype.

Real runs of the tiny pair with real agent subprocesses: the manifest records
where and in which dtype the target was loaded, and every agent's READY (in
the summary's per-agent ``drafter``) where and in which dtype it loaded the
drafter it was told to in CONFIGURE.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
import yaml

from agent.models import ModelError
from controller.experiment import run_experiment
from controller.keys import make_keys
from controller.local import run_local
from controller.profiles import PROFILES_DIR, load_experiment
from tests.conftest import free_port


def write_profile(tmp_path, name: str, **extra) -> str:
    data = yaml.safe_load((PROFILES_DIR / "experiments" / "tiny.yaml").read_text())
    data["generation"]["max_new_tokens"] = 6
    data.update(extra)
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return str(path)


def cuda_device_profile(tmp_path) -> str:
    data = yaml.safe_load((PROFILES_DIR / "devices" / "cpu-host.yaml").read_text())
    data.update(name="some-gpu", torch_device="cuda")
    path = tmp_path / "some-gpu.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def test_local_loads_target_and_drafters_in_the_profiles_dtype(tmp_path):
    profile = write_profile(
        tmp_path,
        "bf16",
        dtype={"target": "bfloat16", "drafter": "float16"},
        devices={"controller": "cpu-host", "agents": "cpu-host"},
    )
    run = run_local(load_experiment(profile), tmp_path / "run")
    assert run.summary["prompts"] == run.summary["prompts_requested"] > 0
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())["segments"][0]
    assert manifest["target"]["dtype"] == "bfloat16" and manifest["target"]["device"] == "cpu"
    assert len(run.summary["agents"]) == 2
    for agent in run.summary["agents"].values():
        assert (agent["drafter"]["device"], agent["drafter"]["dtype"]) == ("cpu", "float16")


def test_serve_tells_a_remote_agent_where_to_draft(tmp_path, tiny_pair):
    """The agent is started with --device cuda; the profile's cpu-host agents and bfloat16 win."""
    port = free_port()
    keys = tmp_path / "keys"
    make_keys(keys, ["edge-1"])  # a remote agent is enrolled (SECURITY.md)
    log = open(tmp_path / "edge.log", "w")
    agent = subprocess.Popen(
        [sys.executable, "-m", "agent", "--connect", f"tcp://127.0.0.1:{port}", "--name", "edge-1", "--device", "cuda"]
        + ["--key", str(keys / "agents" / "edge-1.key_secret"), "--server-key", str(keys / "controller.key")],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        profile = write_profile(tmp_path, "serve", dtype="bfloat16", devices={"agents": "cpu-host"})
        run = run_local(
            load_experiment(profile),
            tmp_path / "run",
            agents=1,
            target=tiny_pair[0],
            bind=f"tcp://127.0.0.1:{port}",
            telemetry_port=free_port(),
            keys_dir=keys,
        )
    finally:
        agent.terminate()
        agent.wait(timeout=30)
    info = run.summary["agents"]["edge-1"]["drafter"]
    assert (info["device"], info["dtype"]) == ("cpu", "bfloat16")
    assert run.summary["prompts"] == run.summary["prompts_requested"]


def test_run_places_target_agents_and_the_colocated_drafter(tmp_path):
    profile = write_profile(
        tmp_path,
        "run",
        dtype={"target": "bfloat16", "drafter": "bfloat16"},
        devices={"controller": "cpu-host", "agents": "cpu-host"},
        agents=1,
        baselines=["colocated"],
    )
    run_experiment(profile, tmp_path / "run")
    segment = json.loads((tmp_path / "run" / "manifest.json").read_text())["segments"][0]
    assert segment["target"]["dtype"] == "bfloat16" and segment["target"]["device"] == "cpu"
    assert segment["colocated_drafter"]["dtype"] == "bfloat16"
    infos = [a["drafter"] for a in segment["agents"].values()]
    assert infos and all((i["device"], i["dtype"]) == ("cpu", "bfloat16") for i in infos)


def test_default_placement_is_float32_on_the_cpu(tmp_path):
    experiment = load_experiment("tiny", max_new_tokens=4)
    assert experiment.dtypes == {"target": "auto", "drafter": "auto"}
    run = run_local(experiment, tmp_path / "run", agents=1)
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())["segments"][0]
    assert manifest["target"]["dtype"] == "float32"
    assert run.summary["agents"]["agent-0"]["drafter"]["dtype"] == "float32"


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without CUDA")
def test_local_honours_a_cuda_controller_device(tmp_path):
    """Before, `local` ignored devices.controller and ran on the CPU; now it asks torch for CUDA."""
    profile = write_profile(tmp_path, "gpu", devices={"controller": cuda_device_profile(tmp_path)})
    with pytest.raises(ModelError, match="device: 'cuda'"):
        run_local(load_experiment(profile), tmp_path / "run")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_local_on_cuda_in_bfloat16(tmp_path):
    gpu = cuda_device_profile(tmp_path)
    profile = write_profile(tmp_path, "cuda", dtype="bfloat16", devices={"controller": gpu, "agents": gpu})
    run = run_local(load_experiment(profile), tmp_path / "run")
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())["segments"][0]
    assert manifest["target"]["device"] == "cuda" and manifest["target"]["dtype"] == "bfloat16"
    for agent in run.summary["agents"].values():
        assert agent["drafter"]["device"] == "cuda" and agent["drafter"]["dtype"] == "bfloat16"

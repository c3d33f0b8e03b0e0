"""Records that cannot lie, with real processes: one run per folder, no abandoned round, no orphaned agent."""

from __future__ import annotations

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

from controller.local import local_summary, run_local
from controller.profiles import load_experiment
from tests.conftest import read_finished_jsonl


@pytest.fixture()
def profile(tmp_path):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(
        "".join(json.dumps({"id": f"c{i}", "prompt_token_ids": [0, 3 + 5 * i, 4 + i]}) + "\n" for i in range(6))
    )
    path = tmp_path / "records.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "name": "records",
                "models": "tiny-llama",
                "prompts": str(prompts),
                "agents": 2,
                "seeds": [0],
                "generation": {"temperature": 1.0, "draft_length": 3, "top_k": 4, "max_new_tokens": 32},
            },
            sort_keys=False,
        )
    )
    return str(path)


def specbed(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "controller.cli", *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def agents_of(proc: subprocess.Popen, n: int, timeout_s: float = 120) -> dict[str, psutil.Process]:
    """The runner's agent processes by name, once all ``n`` are started."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stdout.read()
        found = {}
        for child in psutil.Process(proc.pid).children(recursive=True):  # forks of its agent fork server
            try:
                cmd = child.cmdline()
            except psutil.Error:  # a short-lived helper (git) that is gone or not yet reaped
                continue
            if "agent" in cmd and "--name" in cmd:
                found[cmd[cmd.index("--name") + 1]] = child
        if len(found) == n:
            return found
        time.sleep(0.05)
    raise AssertionError(f"{n} agents did not start within {timeout_s} s")


@pytest.mark.parametrize("runner", ["local", "serve", "run"])
def test_every_runner_refuses_a_non_empty_out(tmp_path, profile, runner):
    out = tmp_path / "used"
    out.mkdir()
    (out / "rounds.jsonl").write_text('{"mine": 1}\n')
    args = {
        "local": ["local", "--profile", profile, "--out", str(out)],
        "serve": ["serve", "--bind", "tcp://127.0.0.1:0", "--profile", profile, "--out", str(out)],
        "run": ["run", profile, "--out", str(out)],
    }[runner]
    proc = specbed(*args)
    text, _ = proc.communicate(timeout=120)
    assert proc.returncode == 2, text
    assert f"{out} exists and is not empty" in text
    assert os.listdir(out) == ["rounds.jsonl"] and (out / "rounds.jsonl").read_text() == '{"mine": 1}\n'


def test_an_empty_out_folder_is_used(tmp_path, profile, tiny_pair):
    out = tmp_path / "empty"
    out.mkdir()
    run = run_local(load_experiment(profile, max_new_tokens=4), out, agents=1, target=tiny_pair[0])
    assert run.summary["prompts"] == 6 and (out / "summary.json").is_file()


def test_a_killed_agents_abandoned_rounds_are_discarded_in_local(tmp_path, profile, tiny_pair):
    clean = run_local(load_experiment(profile), tmp_path / "clean", agents=2, target=tiny_pair[0])
    out = tmp_path / "killed"
    proc = specbed("local", "--profile", profile, "--agents", "2", "--out", str(out))
    try:
        agents = agents_of(proc, 2)
        deadline = time.monotonic() + 180
        while True:  # agent-1 is two rounds into a prompt that is not finished
            assert time.monotonic() < deadline, "agent-1 never drafted two rounds of one prompt"
            assert proc.poll() is None, proc.stdout.read()
            mine = [r for r in read_finished_jsonl(out / "rounds.jsonl") if r["agent"] == "agent-1"]
            done = {o["prompt_id"] for o in read_finished_jsonl(out / "outputs.jsonl")}
            if mine and mine[-1]["round"] >= 1 and mine[-1]["prompt_id"] not in done:
                break
            time.sleep(0.01)
        agents["agent-1"].send_signal(signal.SIGKILL)
        held = mine[-1]["prompt_id"]
        text, _ = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, text
    summary = local_summary(out)
    rounds = read_finished_jsonl(out / "rounds.jsonl")
    discarded = read_finished_jsonl(out / "discarded_rounds.jsonl")
    outputs = {o["prompt_id"]: o for o in read_finished_jsonl(out / "outputs.jsonl")}
    assert summary["prompts"] == 6
    # the abandoned attempt is out of the rounds and the totals, and kept apart for the record
    assert summary["discarded_rounds"] == len(discarded) >= 2
    assert {(r["agent"], r["prompt_id"]) for r in discarded} == {("agent-1", held)}
    assert summary["rounds"] == len(rounds) == clean.summary["rounds"]
    assert summary["tokens_generated"] == clean.summary["tokens_generated"]
    assert max(Counter((r["prompt_id"], r["round"]) for r in rounds).values()) == 1
    for pid, o in outputs.items():
        mine = sorted(r["round"] for r in rounds if r["prompt_id"] == pid)
        assert mine == list(range(len(mine))), f"{pid}: rounds {mine}"
        assert sum(r["emitted"] for r in rounds if r["prompt_id"] == pid) == len(o["token_ids"])
    assert {pid: o["token_ids"] for pid, o in outputs.items()} == clean.outputs  # redone token for token


def test_no_agent_outlives_a_sigkilled_local(tmp_path, profile):
    proc = specbed("local", "--profile", profile, "--agents", "2", "--out", str(tmp_path / "run"))
    try:
        agents = list(agents_of(proc, 2).values())
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    gone, alive = psutil.wait_procs(agents, timeout=15)
    assert not alive, f"agents outlived the killed runner: {alive}"
    assert len(gone) == 2

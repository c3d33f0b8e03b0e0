"""`specbed local` end to end with real agent subprocesses and tiny models."""

from __future__ import annotations

import json

import pytest
import torch

from controller.local import local_summary, run_local
from controller.profiles import load_experiment

SUMMARY_FIELDS = (
    "tokens_generated",
    "rounds",
    "mean_tokens_per_round",
    "acceptance_rate",
    "bytes_up_per_draft_token",
    "full_distribution_bytes_per_draft_token",
    "tokens_per_second",
)


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def default_run(tmp_path_factory, tiny_pair):
    """The tiny profile as it is (sampled, two agents): the run and its folder, shared by the tests below."""
    out = tmp_path_factory.mktemp("default") / "run"
    return run_local(load_experiment("tiny"), out, target=tiny_pair[0]), out


def test_sampled_run_writes_every_file(default_run):
    experiment = load_experiment("tiny")
    run, out = default_run
    summary = local_summary(out)
    manifest = json.loads((out / "manifest.json").read_text())
    segment = manifest["segments"][0]
    rounds = read_jsonl(out / "rounds.jsonl")
    outputs = read_jsonl(out / "outputs.jsonl")
    for name in SUMMARY_FIELDS:
        assert summary[name] is not None, name
    assert summary == run.summary
    assert len(rounds) == summary["rounds"] > 0
    assert sum(r["emitted"] for r in rounds) == summary["tokens_generated"]
    assert sorted(o["prompt_id"] for o in outputs) == sorted(p.id for p in experiment.prompts)
    assert all({"point", "prompt_id", "prompt_token_ids", "token_ids", "text"} <= set(o) for o in outputs)
    assert summary["full_distribution_bytes_per_draft_token"] == 64 * 4
    assert summary["errors_total"] == 0
    assert set(summary["agent_exit_codes"].values()) == {0}
    assert manifest["profile"]["name"] == "tiny" and len(segment["agents"]) == 2
    assert "commit" in segment["git"] and manifest["versions"]["torch"]
    for r in rounds:
        assert r["agent_draft_start_ns"] <= r["agent_draft_end_ns"] <= r["agent_send_ns"]
        assert r["ctrl_recv_ns"] <= r["ctrl_decoded_ns"] <= r["ctrl_target_done_ns"] <= r["ctrl_reply_ns"]
        assert 0 <= r["accepted"] <= r["draft_length"]


def test_same_seed_gives_identical_outputs(tmp_path, tiny_pair, default_run):
    experiment = load_experiment("tiny")
    a = default_run[0].outputs  # two agents
    told = []

    def broken_display(done, total, record):  # a progress observer that fails at every call
        told.append(record)
        raise RuntimeError("a broken live panel")

    b = run_local(experiment, tmp_path / "b", agents=1, target=tiny_pair[0], on_progress=broken_display)
    assert a == b.outputs  # one agent or two, and whatever the observer does
    segment = json.loads((tmp_path / "b" / "manifest.json").read_text())["segments"][0]
    assert segment["progress_observer_errors"] == len(told) > 1
    other = load_experiment("tiny", seed=1)
    assert a != run_local(other, tmp_path / "c", target=tiny_pair[0]).outputs


def test_greedy_matches_target_generate(tmp_path, tiny_pair):
    target, _ = tiny_pair
    experiment = load_experiment("tiny", temperature=0.0, max_new_tokens=20)
    run = run_local(experiment, tmp_path / "g", target=target)
    for prompt in experiment.prompts:
        ids = torch.tensor([prompt.prompt_token_ids])
        with torch.no_grad():
            ref = target.model.generate(ids, max_new_tokens=20, do_sample=False, attention_mask=torch.ones_like(ids))
        assert run.outputs[prompt.id] == ref[0, ids.shape[1] :].tolist(), prompt.id

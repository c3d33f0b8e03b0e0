"""A K set in a profile is the K configured, sent, echoed by the agent and reported; one it cannot honour is refused."""

from __future__ import annotations

import csv
import json

import pytest
import yaml

from controller.experiment import run_experiment
from controller.local import run_local
from controller.profiles import ProfileError, load_experiment

K = 5  # not the default (8), below the tiny models' vocabulary of 64
PROFILE = {
    "name": "k-echo",
    "models": "tiny-llama",
    "prompts": "tiny",
    "agents": 1,
    "seeds": [0],
    "generation": {"temperature": 1.0, "draft_length": 3, "top_k": K, "max_new_tokens": 12},
    "telemetry": {"rate_hz": 10},
}


def write(tmp_path, data) -> str:
    path = tmp_path / f"{data['name']}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return str(path)


def test_top_k_configured_sent_echoed_and_reported_is_the_profiles(tmp_path, tiny_pair):
    profile = write(tmp_path, PROFILE)
    assert load_experiment(profile).generation.top_k == K
    out = run_experiment(profile, tmp_path / "run", target=tiny_pair[0])
    manifest = json.loads((out / "manifest.json").read_text())
    (point,) = [g["id"] for g in manifest["grid"]]
    assert manifest["segments"][0]["configured"][point]["top_k"] == K  # what CONFIGURE carried
    rounds = [json.loads(x) for x in (out / "rounds.jsonl").read_text().splitlines() if x.strip()]
    assert len(rounds) >= 5
    assert {r["top_k"] for r in rounds} == {K}  # every payload's echo
    with open(out / "summary.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [int(r["top_k"]) for r in rows] == [K]


def test_a_top_k_over_the_vocabulary_is_refused_naming_the_field(tmp_path, tiny_pair):
    vocab = tiny_pair[0].vocab_size
    data = {**PROFILE, "name": "k-too-big", "generation": {**PROFILE["generation"], "top_k": vocab + 1}}
    with pytest.raises(ProfileError, match=rf"generation\.top_k: {vocab + 1} exceeds the target's vocabulary"):
        run_experiment(write(tmp_path, data), tmp_path / "run", target=tiny_pair[0])
    data = {**PROFILE, "name": "k-sweep", "sweep": {"top_k": [4, vocab + 7]}}
    with pytest.raises(ProfileError, match=rf"sweep\.top_k\[1\]: {vocab + 7} exceeds"):
        run_experiment(write(tmp_path, data), tmp_path / "run2", target=tiny_pair[0])
    experiment = load_experiment("tiny", top_k=vocab * 2)
    with pytest.raises(ProfileError, match=r"generation\.top_k"):
        run_local(experiment, tmp_path / "run3", agents=1, target=tiny_pair[0])

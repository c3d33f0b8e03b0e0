"""The spine on the bundled SmolLM2 pair: greedy equivalence, payload size, determinism.

Needs the converted weights (`specbed models fetch`, which `make test` runs).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
import yaml

from controller.experiment import run_experiment
from controller.experiment.prompts import prompt_token_ids
from controller.local import run_local
from controller.profiles import load_experiment
from tests.conftest import point_setting

pytestmark = pytest.mark.slow


@pytest.fixture
def two_prompts(tmp_path):
    path = tmp_path / "prompts.jsonl"
    path.write_text(
        '{"id": "sea", "prompt": "Write a short poem about the sea."}\n'
        '{"id": "python", "prompt": "Give me three tips for learning Python."}\n'
    )
    return str(path)


def test_greedy_distributed_equals_target_generate(tmp_path, two_prompts, bundled_target):
    experiment = load_experiment("quickstart", prompts=two_prompts, max_new_tokens=40)
    run = run_local(experiment, tmp_path / "greedy", agents=2, target=bundled_target)
    model = bundled_target.model
    for prompt in experiment.prompts:
        ids = torch.tensor([prompt_token_ids(prompt, bundled_target.tokenizer)])
        with torch.no_grad():
            ref = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=40, do_sample=False)
        expected = ref[0, ids.shape[1] :].tolist()
        assert run.outputs[prompt.id] == expected, prompt.id
    summary = run.summary
    # measured on the wire: ZMTP frames of the payloads as the controller received them
    assert summary["bytes_up_per_draft_token"] <= 64
    assert summary["full_distribution_bytes_per_draft_token"] == 196_608
    assert summary["mean_tokens_per_round"] > 1.0  # the drafter is useful


def test_sampled_runs_are_reproducible(tmp_path, two_prompts, bundled_target):
    """Sampling from the full draft distribution and from its top K: the same tokens with two agents and one.

    One run, four points (sampling x agents), so two agents are started once and serve every point.
    """
    profile = yaml.safe_load((Path(__file__).parents[2] / "profiles/experiments/quickstart.yaml").read_text())
    profile["prompts"] = two_prompts
    profile["generation"].update(temperature=0.8, max_new_tokens=12, seed=3)
    profile["sweep"] = {"sampling": ["full", "top-k"], "agents": [2, 1]}
    path = tmp_path / "sampled.yaml"
    path.write_text(yaml.safe_dump(profile))
    out = tmp_path / "run"
    run_experiment(str(path), out, target=bundled_target)
    outputs: dict[tuple[str, int], dict[str, list[int]]] = {}
    for line in (out / "outputs.jsonl").read_text().splitlines():
        o = json.loads(line)
        key = (point_setting(o["point"], "sampling"), int(point_setting(o["point"], "agents")))
        outputs.setdefault(key, {})[o["prompt_id"]] = o["token_ids"]
    assert set(outputs) == {(s, a) for s in ("full", "top-k") for a in (2, 1)}
    for sampling in ("full", "top-k"):
        assert outputs[(sampling, 2)] == outputs[(sampling, 1)], sampling
        assert all(len(tokens) > 0 for tokens in outputs[(sampling, 2)].values())
    rates = {row["config"]: float(row["acceptance_rate"]) for row in csv.DictReader((out / "summary.csv").open())}
    assert rates and all(0 < r < 1 for r in rates.values()), rates

"""The spine on the bundled SmolLM2 pair: greedy equivalence, payload size, determinism.

Needs the converted weights (`specbed models fetch`, which `make test` runs).
"""

from __future__ import annotations

import pytest
import torch

from controller.experiment.prompts import prompt_token_ids
from controller.local import local_summary, run_local
from controller.profiles import load_experiment

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


@pytest.mark.parametrize("sampling", ["full", "top-k"])
def test_sampled_runs_are_reproducible(tmp_path, two_prompts, bundled_target, sampling):
    experiment = load_experiment(
        "quickstart", prompts=two_prompts, temperature=0.8, sampling=sampling, max_new_tokens=24, seed=3
    )
    a = run_local(experiment, tmp_path / "a", agents=2, target=bundled_target).outputs
    assert a == run_local(experiment, tmp_path / "b", agents=1, target=bundled_target).outputs
    summary = local_summary(tmp_path / "a")
    assert 0 < summary["acceptance_rate"] < 1

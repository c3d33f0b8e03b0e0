"""SpecFed end to end: worker processes over real sockets, bounds, greedy equivalence, a lost worker."""

from __future__ import annotations

import csv
import json
import signal

import psutil
import pytest
import torch
import yaml

from agent.models import load_model
from controller.specfed_report import bound_violations
from controller.specfed_run import run_specfed

TINY = {"source": "tiny-llama", "seed": 0, "vocab_size": 64, "hidden_size": 32, "num_layers": 2}
WORKERS = [
    {"name": "w-full", "model": TINY, "data_size": 3},
    {"name": "w-8bit", "model": {"source": "requantized", "base": TINY, "bits": 8, "group_size": 8}, "data_size": 2},
    {"name": "w-4bit", "model": {"source": "requantized", "base": TINY, "bits": 4, "group_size": 4}, "data_size": 1},
]
WEIGHTS = {"w-full": 0.5, "w-8bit": 1 / 3, "w-4bit": 1 / 6}


def read_jsonl(path):
    return [json.loads(ln) for ln in path.read_text().splitlines() if ln.strip()]


def write_profile(tmp_path, prompts: list[list[int]], **fields) -> str:
    prompts_path = tmp_path / "prompts.jsonl"
    prompts_path.write_text(
        "".join(json.dumps({"id": f"p{i}", "prompt_token_ids": t}) + "\n" for i, t in enumerate(prompts))
    )
    profile = {
        "name": "specfed-test",
        "scheme": "specfed",
        "models": "tiny-llama",
        "prompts": str(prompts_path),
        "workers": WORKERS,
        "baselines": ["dense"],
        **fields,
    }
    path = tmp_path / "specfed-test.yaml"
    path.write_text(yaml.safe_dump(profile, sort_keys=False))
    return str(path)


def test_every_error_and_bias_lies_under_its_bound_and_dense_has_none(tmp_path):
    profile = write_profile(
        tmp_path,
        [[0, 5, 9, 12], [0, 33, 2, 7, 40]],
        generation={"temperature": 1.0, "draft_length": 3, "prob_dtype": "float16", "max_new_tokens": 10},
        sweep={"top_k": [1, 8], "reconstruction": ["renormalise", "tail-fill"]},
        links={"up": {"rate_bps": "10mbit"}},
    )
    out = run_specfed(profile, tmp_path / "run")
    rounds = read_jsonl(out / "rounds.jsonl")
    points = {r["point"] for r in rounds}
    assert len(points) == 5 and len(read_jsonl(out / "outputs.jsonl")) == 10
    assert all(r["metrics"] is not None for r in rounds)  # measured every round
    assert bound_violations(rounds) == []
    # K = V (the dense aggregation, float32 on the wire): no bias at all
    dense = [r["metrics"] for r in rounds if r["point"].startswith("specfed-dense")]
    assert dense and max(max(m["aggregation_bias"]) for m in dense) < 1e-9
    assert max(max(m["acceptance_bias"]) for m in dense) < 1e-9
    # compression at K = 1 does cost something, and is still bounded
    k1 = [r["metrics"] for r in rounds if "top_k=1," in r["point"]]
    assert min(max(m["aggregation_bias"]) for m in k1) > 0
    rows = list(csv.DictReader(open(out / "summary.csv")))
    assert len(rows) == 5
    for col in ("local_error", "local_error_se", "aggregation_bias_se", "acceptance_bias", "acceptance_bound"):
        assert col in rows[0]
    assert all(r["bound_violations"] == "0" for r in rows)
    up = {r["top_k"]: float(r["bytes_up_per_position"]) for r in rows}
    assert up["1"] < up["8"] < up[""]  # the dense row has no K
    for name in ("local_error", "aggregation_bias", "acceptance_bias", "tokens_per_s", "latency_per_token_ms"):
        assert (out / "report" / f"{name}.png").stat().st_size > 1000
    report = (out / "report.md").read_text()
    assert "At K = 8 (tail-fill): acceptance-rate bias" in report and "bytes saved" in report


def greedy_reference(prompt: list[int], n: int) -> list[int]:
    """argmax Σ_m w_m p_m, one process, full forward passes, no cache."""
    models = {w["name"]: load_model(w["model"]).model for w in WORKERS}
    seq = list(prompt)
    with torch.no_grad():
        for _ in range(n):
            ids = torch.tensor([seq])
            p = sum(
                WEIGHTS[name] * torch.softmax(m(input_ids=ids).logits[0, -1].double(), -1) for name, m in models.items()
            )
            seq.append(int(p.argmax()))
    return seq[len(prompt) :]


def test_dense_greedy_is_the_weighted_argmax_and_a_lost_worker_is_dropped(tmp_path):
    prompts = [[0, 7, 21, 3], [0, 50, 1], [0, 12, 60, 44, 8, 2]]
    profile = write_profile(
        tmp_path,
        prompts,
        generation={"temperature": 0.0, "draft_length": 3, "max_new_tokens": 12},
        sweep={"top_k": [4], "reconstruction": ["tail-fill"]},
        round_timeout_s=60,
    )
    calls = {"n": 0, "killed": None}

    def kill_a_worker_mid_point(status: str) -> None:
        if not status.startswith("specfed:top_k=4") or calls["killed"]:
            return
        calls["n"] += 1
        if calls["n"] == 3:
            for child in psutil.Process().children(recursive=True):
                if "w-4bit" in child.cmdline():
                    child.send_signal(signal.SIGKILL)
                    calls["killed"] = child.pid

    out = run_specfed(profile, tmp_path / "run", on_progress=kill_a_worker_mid_point)
    outputs = read_jsonl(out / "outputs.jsonl")
    dense = {o["prompt_id"]: o["token_ids"] for o in outputs if o["point"].startswith("specfed-dense")}
    for i, prompt in enumerate(prompts):
        assert dense[f"p{i}"] == greedy_reference(prompt, 12), f"prompt p{i}"
    # the killed worker: lost, the point finished with the other two, weights renormalised
    assert calls["killed"] is not None
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["workers"]["w-4bit"]["lost"]
    assert {o["prompt_id"] for o in outputs if o["point"].startswith("specfed:")} == {"p0", "p1", "p2"}
    rounds = [r for r in read_jsonl(out / "rounds.jsonl") if r["point"].startswith("specfed:")]
    assert rounds[0]["workers"] == ["w-4bit", "w-8bit", "w-full"]
    after = rounds[-1]
    assert after["workers"] == ["w-8bit", "w-full"]
    assert after["weights"] == pytest.approx({"w-full": 0.6, "w-8bit": 0.4})
    assert bound_violations(rounds) == []

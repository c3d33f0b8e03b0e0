"""WISV end to end: real agent subprocesses, tiny models, hidden states on the wire."""

from __future__ import annotations

import json

import pytest
import torch

from controller.local import run_local
from controller.profiles import ProfileError, load_experiment
from controller.wisv.head import DecisionHead, save_head


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def tiny_head(tmp_path_factory):
    torch.manual_seed(0)
    return save_head(DecisionHead(32, 32, rank=4, width=8), tmp_path_factory.mktemp("head") / "head.pt", {})


@pytest.fixture(scope="module")
def strict_run(tmp_path_factory, tiny_pair):
    """A strict greedy tiny run (the reference outputs, and the logs `wisv collect` reads): result, folder."""
    out = tmp_path_factory.mktemp("strict") / "run"
    return run_local(load_experiment("tiny", temperature=0.0, max_new_tokens=16), out, target=tiny_pair[0]), out


def semantic(head, **kw):
    base = {"temperature": 0.0, "max_new_tokens": 16, "verification": "semantic", "wisv_head": str(head)}
    return load_experiment("tiny", **{**base, **kw})


def test_never_accepting_head_gives_strict_output(tmp_path, tiny_pair, tiny_head, strict_run):
    strict = strict_run[0]
    never = {"wisv_threshold_good": 2.0, "wisv_threshold_poor": 2.0}
    for upload in ("full", "selective"):
        run = run_local(semantic(tiny_head, hidden_upload=upload, **never), tmp_path / upload, target=tiny_pair[0])
        assert run.outputs == strict.outputs, upload
        rounds = read_jsonl(tmp_path / upload / "rounds.jsonl")
        assert sum(r["wisv"]["mismatches"] > 0 for r in rounds) > 0  # the head was asked, and said no
        assert all(r["wisv"]["semantic_accepted"] == 0 for r in rounds)


def test_selective_sends_fewer_hidden_bytes_and_more_round_trips(tmp_path, tiny_pair, tiny_head):
    counts = {}
    for upload in ("full", "selective"):
        run_local(semantic(tiny_head, hidden_upload=upload), tmp_path / upload, target=tiny_pair[0], agents=1)
        rounds = read_jsonl(tmp_path / upload / "rounds.jsonl")
        mism = [r for r in rounds if r["wisv"]["mismatches"] > 0]
        assert mism, "the tiny pair must disagree somewhere"
        if upload == "full":
            assert all(r["wisv"]["round_trips"] == 1 for r in rounds)
            assert all(r["wisv"]["hidden_bytes_up"] == r["draft_length"] * 32 * 2 for r in rounds)
        else:
            assert all(r["wisv"]["round_trips"] == 2 for r in mism)
            assert all(
                r["wisv"]["round_trips"] == 1 and r["wisv"]["hidden_bytes_up"] == 0 for r in rounds if r not in mism
            )
            assert all(r["wisv"]["hidden_bytes_up"] == r["wisv"]["mismatches"] * 32 * 2 for r in mism)
            assert all(r["wisv"]["request_bytes_down"] > 0 and r["wisv"]["answer_bytes_up"] > 0 for r in mism)
        counts[upload] = (
            sum(r["wisv"]["hidden_bytes_up"] for r in rounds),
            sum(r["wisv"]["round_trips"] for r in rounds) - len(rounds),
        )
    assert counts["selective"][0] < counts["full"][0]
    assert counts["selective"][1] >= 1 and counts["full"][1] == 0


def test_an_always_accepting_head_keeps_every_mismatch_and_the_run_says_lossy(tmp_path, tiny_pair, tiny_head):
    """Threshold 0: every mismatch is kept, so every round accepts all γ drafts; every file says lossy."""
    import csv

    always = {"wisv_threshold_good": 0.0, "wisv_threshold_poor": 0.0}
    run_local(semantic(tiny_head, hidden_upload="selective", **always), tmp_path, target=tiny_pair[0])
    rounds = read_jsonl(tmp_path / "rounds.jsonl")
    mism = [r for r in rounds if r["wisv"]["mismatches"] > 0]
    assert mism and all(r["accepted"] == r["draft_length"] for r in rounds)
    assert all(r["wisv"]["semantic_accepted"] >= 1 and r["wisv"]["strict_accepted"] < r["accepted"] for r in mism)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["lossy_points"] == [p["id"] for p in manifest["grid"]]
    summary = list(csv.DictReader((tmp_path / "summary.csv").open()))
    assert summary and all("verification=semantic-lossy" in row["config"] for row in summary)
    assert "semantic verification is LOSSY" in (tmp_path / "report.md").read_text()
    wisv_rows = list(csv.DictReader((tmp_path / "wisv_summary.csv").open()))
    assert wisv_rows and all("lossy by design" in row["lossy"] for row in wisv_rows)


def test_semantic_profile_errors_name_the_field(tiny_head):
    with pytest.raises(ProfileError, match="wisv_head"):
        load_experiment("tiny", temperature=0.0, verification="semantic")
    with pytest.raises(ProfileError, match="temperature"):
        load_experiment("tiny", verification="semantic", wisv_head=str(tiny_head))
    with pytest.raises(ProfileError, match="hidden_upload"):
        load_experiment("tiny", hidden_upload="some")


@pytest.mark.slow
def test_bundled_target_gets_most_of_the_task_set_right(bundled_target):
    """The shipped exact-match set can show an accuracy drop: the target alone is right on at least half."""
    from agent.lm import CachedLM
    from controller.experiment.prompts import decode_text, prompt_token_ids
    from controller.profiles import load_prompts
    from controller.serve import eos_token_ids
    from controller.wisv.tasks import load_answers, score

    answers = load_answers("profiles/prompts/wisv.jsonl")
    eos = eos_token_ids(bundled_target)
    right = []
    for prompt in load_prompts("wisv"):
        lm = CachedLM(bundled_target.model)
        seq, out = prompt_token_ids(prompt, bundled_target.tokenizer), []
        for _ in range(12):
            token = int(lm.logits(seq, len(seq) - 1)[-1].argmax())
            if token in eos:
                break
            seq.append(token)
            out.append(token)
        right.append(score(decode_text(bundled_target.tokenizer, out), answers[prompt.id]))
    assert sum(right) / len(right) >= 0.5, right


def test_collect_and_train_from_a_strict_run(tmp_path, strict_run):
    """`specbed wisv collect RUN` then `specbed wisv train RUN --out DIR` (DIR/head.pt) on a strict tiny run; bad input named."""
    from controller.cli import main
    from controller.wisv.head import load_head

    run = strict_run[1]
    assert main(["wisv", "collect", str(run), "--max-prompts", "2"]) == 0
    samples = torch.load(run / "wisv_samples.pt", weights_only=True)
    n = len(samples["label"])
    assert n > 0 and set(samples["label"].tolist()) <= {0.0, 1.0}
    assert samples["h_target"].shape == (n, 32) and samples["h_drafter"].shape == (n, 32)
    head_dir = tmp_path / "head"
    assert main(["wisv", "train", str(run), "--out", str(head_dir), "--epochs", "5"]) == 0
    head = load_head(head_dir / "head.pt")
    assert head.meta["samples"] == n and head.meta["epochs"] == 5
    assert main(["wisv", "train", str(tmp_path), "--out", str(head_dir)]) == 2  # no samples there
    assert main(["wisv", "collect", str(run), "--per-round", "0"]) == 2

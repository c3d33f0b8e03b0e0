"""Temperature 0 on the bundled pair: every scheme drafts, accepts and emits the same tokens.

Greedy decoding does not depend on how the draft distribution travels, so the
colocated baseline (dense q in process), the full-distribution baseline (dense
q on the wire) and top-K payloads must produce identical rounds.  A dense
payload's values are in token order, which once made the drafter take token 0
as its argmax.
"""

from __future__ import annotations

import json

import pytest
import yaml

from agent.drafter import Drafter, DraftSettings
from agent.models import load_model
from controller.experiment import run_experiment
from controller.experiment.prompts import prompt_token_ids
from controller.profiles import load_model_pair, load_prompts

pytestmark = pytest.mark.slow


def test_dense_and_topk_greedy_drafts_are_identical(bundled_target):
    drafter = load_model(load_model_pair("smollm2-135m").drafter).model
    prompt = load_prompts("quickstart")[0]
    ids = prompt_token_ids(prompt, bundled_target.tokenizer)
    vocab = bundled_target.vocab_size
    settings = {
        "dense": DraftSettings(temperature=0, top_k=vocab, prob_dtype="float32", index_dtype="none"),
        "top-k": DraftSettings(temperature=0, top_k=8),
    }
    drafts = {}
    for name, s in settings.items():
        d = Drafter(drafter, s)
        d.start(ids, seed=0)
        out = []
        for _ in range(3):
            tokens = d.draft(4).token_ids.tolist()
            out.append(tokens)
            d.accept(tokens[:2], tokens[2])  # a verdict that rejects the third draft
        drafts[name] = out
    assert drafts["dense"] == drafts["top-k"]
    assert len({t for r in drafts["dense"] for t in r}) > 1  # not one token drafted every time


def test_greedy_rounds_identical_across_schemes(tmp_path, bundled_target):
    profile = {
        "name": "greedy-schemes",
        "models": "smollm2-135m",
        "prompts": {"source": "quickstart", "limit": 2},
        "agents": 1,
        "generation": {"temperature": 0.0, "draft_length": 4, "top_k": 8, "max_new_tokens": 16},
        "baselines": ["colocated", "full-distribution"],
    }
    path = tmp_path / "greedy.yaml"
    path.write_text(yaml.safe_dump(profile))
    out = tmp_path / "run"
    run_experiment(str(path), out, target=bundled_target)
    rounds = [json.loads(x) for x in (out / "rounds.jsonl").read_text().splitlines()]
    outputs = [json.loads(x) for x in (out / "outputs.jsonl").read_text().splitlines()]
    schemes = {}
    for r in rounds:
        scheme = r["point"].split(":", 1)[0]
        schemes.setdefault(scheme, {}).setdefault(r["prompt_id"], []).append((r["round"], r["accepted"]))
    texts = {}
    for o in outputs:
        texts.setdefault(o["point"].split(":", 1)[0], {})[o["prompt_id"]] = o["token_ids"]
    assert set(schemes) == {"colocated", "full-distribution", "top-k"}
    accepted = {s: {p: [a for _, a in sorted(v)] for p, v in by_prompt.items()} for s, by_prompt in schemes.items()}
    assert accepted["colocated"] == accepted["full-distribution"] == accepted["top-k"]
    assert texts["colocated"] == texts["full-distribution"] == texts["top-k"]
    assert sum(a for v in accepted["top-k"].values() for a in v) > 0  # the drafter is useful

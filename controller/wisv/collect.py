"""``specbed wisv collect``: training samples for the decision head from a strict run's own logs.

For every strict greedy prompt of a run folder (``specbed run`` or
``specbed local``), the rounds are replayed in-process from the logged
outputs and draft lengths: the drafter drafts γ tokens greedily from the
committed tokens, the target scores them, and every mismatch (x_i !=
argmax p_i, at most ``per_round`` a round) becomes a sample: the target's
and the drafter's last-layer hidden states at that position, the token
features and the round's logged channel state (CSI).

The label says whether keeping the rejected draft token is acceptable: the
task outcome is unchanged when it is kept.  It is computed by keeping x_i
(after the drafts before it), continuing with the target's greedy decoding
up to the run's ``max_new_tokens`` (or an end-of-sequence token), and
scoring that text with the prompt's exact-match scorer
(``controller.wisv.tasks.score``): label 1 when the score equals the score
of the strict output, 0 otherwise.  Prompts without a reference answer use
the first line of the text instead of the score.  The cost is one greedy
continuation per sample, all on the CPU of the machine that collects.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch

from agent.drafter import Drafter, DraftSettings
from agent.lm import CachedLM
from agent.models import load_model
from agent.wisv import HiddenCapture
from controller.experiment.prompts import decode_text
from controller.results import read_jsonl
from controller.serve.jobs import eos_token_ids
from controller.wisv.head import csi_features, token_features
from controller.wisv.tasks import answer_key, load_answers
from controller.wisv.verify import mismatches

log = logging.getLogger(__name__)
SAMPLES_FILE = "wisv_samples.pt"


class _LastPass:
    """The whole last forward pass's last-layer hidden states of the target, [B, T, d] (its output head's input)."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.last: torch.Tensor | None = None
        self._handle = model.get_output_embeddings().register_forward_pre_hook(self._hook)

    def _hook(self, module: torch.nn.Module, args: tuple) -> None:
        self.last = args[0].detach()


def _strict_points(manifest: dict) -> set[str]:
    """Ids of the strict greedy top-K points of a run folder (``specbed run`` or ``specbed local``)."""
    return {
        p["id"]
        for p in manifest["grid"]
        if p["scheme"] == "top-k" and p["temperature"] == 0 and p.get("verification", "strict") == "strict"
    }


@torch.no_grad()
def _greedy(lm: CachedLM, tokens: list[int], n: int, eos: set[int]) -> list[int]:
    out: list[int] = []
    seq = list(tokens)
    for _ in range(n):
        t = int(lm.logits(seq, len(seq) - 1)[-1].argmax())
        out.append(t)
        seq.append(t)
        if t in eos:
            break
    return out


def collect(run_dir: Path, per_round: int = 2, max_prompts: int | None = None) -> Path:
    """Write ``RUN/wisv_samples.pt``; returns its path."""
    run_dir = Path(run_dir)
    manifest = json.loads((run_dir / "manifest.json").read_text())
    profile = manifest["profile"]
    points = _strict_points(manifest)
    if not points:
        raise ValueError(f"{run_dir}: no strict greedy top-K point to collect from")
    answers = load_answers(profile["prompts_source"])
    max_new = int(profile["generation"]["max_new_tokens"])
    target, drafter_model = load_model(profile["models"]["target"]), load_model(profile["models"]["drafter"])
    eos = eos_token_ids(target)
    out_embeddings = target.model.get_output_embeddings().weight.detach()  # [V, d_t]
    t_cap, d_cap = _LastPass(target.model), HiddenCapture(drafter_model.model)
    drafter = Drafter(drafter_model.model, DraftSettings(temperature=0.0, top_k=1))
    t_lm, c_lm = CachedLM(target.model), CachedLM(target.model)
    outputs, _ = read_jsonl(run_dir / "outputs.jsonl")
    rounds, _ = read_jsonl(run_dir / "rounds.jsonl")
    outputs = [o for o in outputs if o.get("point") in points][:max_prompts]
    cols: dict[str, list] = {k: [] for k in ("h_target", "h_drafter", "token", "csi", "label")}
    for o in outputs:
        rs = sorted(
            (r for r in rounds if r["prompt_id"] == o["prompt_id"] and r.get("point") == o.get("point")),
            key=lambda r: r["round"],
        )
        answer = answers.get(o["prompt_id"])
        strict_key = answer_key(target_text(target, o["token_ids"]), answer or "")
        committed, done = list(o["prompt_token_ids"]), 0
        drafter.start(committed, 0)
        t_lm.reset()
        for r in rs:
            gamma = r["draft_length"]
            d_cap.clear()
            drafts = torch.from_numpy(drafter.draft(gamma).token_ids)  # [γ]
            h_d = d_cap.take(gamma)  # [γ, d_d]
            logits = t_lm.logits(committed + drafts.tolist(), len(committed) - 1)  # [γ + 1, V]
            h_t = t_cap.last[0, -(gamma + 1) : -1].float()  # [γ, d_t]
            for i in mismatches(drafts, logits)[:per_round]:
                c_lm.reset()
                kept = committed + drafts[: i + 1].tolist()
                budget = max_new - (len(kept) - len(o["prompt_token_ids"]))
                cont = kept[len(o["prompt_token_ids"]) :] + (_greedy(c_lm, kept, budget, eos) if budget > 0 else [])
                key = answer_key(target_text(target, cont), answer or "")
                same = key[0] == strict_key[0] if answer is not None else key[1] == strict_key[1]
                idx = torch.tensor([i])
                cols["h_target"].append(h_t[i].half())
                cols["h_drafter"].append(h_d[i].half())
                cols["token"].append(token_features(logits[idx], drafts[idx], out_embeddings)[0])
                cols["csi"].append(torch.tensor(csi_features(r.get("channel")), dtype=torch.float32))
                cols["label"].append(float(same))
            emitted = o["token_ids"][done : done + r["emitted"]]
            done += r["emitted"]
            drafter.accept(drafts[: r["accepted"]].tolist(), emitted[-1] if emitted else 0)
            committed = list(o["prompt_token_ids"]) + o["token_ids"][:done]
            drafter.tokens = list(committed)
        log.info("collected %s: %d samples so far", o["prompt_id"], len(cols["label"]))
    if not cols["label"]:
        raise ValueError(f"{run_dir}: no mismatch in the strict rounds, nothing to learn from")
    samples = {k: torch.stack(v) if k != "label" else torch.tensor(v) for k, v in cols.items()}
    samples["meta"] = {"run": str(run_dir), "prompts": len(outputs), "per_round": per_round}
    path = run_dir / SAMPLES_FILE
    torch.save(samples, path)
    return path


def target_text(target, token_ids: list[int]) -> str:
    return decode_text(target.tokenizer, token_ids)

"""``specbed wisv train``: fit the decision head to samples collected from strict runs.

Full-batch Adam on the binary cross-entropy of the head's score against the
collected label (``controller.wisv.collect``), positives and negatives
weighted to balance, a fixed seed.  The head file records the runs, sample
counts, the positive rate and the training accuracy at 0.5.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from controller.wisv.collect import SAMPLES_FILE
from controller.wisv.head import DecisionHead, save_head

log = logging.getLogger(__name__)


def load_samples(runs: list[Path]) -> dict[str, torch.Tensor]:
    parts = []
    for run in runs:
        path = Path(run) / SAMPLES_FILE
        if not path.is_file():
            raise ValueError(f"{run}: no {SAMPLES_FILE}; run `specbed wisv collect {run}` first")
        parts.append(torch.load(path, map_location="cpu", weights_only=True))
    return {k: torch.cat([p[k] for p in parts]).float() for k in ("h_target", "h_drafter", "token", "csi", "label")}


def train(runs: list[Path], out: Path, epochs: int = 300, seed: int = 0, lr: float = 3e-3) -> dict:
    """Train and save the head; returns its ``meta``."""
    s = load_samples(runs)
    torch.manual_seed(seed)
    head = DecisionHead(s["h_target"].shape[1], s["h_drafter"].shape[1])
    y = s["label"]
    pos = float(y.mean())
    weight = torch.where(y > 0.5, 0.5 / max(pos, 1e-3), 0.5 / max(1 - pos, 1e-3))
    opt = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=1e-2)
    for _ in range(epochs):
        opt.zero_grad()
        score = head(s["h_target"], s["h_drafter"], s["token"], s["csi"]).clamp(1e-6, 1 - 1e-6)
        loss = torch.nn.functional.binary_cross_entropy(score, y, weight=weight)
        loss.backward()
        opt.step()
    with torch.no_grad():
        score = head(s["h_target"], s["h_drafter"], s["token"], s["csi"])
    meta = {
        "runs": [Path(r).name for r in runs],  # folder names only: the head file travels, paths do not
        "samples": len(y),
        "positive_rate": round(pos, 4),
        "train_accuracy_at_0.5": round(float(((score >= 0.5).float() == y).float().mean()), 4),
        "final_loss": round(float(loss.detach()), 4),
        "epochs": epochs,
        "seed": seed,
    }
    save_head(head, Path(out), meta)
    return meta

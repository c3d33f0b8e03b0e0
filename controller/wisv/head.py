"""The WISV decision head and its channel-aware threshold.

Inputs of ``DecisionHead.forward`` (N rejected draft positions):

``h_target``  [N, d_t] float32: the target's last-layer hidden state at the
              mismatched position (the position whose argmax p_i differs
              from the draft token x_i).
``h_drafter`` [N, d_d] float32: the drafter's last-layer hidden state at the
              same position, as uploaded; projected to d_t by a learned
              rank-``rank`` factorisation (d_d -> rank -> d_t).
``token``     [N, 3] float32: log p_i(x_i), log p_i(argmax) - log p_i(x_i)
              (nats), and the cosine of the target's output-embedding rows
              of x_i and of argmax p_i (are the two tokens alike?).
``csi``       [N, 2] float32: channel state, ``csi_features``: SNR dB / 30
              and log10(rate bit/s) / 7, each 0 when unknown.

Output: an acceptance score in (0, 1).  The head runs only where strict
verification rejects; the token is kept when score >= threshold(CSI).
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import nn

#: The channel range over which the threshold moves from its good-channel to its poor-channel value.
RATE_GOOD_BPS, RATE_POOR_BPS = 1e6, 16e3
SNR_GOOD_DB, SNR_POOR_DB = 30.0, 0.0
TOKEN_FEATURES, CSI_FEATURES = 3, 2


def csi_features(channel: dict | None) -> list[float]:
    """[SNR dB / 30, log10(rate) / 7], 0 for what the payload did not report."""
    channel = channel or {}
    snr, rate = channel.get("snr_db"), channel.get("rate_bps")
    return [float(snr) / 30.0 if snr is not None else 0.0, math.log10(rate) / 7.0 if rate else 0.0]


def threshold(channel: dict | None, csi: str, good: float, poor: float) -> float:
    """The acceptance threshold at this channel state: ``good`` on a good channel, ``poor`` on a poor one.

    ``csi`` "rate": log-linear in the uplink rate between 16 kbit/s (poor)
    and 1 Mbit/s (good); "snr": linear in SNR between 0 dB and 30 dB;
    "constant": always ``good``.  With good > poor (the default) the
    threshold loosens monotonically as the channel worsens, as in WISV.
    An unknown channel state counts as good.
    """
    channel = channel or {}
    if csi == "rate" and channel.get("rate_bps"):
        lo, hi, x = math.log10(RATE_POOR_BPS), math.log10(RATE_GOOD_BPS), math.log10(channel["rate_bps"])
    elif csi == "snr" and channel.get("snr_db") is not None:
        lo, hi, x = SNR_POOR_DB, SNR_GOOD_DB, float(channel["snr_db"])
    else:
        return good
    frac = min(1.0, max(0.0, (x - lo) / (hi - lo)))
    return poor + frac * (good - poor)


class DecisionHead(nn.Module):
    """Score in (0, 1) that a strictly rejected draft token may be kept."""

    def __init__(self, d_target: int, d_drafter: int, rank: int = 32, width: int = 32) -> None:
        super().__init__()
        self.config = {"d_target": d_target, "d_drafter": d_drafter, "rank": rank, "width": width}
        self.project = nn.Sequential(nn.Linear(d_drafter, rank, bias=False), nn.Linear(rank, d_target, bias=False))
        self.reduce = nn.Linear(d_target, width)  # shared by both hidden states
        self.norm = nn.LayerNorm(d_target, elementwise_affine=False)
        n_in = 3 * width + 1 + TOKEN_FEATURES + CSI_FEATURES
        self.mlp = nn.Sequential(nn.Linear(n_in, width), nn.GELU(), nn.Linear(width, 1))

    def forward(
        self,
        h_target: torch.Tensor,  # [N, d_t]
        h_drafter: torch.Tensor,  # [N, d_d]
        token: torch.Tensor,  # [N, 3]
        csi: torch.Tensor,  # [N, 2]
    ) -> torch.Tensor:  # [N] scores
        t = self.norm(h_target)
        d = self.norm(self.project(h_drafter))
        cos = nn.functional.cosine_similarity(t, d, dim=-1).unsqueeze(-1)  # [N, 1]
        rt, rd = self.reduce(t), self.reduce(d)
        x = torch.cat([rt, rd, rt * rd, cos, token, csi], dim=-1)
        return torch.sigmoid(self.mlp(x).squeeze(-1))


def save_head(head: DecisionHead, path: Path, meta: dict) -> Path:
    """The head as float16 weights plus its config and how it was trained (``meta``)."""
    state = {k: v.half() for k, v in head.state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"format": "specbed-wisv-head/1", "config": head.config, "state": state, "meta": meta}, path)
    return path


def load_head(path: Path) -> DecisionHead:
    """A head file written by ``save_head``; ValueError naming the file if it is not one."""
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(f"{path}: not a WISV head file ({type(exc).__name__}: {exc})") from None
    if not isinstance(blob, dict) or blob.get("format") != "specbed-wisv-head/1":
        raise ValueError(
            f"{path}: not a WISV head file (format {blob.get('format') if isinstance(blob, dict) else None})"
        )
    head = DecisionHead(**blob["config"])
    head.load_state_dict({k: v.float() for k, v in blob["state"].items()})
    head.meta = blob.get("meta", {})
    return head.eval()


def token_features(
    logits: torch.Tensor,  # [n, V] target logits at the positions
    drafts: torch.Tensor,  # [n] long, x_i
    out_embeddings: torch.Tensor,  # [V, d_t] the target's output-embedding rows
) -> torch.Tensor:  # [n, 3]
    logp = torch.log_softmax(logits.float(), dim=-1)
    top = logp.argmax(-1)
    lx = logp.gather(-1, drafts[:, None]).squeeze(-1)
    gap = logp.gather(-1, top[:, None]).squeeze(-1) - lx
    e, dev = out_embeddings, out_embeddings.device  # only the 2n rows it needs leave the target's device
    rows_x, rows_top = e[drafts.to(dev)].float().cpu(), e[top.to(dev)].float().cpu()
    cos = nn.functional.cosine_similarity(rows_x, rows_top, dim=-1)
    return torch.stack([lx.clamp(min=-30.0), gap.clamp(max=30.0), cos], dim=-1)


def never_accepting_head(d_target: int, d_drafter: int) -> DecisionHead:
    """An untrained head whose score is about 2e-9 everywhere: semantic verification then equals strict.

    The bundled placeholder until a head is trained from a strict run
    (README, WISV); with it a semantic run measures only the cost of
    carrying hidden states (bytes, round trips), never a semantic acceptance.
    """
    torch.manual_seed(0)
    head = DecisionHead(d_target, d_drafter)
    with torch.no_grad():
        head.mlp[-1].weight.zero_()
        head.mlp[-1].bias.fill_(-20.0)
    return head

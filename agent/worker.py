"""A SpecFed worker: an agent that scores drafts with its own model (ALGORITHMS.md section 3).

Started as ``python -m agent --role worker``.  It speaks the agent's protocol
(``HELLO``, ``CONFIGURE``, ``READY``, ``TIME_PING``, ``LINK``, ``BYE``); the
model it loads is the one ``CONFIGURE`` names under ``drafter`` (for a worker:
the model it scores with, which must share the drafter's tokenizer).  Each
``SCORE_REQUEST`` is answered by one forward pass over the context and the γ
drafts, reusing the request's KV cache (rolled back to the prefix it shares
with the new sequence, like the drafter's), with a ``SCORE_PAYLOAD`` holding
the top K of p_m at the γ draft positions and the bonus position, packed
like a draft payload (K, index and probability dtypes from ``CONFIGURE``).
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict

import numpy as np
import torch

from agent.drafter import TORCH_PROB_DTYPES
from agent.lm import CachedLM, probs_from_logits
from agent.protocol import DENSE, Message, ProtocolError, ScorePayload, ScoreRequest, encode, zmtp_frame_bytes
from agent.runtime import Agent

log = logging.getLogger(__name__)

#: KV caches kept at once (one per request in flight; the oldest is dropped).
MAX_SESSIONS = 8


def score_topk(
    probs: torch.Tensor,  # [γ + 1, V] float32, p_m
    top_k: int,
    index_dtype: str,
    prob_dtype: str,
) -> tuple[np.ndarray, np.ndarray]:
    """(indices [γ + 1, K] int64, values [γ + 1, K] in the wire dtype) of one payload."""
    if index_dtype == DENSE:
        values = probs
        indices = torch.arange(probs.shape[1]).expand(probs.shape[0], -1)
    else:
        values, indices = torch.topk(probs, top_k, dim=-1)
    return indices.numpy().astype(np.int64), values.to(TORCH_PROB_DTYPES[prob_dtype]).numpy()


class Worker(Agent):
    """Scores drafts for a SpecFed controller; one KV cache per request (session)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.sessions: OrderedDict[int, tuple[CachedLM, list[int]]] = OrderedDict()
        self.scored = 0

    def dispatch(self, msg: Message, recv_ns: int) -> None:
        if isinstance(msg, ScoreRequest):
            self.score(msg, recv_ns)
        else:
            super().dispatch(msg, recv_ns)

    def configure(self, settings: dict) -> None:
        super().configure(settings)
        self.sessions.clear()  # a new model or new settings: no cache carries over

    def _sequence(self, msg: ScoreRequest) -> tuple[CachedLM, list[int]]:
        """The request's cache and its full sequence, from the kept prefix plus the new tokens."""
        if msg.request_id in self.sessions:
            lm, previous = self.sessions.pop(msg.request_id)
        else:
            if msg.base:
                raise ProtocolError("unexpected", f"base={msg.base} for request {msg.request_id} never scored here")
            lm, previous = CachedLM(self.loaded.model, self.device), []
            lm.reset()
        if msg.base > len(previous):
            raise ProtocolError("unexpected", f"base={msg.base} exceeds the {len(previous)} tokens of the last request")
        sequence = previous[: msg.base] + list(msg.token_ids)
        if msg.draft_length >= len(sequence):
            raise ProtocolError("malformed", f"draft_length={msg.draft_length} leaves no context in {len(sequence)}")
        self.sessions[msg.request_id] = (lm, sequence)
        while len(self.sessions) > MAX_SESSIONS:
            self.sessions.popitem(last=False)
        return lm, sequence

    def score(self, msg: ScoreRequest, recv_ns: int) -> None:
        if self.drafter is None:
            raise ProtocolError("unexpected", "score request before configure")
        s = self.drafter.settings
        lm, sequence = self._sequence(msg)
        gamma = msg.draft_length
        # rows predict the γ drafts and the bonus token: positions len - γ - 1 .. len - 1
        logits = lm.logits(sequence, len(sequence) - gamma - 1).float().cpu()  # [γ + 1, V]
        probs = probs_from_logits(logits, s.temperature)
        indices, values = score_topk(probs, s.top_k, s.index_dtype, s.prob_dtype)
        t_forward = self.now_ns()
        payload = ScorePayload(
            request_id=msg.request_id,
            round=msg.round,
            draft_length=gamma,
            top_k=probs.shape[1] if s.index_dtype == DENSE else s.top_k,
            index_dtype=s.index_dtype,
            prob_dtype=s.prob_dtype,
            topk_indices=indices,
            topk_probs=values,
            dense_probs=None,
            times=[recv_ns, t_forward, 0],
        )
        if self.uplink is not None and self.uplink.active:
            rate, snr = self.uplink.state(time.monotonic())
            payload.link = {"rate_bps": rate, "snr_db": snr, "up_s": 0.0}
            # the dense copy for measurement is not part of the scheme's traffic: not held back
            held = self.uplink.transfer(zmtp_frame_bytes(len(encode(payload))), time.monotonic())
            payload.link["up_s"] = float(held.seconds)
            time.sleep(held.seconds)
        if msg.measure:
            payload.dense_probs = probs.numpy()
        payload.times[2] = self.now_ns()
        self.send(payload)
        self.scored += 1

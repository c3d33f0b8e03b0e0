"""The controller's side of WISV: hidden states in, semantic verdicts out (lossy by design).

``Semantic`` sits beside the greedy verifier: ``controller.serve.rounds``
hands it every verified round of a semantic generation.  It reads the
target's last-layer hidden states of the round's forward pass
(``StaticTarget.keep_hidden``), finds the mismatches (x_i != argmax p_i),
and gets the drafter's hidden states for them: from the payload
(full-hidden) or with a ``HIDDEN_REQUEST`` round trip (selective-hidden; the
round then waits for the ``HIDDEN_ANSWER`` before its verdict).  Where the
decision head's score reaches the channel's threshold, the mismatched token
is kept (``controller.wisv.verify``).

Each round records, in its ``wisv`` map: ``mismatches``,
``semantic_accepted``, ``strict_accepted``, ``round_trips`` (1, or 2 with a
request), ``hidden_bytes_up`` (hidden-state bytes of the payload and of the
answer), ``request_bytes_down`` and ``answer_bytes_up`` (ZMTP frame bytes
of the extra messages, also counted in the round's ``bytes_down`` and
``bytes_up``), ``hidden_round_trip_s`` (request sent to answer received,
controller clock) and ``threshold``.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import torch

from agent.protocol import HiddenAnswer, HiddenRequest, ProtocolError
from agent.settings import HiddenSettings
from controller.wisv.config import resolve_head
from controller.wisv.head import DecisionHead, csi_features, load_head, threshold, token_features
from controller.wisv.verify import mismatches, semantic_greedy_verify

log = logging.getLogger(__name__)


def hidden_settings(generation) -> HiddenSettings | None:
    """CONFIGURE's ``hidden`` of a generation (None in strict mode: the agent captures nothing)."""
    if getattr(generation, "verification", "strict") != "semantic":
        return None
    return HiddenSettings(generation.hidden_upload, generation.hidden_dtype)


@dataclass
class Waiting:
    """A selective-hidden round waiting for its answer."""

    round: object  # controller.serve.rounds.InFlight
    logits: torch.Tensor  # [γ + 1, V] float32
    h_target: torch.Tensor  # [γ, d_t] float32
    positions: list[int]
    t_sent: int  # controller ns: request sent


class Semantic:
    """One per semantic grid point: the head, the threshold and the rounds waiting for hidden states."""

    def __init__(self, generation, core) -> None:
        core.keep_hidden()  # ValueError naming the model when its hidden states cannot be read
        self.g = generation
        self.core = core
        self.out_embeddings = core.model.get_output_embeddings().weight.detach()  # [V, d_t]
        self.head: DecisionHead = load_head(resolve_head(generation.wisv_head))
        d_target = int(self.out_embeddings.shape[1])
        if self.head.config["d_target"] != d_target:
            raise ValueError(
                f"generation.wisv_head: the head reads target states of width {self.head.config['d_target']}, "
                f"the target's are {d_target}"
            )
        self.pending: dict[bytes, Waiting] = {}  # agent identity -> its round waiting for an answer

    @classmethod
    def for_generation(cls, generation, core) -> Semantic | None:
        return cls(generation, core) if getattr(generation, "verification", "strict") == "semantic" else None

    def observer(self, rounds: list):
        """``verify_round``'s ``on_logits``: each round's logits and target hidden states, to the host."""

        def observe(logits: torch.Tensor, offsets: list[int]) -> None:
            hidden = self.core.hidden
            for b, (r, off) in enumerate(zip(rounds, offsets, strict=True)):
                n = len(r.drafts)
                r.wisv_logits = logits[b, off : off + n + 1].float().cpu()  # [γ + 1, V]
                r.wisv_hidden = hidden[b, off : off + n].float().cpu()  # [γ, d_t]: the rows predicting x_i

        return observe

    def review(self, rounds: list, send) -> set[int]:
        """Apply the head to strictly verified rounds; the ids of rounds now waiting for a hidden answer."""
        waiting = set()
        for r in rounds:
            gamma, hidden = len(r.drafts), r.msg.hidden
            r.wisv = {
                "mismatches": 0,
                "strict_accepted": r.n_accepted,
                "semantic_accepted": 0,
                "round_trips": 1,
                "hidden_bytes_up": 0 if hidden is None else int(hidden.nbytes),
                "request_bytes_down": 0,
                "answer_bytes_up": 0,
            }
            if r.n_accepted == gamma:
                continue
            positions = mismatches(r.drafts, r.wisv_logits)
            r.wisv["mismatches"] = len(positions)
            if hidden is not None:
                self._decide(r, r.wisv_logits, r.wisv_hidden, positions, hidden[positions])
                continue
            request = HiddenRequest(r.msg.request_id, r.msg.round, positions)
            r.wisv["request_bytes_down"] = send(r.session.identity, request)
            r.wisv["round_trips"] = 2
            self.pending[r.session.identity] = Waiting(r, r.wisv_logits, r.wisv_hidden, positions, time.monotonic_ns())
            r.session.waiting_since_ns = time.monotonic_ns()  # the round deadline covers the answer too
            waiting.add(id(r))
        return waiting

    def on_answer(self, session, msg: HiddenAnswer, frame_len: int, t_recv: int):
        """The answer a waiting round asked for: decide; returns the round, ready for its verdict."""
        from agent.protocol import zmtp_frame_bytes

        w = self.pending.get(session.identity)
        r = None if w is None else w.round
        asked = None if r is None else (r.msg.request_id, r.msg.round)
        # the round it asked about, and still the session's round (not one failed over since)
        if session.job is None or (msg.request_id, msg.round) != asked or asked != (session.request_id, session.round):
            raise ProtocolError("unexpected", f"hidden answer for request {msg.request_id} round {msg.round}")
        if msg.positions != w.positions:
            raise ProtocolError("unexpected", f"hidden answer for positions {msg.positions}, asked {w.positions}")
        del self.pending[session.identity]
        session.waiting_since_ns = 0
        r.wisv["hidden_bytes_up"] += int(msg.hidden.nbytes)
        r.wisv["answer_bytes_up"] = zmtp_frame_bytes(frame_len)
        r.wisv["hidden_round_trip_s"] = (t_recv - w.t_sent) / 1e9
        self._decide(r, w.logits, w.h_target, w.positions, msg.hidden)
        return r

    def drop(self, identity: bytes) -> None:
        self.pending.pop(identity, None)

    @torch.no_grad()
    def _decide(self, r, logits: torch.Tensor, h_target: torch.Tensor, positions: list[int], rows) -> None:
        """Score the mismatches; the verdict keeps those at or above the channel's threshold."""
        h_drafter = torch.from_numpy(rows.astype("float32"))  # [n, d_d]
        if h_drafter.shape[1] != self.head.config["d_drafter"]:
            raise ProtocolError(
                "mismatch",
                f"hidden states {h_drafter.shape[1]} wide, the head reads {self.head.config['d_drafter']}",
                field="hidden",
            )
        g = self.g
        idx = torch.tensor(positions, dtype=torch.long)
        channel = r.msg.link or None
        feats = token_features(logits[idx], r.drafts[idx], self.out_embeddings)
        csi = torch.tensor([csi_features(channel)] * len(positions), dtype=torch.float32)
        scores = self.head(h_target[idx], h_drafter, feats, csi)  # [n]
        limit = threshold(channel, g.wisv_threshold, g.wisv_threshold_good, g.wisv_threshold_poor)
        ok = torch.zeros(len(r.drafts), dtype=torch.bool)
        ok[idx] = scores >= limit
        r.n_accepted, r.next_token, r.wisv["semantic_accepted"] = semantic_greedy_verify(r.drafts, logits, ok)
        r.wisv["threshold"] = round(limit, 4)

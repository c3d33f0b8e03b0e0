"""Rounds: a batch's verification, the online estimates, the verdict, the round record, band shares.

A module of ``controller/serve/``, the controller in pieces of one concept each; they import downward only.

The target pass and the ragged batch's verification run on the target's
device (controller.device_verify); this module is the server-side glue
around them: each round's timestamps become the phases of its
``RoundRecord``, its sizes and times feed the agent's ``Estimates``, and the
draft policy (or the bandwidth allocator) picks the next γ sent in the
verdict.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import torch

from agent.lm import probs_from_logits
from agent.protocol import DraftPayload, LinkUpdate, Verdict, zmtp_frame_bytes
from controller.acceptance import round_expectations
from controller.device_verify import Payload, verify_round
from controller.policies import BandAllocator, Decision
from controller.profiles import Generation
from controller.results import RoundRecord
from controller.serve.router import Router
from controller.serve.sessions import Admission, Session
from controller.target import StaticTarget
from controller.verify import reconstruct, tail_mass
from controller.wisv.semantic import Semantic


@dataclass
class InFlight:
    """One payload on its way through a batch: what arrived, then what verification made of it."""

    session: Session
    msg: DraftPayload
    frame_len: int
    t_recv: int  # controller ns: frame received
    t_decoded: int  # decoded and staged
    t_batch: int  # its batch's forward pass started
    drafts: torch.Tensor  # [γ] long
    committed: list[int]  # prompt and tokens generated so far
    topk_probs: torch.Tensor  # [γ, K] float32
    t_ready: int = 0  # arrived and readable: uplink ends and queue (controller busy) starts here
    t_target: int = 0  # forward pass done
    t_verified: int = 0
    n_accepted: int = 0
    next_token: int = 0
    expected: dict = field(default_factory=dict)  # controller.acceptance's fields for the RoundRecord
    wisv: dict | None = None  # WISV semantic verification's record of the round (controller.wisv.semantic)


class Host(Protocol):
    """What rounds read and change on the controller that holds them."""

    router: Router
    core: StaticTarget
    generation: Generation
    sessions: dict[bytes, Session]
    admission: Admission
    allocator: BandAllocator | None
    rounds_since_solve: int
    eos_ids: set[int]
    on_round: Callable[[RoundRecord], None]
    wisv: Semantic | None


class Rounds:
    """Verifies staged batches and answers each round with a verdict and a record."""

    def __init__(self, host: Host) -> None:
        self.host = host

    def verify_batch(self, batch: list[Session]) -> None:
        """One target forward pass over the batch's drafts, then each agent's verification and verdict."""
        h = self.host
        g = h.generation
        t_batch = time.monotonic_ns()
        rounds = []
        for session in batch:
            msg, frame_len, t_recv, t_decoded = session.staged
            session.staged = None
            job = session.job
            rounds.append(
                InFlight(
                    session,
                    msg,
                    frame_len,
                    t_recv,
                    t_decoded,
                    t_batch,
                    t_ready=session.t_ready,
                    drafts=torch.from_numpy(msg.token_ids.astype("int64")),  # [γ]
                    committed=job.prompt_token_ids + job.generated,
                    topk_probs=torch.from_numpy(msg.topk_probs.astype("float32")),  # [γ, K]
                )
            )
        # the target pass and the ragged batch's verification on the target's device (controller.device_verify)
        strategy = g.reconstruction if g.sampling == "full" else "renormalise"
        verdicts, t_target, t_verified = verify_round(
            h.core,
            [r.session.target for r in rounds],
            [r.committed + r.drafts.tolist() for r in rounds],
            [len(r.committed) - 1 for r in rounds],
            [
                Payload(
                    r.msg.token_ids, r.msg.draft_probs, None if r.msg.dense else r.msg.topk_indices, r.msg.topk_probs
                )
                for r in rounds
            ],
            [r.session.generator for r in rounds],
            g.temperature,
            strategy,
            on_logits=self._expectations(rounds) if g.temperature > 0 else self._wisv_observer(rounds),
        )
        positions = sum(len(r.drafts) + 1 for r in rounds)
        for r, (n_accepted, next_token) in zip(rounds, verdicts, strict=True):
            r.t_target, r.t_verified, r.n_accepted, r.next_token = t_target, t_verified, n_accepted, next_token
        # WISV (lossy): the head's say at mismatches; selective-hidden rounds wait for their answer
        waiting = h.wisv.review(rounds, h.router.send) if h.wisv is not None else set()
        for r in rounds:
            if id(r) not in waiting:
                self._estimate(r, server_ns=t_verified - t_batch, positions=positions)
        if h.allocator is not None:
            h.rounds_since_solve += len(rounds)
            if h.rounds_since_solve >= g.realloc_rounds:
                h.rounds_since_solve = 0
                h.allocator.resolve({s.name: s.estimates for s in h.sessions.values()})
        for r in rounds:
            if id(r) not in waiting:
                self._reply(r, len(rounds))

    def on_hidden_answer(self, session: Session, msg, frame_len: int, t_recv: int) -> None:
        """WISV selective-hidden: the answer a waiting round asked for; decide, then its verdict."""
        from agent.protocol import ProtocolError

        if self.host.wisv is None:
            raise ProtocolError("unexpected", "HiddenAnswer outside semantic verification")
        r = self.host.wisv.on_answer(session, msg, frame_len, t_recv)
        r.t_verified = time.monotonic_ns()  # its verification phase includes the hidden round trip
        self._estimate(r, server_ns=r.t_verified - r.t_batch, positions=len(r.drafts) + 1)
        self._reply(r, 1)

    def _wisv_observer(self, rounds: list[InFlight]) -> Callable | None:
        """WISV: the pass's logits and target hidden states of each round (greedy semantic generations only)."""
        return self.host.wisv.observer(rounds) if self.host.wisv is not None else None

    def _expectations(self, rounds: list[InFlight]) -> Callable:
        """Record each round's exact expected acceptance (controller.acceptance) from the pass's logits."""
        g = self.host.generation

        def measure(logits: torch.Tensor, offsets: list[int]) -> None:
            for b, (r, off) in enumerate(zip(rounds, offsets, strict=True)):
                n = len(r.drafts)
                p = probs_from_logits(logits[b, off : off + n + 1].float(), g.temperature).cpu()  # [γ + 1, V]
                if r.msg.dense:
                    q = r.topk_probs  # [γ, V]: the distribution itself
                elif g.sampling == "top-k":
                    topk_idx = torch.from_numpy(r.msg.topk_indices.astype("int64"))
                    q = reconstruct(topk_idx, r.topk_probs, p.shape[-1], "renormalise")  # [γ, V]
                else:
                    continue  # q is only a reconstruction: nothing exact to record
                r.expected = round_expectations(p, q, r.msg.dense, g.sampling)

        return measure

    def _estimate(self, r: InFlight, server_ns: int, positions: int) -> None:
        """Feed the round into the agent's online estimates (the draft and bandwidth policies read them)."""
        msg, session = r.msg, r.session
        t = msg.times
        to_ctrl = session.clock.to_controller
        per_token = msg.token_ids.itemsize + 4 + msg.top_k * (0 if msg.dense else msg.topk_indices.itemsize)
        per_token += msg.top_k * msg.topk_probs.itemsize + (4 if msg.tv is not None else 0)
        link = msg.link or {}
        reply_s = (to_ctrl(t[3]) - session.last_verified_ns) / 1e9 if t[3] and session.last_verified_ns else None
        draft_s, up_s = (t[1] - t[0]) / 1e9, float(link.get("up_s") or 0.0)
        wait_s, server_s = (r.t_batch - r.t_decoded) / 1e9, server_ns / 1e9
        other_s = None
        prev = session.prev_parts
        if prev is not None and prev[0] == (msg.request_id, msg.round - 1):
            # the previous round's cycle, draft start to draft start, less its modelled parts
            other_s = (t[0] - prev[1]) / 1e9 - prev[2]
        session.prev_parts = ((msg.request_id, msg.round), t[0], draft_s + up_s + wait_s + server_s)
        session.estimates.add(
            gamma=msg.draft_length,
            accepted=r.n_accepted,
            t_draft_s=draft_s,
            bytes_up=zmtp_frame_bytes(r.frame_len),
            per_token_bytes=per_token,
            up_s=(r.t_recv - to_ctrl(t[2])) / 1e9,
            reported_rate=link.get("rate_bps"),
            t_verify_s=server_s,
            t_down_s=reply_s,
            verify_positions=positions,
            t_wait_s=wait_s,
            snr_db=link.get("snr_db"),
            t_other_s=other_s,
        )

    def _reply(self, r: InFlight, batch_size: int) -> None:
        """Choose the next γ (and band share), send the verdict, record the round, finish the prompt if done."""
        session, msg = r.session, r.msg
        job = session.job
        h = self.host
        g = h.generation
        new, done = job.extend(r.drafts[: r.n_accepted].tolist() + [r.next_token], h.eos_ids)
        t = msg.times
        clock = session.clock
        to_ctrl = clock.to_controller
        est = session.estimates
        band_sent = session.band_hz  # the share this round's payload was sent with
        if h.allocator is not None:
            decision = Decision(h.allocator.gamma(session.name), h.allocator.predicted(session.name))
            self.send_share(session)  # before the verdict: the next payload uses it
        else:
            decision = session.policy.decide(est)
        session.next_gamma = max(1, min(int(decision.gamma), g.gamma_max))
        t_reply = time.monotonic_ns()
        verdict = Verdict(
            msg.request_id, msg.round, r.n_accepted, r.next_token, done, session.next_gamma, [r.t_recv, t_reply]
        )
        bytes_down = h.router.send(session.identity, verdict)
        session.waiting_since_ns = 0 if done else time.monotonic_ns()
        session.round += 1
        session.rounds_done += 1
        phases = {
            "drafting": [to_ctrl(t[0]), to_ctrl(t[1])],
            "packing": [to_ctrl(t[1]), to_ctrl(t[2])],
            "uplink": [to_ctrl(t[2]), max(to_ctrl(t[2]), r.t_ready)],
            "queue": [max(to_ctrl(t[2]), r.t_ready), r.t_recv],
            "decode": [r.t_recv, r.t_decoded],
            "batch_wait": [r.t_decoded, r.t_batch],
            "target_forward": [r.t_batch, r.t_target],
            "verification": [r.t_target, r.t_verified],
        }
        if t[3] and session.last_verified_ns:
            phases["reply"] = [session.last_verified_ns, to_ctrl(t[3])]
            phases["rollback"] = [to_ctrl(t[3]), to_ctrl(t[4])]
        session.last_verified_ns = r.t_verified
        h.on_round(
            RoundRecord(
                agent=session.name,
                prompt_id=job.prompt_id,
                request_id=msg.request_id,
                round=msg.round,
                draft_length=msg.draft_length,
                top_k=msg.top_k,
                accepted=r.n_accepted,
                emitted=len(new),
                next_kind="bonus" if r.n_accepted == msg.draft_length else "recovered",
                bytes_up=zmtp_frame_bytes(r.frame_len) + (r.wisv or {}).get("answer_bytes_up", 0),
                bytes_down=bytes_down + (r.wisv or {}).get("request_bytes_down", 0),
                agent_draft_start_ns=t[0],
                agent_draft_end_ns=t[1],
                agent_send_ns=t[2],
                agent_prev_verdict_recv_ns=t[3],
                agent_prev_rollback_done_ns=t[4],
                ctrl_recv_ns=r.t_recv,
                ctrl_decoded_ns=r.t_decoded,
                ctrl_target_done_ns=r.t_target,
                ctrl_verified_ns=r.t_verified,
                ctrl_reply_ns=t_reply,
                tail_mass=float(tail_mass(r.topk_probs).mean()),
                tv_distance=float(msg.tv.mean()) if msg.tv is not None else None,
                clock_offset_ns=round(clock.offset_at(r.t_recv)) if clock.samples else None,
                phases=phases,
                channel=dict(msg.link or {}) or None,
                next_draft_length=session.next_gamma,
                predicted_goodput=decision.predicted_goodput,
                alpha_estimate=est.alpha,
                batch_size=batch_size,
                band_hz=band_sent,
                wisv=r.wisv,
                **r.expected,
            )
        )
        if done:
            h.admission.finish(session)

    def send_share(self, session: Session) -> None:
        """Send the agent its band share when the allocation moved it (by more than 0.5%)."""
        share = self.host.allocator.share(session.name)
        if session.band_hz and abs(share - session.band_hz) <= 0.005 * session.band_hz:
            return
        self.host.router.send(session.identity, LinkUpdate(up={"bandwidth_hz": share}))
        session.band_hz = share

"""The per-round draft payload: the top-K arrays on the wire and every check of their shapes and probabilities."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from agent.protocol.hidden import hidden_bytes, hidden_rows
from agent.protocol.wire import (
    DENSE,
    INDEX_DTYPES,
    PAYLOAD_TIMES,
    PROB_DTYPES,
    PROB_SUM_TOLERANCE,
    QX_ABS_TOLERANCE,
    QX_REL_TOLERANCE,
    WIRE_INDEX_DTYPES,
    Message,
    MsgType,
    ProtocolError,
    _check,
    _int,
    _link,
    _one_of,
    _times,
)


@dataclass
class DraftPayload(Message):
    """One round's drafts. Arrays are numpy views over the received bytes."""

    TYPE: ClassVar[MsgType] = MsgType.DRAFT_PAYLOAD
    request_id: int
    round: int
    draft_length: int
    top_k: int
    index_dtype: str
    prob_dtype: str
    token_ids: np.ndarray  # [γ] index dtype
    draft_probs: np.ndarray  # [γ] float32, exact q_i(x_i)
    topk_indices: np.ndarray  # [γ, K] index dtype
    topk_probs: np.ndarray  # [γ, K] prob dtype
    times: list[int]  # agent ns: draft start, draft end, sent, previous verdict received, its rollback done
    tv: np.ndarray | None = None  # [γ] float32, TV(q, server's q̃) as the drafter measured it
    link: dict = field(default_factory=dict)  # channel state on an emulated link
    # WISV full-hidden upload only (a 14th field where CONFIGURE negotiated it, agent.protocol.hidden):
    # [γ, width] in the negotiated hidden dtype, the drafter's last-layer state per draft token
    hidden: np.ndarray | None = None

    @classmethod
    def wire_fields(cls, **ctx: Any) -> int:
        """13 fields; 14 where the receiver negotiated full hidden-state upload (``hidden_dtype`` in ctx)."""
        return 14 if ctx.get("hidden_dtype") else 13

    @property
    def dense(self) -> bool:
        return self.index_dtype == DENSE

    def to_wire(self) -> list:
        prob = PROB_DTYPES[self.prob_dtype]
        idx = INDEX_DTYPES["uint32" if self.dense else self.index_dtype]
        indices = b"" if self.dense else np.ascontiguousarray(self.topk_indices, dtype=idx).tobytes()
        tv = b"" if self.tv is None else np.ascontiguousarray(self.tv, dtype="<f4").tobytes()
        wire = [
            self.request_id,
            self.round,
            self.draft_length,
            self.top_k,
            self.index_dtype,
            self.prob_dtype,
            np.ascontiguousarray(self.token_ids, dtype=idx).tobytes(),
            np.ascontiguousarray(self.draft_probs, dtype="<f4").tobytes(),
            indices,
            np.ascontiguousarray(self.topk_probs, dtype=prob).tobytes(),
            list(self.times),
            tv,
            dict(self.link),
        ]
        if self.hidden is not None:  # negotiated: the hidden array's own dtype is the negotiated one
            wire.append(hidden_bytes(self.hidden, self.hidden.dtype.name))
        return wire

    @classmethod
    def from_wire(cls, fields: list, **ctx: Any) -> DraftPayload:
        vocab = ctx.get("vocab_size")
        request_id = _int(fields[0], "request_id")
        rnd = _int(fields[1], "round")
        gamma = _int(fields[2], "draft_length", 1, 1024)
        k = _int(fields[3], "top_k", 1, 1 << 20)
        index_name = _one_of(fields[4], WIRE_INDEX_DTYPES, "bad_dtype", "index dtype")
        prob_name = _one_of(fields[5], PROB_DTYPES, "bad_dtype", "prob dtype")
        dense = index_name == DENSE
        # Token ids of a dense payload travel as uint32 (no narrower dtype was negotiated).
        idx_dt, prob_dt = INDEX_DTYPES["uint32" if dense else index_name], PROB_DTYPES[prob_name]
        blobs = fields[6:10]
        names = ("token_ids", "draft_probs", "topk_indices", "topk_probs")
        for name, blob in zip(names, blobs, strict=True):
            _check(isinstance(blob, bytes), "malformed", f"{name} must be bytes")
        n_idx = 0 if dense else gamma * k * idx_dt.itemsize
        expected = (gamma * idx_dt.itemsize, gamma * 4, n_idx, gamma * k * prob_dt.itemsize)
        for name, blob, n in zip(names, blobs, expected, strict=True):
            _check(len(blob) == n, "bad_shape", f"{name} has {len(blob)} bytes, expected {n} for γ={gamma}, K={k}")
        tv_blob = fields[11]
        _check(isinstance(tv_blob, bytes), "malformed", "tv must be bytes")
        _check(len(tv_blob) in (0, gamma * 4), "bad_shape", f"tv has {len(tv_blob)} bytes, expected 0 or {gamma * 4}")
        tv = np.frombuffer(tv_blob, dtype="<f4") if tv_blob else None
        token_ids = np.frombuffer(blobs[0], dtype=idx_dt)
        draft_probs = np.frombuffer(blobs[1], dtype="<f4")
        if dense:
            topk_indices = np.broadcast_to(np.arange(k, dtype=np.int64), (gamma, k))
        else:
            topk_indices = np.frombuffer(blobs[2], dtype=idx_dt).reshape(gamma, k)
        topk_probs = np.frombuffer(blobs[3], dtype=prob_dt).reshape(gamma, k)
        if tv is not None:
            _check(
                bool(np.isfinite(tv).all() and (tv >= 0).all() and (tv <= 1).all()),
                "bad_probabilities",
                "tv outside [0, 1]",
            )
        if vocab is not None:
            _check(k <= vocab, "bad_shape", f"top_k={k} exceeds vocabulary {vocab}")
            _check(not dense or k == vocab, "bad_shape", f"a dense payload carries {k} values, vocabulary {vocab}")
            for name, arr in (
                ("token_ids", token_ids),
                ("topk_indices", topk_indices[:, -1:] if dense else topk_indices),
            ):
                bad = int(arr.max()) if arr.size else 0
                _check(bad < vocab, "index_out_of_range", f"{name} holds {bad} >= vocabulary {vocab}")
        probs32 = topk_probs.astype(np.float32)
        for name, arr in (("draft_probs", draft_probs), ("topk_probs", probs32)):
            _check(bool(np.isfinite(arr).all()), "bad_probabilities", f"{name} holds NaN or inf")
            _check(bool(((arr >= 0) & (arr <= 1)).all()), "bad_probabilities", f"{name} outside [0, 1]")
        _check(bool((draft_probs > 0).all()), "bad_probabilities", "draft_probs must be > 0 (a sampled token)")
        row_sums = probs32.sum(axis=1, dtype=np.float64)
        worst = float(row_sums.max())
        _check(worst <= 1 + PROB_SUM_TOLERANCE, "bad_probabilities", f"a top-K row sums to {worst:.4f} > 1")
        _check(bool((row_sums > 0).all()), "no_mass", "a top-K row has no probability mass (all zeros)")
        _check_qx(token_ids, draft_probs, topk_indices, probs32, row_sums, dense)
        return cls(
            request_id,
            rnd,
            gamma,
            k,
            index_name,
            prob_name,
            token_ids,
            draft_probs,
            topk_indices,
            topk_probs,
            _times(fields[10], "times", PAYLOAD_TIMES),
            tv,
            _link(fields[12]),
            hidden_rows(fields[13], ctx["hidden_dtype"], gamma) if len(fields) > 13 else None,
        )


def _check_qx(
    token_ids: np.ndarray,
    draft_probs: np.ndarray,
    topk_indices: np.ndarray,
    probs32: np.ndarray,
    row_sums: np.ndarray,
    dense: bool,
) -> None:
    """q(x) of each drafted token against its own entry v in the row's top K, where it has one.

    Greedy and full sampling send q(x) ≈ v (v is q(x) rounded to the wire
    dtype); top-K sampling draws from the renormalised row, q(x) = v / row sum.
    A q(x) outside [v, v / row sum] (with rounding tolerance) is a payload
    whose acceptance ratio p/q would not be the drafter's.
    """
    gamma = len(token_ids)
    tokens = token_ids.astype(np.int64)
    if dense:
        has = tokens < probs32.shape[1]
        pos = np.where(has, tokens, 0)
    else:
        match = topk_indices == tokens[:, None]
        has, pos = match.any(axis=1), match.argmax(axis=1)
    v = probs32[np.arange(gamma), pos].astype(np.float64)
    q = draft_probs.astype(np.float64)
    lo = v * (1 - QX_REL_TOLERANCE) - QX_ABS_TOLERANCE
    hi = v / row_sums * (1 + QX_REL_TOLERANCE) + QX_ABS_TOLERANCE
    bad = has & ((q < lo) | (q > hi))
    if bad.any():
        i = int(np.argmax(bad))
        raise ProtocolError(
            "inconsistent_q",
            f"draft {i}: q(x)={q[i]:.3g} but its top-K entry is {v[i]:.3g} (row sum {row_sums[i]:.3g})",
            draft=i,
        )

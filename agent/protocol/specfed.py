"""SpecFed's two message types: a worker scores a round's drafts with its own model.

Part of the wire protocol of ``agent.protocol`` (whose docstring lists every
field of ``SCORE_REQUEST`` and ``SCORE_PAYLOAD``, and whose ``decode``
dispatches to these classes).  Validation follows ``DRAFT_PAYLOAD``'s: every field
is type-checked before use and anything wrong raises ``ProtocolError``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from agent.protocol.wire import (
    DENSE,
    INDEX_DTYPES,
    PROB_DTYPES,
    PROB_SUM_TOLERANCE,
    WIRE_INDEX_DTYPES,
    Message,
    MsgType,
    _check,
    _int,
    _link,
    _one_of,
    _times,
)

#: Most tokens one score request may carry (a whole context plus drafts).
MAX_SCORE_TOKENS = 1 << 20
SCORE_TIMES = 3  # worker ns: request received, forward done, sent


@dataclass
class ScoreRequest(Message):
    """Controller -> worker: the sequence to score (the last γ tokens are the drafts)."""

    TYPE: ClassVar[MsgType] = MsgType.SCORE_REQUEST
    request_id: int
    round: int
    base: int  # tokens of the previous request's sequence kept
    token_ids: list[int]  # the tokens after those
    draft_length: int  # γ
    measure: bool  # also send the dense distributions (measurement traffic)

    @classmethod
    def from_wire(cls, fields: list, **ctx: Any) -> ScoreRequest:
        tokens = fields[3]
        _check(isinstance(tokens, list) and len(tokens) > 0, "malformed", "token_ids must be a non-empty list")
        _check(len(tokens) <= MAX_SCORE_TOKENS, "malformed", f"token_ids longer than {MAX_SCORE_TOKENS}")
        vocab = ctx.get("vocab_size")
        for t in tokens:
            _int(t, "token_ids[]")
            if vocab is not None:
                _check(t < vocab, "index_out_of_range", f"token id {t} >= vocabulary {vocab}")
        _check(isinstance(fields[5], bool), "malformed", "measure must be a boolean")
        return cls(
            _int(fields[0], "request_id"),
            _int(fields[1], "round"),
            _int(fields[2], "base", 0, MAX_SCORE_TOKENS),
            tokens,
            _int(fields[4], "draft_length", 1, 1024),
            fields[5],
        )


@dataclass
class ScorePayload(Message):
    """Worker -> controller: top-K of p_m at the γ draft positions and the bonus position."""

    TYPE: ClassVar[MsgType] = MsgType.SCORE_PAYLOAD
    request_id: int
    round: int
    draft_length: int  # γ; the payload has γ + 1 rows
    top_k: int
    index_dtype: str
    prob_dtype: str
    topk_indices: np.ndarray  # [γ + 1, K] index dtype
    topk_probs: np.ndarray  # [γ + 1, K] prob dtype
    dense_probs: np.ndarray | None  # [γ + 1, V] float32, measurement traffic, or None
    times: list[int]  # worker ns: request received, forward done, sent
    link: dict = field(default_factory=dict)  # channel state on an emulated uplink

    @property
    def dense(self) -> bool:
        return self.index_dtype == DENSE

    def to_wire(self) -> list:
        indices = b""
        if not self.dense:
            indices = np.ascontiguousarray(self.topk_indices, dtype=INDEX_DTYPES[self.index_dtype]).tobytes()
        dense = b"" if self.dense_probs is None else np.ascontiguousarray(self.dense_probs, dtype="<f4").tobytes()
        return [
            self.request_id,
            self.round,
            self.draft_length,
            self.top_k,
            self.index_dtype,
            self.prob_dtype,
            indices,
            np.ascontiguousarray(self.topk_probs, dtype=PROB_DTYPES[self.prob_dtype]).tobytes(),
            dense,
            list(self.times),
            dict(self.link),
        ]

    @classmethod
    def from_wire(cls, fields: list, **ctx: Any) -> ScorePayload:
        vocab = ctx.get("vocab_size")
        request_id = _int(fields[0], "request_id")
        rnd = _int(fields[1], "round")
        gamma = _int(fields[2], "draft_length", 1, 1024)
        k = _int(fields[3], "top_k", 1, 1 << 20)
        index_name = _one_of(fields[4], WIRE_INDEX_DTYPES, "bad_dtype", "index dtype")
        prob_name = _one_of(fields[5], PROB_DTYPES, "bad_dtype", "prob dtype")
        rows = gamma + 1
        dense = index_name == DENSE
        prob_dt = PROB_DTYPES[prob_name]
        idx_dt = None if dense else INDEX_DTYPES[index_name]
        blobs = fields[6:9]
        for name, blob in zip(("topk_indices", "topk_probs", "dense_probs"), blobs, strict=True):
            _check(isinstance(blob, bytes), "malformed", f"{name} must be bytes")
        n_idx = 0 if idx_dt is None else rows * k * idx_dt.itemsize
        _check(len(blobs[0]) == n_idx, "bad_shape", f"topk_indices has {len(blobs[0])} bytes, expected {n_idx}")
        n_probs = rows * k * prob_dt.itemsize
        _check(len(blobs[1]) == n_probs, "bad_shape", f"topk_probs has {len(blobs[1])} bytes, expected {n_probs}")
        row_bytes = rows * 4
        n_dense = len(blobs[2])
        _check(n_dense % row_bytes == 0, "bad_shape", f"dense_probs has {n_dense} bytes, not a multiple of {row_bytes}")
        if vocab is not None:
            _check(k <= vocab, "bad_shape", f"top_k={k} exceeds vocabulary {vocab}")
            _check(not dense or k == vocab, "bad_shape", f"a dense payload carries {k} values, vocabulary {vocab}")
            _check(
                n_dense in (0, row_bytes * vocab), "bad_shape", f"dense_probs has {n_dense} bytes, vocabulary {vocab}"
            )
        if dense:
            topk_indices = np.broadcast_to(np.arange(k, dtype=np.int64), (rows, k))
        else:
            topk_indices = np.frombuffer(blobs[0], dtype=idx_dt).reshape(rows, k)
            if vocab is not None and topk_indices.size:
                worst = int(topk_indices.max())
                _check(worst < vocab, "index_out_of_range", f"topk_indices holds {worst} >= vocabulary {vocab}")
        topk_probs = np.frombuffer(blobs[1], dtype=prob_dt).reshape(rows, k)
        dense_probs = np.frombuffer(blobs[2], dtype="<f4").reshape(rows, -1) if n_dense else None
        for name, arr in (("topk_probs", topk_probs.astype(np.float32)), ("dense_probs", dense_probs)):
            if arr is None:
                continue
            _check(bool(np.isfinite(arr).all()), "bad_probabilities", f"{name} holds NaN or inf")
            _check(bool(((arr >= 0) & (arr <= 1)).all()), "bad_probabilities", f"{name} outside [0, 1]")
            worst_sum = float(arr.sum(axis=1, dtype=np.float64).max())
            _check(worst_sum <= 1 + PROB_SUM_TOLERANCE, "bad_probabilities", f"a {name} row sums to {worst_sum:.4f}")
        return cls(
            request_id,
            rnd,
            gamma,
            k,
            index_name,
            prob_name,
            topk_indices,
            topk_probs,
            dense_probs,
            _times(fields[9], "times", SCORE_TIMES),
            _link(fields[10]),
        )

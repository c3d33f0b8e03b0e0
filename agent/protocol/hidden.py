"""WISV's hidden states on the wire: the draft payload's optional field and the selective request/answer pair.

Part of the wire protocol of ``agent.protocol`` (whose docstring lists the
fields).  The drafter's last-layer hidden state of draft position i is the
input of its output head at the position that predicted x_i (``agent.wisv``).
Two uploads (ALGORITHMS.md section 6): *full* attaches the hidden states of
every draft token to ``DRAFT_PAYLOAD`` as one extra trailing field, present
only when ``CONFIGURE`` negotiated it (``settings.hidden.upload`` "full"),
so a payload of any other session keeps its 13 fields; *selective* sends
none with the payload, and the controller asks for the mismatched positions
with ``HIDDEN_REQUEST`` and gets ``HIDDEN_ANSWER`` back: fewer bytes, one
more round trip where a mismatch occurs.  Every block is checked for its
shape, its dtype and finite values before use.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from agent.protocol.wire import PROB_DTYPES, Message, MsgType, _check, _int, _one_of

#: Hidden states travel as float16 or float32 (the profile's ``hidden_dtype``).
HIDDEN_DTYPES = PROB_DTYPES
#: The two WISV uploads.
HIDDEN_UPLOADS = ("full", "selective")
#: The widest hidden state a frame may carry (a model's hidden size).
MAX_HIDDEN_WIDTH = 65536
#: The most positions one request may name (the largest γ a payload may carry).
MAX_POSITIONS = 1024


def hidden_bytes(hidden: np.ndarray, dtype: str) -> bytes:
    """[rows, width] as little-endian bytes of the wire dtype."""
    return np.ascontiguousarray(hidden, dtype=HIDDEN_DTYPES[dtype]).tobytes()


def hidden_rows(blob: Any, dtype: str, rows: int, what: str = "hidden") -> np.ndarray:
    """A hidden-state block of ``rows`` rows of ``dtype``: [rows, width], or ``ProtocolError`` naming ``what``."""
    _check(isinstance(blob, bytes), "malformed", f"{what} must be bytes")
    size = HIDDEN_DTYPES[dtype].itemsize
    _check(rows > 0 and len(blob) > 0, "bad_shape", f"{what} is empty, expected {rows} rows of {dtype}")
    _check(len(blob) % (rows * size) == 0, "bad_shape", f"{what} has {len(blob)} bytes, not {rows} rows of {dtype}")
    width = len(blob) // (rows * size)
    _check(width <= MAX_HIDDEN_WIDTH, "bad_shape", f"{what} is {width} wide > {MAX_HIDDEN_WIDTH}")
    hidden = np.frombuffer(blob, dtype=HIDDEN_DTYPES[dtype]).reshape(rows, width)
    _check(bool(np.isfinite(hidden).all()), "malformed", f"{what} holds NaN or inf")
    return hidden


def _positions(value: Any) -> list[int]:
    ok = isinstance(value, list) and 0 < len(value) <= MAX_POSITIONS
    _check(ok, "malformed", f"positions must be a list of 1 to {MAX_POSITIONS} integers")
    positions = [_int(v, f"positions[{i}]", 0, MAX_POSITIONS - 1) for i, v in enumerate(value)]
    _check(positions == sorted(set(positions)), "malformed", "positions must be distinct and increasing")
    return positions


@dataclass
class HiddenRequest(Message):
    """Controller -> agent (selective): the drafter's hidden states of these draft positions of this round."""

    TYPE: ClassVar[MsgType] = MsgType.HIDDEN_REQUEST
    request_id: int
    round: int
    positions: list[int]  # draft positions in [0, γ), distinct, increasing

    @classmethod
    def from_wire(cls, fields: list, **ctx: Any) -> HiddenRequest:
        return cls(_int(fields[0], "request_id"), _int(fields[1], "round"), _positions(fields[2]))


@dataclass
class HiddenAnswer(Message):
    """Agent -> controller: the hidden states a ``HiddenRequest`` asked for, one row per position."""

    TYPE: ClassVar[MsgType] = MsgType.HIDDEN_ANSWER
    request_id: int
    round: int
    positions: list[int]  # echoed
    hidden_dtype: str
    width: int
    hidden: np.ndarray  # [len(positions), width] hidden dtype

    def to_wire(self) -> list:
        blob = hidden_bytes(self.hidden, self.hidden_dtype)
        return [self.request_id, self.round, list(self.positions), self.hidden_dtype, self.width, blob]

    @classmethod
    def from_wire(cls, fields: list, **ctx: Any) -> HiddenAnswer:
        positions = _positions(fields[2])
        dtype = _one_of(fields[3], HIDDEN_DTYPES, "bad_dtype", "hidden_dtype")
        width = _int(fields[4], "width", 1, MAX_HIDDEN_WIDTH)
        hidden = hidden_rows(fields[5], dtype, len(positions))
        _check(hidden.shape[1] == width, "bad_shape", f"hidden rows are {hidden.shape[1]} wide, width says {width}")
        return cls(_int(fields[0], "request_id"), _int(fields[1], "round"), positions, dtype, width, hidden)

"""The wire's vocabulary: version, dtypes, error codes, message type codes and the field validators every message uses."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from dataclasses import fields as dataclass_fields
from enum import IntEnum
from typing import Any, ClassVar

import numpy as np

#: 3: LINK messages (bandwidth re-allocation); 4: SpecFed SCORE_REQUEST/SCORE_PAYLOAD;
#: 5: WISV HIDDEN_REQUEST/HIDDEN_ANSWER and the negotiated hidden-state field of DRAFT_PAYLOAD
PROTOCOL_VERSION = 5

#: Tolerance on a top-K row's sum above 1 (float16 rounding of K values).
PROB_SUM_TOLERANCE = 1e-2
#: Relative and absolute tolerance between a drafted token's q(x) and its top-K entry
#: (float16 rounds to 2^-11 relative, 6e-8 absolute below its normal range).
QX_REL_TOLERANCE = 1e-2
QX_ABS_TOLERANCE = 1e-6
#: Agent and telemetry host names: they name files, manifest entries and enrolled keys.
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")

INDEX_DTYPES = {"uint8": np.dtype("<u1"), "uint16": np.dtype("<u2"), "uint32": np.dtype("<u4")}
#: Index "dtype" of a dense payload: every probability of the vocabulary, no indices.
DENSE = "none"
WIRE_INDEX_DTYPES = (*INDEX_DTYPES, DENSE)
PAYLOAD_TIMES = 5  # timestamps in a draft payload
PROB_DTYPES = {"float16": np.dtype("<f2"), "float32": np.dtype("<f4")}
#: dtypes CONFIGURE may load the drafter in (``agent.models.DTYPES``).
MODEL_DTYPES = ("auto", "bfloat16", "float16", "float32")
SAMPLING_MODES = ("full", "top-k")
#: How the controller rebuilds the draft distribution from K values (``agent.codec.reconstruct``).
RECONSTRUCTIONS = ("renormalise", "tail-fill")

ERROR_CODES = (
    "malformed",  # not msgpack, not an array, wrong field count or type
    "version",  # protocol version differs
    "unknown_type",  # type code not in MsgType
    "bad_shape",  # byte lengths do not match γ, K and the dtypes
    "bad_dtype",  # dtype code not allowed
    "index_out_of_range",  # token or top-K index >= vocabulary size
    "bad_probabilities",  # NaN, inf, negative, > 1, or a row summing above 1
    "unknown_agent",  # a message from an identity that never said hello
    "unexpected",  # a valid message at the wrong time (stale round, no request)
    "internal",  # the receiver failed handling a valid message
    "too_large",  # a frame, container or string over its message type's limits (agent.limits)
    "no_mass",  # a top-K row whose probabilities sum to 0: nothing to rebuild q from
    "inconsistent_q",  # q(x) of a drafted token disagrees with its own top-K entry
    "mismatch",  # γ, K or a dtype of a payload is not what the controller asked for
    "duplicate_name",  # HELLO with the name of another live agent
    "not_enrolled",  # HELLO naming another agent than the enrolled key it connected with
    "timeout",  # a peer that stopped answering (heartbeat or round deadline)
)


class ProtocolError(Exception):
    """A frame that cannot be accepted; ``code`` names the counter to bump."""

    def __init__(self, code: str, message: str, **context: Any) -> None:
        assert code in ERROR_CODES, code
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.context = context


class MsgType(IntEnum):
    HELLO = 1
    CONFIGURE = 2
    READY = 3
    DRAFT_REQUEST = 4
    DRAFT_PAYLOAD = 5
    VERDICT = 6
    ERROR = 7
    BYE = 8
    TIME_PING = 9
    TIME_PONG = 10
    TELEMETRY = 11
    LINK = 12
    SCORE_REQUEST = 13
    SCORE_PAYLOAD = 14
    HIDDEN_REQUEST = 15
    HIDDEN_ANSWER = 16


def index_dtype_for(vocab_size: int) -> str:
    """The narrowest unsigned dtype that holds every token id."""
    for name, dtype in INDEX_DTYPES.items():
        if vocab_size - 1 <= np.iinfo(dtype).max:
            return name
    raise ValueError(f"vocabulary of {vocab_size} does not fit 32-bit indices")


def zmtp_frame_bytes(body_bytes: int) -> int:
    """Bytes a ZMTP 3 frame of this body occupies on the TCP stream.

    One flags byte plus a 1-byte length (bodies up to 255 bytes) or an 8-byte
    length; TCP/IP headers are not counted.
    """
    return body_bytes + (2 if body_bytes <= 255 else 9)


def _check(cond: bool, code: str, message: str, **context: Any) -> None:
    if not cond:
        raise ProtocolError(code, message, **context)


def _int(value: Any, name: str, lo: int = 0, hi: int = 2**63 - 1) -> int:
    _check(isinstance(value, int) and not isinstance(value, bool), "malformed", f"{name} must be an integer")
    _check(lo <= value <= hi, "malformed", f"{name}={value} outside [{lo}, {hi}]")
    return value


def _str(value: Any, name: str) -> str:
    _check(isinstance(value, str), "malformed", f"{name} must be a string")
    return value


def _name(value: Any, what: str) -> str:
    _check(
        isinstance(value, str) and NAME_PATTERN.fullmatch(value) is not None,
        "malformed",
        f"{what} must be 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit",
    )
    return value


def _one_of(value: Any, allowed: Any, code: str, what: str) -> str:
    """``value`` if it is a string among ``allowed``; never hashes a list or map."""
    _check(isinstance(value, str) and value in allowed, code, f"{what} {value!r:.80} not in {list(allowed)}")
    return value


def _number(value: Any, what: str, lo: float = 0.0) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(float(value))
    _check(ok and float(value) >= lo, "malformed", f"{what} must be a finite number >= {lo}")
    return float(value)


def _map(value: Any, name: str) -> dict:
    _check(isinstance(value, dict), "malformed", f"{name} must be a map")
    return value


def _times(value: Any, name: str, n: int) -> list[int]:
    _check(isinstance(value, list) and len(value) == n, "malformed", f"{name} must be a list of {n} integers")
    return [_int(v, f"{name}[{i}]") for i, v in enumerate(value)]


LINK_STATE_KEYS = ("rate_bps", "snr_db", "up_s", "down_s")


def _link(value: Any) -> dict:
    link = _map(value, "link")
    for key, v in link.items():
        _check(key in LINK_STATE_KEYS, "malformed", f"link.{key} is not one of {LINK_STATE_KEYS}")
        ok = v is None or isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v >= -1e3
        _check(ok, "malformed", f"link.{key} must be a finite number or nil")
    return link


@dataclass
class Message:
    """Base of all message types; subclasses list their fields in wire order."""

    TYPE: ClassVar[MsgType]

    def to_wire(self) -> list:
        return [getattr(self, f.name) for f in dataclass_fields(self)]

    @classmethod
    def wire_fields(cls, **ctx: Any) -> int:
        """How many fields a frame of this type carries for a receiver with context ``ctx``."""
        return len(dataclass_fields(cls))

    @classmethod
    def from_wire(cls, fields: list, **ctx: Any) -> Message:
        raise NotImplementedError

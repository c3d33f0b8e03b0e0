"""The specbed wire protocol: every message between agent and controller.

One ZeroMQ frame carries one message, a msgpack array::

    [PROTOCOL_VERSION, type_code, field_1, field_2, ...]

Positional fields keep the per-round draft payload small (the top-K payload
is the quantity the papers measure, so its framing overhead matters).
Arrays travel as raw little-endian bytes whose dtype and shape are given by
other fields, never as msgpack lists.

Message types (direction, fields in order):

``HELLO`` (1, agent -> controller)
    ``agent`` str name, ``facts`` map of host facts (hostname, platform,
    python, torch, cpu_count, memory_bytes, pid, accelerator).
``CONFIGURE`` (2, controller -> agent)
    ``settings`` map: ``drafter`` (model spec, see ``agent.models``),
    ``vocab_size`` int (the target's), ``temperature`` float >= 0,
    ``top_k`` int, ``sampling`` "full" | "top-k", ``prob_dtype`` "float16" |
    "float32", ``index_dtype`` "uint8" | "uint16" | "uint32" | "none"
    ("none": the dense full distribution, ``top_k`` equal to the vocabulary
    and no indices sent); optional ``reconstruction`` "renormalise" |
    "tail-fill" (what the server rebuilds q from; the agent measures the
    fidelity of that reconstruction), ``link`` map (``up`` and ``down``
    link descriptions emulated in the agent's transport, see ``agent.link``,
    and ``seed``), ``draft_delay_s`` float (emulated extra drafting time per
    token, for devices slower than the host) and ``telemetry`` map: ``port`` int
    (the controller's SUB socket on the controller's host), ``rate_hz``
    float, ``host_sampler`` str; optional ``device`` "cpu" | "cuda" |
    "cuda:N" (where to draft; default: the agent's ``--device``) and
    ``dtype`` "auto" | "bfloat16" | "float16" | "float32" (the drafter's
    weights, see ``agent.models.resolve_dtype``).  A controller may send ``CONFIGURE`` again
    between requests (a new grid point of an experiment); the agent keeps a
    drafter already loaded when spec, device and dtype are unchanged and answers ``READY``.
``READY`` (3, agent -> controller)
    ``info`` map: ``drafter`` name, ``vocab_size``, ``load_s``, ``device``
    and ``dtype`` (where and in which dtype the drafter was loaded).
``DRAFT_REQUEST`` (4, controller -> agent)
    ``request_id`` int, ``prompt_id`` str, ``token_ids`` list of int (the
    whole committed sequence: the agent resets its state to it),
    ``draft_length`` int (γ of the first round), ``seed`` int (drafting RNG).
``DRAFT_PAYLOAD`` (5, agent -> controller), one per round
    ``request_id``, ``round`` int, ``draft_length`` γ, ``top_k`` K,
    ``index_dtype`` code, ``prob_dtype`` code, ``token_ids`` bytes [γ]
    (index dtype), ``draft_probs`` bytes [γ] float32 (exact q_i(x_i) of the
    distribution the token was sampled from), ``topk_indices`` bytes [γ, K]
    (index dtype; empty for index dtype "none", where the K = V values are in
    token order), ``topk_probs`` bytes [γ, K] (prob dtype), ``times`` list
    of 5 ints, agent monotonic ns: draft start, draft end, packed/sent,
    receipt of the previous verdict and the end of its rollback (both 0 on a
    request's first round), ``tv`` bytes [γ] float32 or empty: the
    total-variation distance between the distribution the token was drawn
    from and the server's reconstruction of it from this payload, computed
    by the drafter (empty when not measured, e.g. greedy drafting),
    ``link`` map: the channel state the payload saw on an emulated link,
    ``rate_bps`` and ``snr_db`` (float or nil) when it was sent, ``up_s`` the
    emulated uplink seconds it was held back, ``down_s`` those of the
    previous verdict (empty map without emulation).
``VERDICT`` (6, controller -> agent), one per round
    ``request_id``, ``round``, ``n_accepted`` int, ``next_token`` int (the
    recovered or bonus token), ``done`` bool, ``draft_length`` int (γ of the
    next round), ``times`` list of 2 ints, controller monotonic ns: payload
    received, verdict sent.
``ERROR`` (7, either way)
    ``code`` str (one of ``ERROR_CODES``), ``message`` str, ``context`` map.
``BYE`` (8, either way)
    ``reason`` str.
``TIME_PING`` (9, controller -> agent)
    ``seq`` int, ``t1_ns`` controller monotonic ns at sending.
``TIME_PONG`` (10, agent -> controller)
    ``seq``, ``t1_ns`` echoed, ``t2_ns`` agent ns at receipt, ``t3_ns``
    agent ns at reply: NTP's four timestamps with the controller's receipt.
``TELEMETRY`` (11, agent PUB -> controller SUB)
    ``host`` str, ``columns`` list of str, ``rows`` list of lists (numbers
    or nil for a missing reading), ``t_ns`` the first column, on the
    agent's clock.
``LINK`` (12, controller -> agent)
    ``up`` map and ``down`` map, each empty or with ``rate_bps`` (a new
    fixed rate, bit/s) or ``bandwidth_hz`` (a new share of the band an SNR
    link is mapped through): a bandwidth re-allocation, applied by the
    agent's link emulator from its next message on.  A controller sends it
    before the verdict it applies to.

``SCORE_REQUEST`` (13, controller -> worker), one per worker per round (SpecFed)
    ``request_id`` int (the session: a worker keeps one KV cache per
    request), ``round`` int, ``base`` int (how many tokens of the previous
    request's sequence to keep; 0 for a new request), ``token_ids`` list of
    int (the tokens after those ``base``: the sequence is the committed
    context followed by the γ drafts), ``draft_length`` γ int (the last γ
    tokens of the sequence are the drafts), ``measure`` bool (also send the
    dense distributions, measurement traffic).
``SCORE_PAYLOAD`` (14, worker -> controller), the answer to a score request
    ``request_id``, ``round``, ``draft_length`` γ, ``top_k`` K,
    ``index_dtype`` code, ``prob_dtype`` code (as in ``DRAFT_PAYLOAD``),
    ``topk_indices`` bytes [γ + 1, K] (index dtype; empty for "none"),
    ``topk_probs`` bytes [γ + 1, K] (prob dtype): the worker's distribution
    p_m at each draft position and at the bonus position, ``dense_probs``
    bytes [γ + 1, V] float32 or empty: the full p_m when ``measure`` was
    asked (measurement traffic, not counted as uplink bytes and not held by
    an emulated uplink), ``times`` list of 3 ints, worker monotonic ns:
    request received, forward pass done, sent, ``link`` map as in
    ``DRAFT_PAYLOAD``.

Decoding validates everything and raises ``ProtocolError`` whose ``code``
is the counter the receiver increments.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from dataclasses import fields as dataclass_fields
from enum import IntEnum
from typing import Any, ClassVar

import msgpack
import numpy as np

from agent.limits import TYPE_LIMITS, depth_of

PROTOCOL_VERSION = 4  # 3: LINK messages (bandwidth re-allocation); 4: SpecFed SCORE_REQUEST/SCORE_PAYLOAD

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
    def from_wire(cls, fields: list, **ctx: Any) -> Message:
        raise NotImplementedError


@dataclass
class Hello(Message):
    TYPE: ClassVar[MsgType] = MsgType.HELLO
    agent: str
    facts: dict = field(default_factory=dict)

    @classmethod
    def from_wire(cls, fields: list, **ctx: Any) -> Hello:
        return cls(_name(fields[0], "agent"), _map(fields[1], "facts"))


@dataclass
class Configure(Message):
    TYPE: ClassVar[MsgType] = MsgType.CONFIGURE
    settings: dict

    @classmethod
    def from_wire(cls, fields: list, **ctx: Any) -> Configure:
        # a map here; its fields are checked once, by agent.settings.Settings.from_wire, where the agent reads them
        return cls(_map(fields[0], "settings"))


@dataclass
class Ready(Message):
    TYPE: ClassVar[MsgType] = MsgType.READY
    info: dict

    @classmethod
    def from_wire(cls, fields: list, **ctx: Any) -> Ready:
        return cls(_map(fields[0], "info"))


@dataclass
class DraftRequest(Message):
    TYPE: ClassVar[MsgType] = MsgType.DRAFT_REQUEST
    request_id: int
    prompt_id: str
    token_ids: list[int]
    draft_length: int
    seed: int

    @classmethod
    def from_wire(cls, fields: list, **ctx: Any) -> DraftRequest:
        tokens = fields[2]
        _check(isinstance(tokens, list) and len(tokens) > 0, "malformed", "token_ids must be a non-empty list")
        vocab = ctx.get("vocab_size")
        for t in tokens:
            _int(t, "token_ids[]")
            if vocab is not None:
                _check(t < vocab, "index_out_of_range", f"token id {t} >= vocabulary {vocab}")
        return cls(
            _int(fields[0], "request_id"),
            _str(fields[1], "prompt_id"),
            tokens,
            _int(fields[3], "draft_length", 1, 1024),
            _int(fields[4], "seed"),
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

    @property
    def dense(self) -> bool:
        return self.index_dtype == DENSE

    def to_wire(self) -> list:
        prob = PROB_DTYPES[self.prob_dtype]
        idx = INDEX_DTYPES["uint32" if self.dense else self.index_dtype]
        indices = b"" if self.dense else np.ascontiguousarray(self.topk_indices, dtype=idx).tobytes()
        tv = b"" if self.tv is None else np.ascontiguousarray(self.tv, dtype="<f4").tobytes()
        return [
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


@dataclass
class Verdict(Message):
    TYPE: ClassVar[MsgType] = MsgType.VERDICT
    request_id: int
    round: int
    n_accepted: int
    next_token: int
    done: bool
    draft_length: int
    times: list[int]  # controller monotonic ns: payload received, verdict sent

    @classmethod
    def from_wire(cls, fields: list, **ctx: Any) -> Verdict:
        _check(isinstance(fields[4], bool), "malformed", "done must be a boolean")
        return cls(
            _int(fields[0], "request_id"),
            _int(fields[1], "round"),
            _int(fields[2], "n_accepted", 0, 1024),
            _int(fields[3], "next_token"),
            fields[4],
            _int(fields[5], "draft_length", 1, 1024),
            _times(fields[6], "times", 2),
        )


@dataclass
class Error(Message):
    TYPE: ClassVar[MsgType] = MsgType.ERROR
    code: str
    message: str
    context: dict = field(default_factory=dict)

    @classmethod
    def from_wire(cls, fields: list, **ctx: Any) -> Error:
        return cls(_str(fields[0], "code"), _str(fields[1], "message"), _map(fields[2], "context"))


@dataclass
class Bye(Message):
    TYPE: ClassVar[MsgType] = MsgType.BYE
    reason: str = ""

    @classmethod
    def from_wire(cls, fields: list, **ctx: Any) -> Bye:
        return cls(_str(fields[0], "reason"))


@dataclass
class TimePing(Message):
    TYPE: ClassVar[MsgType] = MsgType.TIME_PING
    seq: int
    t1_ns: int

    @classmethod
    def from_wire(cls, fields: list, **ctx: Any) -> TimePing:
        return cls(_int(fields[0], "seq"), _int(fields[1], "t1_ns"))


@dataclass
class TimePong(Message):
    TYPE: ClassVar[MsgType] = MsgType.TIME_PONG
    seq: int
    t1_ns: int
    t2_ns: int
    t3_ns: int

    @classmethod
    def from_wire(cls, fields: list, **ctx: Any) -> TimePong:
        seq, t1, t2, t3 = (_int(v, n) for v, n in zip(fields, ("seq", "t1_ns", "t2_ns", "t3_ns"), strict=True))
        return cls(seq, t1, t2, t3)


@dataclass
class Telemetry(Message):
    TYPE: ClassVar[MsgType] = MsgType.TELEMETRY
    host: str
    columns: list[str]
    rows: list[list]

    @classmethod
    def from_wire(cls, fields: list, **ctx: Any) -> Telemetry:
        host = _name(fields[0], "host")
        columns, rows = fields[1], fields[2]
        _check(isinstance(columns, list) and columns and columns[0] == "t_ns", "malformed", "columns start with t_ns")
        _check(all(isinstance(c, str) for c in columns), "malformed", "column names must be strings")
        _check(isinstance(rows, list), "malformed", "rows must be a list")
        width = len(columns)
        for row in rows:
            _check(type(row) is list and len(row) == width, "bad_shape", "a row differs from the columns")
            _int(row[0], "t_ns")
            # type(), not isinstance: bool is an int subclass and is refused
            _check(
                all(type(v) in _TELEMETRY_SCALARS for v in row),
                "malformed",
                "telemetry values are numbers, strings or nil",
            )
        return cls(host, columns, rows)


_TELEMETRY_SCALARS = frozenset((type(None), int, float, str))

LINK_UPDATE_KEYS = ("rate_bps", "bandwidth_hz")


def _link_update(value: Any, name: str) -> dict:
    update = _map(value, name)
    for key, v in update.items():
        _check(key in LINK_UPDATE_KEYS, "malformed", f"{name}.{key} is not one of {LINK_UPDATE_KEYS}")
        ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0
        _check(ok, "malformed", f"{name}.{key} must be a positive finite number")
    _check(len(update) <= 1, "malformed", f"{name}: rate_bps or bandwidth_hz, not both")
    return update


@dataclass
class LinkUpdate(Message):
    TYPE: ClassVar[MsgType] = MsgType.LINK
    up: dict = field(default_factory=dict)
    down: dict = field(default_factory=dict)

    @classmethod
    def from_wire(cls, fields: list, **ctx: Any) -> LinkUpdate:
        return cls(_link_update(fields[0], "up"), _link_update(fields[1], "down"))


from agent.protocol_specfed import ScorePayload, ScoreRequest  # noqa: E402

MESSAGE_TYPES: dict[MsgType, type[Message]] = {
    cls.TYPE: cls
    for cls in (
        Hello,
        Configure,
        Ready,
        DraftRequest,
        DraftPayload,
        Verdict,
        Error,
        Bye,
        TimePing,
        TimePong,
        Telemetry,
        LinkUpdate,
        ScoreRequest,
        ScorePayload,
    )
}


def encode(message: Message) -> bytes:
    """One frame: msgpack array of version, type code and the fields."""
    return msgpack.packb([PROTOCOL_VERSION, int(message.TYPE), *message.to_wire()], use_bin_type=True)


def decode(frame: bytes, vocab_size: int | None = None) -> Message:
    """Parse and validate one frame; ``vocab_size`` enables index checks.

    Raises ProtocolError, and nothing else, for anything not a well-formed
    message of this protocol version, whatever the bytes.  The header (a
    fixarray of at most 15 entries, the version and the type code as
    positive fixints) is read before anything is unpacked, so that the body
    is unpacked under its message type's limits (``agent.limits``).
    """
    _check(isinstance(frame, bytes) and len(frame) >= 3, "malformed", "a frame is an array [version, type, ...fields]")
    head, version, code = frame[0], frame[1], frame[2]
    _check(0x92 <= head <= 0x9F, "malformed", "a frame is an array [version, type, ...fields]")
    _check(version < 0x80, "malformed", "the protocol version must be a small positive integer")
    _check(version == PROTOCOL_VERSION, "version", f"protocol version byte {version:#04x}, expected {PROTOCOL_VERSION}")
    _check(code in MsgType._value2member_map_, "unknown_type", f"unknown type {code}")
    cls = MESSAGE_TYPES[MsgType(code)]
    n = len(dataclass_fields(cls))
    _check((head & 0x0F) - 2 == n, "malformed", f"{cls.__name__} has {n} fields, got {(head & 0x0F) - 2}")
    lim = TYPE_LIMITS[code]
    if lim.frame_bytes is not None:
        _check(len(frame) <= lim.frame_bytes, "too_large", f"{cls.__name__} of {len(frame)} bytes > {lim.frame_bytes}")
    try:
        obj = msgpack.unpackb(
            frame,
            raw=False,
            strict_map_key=True,
            max_array_len=lim.array_len,
            max_map_len=lim.map_len,
            max_str_len=lim.str_len,
            max_bin_len=lim.bin_len,
            max_ext_len=0,
        )
    except Exception as exc:  # msgpack raises several types for bad input
        raise ProtocolError("malformed", f"not a valid {cls.__name__} frame ({type(exc).__name__})") from None
    _check(isinstance(obj, list) and len(obj) == n + 2, "malformed", "a frame is an array [version, type, ...fields]")
    _check(depth_of(obj, lim.depth) <= lim.depth, "too_large", f"{cls.__name__} nested deeper than {lim.depth}")
    msg = cls.from_wire(obj[2:], vocab_size=vocab_size)
    if isinstance(msg, Error):
        _check(msg.code in ERROR_CODES, "malformed", f"unknown error code {msg.code!r}")
    return msg

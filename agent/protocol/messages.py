"""The control messages of the protocol: handshake, requests, verdicts, errors, clock sync, telemetry and link updates."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

from agent.protocol.wire import (
    Message,
    MsgType,
    _check,
    _int,
    _map,
    _name,
    _str,
    _times,
)


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
    """A batch of one host's samples, ``t_ns`` first.

    A batch with no rows ends the host's stream: a publisher sends one, after its
    last samples, when it stops, so a collector need not wait for a quiet spell.
    """

    TYPE: ClassVar[MsgType] = MsgType.TELEMETRY
    host: str
    columns: list[str]
    rows: list[list]

    @property
    def ends_stream(self) -> bool:
        return not self.rows

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

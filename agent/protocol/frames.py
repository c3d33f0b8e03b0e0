"""One frame <-> one message: the type table, ``encode``, and ``decode`` under each message type's limits."""

from __future__ import annotations

from dataclasses import fields as dataclass_fields

import msgpack

from agent.limits import TYPE_LIMITS, depth_of
from agent.protocol.draft import DraftPayload
from agent.protocol.messages import (
    Bye,
    Configure,
    DraftRequest,
    Error,
    Hello,
    LinkUpdate,
    Ready,
    Telemetry,
    TimePing,
    TimePong,
    Verdict,
)
from agent.protocol.specfed import ScorePayload, ScoreRequest
from agent.protocol.wire import ERROR_CODES, PROTOCOL_VERSION, Message, MsgType, ProtocolError, _check

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

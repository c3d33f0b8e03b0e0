"""One frame <-> one message: the type table, ``encode``, and ``decode`` under each message type's limits."""

from __future__ import annotations

import msgpack

from agent.limits import TYPE_LIMITS, depth_of
from agent.protocol.draft import DraftPayload
from agent.protocol.hidden import HiddenAnswer, HiddenRequest
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
        HiddenRequest,
        HiddenAnswer,
    )
}


def encode(message: Message) -> bytes:
    """One frame: msgpack array of version, type code and the fields."""
    return msgpack.packb([PROTOCOL_VERSION, int(message.TYPE), *message.to_wire()], use_bin_type=True)


def decode(frame: bytes, vocab_size: int | None = None, hidden_dtype: str | None = None) -> Message:
    """Parse and validate one frame; ``vocab_size`` enables index checks.

    ``hidden_dtype``: the receiver negotiated WISV full-hidden upload in this
    dtype, so a ``DRAFT_PAYLOAD`` carries its 14th field (and must); None: 13.

    Raises ProtocolError, and nothing else, for anything not a well-formed
    message of this protocol version, whatever the bytes.  The header (a
    fixarray of at most 15 entries, or an array16 of 16 entries for the
    negotiated hidden-state payload, then the version and the type code as
    positive fixints) is read before anything is unpacked, so that the body
    is unpacked under its message type's limits (``agent.limits``).
    """
    bad = "a frame is an array [version, type, ...fields]"
    _check(isinstance(frame, bytes) and len(frame) >= 3, "malformed", bad)
    head = frame[0]
    if head == 0xDC:  # array16: msgpack's form for 16 to 65535 entries
        _check(len(frame) >= 5, "malformed", bad)
        entries, version, code = int.from_bytes(frame[1:3], "big"), frame[3], frame[4]
        _check(entries > 15, "malformed", "a frame of at most 15 entries must be a fixarray")
    else:
        _check(0x92 <= head <= 0x9F, "malformed", bad)
        entries, version, code = head & 0x0F, frame[1], frame[2]
    _check(version < 0x80, "malformed", "the protocol version must be a small positive integer")
    _check(version == PROTOCOL_VERSION, "version", f"protocol version byte {version:#04x}, expected {PROTOCOL_VERSION}")
    _check(code in MsgType._value2member_map_, "unknown_type", f"unknown type {code}")
    cls = MESSAGE_TYPES[MsgType(code)]
    n = cls.wire_fields(hidden_dtype=hidden_dtype)
    _check(entries - 2 == n, "malformed", f"{cls.__name__} has {n} fields here, got {entries - 2}")
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
    msg = cls.from_wire(obj[2:], vocab_size=vocab_size, hidden_dtype=hidden_dtype)
    if isinstance(msg, Error):
        _check(msg.code in ERROR_CODES, "malformed", f"unknown error code {msg.code!r}")
    return msg

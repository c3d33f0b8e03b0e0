"""WISV on the wire (protocol 5): the negotiated hidden-state field of a payload, and the selective request/answer."""

from __future__ import annotations

import msgpack
import numpy as np
import pytest

from agent.protocol import (
    PROTOCOL_VERSION,
    HiddenAnswer,
    HiddenRequest,
    MsgType,
    ProtocolError,
    decode,
    encode,
)
from agent.settings import HiddenSettings, Settings
from tests.agent.test_protocol import VOCAB, payload


def frame(code: MsgType, *fields, version: int = PROTOCOL_VERSION) -> bytes:
    return msgpack.packb([version, int(code), *fields], use_bin_type=True)


def with_hidden(gamma: int = 3, width: int = 5, dtype=np.float16):
    msg = payload(gamma=gamma)
    msg.hidden = (np.arange(gamma * width) / 7).astype(dtype).reshape(gamma, width)
    return msg


def test_version_5_and_a_version_4_frame_is_refused():
    assert PROTOCOL_VERSION == 5
    for code, fields in ((MsgType.HIDDEN_REQUEST, (1, 0, [0])), (MsgType.BYE, ("x",))):
        with pytest.raises(ProtocolError) as err:
            decode(frame(code, *fields, version=4))
        assert err.value.code == "version"


def test_negotiated_payload_carries_hidden_states():
    msg = with_hidden()
    wire = encode(msg)
    assert wire[0] == 0xDC  # 16 entries: msgpack's array16, accepted only where negotiated
    back = decode(wire, vocab_size=VOCAB, hidden_dtype="float16")
    assert np.array_equal(back.hidden, msg.hidden) and back.hidden.dtype == np.float16
    # the only difference in size: γ rows of float16, their bin header and the array16 header's 2 bytes
    assert len(wire) - len(encode(payload(gamma=3))) == msg.hidden.nbytes + 2 + 2


def test_hidden_field_only_where_negotiated():
    with pytest.raises(ProtocolError, match="13 fields here, got 14") as err:
        decode(encode(with_hidden()), vocab_size=VOCAB)  # not negotiated: a 14th field is refused
    assert err.value.code == "malformed"
    with pytest.raises(ProtocolError, match="14 fields here, got 13") as err:
        decode(encode(payload(gamma=3)), vocab_size=VOCAB, hidden_dtype="float16")  # negotiated: required
    assert err.value.code == "malformed"
    plain = decode(encode(payload(gamma=3)), vocab_size=VOCAB)
    assert plain.hidden is None


def test_array16_header_only_for_sixteen_entries_or_more():
    small = bytearray(encode(HiddenRequest(1, 0, [0])))  # fixarray of 5
    forged = bytes([0xDC, 0, 5]) + bytes(small[1:])
    with pytest.raises(ProtocolError, match="fixarray") as err:
        decode(forged)
    assert err.value.code == "malformed"
    with pytest.raises(ProtocolError) as err:
        decode(bytes([0xDC, 0]))
    assert err.value.code == "malformed"


@pytest.mark.parametrize(
    ("blob", "code"),
    [
        (b"\0" * 7, "bad_shape"),  # not 3 rows of float16
        (b"", "bad_shape"),
        (np.full(3, np.nan, np.float16).tobytes(), "malformed"),
        ("text", "malformed"),
        (b"\0" * (3 * 2 * 65537), "bad_shape"),  # wider than any model
    ],
)
def test_bad_payload_hidden_states_are_named(blob, code):
    wire = payload(gamma=3).to_wire() + [blob]
    with pytest.raises(ProtocolError, match="hidden") as err:
        decode(frame(MsgType.DRAFT_PAYLOAD, *wire), vocab_size=VOCAB, hidden_dtype="float16")
    assert err.value.code == code


def test_hidden_request_and_answer_round_trip():
    req = HiddenRequest(4, 2, [0, 3])
    assert decode(encode(req)) == req
    rows = np.ones((2, 6), dtype=np.float32)
    back = decode(encode(HiddenAnswer(4, 2, [0, 3], "float32", 6, rows)))
    assert back.positions == [0, 3] and back.width == 6 and np.array_equal(back.hidden, rows)


@pytest.mark.parametrize(
    "positions",
    [[], [2, 1], [1, 1], [-1], 0, [5000], [True]],
)
def test_bad_hidden_requests(positions):
    with pytest.raises(ProtocolError, match="positions") as err:
        decode(frame(MsgType.HIDDEN_REQUEST, 1, 0, positions))
    assert err.value.code == "malformed"
    with pytest.raises(ProtocolError) as err:  # no strings in a request at all (agent.limits)
        decode(frame(MsgType.HIDDEN_REQUEST, 1, 0, "0"))
    assert err.value.code == "malformed"


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ((1, 0, [0], "float16", 4, b"\0" * 6), "bad_shape"),  # 3 values, width 4
        ((1, 0, [0], "float16", 4, b"\0" * 4), "bad_shape"),  # 2 values, width 4
        ((1, 0, [0], "int8", 4, b"\0" * 4), "bad_dtype"),
        ((1, 0, [0], "float16", 0, b""), "malformed"),
        ((1, 0, [0, 1], "float16", 2, b"\0" * 4), "bad_shape"),  # one row for two positions
        ((1, 0, [0], "float16", 2, "text"), "malformed"),
        ((1, 0, [0], "float16", 2), "malformed"),  # a field short
    ],
)
def test_bad_hidden_answers(fields, code):
    with pytest.raises(ProtocolError) as err:
        decode(frame(MsgType.HIDDEN_ANSWER, *fields))
    assert err.value.code == code


def test_configure_hidden_settings_round_trip_and_bad_values():
    base = Settings({"name": "x"}, 100, 0.0, 4, index_dtype="uint8")
    s = Settings.from_wire({**base.to_wire(), "hidden": {"upload": "selective", "dtype": "float32"}})
    assert s.hidden == HiddenSettings("selective", "float32")
    assert Settings.from_wire(base.to_wire()).hidden is None and "hidden" not in base.to_wire()
    for bad, code in (
        ({"upload": "all"}, "malformed"),
        ({"upload": "full", "dtype": "int8"}, "bad_dtype"),
        ([], "malformed"),
    ):
        with pytest.raises(ProtocolError, match="settings.hidden") as err:
            Settings.from_wire({**base.to_wire(), "hidden": bad})
        assert err.value.code == code

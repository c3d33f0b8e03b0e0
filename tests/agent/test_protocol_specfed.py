"""SCORE_REQUEST and SCORE_PAYLOAD: round trips, sizes and every validation path."""

from __future__ import annotations

import msgpack
import numpy as np
import pytest

from agent.protocol import PROTOCOL_VERSION, MsgType, ProtocolError, ScorePayload, ScoreRequest, decode, encode

VOCAB = 49152


def score_payload(gamma: int = 4, k: int = 8, dense_probs: bool = False, prob_dtype: str = "float16") -> ScorePayload:
    rng = np.random.default_rng(1)
    full = rng.dirichlet(np.ones(VOCAB), size=gamma + 1).astype(np.float32)
    idx = np.argsort(-full, axis=1)[:, :k]
    vals = np.take_along_axis(full, idx, axis=1)
    return ScorePayload(
        request_id=7,
        round=2,
        draft_length=gamma,
        top_k=k,
        index_dtype="uint16",
        prob_dtype=prob_dtype,
        topk_indices=idx,
        topk_probs=vals.astype(prob_dtype),
        dense_probs=full if dense_probs else None,
        times=[1, 2, 3],
        link={"up_s": 0.25},
    )


def fields_of(msg) -> list:
    return msgpack.unpackb(encode(msg), raw=False)


def frame(fields: list, code: MsgType = MsgType.SCORE_PAYLOAD) -> bytes:
    return msgpack.packb([PROTOCOL_VERSION, int(code), *fields], use_bin_type=True)


def test_score_request_round_trip():
    req = ScoreRequest(5, 3, 10, [4, 5, 6, 7], 3, True)
    got = decode(encode(req), vocab_size=VOCAB)
    assert got == req


@pytest.mark.parametrize("dense_probs", [False, True])
def test_score_payload_round_trip(dense_probs):
    msg = score_payload(dense_probs=dense_probs)
    got = decode(encode(msg), vocab_size=VOCAB)
    assert isinstance(got, ScorePayload)
    np.testing.assert_array_equal(got.topk_indices, msg.topk_indices)
    np.testing.assert_array_equal(got.topk_probs, msg.topk_probs)
    assert got.topk_probs.shape == (5, 8) and got.times == [1, 2, 3] and got.link == {"up_s": 0.25}
    if dense_probs:
        np.testing.assert_array_equal(got.dense_probs, msg.dense_probs)
    else:
        assert got.dense_probs is None


def test_a_compact_payload_costs_the_k_values_and_indices_plus_framing():
    msg = score_payload(gamma=4, k=8)
    size = len(encode(msg))
    raw = 5 * 8 * (2 + 2)  # γ + 1 rows of K uint16 indices and float16 values
    assert raw < size < raw + 80


def test_a_dense_score_payload_needs_k_equal_to_the_vocabulary():
    full = np.full((2, VOCAB), 1.0 / VOCAB, dtype=np.float32)
    msg = ScorePayload(1, 0, 1, VOCAB, "none", "float32", np.zeros((2, 0)), full, None, [0, 0, 0])
    got = decode(encode(msg), vocab_size=VOCAB)
    assert got.dense and got.topk_indices.shape == (2, VOCAB)
    fields = fields_of(msg)[2:]
    fields[3] = VOCAB - 1
    fields[7] = full[:, :-1].tobytes()
    with pytest.raises(ProtocolError) as exc:
        decode(frame(fields), vocab_size=VOCAB)
    assert exc.value.code == "bad_shape"


@pytest.mark.parametrize(
    ("position", "value", "code"),
    [
        (0, "7", "malformed"),  # request_id not an int
        (2, 0, "malformed"),  # γ = 0
        (2, True, "malformed"),  # a bool is not an int
        (4, "int8", "bad_dtype"),
        (4, 3, "bad_dtype"),  # not even a string
        (5, ["float16"], "bad_dtype"),
        (6, "indices", "malformed"),  # not bytes
        (6, b"\x00" * 3, "bad_shape"),
        (7, b"\x00" * 2, "bad_shape"),
        (8, b"\x00" * 7, "bad_shape"),  # dense copy: not a multiple of (γ + 1) * 4
        (8, b"\x00" * 20, "bad_shape"),  # a multiple, but not the vocabulary
        (9, [1, 2], "malformed"),  # times: 3 ints
        (9, [1, 2, -3], "malformed"),
        (10, {"up_s": "slow"}, "malformed"),
        (10, [], "malformed"),
    ],
)
def test_bad_score_payload_fields_raise_protocol_errors(position, value, code):
    fields = fields_of(score_payload())[2:]
    fields[position] = value
    with pytest.raises(ProtocolError) as exc:
        decode(frame(fields), vocab_size=VOCAB)
    assert exc.value.code == code


def test_out_of_range_indices_and_bad_probabilities_are_named():
    msg = score_payload()
    bad = msg.topk_indices.copy()
    bad[0, 0] = VOCAB
    fields = fields_of(ScorePayload(**{**msg.__dict__, "topk_indices": bad}))[2:]
    with pytest.raises(ProtocolError) as exc:
        decode(frame(fields), vocab_size=VOCAB)
    assert exc.value.code == "index_out_of_range"
    for bad_value in (np.nan, -0.1, 1.5):
        vals = msg.topk_probs.astype(np.float32)
        vals[1, 1] = bad_value
        fields = fields_of(ScorePayload(**{**msg.__dict__, "topk_probs": vals.astype(np.float16)}))[2:]
        with pytest.raises(ProtocolError) as exc:
            decode(frame(fields), vocab_size=VOCAB)
        assert exc.value.code == "bad_probabilities"
    dense = score_payload(dense_probs=True)
    dense.dense_probs = dense.dense_probs * 2  # rows sum to 2
    with pytest.raises(ProtocolError) as exc:
        decode(encode(dense), vocab_size=VOCAB)
    assert exc.value.code == "bad_probabilities"


@pytest.mark.parametrize(
    ("position", "value", "code"),
    [
        (0, -1, "malformed"),
        (2, "0", "malformed"),
        (3, [], "malformed"),
        (3, "1 2 3", "malformed"),
        (3, [1, "2"], "malformed"),
        (3, [1, VOCAB], "index_out_of_range"),
        (4, 0, "malformed"),
        (5, 1, "malformed"),  # measure must be a bool
    ],
)
def test_bad_score_request_fields_raise_protocol_errors(position, value, code):
    fields = fields_of(ScoreRequest(1, 0, 0, [1, 2, 3], 2, False))[2:]
    fields[position] = value
    with pytest.raises(ProtocolError) as exc:
        decode(frame(fields, MsgType.SCORE_REQUEST), vocab_size=VOCAB)
    assert exc.value.code == code


def test_random_field_values_only_ever_raise_protocol_errors():
    rng = np.random.default_rng(0)
    junk = [None, True, -1, 2**63, 1.5, "x", b"\x01" * 9, [], [1], {}, {"a": 1}, [b"x"]]
    for msg in (score_payload(), ScoreRequest(1, 0, 0, [1, 2, 3], 2, False)):
        base = fields_of(msg)
        for _ in range(300):
            fields = list(base)
            for pos in rng.choice(range(2, len(fields)), size=int(rng.integers(1, 3)), replace=False):
                fields[pos] = junk[int(rng.integers(len(junk)))]
            try:
                decode(msgpack.packb(fields, use_bin_type=True), vocab_size=VOCAB)
            except ProtocolError:
                pass

"""Wire protocol: round trips, sizes, and every validation path."""

from __future__ import annotations

import msgpack
import numpy as np
import pytest

from agent.protocol import (
    MESSAGE_TYPES,
    PROTOCOL_VERSION,
    Bye,
    Configure,
    DraftPayload,
    DraftRequest,
    Error,
    Hello,
    LinkUpdate,
    MsgType,
    ProtocolError,
    Ready,
    Telemetry,
    TimePing,
    TimePong,
    Verdict,
    decode,
    encode,
    index_dtype_for,
    zmtp_frame_bytes,
)

VOCAB = 49152


def payload(gamma: int = 4, k: int = 8, prob_dtype: str = "float16", vocab: int = VOCAB, seed: int = 0) -> DraftPayload:
    rng = np.random.default_rng(seed)
    idx = np.stack([rng.choice(vocab, size=k, replace=False) for _ in range(gamma)])
    probs = rng.dirichlet(np.ones(k * 4), size=gamma)[:, :k]  # rows sum below 1, like a real top-K
    return DraftPayload(
        request_id=3,
        round=7,
        draft_length=gamma,
        top_k=k,
        index_dtype=index_dtype_for(vocab),
        prob_dtype=prob_dtype,
        token_ids=idx[:, 0],
        draft_probs=probs[:, 0].astype(np.float32),
        topk_indices=idx,
        topk_probs=probs,
        times=[1, 2, 3, 0, 0],
    )


def test_index_dtype_is_the_narrowest():
    assert index_dtype_for(256) == "uint8"
    assert index_dtype_for(257) == "uint16"
    assert index_dtype_for(49152) == "uint16"
    assert index_dtype_for(65536) == "uint16"
    assert index_dtype_for(128256) == "uint32"


@pytest.mark.parametrize(
    "message",
    [
        Hello("orin-1", {"hostname": "x", "cpu_count": 12}),
        Configure(
            {
                "drafter": {"source": "bundled"},
                "vocab_size": VOCAB,
                "temperature": 0.7,
                "top_k": 8,
                "sampling": "top-k",
                "prob_dtype": "float16",
                "index_dtype": "uint16",
            }
        ),
        Ready({"drafter": "d", "vocab_size": VOCAB, "load_s": 1.5}),
        DraftRequest(1, "p0", [1, 2, 3], 4, 12345),
        Verdict(1, 0, 2, 77, False, 4, [10, 20]),
        Error("malformed", "bad", {"field": "x"}),
        Bye("done"),
        TimePing(4, 123456789),
        TimePong(4, 123456789, 5, 6),
        Telemetry("orin-1", ["t_ns", "cpu_percent", "power_total_w"], [[1, 12.5, None], [2, 13.0, None]]),
        LinkUpdate(up={"bandwidth_hz": 2.5e5}),
        LinkUpdate(up={"rate_bps": 1e6}, down={"rate_bps": 5e6}),
    ],
)
def test_round_trip(message):
    assert decode(encode(message), vocab_size=VOCAB) == message


def test_payload_round_trip_keeps_arrays_and_dtypes():
    sent = payload()
    got = decode(encode(sent), vocab_size=VOCAB)
    assert isinstance(got, DraftPayload)
    assert got.topk_indices.dtype == np.uint16 and got.topk_probs.dtype == np.float16
    np.testing.assert_array_equal(got.token_ids, sent.token_ids)
    np.testing.assert_array_equal(got.topk_indices, sent.topk_indices)
    np.testing.assert_array_equal(got.topk_probs, sent.topk_probs.astype(np.float16))
    np.testing.assert_array_equal(got.draft_probs, sent.draft_probs)
    assert got.times == [1, 2, 3, 0, 0]


def test_payload_with_k8_float16_fits_64_bytes_per_draft_token():
    frame = encode(payload(gamma=4, k=8))
    assert zmtp_frame_bytes(len(frame)) / 4 <= 64


def test_float32_payload_is_larger_than_float16():
    assert len(encode(payload(prob_dtype="float32"))) - len(encode(payload())) == 4 * 8 * 2


def fields_of(message: DraftPayload) -> list:
    return msgpack.unpackb(encode(message), raw=False)


def pack(fields: list) -> bytes:
    return msgpack.packb(fields, use_bin_type=True)


def expect(code: str, frame: bytes, vocab: int | None = VOCAB) -> ProtocolError:
    with pytest.raises(ProtocolError) as info:
        decode(frame, vocab_size=vocab)
    assert info.value.code == code, info.value
    return info.value


def test_garbage_is_malformed():
    expect("malformed", b"\xc1\xff not msgpack")
    expect("malformed", pack({"a": 1}))
    expect("malformed", pack([PROTOCOL_VERSION]))


def test_wrong_version_and_unknown_type():
    f = fields_of(payload())
    f[0] = PROTOCOL_VERSION + 1
    expect("version", pack(f))
    expect("unknown_type", pack([PROTOCOL_VERSION, 99]))


def test_wrong_field_count():
    f = fields_of(payload())
    expect("malformed", pack(f[:-1]))


def test_nan_probabilities():
    p = payload()
    probs = p.topk_probs.copy()
    probs[1, 2] = np.nan
    p.topk_probs = probs
    err = expect("bad_probabilities", encode(p))
    assert "NaN" in err.message


def test_draft_prob_must_be_positive_and_finite():
    p = payload()
    p.draft_probs = np.array([0.5, np.inf, 0.2, 0.1], dtype=np.float32)
    expect("bad_probabilities", encode(p))
    p.draft_probs = np.array([0.5, 0.0, 0.2, 0.1], dtype=np.float32)
    expect("bad_probabilities", encode(p))


def test_row_summing_above_one():
    p = payload()
    p.topk_probs = np.full((4, 8), 0.2)
    err = expect("bad_probabilities", encode(p))
    assert "sums to" in err.message


def test_index_out_of_range():
    p = payload(vocab=VOCAB)
    idx = p.topk_indices.copy()
    idx[0, 0] = VOCAB  # one past the end
    p.topk_indices = idx
    expect("index_out_of_range", encode(p))
    # without a vocabulary the same frame decodes (the receiver has no range)
    decode(encode(p))


def test_token_out_of_range_in_request():
    expect("index_out_of_range", encode(DraftRequest(1, "p", [1, VOCAB + 5], 4, 0)))


def test_shape_mismatch():
    f = fields_of(payload())
    f[2 + 3] = 16  # claim K=16 while the bytes hold K=8
    expect("bad_shape", pack(f))


def test_bad_dtype_code():
    f = fields_of(payload())
    f[2 + 5] = "float64"
    expect("bad_dtype", pack(f))


def test_every_type_code_has_a_class():
    assert set(MESSAGE_TYPES) == set(MsgType)


@pytest.mark.parametrize(
    "up",
    [
        {"bandwidth_hz": float("nan")},
        {"bandwidth_hz": 0},
        {"rate_bps": -1.0},
        {"speed": 1.0},
        {"rate_bps": True},
        {"rate_bps": 1e6, "bandwidth_hz": 1e5},
        [1],
    ],
)
def test_bad_link_updates(up):
    expect("malformed", pack([PROTOCOL_VERSION, int(MsgType.LINK), up, {}]))

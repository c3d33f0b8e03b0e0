"""decode raises ProtocolError and nothing else, under per-type limits; payloads must add up."""

from __future__ import annotations

import subprocess
import sys

import msgpack
import numpy as np
import pytest

from agent.protocol import PROTOCOL_VERSION, DraftPayload, ProtocolError, decode, encode
from controller.liveness import check_echo
from tests.agent.test_protocol import VOCAB, fields_of, pack, payload


def expect(code: str, frame: bytes, vocab: int | None = VOCAB) -> ProtocolError:
    with pytest.raises(ProtocolError) as info:
        decode(frame, vocab_size=vocab)
    assert info.value.code == code, info.value
    return info.value


@pytest.mark.parametrize("value", [["float16"], {"float16": 1}, [], {}, None, 3, b"float16"])
def test_a_dtype_of_any_type_is_a_protocol_error(value):
    for i in (2 + 4, 2 + 5):  # index dtype, prob dtype
        f = fields_of(payload())
        f[i] = value
        expect("bad_dtype", pack(f))


def test_a_row_with_no_mass_is_refused():
    p = payload()
    probs = p.topk_probs.copy()
    probs[2] = 0
    p.topk_probs = probs
    expect("no_mass", encode(p))


def test_q_of_the_drafted_token_must_match_its_top_k_entry():
    p = payload()  # each drafted token is its row's first entry, q(x) equal to it
    q = p.draft_probs.copy()
    q[1] = q[1] * 1e-3  # the attack: claim a tiny q(x) so that p/q accepts every draft
    p.draft_probs = q
    err = expect("inconsistent_q", encode(p))
    assert "draft 1" in err.message
    decode(encode(payload()), vocab_size=VOCAB)  # the honest payload passes


def test_deep_and_large_frames_are_refused_cheaply():
    expect("too_large", msgpack.packb([PROTOCOL_VERSION, 1, "a", {"x": [[[[[]]]]]}]))
    expect("malformed", bytes([0x9F, PROTOCOL_VERSION, 5]) + b"\x90" * (16 << 20))
    expect("too_large", bytes([0x95, PROTOCOL_VERSION, 11]) + b"\x90" * (1 << 20))
    expect("malformed", bytes([0x94, PROTOCOL_VERSION, 1]) + b"\xdb\xff\xff\xff\xff")  # a 4 GiB name
    expect("malformed", b"\x93\xc1 garbage")


def test_payload_must_echo_what_was_asked():
    from dataclasses import replace

    from agent.settings import Settings

    settings = Settings({}, VOCAB, 1.0, 8, index_dtype="uint16", prob_dtype="float16")
    msg = decode(encode(payload()), vocab_size=VOCAB)
    assert isinstance(msg, DraftPayload)
    check_echo(settings, 4, msg)
    for changed, gamma in (({"top_k": 16}, 4), ({"prob_dtype": "float32"}, 4), ({}, 5)):
        with pytest.raises(ProtocolError) as info:
            check_echo(replace(settings, **changed), gamma, msg)
        assert info.value.code == "mismatch"


def test_names_are_checked():
    from agent.protocol import Hello

    expect("malformed", encode(Hello("../etc/passwd", {})))
    expect("malformed", encode(Hello("", {})))
    assert decode(encode(Hello("orin-1.lab_2", {}))).agent == "orin-1.lab_2"


def test_bench_fuzz_at_ten_thousand_frames():
    out = subprocess.run(
        [sys.executable, "-m", "controller.cli", "bench", "fuzz", "--frames", "10000", "--seed", "1", "--json"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    result = __import__("json").loads(out.stdout)
    assert result["frames"] == 10000 and result["other_exceptions"] == 0 and result["slow_calls"] == 0
    assert set(result["kinds"]) >= {"random_bytes", "field_type", "huge_length", "deep_nesting", "amplification"}
    assert result["rss_after_bytes"] - result["rss_after_warmup_bytes"] < 50 * 2**20
    assert np.isfinite(result["slowest_call_cpu_s"])

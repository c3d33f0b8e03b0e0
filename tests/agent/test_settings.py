"""CONFIGURE's settings: one typed object, every field checked once, the bad one named."""

from __future__ import annotations

import pytest

from agent.protocol import Configure, ProtocolError, decode, encode
from agent.settings import Settings, TelemetrySettings

VOCAB = 64
GOOD = {
    "drafter": {"source": "tiny-llama", "seed": 1},
    "vocab_size": VOCAB,
    "temperature": 0.7,
    "top_k": 5,
    "sampling": "top-k",
    "prob_dtype": "float16",
    "index_dtype": "uint8",
    "reconstruction": "renormalise",
    "telemetry": {"port": 5556, "rate_hz": 10.0, "host_sampler": "procfs"},
    "link": {"up": {"rate_bps": 1e6}, "down": {}, "seed": 3},
    "draft_delay_s": 0.01,
    "device": "cpu",
    "dtype": "float32",
}


def test_round_trip_through_a_frame():
    wire = decode(encode(Configure(GOOD))).settings
    s = Settings.from_wire(wire)
    assert s.top_k == 5 and s.telemetry == TelemetrySettings(5556, 10.0, "procfs") and s.link["seed"] == 3
    assert Settings.from_wire(s.to_wire()) == s
    assert s.to_wire() == GOOD
    d = s.draft_settings()
    assert (d.top_k, d.sampling, d.index_dtype, d.reconstruction) == (5, "top-k", "uint8", "renormalise")


@pytest.mark.parametrize(
    ("change", "code", "named"),
    [
        ({"top_k": VOCAB + 1}, "malformed", "settings.top_k"),  # more than the vocabulary: refused, never clamped
        ({"top_k": 0}, "malformed", "settings.top_k"),
        ({"top_k": 8.0}, "malformed", "settings.top_k"),
        ({"index_dtype": "none"}, "malformed", "settings.top_k"),  # dense: K must be the vocabulary
        ({"index_dtype": "int7"}, "bad_dtype", "settings.index_dtype"),
        ({"prob_dtype": "bfloat16"}, "bad_dtype", "settings.prob_dtype"),
        ({"sampling": "nucleus"}, "malformed", "settings.sampling"),
        ({"temperature": -1}, "malformed", "settings.temperature"),
        ({"reconstruction": "zero-fill"}, "malformed", "settings.reconstruction"),
        ({"draft_delay_s": "slow"}, "malformed", "settings.draft_delay_s"),
        ({"telemetry": {"port": 0}}, "malformed", "settings.telemetry.port"),
        ({"telemetry": {"port": 5556, "host_sampler": "top"}}, "malformed", "settings.telemetry.host_sampler"),
        ({"link": {"seed": "x"}}, "malformed", "settings.link.seed"),
        ({"link": {"up": [1]}}, "malformed", "settings.link.up"),
        ({"device": "tpu"}, "malformed", "settings.device"),
        ({"dtype": "int4"}, "bad_dtype", "settings.dtype"),
        ({"drafter": "tiny"}, "malformed", "settings.drafter"),
    ],
)
def test_a_bad_field_is_named(change, code, named):
    with pytest.raises(ProtocolError) as info:
        Settings.from_wire({**GOOD, **change})
    assert info.value.code == code and named in info.value.message


def test_a_missing_field_is_named():
    for key in ("drafter", "vocab_size", "temperature", "top_k", "sampling", "prob_dtype", "index_dtype"):
        with pytest.raises(ProtocolError, match=f"settings.{key} missing"):
            Settings.from_wire({k: v for k, v in GOOD.items() if k != key})
    with pytest.raises(ProtocolError, match="settings must be a map"):
        Settings.from_wire([1, 2])


def test_optional_fields_default():
    s = Settings.from_wire(
        {k: GOOD[k] for k in ("drafter", "vocab_size", "temperature", "top_k", "sampling")}
        | {
            "prob_dtype": "float32",
            "index_dtype": "none",
            "top_k": VOCAB,
        }
    )
    assert s.dense and s.device is None and s.telemetry is None and s.link is None and s.draft_delay_s == 0.0
    assert s.reconstruction == "tail-fill" and s.dtype == "auto"

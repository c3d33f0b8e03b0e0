"""The agent's link emulator: serialisation over constant and traced rates, delay, loss, units."""

from __future__ import annotations

import math

import pytest

from agent.link import Link, LinkError, parse_rate, parse_seconds, snr_to_rate


def test_units():
    assert parse_rate("10mbit") == 10e6
    assert parse_rate("20kbit") == 20e3
    assert parse_rate("2e4") == 2e4
    assert parse_rate(1500) == 1500.0
    assert parse_seconds("5ms") == pytest.approx(0.005)
    with pytest.raises(LinkError):
        parse_rate("fast")


def test_constant_rate_and_delay():
    link = Link({"rate_bps": 1e6, "delay_s": 0.01})
    state = link.transfer(1250, now_s=0.0)  # 10,000 bits at 1 Mbit/s
    assert state.seconds == pytest.approx(0.01 + 0.01)
    assert state.rate_bps == 1e6 and state.snr_db is None


def test_rate_trace_is_integrated_across_pieces_and_repeats():
    # 1 Mbit/s for 1 s, then 0.5 Mbit/s for 1 s, repeating every 2 s
    link = Link({"trace": [[0, 1e6], [1, 5e5], [2, 1e6]]}, start_s=100.0)
    # 1.25 Mbit from t = 0.5: 0.5 Mbit by t = 1, 0.5 Mbit more by t = 2 (at 0.5 Mbit/s),
    # the last 0.25 Mbit at 1 Mbit/s once the trace repeats: 1.75 s
    assert link.transfer(156250, now_s=100.5).seconds == pytest.approx(1.75)
    # the same transfer one period later takes the same time
    assert link.transfer(156250, now_s=102.5).seconds == pytest.approx(link.transfer(156250, now_s=100.5).seconds)
    assert link.state(101.2)[0] == 5e5


def test_snr_trace_maps_through_shannon():
    link = Link({"trace": [[0, 10.0], [1, 0.0], [2, 10.0]], "trace_kind": "snr", "bandwidth_hz": 1e5})
    rate, snr = link.state(0.5)
    assert snr == 10.0 and rate == pytest.approx(1e5 * math.log2(11))
    assert link.state(1.5)[0] == pytest.approx(snr_to_rate(0.0, 1e5)) == pytest.approx(1e5)
    with pytest.raises(LinkError, match="bandwidth_hz"):
        Link({"trace": [[0, 10.0]], "trace_kind": "snr"})


def test_loss_costs_retransmission_timeouts_at_the_stated_rate():
    link = Link({"loss": 0.1, "rto_s": 0.2, "mss_bytes": 1000}, seed=7)
    # 100 packets a message, 200 messages: 20,000 packets, about 2,000 lost
    total = sum(link.transfer(100_000, 0.0).seconds for _ in range(200))
    lost = total / 0.2
    assert lost == pytest.approx(2000, rel=0.1)


@pytest.mark.parametrize(
    "spec, field",
    [({"rate_bps": -1}, "rate_bps"), ({"loss": 1.5}, "loss"), ({"speed": 1}, "speed"), ({"trace": [[1, 5]]}, "trace")],
)
def test_bad_specs_name_the_field(spec, field):
    with pytest.raises(LinkError, match=field):
        Link(spec)


def test_constant_snr_link_follows_its_band_share():
    link = Link({"snr_db": 10.0, "bandwidth_hz": 1e5})
    eta = math.log2(1 + 10.0)
    assert link.state(0.0)[0] == pytest.approx(1e5 * eta)
    link.set_bandwidth(2.5e4)
    rate, snr = link.state(5.0)
    assert rate == pytest.approx(2.5e4 * eta) and snr == 10.0
    assert link.transfer(1000, 5.0).seconds == pytest.approx(8000 / (2.5e4 * eta))
    with pytest.raises(LinkError, match="bandwidth_hz"):
        Link({"rate_bps": 1e6}).set_bandwidth(1e5)
    with pytest.raises(LinkError, match="bandwidth_hz"):
        Link({"snr_db": 3.0})
    with pytest.raises(LinkError, match="snr_db"):
        Link({"snr_db": 3.0, "rate_bps": 1e6, "bandwidth_hz": 1e5})

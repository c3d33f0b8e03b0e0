"""The telemetry collector keeps what agents send while the run is ending."""

from __future__ import annotations

import threading
import time

import zmq

from agent.protocol import Telemetry, encode
from controller.collector import TelemetryCollector
from tests.conftest import free_port


def test_a_batch_flushed_after_stop_is_called_is_still_written(tmp_path):
    collector = TelemetryCollector(tmp_path)
    collector.start()
    pub = zmq.Context.instance().socket(zmq.XPUB)  # as the agents' publisher: it hears the subscription
    pub.setsockopt(zmq.LINGER, 1000)
    pub.connect(collector.endpoint)
    assert pub.poll(10_000), "the collector never subscribed"
    assert pub.recv()[:1] == b"\x01"  # subscribed: from now on nothing sent is dropped
    pub.send(encode(Telemetry("edge-1", ["t_ns", "cpu_percent"], [[1, 10.0]])))
    # a remote agent's last batch, flushed when it is told bye: 200 ms after the run stops the collector
    late = threading.Timer(0.2, lambda: pub.send(encode(Telemetry("edge-1", ["t_ns", "cpu_percent"], [[2, 11.0]]))))
    late.start()
    t0 = time.monotonic()
    collector.stop()
    waited = time.monotonic() - t0
    late.join()
    pub.close()
    assert collector.rows["edge-1"] == 2
    lines = (tmp_path / "telemetry" / "edge-1.csv").read_text().splitlines()
    assert lines == ["t_ns,cpu_percent", "1,10.0", "2,11.0"]
    assert waited < 5.0 + 0.5  # bounded by max_s


def test_a_publisher_that_ends_its_stream_is_not_waited_for(tmp_path):
    """An agent's publisher, stopped at bye, ends its stream: the collector stops without a quiet spell."""
    from agent.runtime import TelemetryPublisher

    collector = TelemetryCollector(tmp_path)
    collector.start()
    publisher = TelemetryPublisher(zmq.Context.instance(), collector.endpoint, "edge-1", rate_hz=50, shift_ns=0)
    publisher.start()
    deadline = time.monotonic() + 30
    while collector.rows["edge-1"] < 3:  # samples arrive: the subscription reached the publisher
        assert time.monotonic() < deadline, "no telemetry within 30 s"
        time.sleep(0.01)
    publisher.stop()  # the last batch, then the end of the stream
    t0 = time.monotonic()
    collector.stop(expect={"edge-1"}, quiet_s=60.0, max_s=120.0)
    waited = time.monotonic() - t0
    assert collector.ended == {"edge-1"}
    assert waited < 30.0, waited  # not the 60 s quiet spell
    rows = (tmp_path / "telemetry" / "edge-1.csv").read_text().splitlines()
    assert rows[0].startswith("t_ns,") and len(rows) - 1 == collector.rows["edge-1"] >= 3
    assert all(r.split(",")[0] for r in rows[1:])  # the end of the stream wrote no row


def test_batches_published_before_the_collector_subscribed_still_arrive(tmp_path):
    """ZeroMQ's slow joiner: what a PUB sends before the subscription arrives is lost; these batches wait for it."""
    from agent.runtime import TelemetryPublisher

    endpoint = f"tcp://127.0.0.1:{free_port()}"
    publisher = TelemetryPublisher(zmq.Context.instance(), endpoint, "edge-1", rate_hz=50, shift_ns=0)
    publisher.start()
    deadline = time.monotonic() + 30
    while publisher.thread.batches < 2:  # published with nobody subscribed yet
        assert time.monotonic() < deadline, "no batch within 30 s"
        time.sleep(0.01)
    collector = TelemetryCollector(tmp_path, endpoint=endpoint)
    collector.start()
    publisher.stop()
    collector.stop(expect={"edge-1"}, quiet_s=5.0, max_s=30.0)
    assert collector.ended == {"edge-1"}
    assert publisher.batches_dropped == 0 and not publisher.pending
    assert collector.rows["edge-1"] == publisher.thread.samples >= 2


def test_a_publisher_nobody_subscribes_to_gives_up_and_counts(tmp_path, monkeypatch):
    """No collector at the endpoint: stop() waits SUBSCRIBE_WAIT_S, then counts what it never sent."""
    from agent.runtime import TelemetryPublisher

    monkeypatch.setattr(TelemetryPublisher, "SUBSCRIBE_WAIT_S", 0.3)
    endpoint = f"tcp://127.0.0.1:{free_port()}"  # a port with nobody behind it
    publisher = TelemetryPublisher(zmq.Context.instance(), endpoint, "edge-1", rate_hz=50, shift_ns=0)
    publisher.start()
    t0 = time.monotonic()
    publisher.stop()
    assert 0.3 <= time.monotonic() - t0 < 10.0
    assert not publisher.subscribed and publisher.batches_sent == 0
    assert publisher.batches_dropped >= 1  # the samples taken; the end-of-stream frame is not counted

"""The telemetry SUB takes rows only from enrolled keys, each under its own name (real sockets)."""

from __future__ import annotations

import time

import zmq
import zmq.auth

from agent.protocol import Telemetry, encode
from agent.security import ClientKeys, apply_client
from controller.collector import TelemetryCollector
from controller.keys import Enrolment, make_keys


def publisher(endpoint: str, keys: ClientKeys | None) -> zmq.Socket:
    sock = zmq.Context.instance().socket(zmq.PUB)
    sock.setsockopt(zmq.LINGER, 0)
    apply_client(sock, keys)
    sock.connect(endpoint)
    return sock


def test_only_enrolled_publishers_write_and_only_their_own_host(tmp_path, keys):
    make_keys(tmp_path / "stranger", ["edge-0"])
    stranger_pub, stranger_secret = zmq.auth.load_certificate(tmp_path / "stranger" / "agents" / "edge-0.key_secret")
    server_pub = zmq.auth.load_certificate(keys / "controller.key")[0]
    enrolment = Enrolment(keys)
    collector = TelemetryCollector(tmp_path / "run", enrolment=enrolment)
    collector.start()
    ep = collector.endpoint
    pubs = {
        "edge-0": publisher(ep, enrolment.client_keys("edge-0")),  # enrolled, as itself
        "edge-1 as edge-0": publisher(ep, enrolment.client_keys("edge-1")),  # enrolled, posing
        "unenrolled": publisher(ep, ClientKeys(stranger_pub, stranger_secret, server_pub)),
        "no key": publisher(ep, None),
    }
    frame = encode(Telemetry("edge-0", ["t_ns", "cpu_percent"], [[1, 5.0]]))
    try:
        deadline = time.monotonic() + 120
        # PUB drops what it sends before its connection is up: send until the enrolled rows arrive
        while not (collector.rows["edge-0"] and collector.errors["not_enrolled"]):
            assert time.monotonic() < deadline, (dict(collector.rows), dict(collector.errors))
            for sock in pubs.values():
                sock.send(frame)
            time.sleep(0.05)
        for _ in range(20):
            for sock in pubs.values():
                sock.send(frame)
    finally:
        for sock in pubs.values():
            sock.close()
        collector.stop()
        described = enrolment.describe()
        enrolment.close()
    assert [p.name for p in (tmp_path / "run" / "telemetry").iterdir()] == ["edge-0.csv"]
    rows = (tmp_path / "run" / "telemetry" / "edge-0.csv").read_text().splitlines()
    assert len(rows) - 1 == collector.rows["edge-0"] >= 21  # edge-0's own rows, no one else's
    assert collector.errors["not_enrolled"] >= 21  # edge-1's key posing as edge-0: counted, not written
    assert described["refused_total"] >= 1
    assert stranger_pub.decode() in {r["key"] for r in described["refused"]}  # the stranger, named

"""The ROUTER piece over real loopback sockets: frames in, typed messages and closed connections out."""

from __future__ import annotations

import time
from collections import Counter

import zmq

from agent.protocol import Bye, Hello, encode
from controller.liveness import Liveness
from controller.serve.router import Incoming, Router

VOCAB = 64


def _next(router: Router, timeout_s: float = 10.0) -> Incoming:
    """The next message, waiting on the socket (no sleep)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if router.wait(100):
            incoming = router.receive()
            if incoming is not None:
                return incoming
    raise AssertionError("no message within the timeout")


def test_frames_in_typed_messages_and_closed_connections_out():
    errors: Counter[str] = Counter()
    router = Router("tcp://127.0.0.1:*", 1 << 16, VOCAB, Liveness(), None, errors)
    dealer = zmq.Context.instance().socket(zmq.DEALER)
    try:
        dealer.setsockopt(zmq.LINGER, 0)
        dealer.connect(router.endpoint)

        dealer.send(encode(Hello("edge-1", {})))
        hello = _next(router)
        assert hello.message == Hello("edge-1", {}) and hello.error is None
        assert hello.frame_len == len(encode(Hello("edge-1", {})))
        assert hello.identity in router.fd_of

        # bytes that are no message: the decoder's error, which may end a round
        dealer.send(b"\x00\x01")
        bad = _next(router)
        assert bad.message is None and bad.error.code == "malformed" and bad.ends_round

        # two frames where one is due: refused, and it ends no round
        dealer.send_multipart([encode(Bye("x")), b""])
        split = _next(router)
        assert split.error.code == "malformed" and not split.ends_round

        # a reply reaches the dealer; its size on the wire is counted
        assert router.send(hello.identity, Bye("done")) > len(encode(Bye("done")))
        assert dealer.poll(10_000) and dealer.recv() == encode(Bye("done"))

        # the dealer's connection closes: the monitor names its identity, later frames are dropped
        dealer.close()
        deadline = time.monotonic() + 10
        lost: list[bytes] = []
        while not lost and time.monotonic() < deadline:
            router.wait(100)
            lost = router.closed_connections()
        assert lost == [hello.identity]
        assert hello.identity in router.closed and hello.identity not in router.fd_of
        assert not errors  # handshake failures only
    finally:
        if not dealer.closed:
            dealer.close()
        router.close()

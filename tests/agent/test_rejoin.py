"""An agent the controller no longer knows says hello again (real agent process, real sockets)."""

from __future__ import annotations

import subprocess
import sys

import zmq

from agent.protocol import Bye, Error, Hello, decode, encode
from controller.keys import Enrolment
from tests.conftest import agent_key_args


def test_agent_says_hello_again_when_the_controller_does_not_know_it(keys):
    ctx = zmq.Context.instance()
    router = ctx.socket(zmq.ROUTER)
    enrolment = Enrolment(keys)
    enrolment.serve(router)
    router.setsockopt(zmq.LINGER, 0)
    router.setsockopt(zmq.RCVTIMEO, 120_000)  # an agent process imports torch first: slow on a loaded machine
    router.bind("tcp://127.0.0.1:0")
    endpoint = router.getsockopt_string(zmq.LAST_ENDPOINT)
    agent = subprocess.Popen(
        [sys.executable, "-m", "agent", "--connect", endpoint, "--name", "edge-9", *agent_key_args(keys, "edge-9")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        identity, frame = router.recv_multipart()
        first = decode(frame)
        assert isinstance(first, Hello) and first.agent == "edge-9"
        # another error code is only logged: no second hello
        router.send_multipart([identity, encode(Error("unexpected", "a test", {}))])
        router.send_multipart(
            [identity, encode(Error("unknown_agent", "DraftPayload from an agent that never said hello", {}))]
        )
        identity2, frame = router.recv_multipart()
        again = decode(frame)
        assert isinstance(again, Hello) and again.agent == "edge-9" and identity2 == identity
        assert router.poll(500) == 0, "one hello per unknown_agent error"
        router.send_multipart([identity, encode(Bye("test over"))])
        assert agent.wait(timeout=30) == 0
    finally:
        if agent.poll() is None:
            agent.kill()
        router.close()
        enrolment.close()

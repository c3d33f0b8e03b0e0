"""A rogue peer sends bad frames to a running controller over real sockets.

Each gets an ERROR reply with the right code and a counter in the summary;
the real agents' run finishes untouched.
"""

from __future__ import annotations

import json
import threading
import time

import msgpack
import numpy as np
import zmq

from agent.protocol import (
    PROTOCOL_VERSION,
    Bye,
    Configure,
    DraftPayload,
    Error,
    Hello,
    HiddenAnswer,
    decode,
    encode,
)
from agent.security import apply_client
from controller.keys import Enrolment
from controller.local import run_local
from controller.profiles import load_experiment


def bad_payload(vocab: int, nan: bool = False, index: int | None = None) -> bytes:
    probs = np.full((2, 4), 0.1, dtype=np.float16)
    idx = np.array([[1, 2, 3, 4], [5, 6, 7, 8]], dtype=np.uint8)
    if nan:
        probs[0, 1] = np.nan
    if index is not None:
        idx[1, 3] = index
    msg = DraftPayload(
        0, 0, 2, 4, "uint8", "float16", idx[:, 0], np.array([0.1, 0.1], np.float32), idx, probs, [0, 0, 0, 0, 0]
    )
    return encode(msg)


def test_bad_frames_get_errors_and_the_run_finishes(tmp_path, tiny_pair, keys):
    # Enough work that the agents are still generating after the rogue is done.
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(f'{{"id": "q{i}", "prompt_token_ids": [0, {2 + i}]}}\n' for i in range(40)))
    experiment = load_experiment("tiny", prompts=str(prompts), max_new_tokens=64)
    listening = threading.Event()
    first_round = threading.Event()
    endpoint: list[str] = []
    result: dict = {}

    def on_listening(ep: str) -> None:
        endpoint.append(ep)
        listening.set()

    def on_progress(done, total, record) -> None:
        if record is not None:
            first_round.set()

    def run() -> None:
        result["run"] = run_local(
            experiment,
            tmp_path / "run",
            target=tiny_pair[0],
            on_progress=on_progress,
            on_listening=on_listening,
            keys_dir=keys,
        )

    thread = threading.Thread(target=run)
    thread.start()
    try:
        assert listening.wait(60)
        assert first_round.wait(400), "the real agents never completed a round"  # slow on a loaded machine
        ctx = zmq.Context.instance()
        rogue = ctx.socket(zmq.DEALER)  # an enrolled agent gone rogue: CURVE lets it in, the checks do not
        apply_client(rogue, Enrolment(keys).client_keys("rogue"))
        rogue.setsockopt(zmq.RCVTIMEO, 20000)
        rogue.setsockopt(zmq.LINGER, 0)
        rogue.connect(endpoint[0])

        def ask(*frames: bytes):
            rogue.send_multipart(list(frames))
            return decode(rogue.recv())

        codes = []
        codes.append(ask(b"\x93\xc1 garbage").code)
        codes.append(ask(msgpack.packb([PROTOCOL_VERSION + 41, 1, "x", {}])).code)
        codes.append(ask(bad_payload(64)).code)  # no hello yet
        configure = ask(encode(Hello("rogue", {})))
        assert isinstance(configure, Configure)
        assert configure.settings["index_dtype"] == "uint8"
        codes.append(ask(bad_payload(64, nan=True)).code)
        codes.append(ask(bad_payload(64, index=200)).code)
        codes.append(ask(b"two", b"frames").code)
        hidden = DraftPayload(**{**vars(decode(bad_payload(64))), "hidden": np.zeros((2, 3), np.float16)})
        codes.append(ask(encode(hidden)).code)  # WISV's 14th field, never negotiated
        codes.append(ask(encode(HiddenAnswer(0, 0, [0], "float16", 3, np.zeros((1, 3), np.float16)))).code)
        assert codes == [
            "malformed",
            "version",
            "unknown_agent",
            "bad_probabilities",
            "index_out_of_range",
            "malformed",
            "malformed",
            "unexpected",
        ]
        rogue_done_ns = time.monotonic_ns()
        thread.join(300)
        assert not thread.is_alive()
        # the run's end reaches the rogue too
        last = decode(rogue.recv())
        while isinstance(last, Error):
            last = decode(rogue.recv())
        assert isinstance(last, Bye)
        rogue.close()
    finally:
        thread.join(300)
    summary = result["run"].summary
    rounds = [json.loads(line) for line in (tmp_path / "run" / "rounds.jsonl").read_text().splitlines()]
    # One host, one CLOCK_MONOTONIC: agents were served after the bad input.
    assert any(r["ctrl_recv_ns"] > rogue_done_ns for r in rounds)
    assert summary["prompts"] == len(experiment.prompts)
    assert summary["errors"] == {
        "malformed": 3,
        "version": 1,
        "unknown_agent": 1,
        "bad_probabilities": 1,
        "index_out_of_range": 1,
        "unexpected": 1,
    }
    assert summary["errors_total"] == 8
    assert set(summary["agent_exit_codes"].values()) == {0}

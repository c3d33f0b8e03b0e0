"""Enrolment, bounded frames and liveness against a running controller (real sockets, real processes).

- peers without an enrolled key (another key, or no CURVE at all) get no message and take no prompt;
- an enrolled agent cannot take another agent's name, nor a name that is not its key's;
- an enrolled rogue's 16 MB amplification frame and 100 MB frame, sent from another process, cost the
  controller < 50 MB of resident memory and the legitimate agents < 1 s; outputs equal a clean run's;
- an agent stopped with SIGSTOP is lost within the heartbeat timeout + 2 s, the run ends on the other
  agent with the clean run's outputs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time

import psutil
import pytest
import zmq

from agent.protocol import Error, Hello, decode, encode
from agent.security import ClientKeys, apply_client
from controller.keys import make_keys
from controller.liveness import Liveness
from controller.local import run_local
from controller.profiles import load_experiment

HEARTBEAT_TIMEOUT_S = 3.0
DRAFT_DELAY_S = 0.2


def experiment(tmp_path, prompts: int = 3, draft_delay_s: float = DRAFT_DELAY_S):
    path = tmp_path / "prompts.jsonl"
    path.write_text(
        "".join(f'{{"id": "t{i}", "prompt_token_ids": [0, {3 + i}, {7 + 2 * i}]}}\n' for i in range(prompts))
    )
    x = load_experiment("tiny", prompts=str(path), max_new_tokens=32)
    # drafting held back draft_delay_s a token (a sleep, no CPU): at 0.2 s the run goes on ~6.5 s
    # after its first round, the attacks take ~0.7 s from it (2-core VM); the outputs do not depend on it
    slow = {"up": {}, "down": {}, "draft_delay_s": draft_delay_s}
    links = {"up": {}, "down": {}, "seed": 0, "agents": {"agent-0": slow, "agent-1": slow}}
    return dataclasses.replace(x, liveness=Liveness(0.5, HEARTBEAT_TIMEOUT_S, 600.0), links=links)


@pytest.fixture(scope="module")
def clean_outputs(tmp_path_factory, tiny_pair):
    tmp = tmp_path_factory.mktemp("clean")
    return run_local(experiment(tmp, draft_delay_s=0.0), tmp / "run", agents=2, target=tiny_pair[0]).outputs


class Background:
    """run_local in a thread; tells the endpoint and each round record."""

    def __init__(self, x, out, target, on_round=None, **kw) -> None:
        self.listening, self.first_round = threading.Event(), threading.Event()
        self.endpoint = ""
        self.result = None
        self.error: BaseException | None = None

        def on_progress(done, total, record):
            if record is not None:
                self.first_round.set()
                if on_round:
                    on_round(record)

        def on_listening(ep):
            self.endpoint = ep
            self.listening.set()

        def run():
            try:
                self.result = run_local(
                    x, out, agents=2, target=target, on_progress=on_progress, on_listening=on_listening, **kw
                )
            except BaseException as exc:  # reported by join()
                self.error = exc

        self.thread = threading.Thread(target=run)
        self.thread.start()

    def join(self):
        self.thread.join(600)
        assert not self.thread.is_alive()
        if self.error:
            raise self.error
        return self.result


def dealer(endpoint: str, keys: ClientKeys | None) -> zmq.Socket:
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    apply_client(sock, keys)
    sock.connect(endpoint)
    return sock


ATTACKER = """
import os, sys, zmq
from zmq.utils.monitor import recv_monitor_message
from agent.security import apply_client, load_client_keys
HUNG_UP = (zmq.EVENT_DISCONNECTED | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
           | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL | zmq.EVENT_HANDSHAKE_FAILED_AUTH)
ctx = zmq.Context()
# a draft payload of 16 M empty arrays, then 100 MB, each on its own connection
for i, frame in enumerate((b"\\x9f\\x03\\x05" + b"\\x90" * (16 << 20), bytes(100 << 20))):
    s = ctx.socket(zmq.DEALER)
    if sys.argv[2] != "-":
        apply_client(s, load_client_keys(sys.argv[2], sys.argv[3]))
    # a monitor address of its own: pyzmq's default names it after the socket's file descriptor,
    # which the next socket may reuse while the last monitor is still connected to that name
    mon = s.get_monitor_socket(HUNG_UP, addr=f"inproc://attacker-monitor-{i}")
    s.connect(sys.argv[1])
    s.send(frame)
    print(recv_monitor_message(mon)["event"], flush=True)  # the controller hangs up
    s.disable_monitor()
    mon.close(linger=0)
    s.close(linger=0)
os._exit(0)
"""


def test_only_enrolled_agents_are_served_and_big_frames_cost_nothing(tmp_path, tiny_pair, keys, clean_outputs):
    stranger = tmp_path / "stranger"
    make_keys(stranger, ["agent-1"])  # a key pair of the right name, not enrolled
    from controller.keys import Enrolment

    enrolled = Enrolment(keys)
    x = experiment(tmp_path)
    bg = Background(x, tmp_path / "run", tiny_pair[0], keys_dir=keys)
    try:
        assert bg.listening.wait(60) and bg.first_round.wait(300)
        ep = bg.endpoint
        server = keys / "controller.key"
        outsiders = {
            "unenrolled key": dealer(ep, ClientKeys(*_pair(stranger / "agents" / "agent-1.key_secret"), _pub(server))),
            "no key": dealer(ep, None),
        }
        for sock in outsiders.values():
            sock.send(encode(Hello("agent-1", {})))
        # an enrolled key: the controller answers it (so an answer would have come by now) ...
        rogue = dealer(ep, enrolled.client_keys("rogue"))
        rogue.send(encode(Hello("agent-0", {})))  # ... but not as a live agent's name
        reply = decode(rogue.recv()) if rogue.poll(30_000) else None
        assert isinstance(reply, Error) and reply.code in {"not_enrolled", "duplicate_name"}, reply
        twin = dealer(ep, enrolled.client_keys("agent-0"))  # agent-0's own key, a second process
        twin.send(encode(Hello("agent-0", {})))
        reply = decode(twin.recv()) if twin.poll(30_000) else None
        assert isinstance(reply, Error) and reply.code == "duplicate_name", reply

        me = psutil.Process()
        rss_before = me.memory_info().rss
        assert bg.thread.is_alive(), f"the run ended before the attack (error: {bg.error!r}): make it longer"
        t_attack = time.monotonic_ns()
        for key_args in ([str(enrolled.agent_secret("rogue")), str(server)], ["-", "-"]):
            try:
                attacker = subprocess.run(
                    [sys.executable, "-c", ATTACKER, ep, *key_args], capture_output=True, text=True, timeout=60
                )
            except subprocess.TimeoutExpired as exc:  # no hang-up came: say whether the run was still there
                raise AssertionError(
                    f"no hang-up in 60 s for the attacker with keys {key_args} (run alive: {bg.thread.is_alive()}, "
                    f"events seen: {exc.stdout!r})"
                ) from exc
            assert attacker.returncode == 0, attacker.stderr
        t_attack_end = time.monotonic_ns()
        # a controller that had gone would never hang up: the attacks above met the live one
        assert bg.thread.is_alive(), "the run ended during the attack: make it longer"
        rss_after = me.memory_info().rss
        # seconds after their HELLOs, and after the enrolled peers' answers: nothing came to the outsiders
        for what, sock in outsiders.items():
            assert sock.poll(100) == 0, f"the peer with {what} got a message"
        run = bg.join()
    finally:
        bg.join() if bg.thread.is_alive() else None
        enrolled.close()
    assert rss_after - rss_before < 50 * 2**20, (rss_before, rss_after)
    assert run.outputs == clean_outputs
    assert set(run.summary["agents"]) >= {"agent-0", "agent-1"}
    assert {r["agent"] for r in _rounds(tmp_path / "run")} == {"agent-0", "agent-1"}
    for r in _rounds(tmp_path / "run"):  # run_local honours the experiment's links (the per-agent draft delay)
        drafting = r["phases"]["drafting"]
        assert (drafting[1] - drafting[0]) / 1e9 >= DRAFT_DELAY_S * r["draft_length"] * 0.99, r
    assert run.summary["errors"].get("duplicate_name", 0) + run.summary["errors"].get("not_enrolled", 0) == 2
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    security = manifest["segments"][0]["security"]
    assert security["mode"] == "curve" and security["refused_total"] >= 1, security
    assert any(r["key"] != "NULL" for r in security["refused"])  # the stranger's key, named
    assert run.summary["errors"].get("handshake_failed", 0) >= 1  # the CURVE-less peers
    # the legitimate agents' rounds went on through the attack: no gap of a second more than usual
    for agent in ("agent-0", "agent-1"):
        recv = sorted(r["ctrl_recv_ns"] for r in _rounds(tmp_path / "run") if r["agent"] == agent)
        gaps = [(b - a) / 1e9 for a, b in zip(recv, recv[1:], strict=False)]
        during = [(b - a) / 1e9 for a, b in zip(recv, recv[1:], strict=False) if b >= t_attack and a <= t_attack_end]
        if during and gaps:
            typical = sorted(gaps)[len(gaps) // 2]
            assert max(during) - typical < 1.0, (agent, max(during), typical)


def _pair(path):
    import zmq.auth

    return zmq.auth.load_certificate(path)


def _pub(path):
    import zmq.auth

    return zmq.auth.load_certificate(path)[0]


def _rounds(run_dir):
    return [json.loads(line) for line in (run_dir / "rounds.jsonl").read_text().splitlines()]


def test_a_stopped_agent_is_lost_within_the_heartbeat_timeout(tmp_path, tiny_pair, clean_outputs, caplog):
    caplog.set_level(logging.INFO, logger="controller.experiment.agents")
    stopped: dict = {}

    def on_round(record):
        if record.agent == "agent-1" and not stopped:
            me = psutil.Process()
            child = next(c for c in me.children(recursive=True) if "agent-1" in c.cmdline())
            os.kill(child.pid, signal.SIGSTOP)
            stopped.update(pid=child.pid, ns=time.monotonic_ns(), prompt=record.prompt_id)

    # a run held up by the stopped agent's prompt lasts until that agent is lost, whatever the delay
    bg = Background(experiment(tmp_path, draft_delay_s=0.02), tmp_path / "run", tiny_pair[0], on_round=on_round)
    try:
        run = bg.join()
    finally:
        if stopped:
            with contextlib.suppress(ProcessLookupError):  # the runner kills what does not leave on bye
                os.kill(stopped["pid"], signal.SIGKILL)  # stopped until here: it never answered again
    lost = run.summary["agents"]["agent-1"]
    assert lost["left"] == "its connection closed", lost
    assert (lost["left_ns"] - stopped["ns"]) / 1e9 < HEARTBEAT_TIMEOUT_S + 2.0
    assert run.outputs == clean_outputs
    assert run.summary["prompts"] == run.summary["prompts_requested"]
    # at the end it is killed at once, not waited for as a live agent would be
    assert "agent agent-1 was lost during the run; killing its process" in caplog.text

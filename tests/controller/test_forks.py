"""Local agents forked from the pre-loaded fork server: the Popen surface the runners use, on real forks."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import psutil
import pytest
import zmq

from controller.experiment.agents import spawn_agent


def test_a_fork_runs_the_agent_entry_with_its_arguments_and_reports_its_exit(tmp_path):
    log = tmp_path / "logs" / "agent-7.log"
    bad = spawn_agent("tcp://127.0.0.1:9", "agent-7", log, None, ["--no-such-option"])
    assert bad.wait(timeout=60) == 2 and bad.poll() == 2 and bad.returncode == 2
    assert "unrecognized arguments: --no-such-option" in log.read_text()


def test_a_fork_shows_its_command_line_takes_the_spawners_directory_and_dies_by_kill(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    agent = spawn_agent("tcp://127.0.0.1:9", "agent-8", tmp_path / "agent-8.log", 1, ["--insecure"])
    try:
        with pytest.raises(subprocess.TimeoutExpired):
            agent.wait(timeout=2)  # it waits for a controller that is not there
        assert agent.poll() is None and agent.returncode is None
        proc = psutil.Process(agent.pid)
        assert proc.cmdline()[1:] == ["-m", "agent", *agent.args[3:]]
        assert "agent-8" in proc.cmdline() and "--threads" in proc.cmdline()
        assert proc.cwd() == str(tmp_path)
        assert any(p.pid == agent.pid for p in psutil.Process().children(recursive=True))
    finally:
        agent.kill()
    assert agent.wait(timeout=30) == -9
    agent.kill()  # reaped: nothing to signal, no error


CHILD = """
import os, sys, zmq
from agent.forked import deliver_and_close_zmq
sock = zmq.Context.instance().socket(zmq.XPUB)
sock.setsockopt(zmq.LINGER, 5000)
sock.connect(sys.argv[1])
assert sock.poll(10_000), "no subscriber"
sock.recv()  # the collector's subscription: from here on, what is sent goes to it
sock.send(b"x" * 4_000_000)
sock.close()
deliver_and_close_zmq()
os._exit(0)
"""


def test_a_fork_delivers_what_its_closed_sockets_hold_before_it_exits():
    """A fork ends with os._exit, which drops queued frames unless the agent's context is closed first.

    Without ``deliver_and_close_zmq`` about half of these 4 MB frames were lost
    (13 of 20 in one run), as was an agent's last telemetry batch in a CI run.
    """
    ctx = zmq.Context()
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.setsockopt(zmq.LINGER, 0)
    port = sub.bind_to_random_port("tcp://127.0.0.1")
    got, stop = [], threading.Event()

    def collect():  # as the telemetry collector does: the SUB is serviced all along
        while not stop.is_set():
            if sub.poll(50):
                got.append(len(sub.recv()))

    thread = threading.Thread(target=collect, daemon=True)
    thread.start()
    try:
        n = 8
        for _ in range(n):
            child = subprocess.run(
                [sys.executable, "-c", CHILD, f"tcp://127.0.0.1:{port}"], timeout=60, capture_output=True
            )
            assert child.returncode == 0, child.stderr.decode()
        deadline = time.monotonic() + 10
        while len(got) < n and time.monotonic() < deadline:
            stop.wait(0.05)
        assert got == [4_000_000] * n
    finally:
        stop.set()
        thread.join(5)
        sub.close()
        ctx.term()

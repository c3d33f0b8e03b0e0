"""The controller host's local agents, forked by one pre-loaded process (``agent.forked``).

``spawn(argv, log_path)`` starts ``python -m agent argv`` as a fork of that
process and returns an ``AgentProcess``: ``pid``, ``returncode``, ``poll()``,
``wait(timeout)`` (raising ``subprocess.TimeoutExpired``), ``kill()``,
``terminate()``, what the runners use of a ``subprocess.Popen``. The fork
server starts at the first spawn (or ``start()``, so its imports run beside
the controller's model loading) and lives as long as this process: when this
process ends, however it ends, its pipe closes, the server exits and its forks
get SIGKILL.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path


class ForkServerError(RuntimeError):
    """The fork server exited or could not fork an agent."""


class AgentProcess:
    """One forked local agent, seen through ``subprocess.Popen``'s surface."""

    def __init__(self, server: ForkServer, pid: int, args: list[str]) -> None:
        self._server = server
        self.pid = pid
        self.args = args

    @property
    def returncode(self) -> int | None:
        return self._server.exit_code(self.pid)

    def poll(self) -> int | None:
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        code = self._server.wait(self.pid, timeout)
        if code is None:
            raise subprocess.TimeoutExpired(self.args, timeout)
        return code

    def send_signal(self, sig: int) -> None:
        if self.returncode is None:  # not yet reaped, so the pid is still this agent's
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)


class ForkServer:
    """``python -m agent.forked``, its request pipe and the exit codes it reports."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "agent.forked"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0
        )
        self._cond = threading.Condition()
        self._spawning = threading.Lock()
        self._replies: list[dict] = []
        self._exits: dict[int, int] = {}
        self._forks: set[int] = set()
        self.closed = False
        threading.Thread(target=self._read, name="agent-forks", daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            message = json.loads(line)
            with self._cond:
                if "exit" in message:
                    self._exits[message["exit"]] = message["code"]
                else:
                    self._replies.append(message)
                self._cond.notify_all()
        self.proc.wait()
        with self._cond:
            self.closed = True
            for pid in self._forks - set(self._exits):  # killed with the server (PR_SET_PDEATHSIG)
                self._exits[pid] = -signal.SIGKILL
            self._cond.notify_all()

    def spawn(self, argv: list[str], log_path: Path) -> AgentProcess:
        request = {"argv": argv, "log": str(log_path), "cwd": os.getcwd(), "env": dict(os.environ)}
        with self._spawning:
            try:
                self.proc.stdin.write((json.dumps(request) + "\n").encode())
            except (BrokenPipeError, ValueError) as exc:
                raise ForkServerError(f"the agent fork server has exited ({exc})") from exc
            with self._cond:
                self._cond.wait_for(lambda: self._replies or self.closed)
                if not self._replies:
                    raise ForkServerError(f"the agent fork server exited with code {self.proc.returncode}")
                reply = self._replies.pop(0)
                if "error" in reply:
                    raise ForkServerError(f"the agent fork server could not fork: {reply['error']}")
                self._forks.add(reply["pid"])
        return AgentProcess(self, reply["pid"], [sys.executable, "-m", "agent", *argv])

    def exit_code(self, pid: int) -> int | None:
        with self._cond:
            return self._exits.get(pid)

    def wait(self, pid: int, timeout: float | None) -> int | None:
        with self._cond:
            self._cond.wait_for(lambda: pid in self._exits, timeout)
            return self._exits.get(pid)


_server: ForkServer | None = None
_lock = threading.Lock()


def server() -> ForkServer:
    """This process's fork server, started (again, if it exited) when asked for."""
    global _server
    with _lock:
        if _server is None or _server.closed or _server.proc.poll() is not None:
            _server = ForkServer()
        return _server


def start() -> None:
    """Start the fork server now, so its imports run beside whatever this process does next."""
    server()


def spawn(argv: list[str], log_path: Path) -> AgentProcess:
    """Start ``python -m agent argv`` as a fork, its stdout and stderr appended to ``log_path``."""
    return server().spawn(argv, log_path)

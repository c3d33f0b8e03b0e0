"""Local agents as forks of one pre-loaded process: ``python -m agent.forked`` (``controller.experiment.forks``).

A local agent started with ``python -m agent`` spends most of its start-up
importing torch and transformers (about 8 s of CPU on a 2-core VM, more than
the tiny models take to load). The controller host's local agents are instead
forked from this process, which imported them once, so each starts in a
fraction of a second. Each fork is its own process from then on (own sockets,
model, log) and runs exactly ``agent.entry.main`` with the arguments
``python -m agent`` would get; ``ps`` shows it as that command line. Boards run
``python -m agent`` as before.

The protocol, one JSON object a line: requests on stdin,
``{"argv": [...], "log": path, "cwd": dir, "env": {...}}``; on stdout,
``{"pid": n}`` for each request in order (``{"error": "..."}`` if the fork
failed) and ``{"exit": pid, "code": c}`` when a fork ends (``c`` negative for
a signal, as ``subprocess`` reports it). At EOF on stdin (the controller
process ended, however it ended) this process exits, and its forks get
SIGKILL (``PR_SET_PDEATHSIG``).
"""

from __future__ import annotations

import ctypes
import json
import os
import selectors
import signal
import sys
import traceback

PR_SET_PDEATHSIG = 1


def preload() -> None:
    """Import what an agent imports, so that every fork finds it imported."""
    import msgpack  # noqa: F401
    import torch  # noqa: F401
    import transformers
    import zmq  # noqa: F401

    import agent.entry  # noqa: F401
    import agent.models  # noqa: F401
    import agent.telemetry  # noqa: F401

    # transformers resolves these lazily, module by module
    for name in ("AutoModelForCausalLM", "AutoTokenizer", "LlamaConfig", "LlamaForCausalLM", "PreTrainedTokenizerFast"):
        getattr(transformers, name)


def title(argv: list[str]) -> str:
    """What ``ps`` shows for a fork: the command line ``python -m agent`` would have had."""
    return " ".join([sys.executable, "-m", "agent", *argv])


def run_agent(request: dict, server_pid: int) -> int:
    """In the fork: die with the server, take the starter's directory and environment, log to the file, run."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except OSError:  # not Linux: the runner's own cleanup is all there is
        pass
    if os.getppid() != server_pid:  # the server died between fork and prctl
        return 1
    argv = [str(a) for a in request["argv"]]
    try:
        import setproctitle

        setproctitle.setproctitle(title(argv))
    except ImportError:  # ps shows `python -m agent.forked`; nothing else differs
        pass
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    fd = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    sys.argv = ["python -m agent", *argv]
    import agent.entry

    try:
        return int(agent.entry.main(argv) or 0)
    except SystemExit as exc:  # argparse's errors, sys.exit inside
        code = exc.code
        if code is None or isinstance(code, int):
            return code or 0
        print(code, file=sys.stderr)
        return 1
    except BaseException:
        traceback.print_exc()
        return 1


def deliver_and_close_zmq() -> None:
    """Let the closed sockets send what they still hold (each within its LINGER), as an exit of Python does.

    A fork ends with ``os._exit``, which skips that: the last telemetry batch
    and the last frames to the controller, queued when the agent closed its
    sockets, would be lost with the process. Sockets still open are dropped.
    """
    zmq = sys.modules.get("zmq")
    if zmq is not None:
        zmq.Context.instance().destroy(linger=0)


def fork_agent(request: dict, keep_out: list[int]) -> int:
    """Fork one agent for ``request``; its pid. The child never returns from here."""
    server_pid = os.getpid()
    pid = os.fork()
    if pid:
        return pid
    code = 1
    try:
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        for fd in keep_out:
            os.close(fd)
        code = run_agent(request, server_pid)
        deliver_and_close_zmq()
    except BaseException:
        traceback.print_exc()
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code & 0xFF)


def serve() -> None:
    """Preload, then fork one agent per request line until stdin ends."""
    replies = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # anything printed by the imports goes to stderr, not into the replies
    preload()
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a ^C is the controller's to handle; EOF ends this process
    signal.set_wakeup_fd(wake_w)
    stdin = sys.stdin.fileno()
    keep_out = [stdin, replies.fileno(), wake_r, wake_w]
    selector = selectors.DefaultSelector()
    selector.register(stdin, selectors.EVENT_READ)
    selector.register(wake_r, selectors.EVENT_READ)
    buffer = b""

    def say(obj: dict) -> None:
        replies.write(json.dumps(obj) + "\n")

    while True:
        for key, _ in selector.select():
            if key.fd == wake_r:
                try:
                    os.read(wake_r, 4096)
                except BlockingIOError:
                    pass
                while True:
                    try:
                        pid, status = os.waitpid(-1, os.WNOHANG)
                    except ChildProcessError:
                        break
                    if pid == 0:
                        break
                    say({"exit": pid, "code": os.waitstatus_to_exitcode(status)})
                continue
            chunk = os.read(stdin, 65536)
            if not chunk:
                return
            buffer += chunk
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                try:
                    say({"pid": fork_agent(json.loads(line), keep_out)})
                except (OSError, ValueError, KeyError, TypeError) as exc:
                    say({"error": f"{type(exc).__name__}: {exc}"})


if __name__ == "__main__":
    serve()

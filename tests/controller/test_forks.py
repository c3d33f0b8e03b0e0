"""Local agents forked from the pre-loaded fork server: the Popen surface the runners use, on real forks."""

from __future__ import annotations

import subprocess

import psutil
import pytest

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

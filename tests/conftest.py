"""Shared fixtures: tiny random Llamas for speed, the bundled SmolLM2 for integration."""

from __future__ import annotations

import json
import socket

import pytest

from agent.models import load_model
from controller.profiles import load_model_pair


@pytest.fixture(scope="session")
def tiny_pair():
    pair = load_model_pair("tiny-llama")
    return load_model(pair.target), load_model(pair.drafter)


@pytest.fixture(scope="session")
def bundled_target():
    return load_model(load_model_pair("smollm2-135m").target)


@pytest.fixture
def keys(tmp_path):
    """A keys folder (`specbed keys`) enrolling the agent names tests use; returns the folder."""
    from controller.keys import make_keys

    folder = tmp_path / "keys"
    make_keys(folder, ["edge-0", "edge-1", "edge-9", "rogue", "agent-0", "agent-1", "agent-2"])
    return folder


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def read_finished_jsonl(path) -> list[dict]:
    """The lines of a JSONL file that its writer has finished, read while it may still be writing.

    A last line without its newline is being written (or was cut off by a kill): it is left out,
    not parsed half-way. Every finished line must parse.
    """
    if not path.exists():
        return []
    text = path.read_text(encoding="utf-8")
    return [json.loads(line) for line in text[: text.rfind("\n") + 1].splitlines() if line.strip()]


def point_setting(point_id: str, field: str) -> str:
    """The value of ``field`` in a grid point's id (``top-k:...,field=value,...``), as written there."""
    return point_id.split(f"{field}=")[1].split(",")[0]


def agent_key_args(keys, name: str) -> list[str]:
    """The agent command-line arguments that give agent ``name`` its enrolled keys."""
    return ["--key", str(keys / "agents" / f"{name}.key_secret"), "--server-key", str(keys / "controller.key")]


def pytest_collection_modifyitems(config, items):
    """Tests over namespace hosts (tests/playbooks) carry the ``namespace`` marker (``-m "not namespace"``)."""
    for item in items:
        if "playbooks" in item.path.parts:
            item.add_marker(pytest.mark.namespace)

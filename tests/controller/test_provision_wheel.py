"""The wheel `specbed provision/deploy` ship: built once per source state, the same bytes every time."""

from __future__ import annotations

import subprocess

from controller import provision
from controller.provision import build_wheel, source_key


def test_the_source_key_follows_the_wheels_sources_only(tmp_path):
    for name, text in {"pyproject.toml": "[project]\n", "README.md": "# x\n", "agent/a.py": "A = 1\n"}.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    key = source_key(tmp_path)
    (tmp_path / "agent/__pycache__").mkdir()
    (tmp_path / "agent/__pycache__/a.cpython-311.pyc").write_bytes(b"\0")
    (tmp_path / "results").mkdir()
    (tmp_path / "results/run.json").write_text("{}")
    assert source_key(tmp_path) == key  # bytecode and run folders do not go into the wheel
    (tmp_path / "agent/a.py").write_text("A = 2\n")
    assert source_key(tmp_path) != key
    (tmp_path / "agent/a.py").write_text("A = 1\n")
    (tmp_path / "controller").mkdir()
    (tmp_path / "controller/b.py").write_text("")
    assert source_key(tmp_path) != key  # a new module


def test_a_second_build_of_the_same_sources_copies_the_first(tmp_path, monkeypatch):
    monkeypatch.setenv("SPECBED_CACHE", str(tmp_path / "cache"))
    first = build_wheel(tmp_path / "one")
    builds = []
    monkeypatch.setattr(provision.subprocess, "run", lambda *a, **k: builds.append(a) or subprocess.run(*a, **k))
    second = build_wheel(tmp_path / "two")
    assert builds == []  # no pip this time
    assert second.name == first.name and second.read_bytes() == first.read_bytes()
    assert [p.name for p in (tmp_path / "cache/wheels").iterdir()] == [source_key()]

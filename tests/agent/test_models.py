"""agent.models: the vocabulary a spec declares before its weights load."""

from __future__ import annotations

import json

from agent.models import declared_vocab_size, load_model


def test_declared_vocabulary_is_the_loaded_one(bundled_target):
    tiny = {"source": "tiny-llama", "vocab_size": 48}
    assert declared_vocab_size(tiny) == load_model(tiny).vocab_size == 48
    assert declared_vocab_size(bundled_target.spec) == bundled_target.vocab_size
    requantized = {"source": "requantized", "base": bundled_target.spec, "bits": 4}
    assert declared_vocab_size(requantized) == bundled_target.vocab_size


def test_an_undeclared_or_unreadable_vocabulary_is_none(tmp_path):
    assert declared_vocab_size({"source": "random", "config": "llama-3.1-8b"}) is None
    assert declared_vocab_size({"source": "local", "path": str(tmp_path / "absent")}) is None
    (tmp_path / "config.json").write_text("not json")
    assert declared_vocab_size({"source": "local", "path": str(tmp_path)}) is None
    (tmp_path / "config.json").write_text(json.dumps({"vocab_size": 0}))
    assert declared_vocab_size({"source": "local", "path": str(tmp_path)}) is None
    (tmp_path / "config.json").write_text(json.dumps({"vocab_size": 1000}))
    assert declared_vocab_size({"source": "local", "path": str(tmp_path)}) == 1000

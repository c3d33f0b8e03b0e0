"""Shared fixtures: tiny random Llamas for speed, the bundled SmolLM2 for integration."""

from __future__ import annotations

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

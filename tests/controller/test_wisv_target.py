"""WISV's target hidden states through the static-cache core (controller.target), eager and CUDA-graphed."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from agent.lm import CachedLM
from agent.random_models import random_model
from controller.target import StaticTarget


class LastPass:
    def __init__(self, model):
        self.last = None
        model.get_output_embeddings().register_forward_pre_hook(self._hook)

    def _hook(self, module, args):
        self.last = args[0].detach().clone()


def _check_rounds(device: str, use_graphs: bool | None) -> None:
    """The core's hidden rows are the output head's input of its logits, row for row, in the callers' order,
    and equal the eager CachedLM's hidden states of the same positions."""
    model = random_model("tiny", device, torch.float32, 0)
    core = StaticTarget(model, device, rows=2, max_len=32, use_graphs=use_graphs)
    core.keep_hidden()
    eager_model = random_model("tiny", device, torch.float32, 0)
    capture = LastPass(eager_model)
    slots = [core.slot() for _ in range(3)]
    lms = [CachedLM(eager_model, device) for _ in slots]
    rng = np.random.default_rng(0)
    committed = [rng.integers(0, 1000, n).tolist() for n in (10, 30, 3)]
    batches = [[0, 1, 2], [2, 0, 1], [1, 2], [0], [1, 0]]
    head = model.get_output_embeddings()
    for r in range(10):
        batch = batches[r % len(batches)]
        seqs = [committed[i] + rng.integers(0, 1000, 4).tolist() for i in batch]
        starts = [len(committed[i]) - 1 for i in batch]
        out, offsets = core.forward([slots[i] for i in batch], seqs, starts)
        hidden = core.hidden
        assert hidden is not None and hidden.shape[:2] == out.shape[:2]
        for j, i in enumerate(batch):
            n = len(seqs[j]) - starts[j]
            rows = hidden[j, offsets[j] : offsets[j] + n]
            torch.testing.assert_close(head(rows), out[j, offsets[j] : offsets[j] + n], atol=1e-4, rtol=1e-4)
            lms[i].logits(seqs[j], starts[j])
            torch.testing.assert_close(rows, capture.last[0, -n:], atol=1e-4, rtol=1e-4)
            committed[i] = seqs[j][: len(committed[i]) + int(rng.integers(0, 5))] + [int(rng.integers(1000))]


def test_static_core_hidden_states_on_cpu():
    _check_rounds("cpu", None)


@pytest.mark.gpu
def test_static_core_hidden_states_through_cuda_graphs():
    """Captured graphs keep the hook's tensor as a static buffer: each replay leaves its own pass's rows."""
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    _check_rounds("cuda", True)


def test_a_target_without_an_output_head_is_refused_clearly(tmp_path):
    from dataclasses import replace

    from controller.profiles import load_experiment
    from controller.wisv.head import DecisionHead, save_head
    from controller.wisv.semantic import Semantic

    model = random_model("tiny", "cpu", torch.float32, 0)
    model.get_output_embeddings = lambda: None
    core = StaticTarget(model, "cpu", rows=1, max_len=32)
    head = save_head(DecisionHead(32, 32, rank=2, width=4), tmp_path / "h.pt", {})
    gen = replace(load_experiment("tiny").generation, temperature=0.0, verification="semantic", wisv_head=str(head))
    with pytest.raises(ValueError, match="no output embeddings"):
        Semantic.for_generation(gen, core)
    assert Semantic.for_generation(replace(gen, verification="strict"), core) is None  # strict never hooks

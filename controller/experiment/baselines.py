"""The in-process baselines: the target alone, and drafter and target colocated (no network).

Both write rounds and outputs through the segment, as the distributed
schemes do (``record`` and ``finish``), with ``agent`` "controller".
"""

from __future__ import annotations

import time
from typing import Any, Protocol

import torch

from agent.drafter import Drafter, DraftSettings
from agent.lm import CachedLM, probs_from_logits
from agent.models import load_model
from controller.acceptance import round_expectations
from controller.experiment.grid import GridPoint
from controller.placement import role_dtype
from controller.serve import Job
from controller.verify import greedy_verify, speculative_verify


class Segment(Protocol):
    """What a baseline needs of the segment running it (``controller.experiment.segment.Segment``)."""

    x: Any  # the Experiment
    seg: dict
    target: Any  # the LoadedModel
    device: str
    eos: set[int]
    colocated_drafter: torch.nn.Module | None

    def on_round(self, record: dict) -> None: ...
    def on_output(self, job: Job) -> None: ...


def run_baseline(seg: Segment, point: GridPoint, jobs: list[Job]) -> None:
    """Every job of an in-process point (``target-only`` or ``colocated``)."""
    if point.scheme == "target-only":
        for job in jobs:
            target_only(seg, point, job)
        return
    drafter = Drafter(
        drafter_model(seg),
        DraftSettings(
            temperature=float(point.generation.temperature),
            top_k=seg.target.vocab_size,
            sampling="full",
            prob_dtype="float32",
            index_dtype="none",
        ),
        seg.device,
    )
    for job in jobs:
        colocated(seg, point, job, drafter)


def drafter_model(seg: Segment) -> torch.nn.Module:
    """The drafter for the colocated baseline, loaded once per segment on the controller's device."""
    if seg.colocated_drafter is None:
        loaded = load_model(seg.x.models.drafter, seg.device, role_dtype(seg.x, "drafter"))
        seg.seg["colocated_drafter"] = {"name": loaded.name, "device": loaded.device, "dtype": loaded.dtype}
        seg.colocated_drafter = loaded.model
    return seg.colocated_drafter


def target_only(seg: Segment, point: GridPoint, job: Job) -> None:
    """Autoregressive decoding with the target alone, one token per step."""
    temperature = point.generation.temperature
    lm = CachedLM(seg.target.model, seg.device)
    lm.reset()
    gen = torch.Generator().manual_seed(job.seed + 1)
    job.generated = []
    job.started_ns = time.monotonic_ns()
    step, finished = 0, False
    while not finished:
        t0 = time.monotonic_ns()
        seq = job.prompt_token_ids + job.generated
        logits = lm.logits(seq, len(seq) - 1)[-1].float().cpu()  # sampled with a CPU generator
        if temperature == 0:
            token = int(logits.argmax())
        else:
            token = int(torch.multinomial(probs_from_logits(logits, temperature).double(), 1, generator=gen))
        t1 = time.monotonic_ns()
        new, finished = job.extend([token], seg.eos)
        seg.on_round(
            {
                "agent": "controller",
                "prompt_id": job.prompt_id,
                "round": step,
                "draft_length": 0,
                "accepted": 0,
                "emitted": len(new),
                "next_kind": "target",
                "bytes_up": 0,
                "bytes_down": 0,
                "tail_mass": None,
                "tv_distance": None,
                "phases": {"target_forward": [t0, t1]},
            }
        )
        step += 1
    job.done_ns = time.monotonic_ns()
    seg.on_output(job)


def colocated(seg: Segment, point: GridPoint, job: Job, drafter: Drafter) -> None:
    """Drafter and target in this process: speculative decoding with no network and the exact q."""
    g = point.generation
    lm = CachedLM(seg.target.model, seg.device)
    lm.reset()
    gen = torch.Generator().manual_seed(job.seed + 1)
    drafter.start(job.prompt_token_ids, job.seed)
    job.generated = []
    job.started_ns = time.monotonic_ns()
    rnd, finished = 0, False
    while not finished:
        t0 = time.monotonic_ns()
        draft = drafter.draft(g.draft_length)
        t1 = time.monotonic_ns()
        drafts = torch.from_numpy(draft.token_ids)
        committed = job.prompt_token_ids + job.generated
        # on the CPU: the verifier's generator and the drafts' q live there (a CUDA target included)
        logits = lm.logits(committed + drafts.tolist(), len(committed) - 1).float().cpu()
        t2 = time.monotonic_ns()
        if g.temperature == 0:
            n, nxt = greedy_verify(drafts, logits)
        else:
            p = probs_from_logits(logits, g.temperature)
            q = torch.from_numpy(draft.topk_probs.astype("float32"))  # dense: [γ, V]
            n, nxt = speculative_verify(drafts, q, p, gen, draft_token_probs=torch.from_numpy(draft.draft_probs))
        t3 = time.monotonic_ns()
        expected = round_expectations(p, q, True, "full") if g.temperature > 0 else {}
        drafter.accept(drafts[:n].tolist(), nxt)
        new, finished = job.extend(drafts[:n].tolist() + [nxt], seg.eos)
        seg.on_round(
            {
                "agent": "controller",
                "prompt_id": job.prompt_id,
                "round": rnd,
                "draft_length": g.draft_length,
                "accepted": n,
                "emitted": len(new),
                "next_kind": "bonus" if n == g.draft_length else "recovered",
                "bytes_up": 0,
                "bytes_down": 0,
                "tail_mass": 0.0,
                "tv_distance": None,
                "phases": {"drafting": [t0, t1], "target_forward": [t1, t2], "verification": [t2, t3]},
                **expected,
            }
        )
        rnd += 1
    job.done_ns = time.monotonic_ns()
    seg.on_output(job)

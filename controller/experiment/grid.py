"""The grid of a run: which schemes and settings are measured, in which order.

Schemes (ALGORITHMS.md sections 1-2): ``top-k`` is distributed speculative
decoding with top-K payloads (the swept grid); the baselines are
``full-distribution`` (distributed, the dense draft distribution sent in
float32), ``colocated`` (drafter and target in the controller process, no
network) and ``target-only`` (autoregressive decoding on the server).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from controller.profiles import Experiment, Generation

SCHEMES = ("top-k", "full-distribution", "colocated", "target-only")
DISTRIBUTED = ("top-k", "full-distribution")

#: The generation fields that matter to each scheme (the others are not part of its key).
SCHEME_FIELDS = {
    "top-k": ("top_k", "draft_length", "prob_dtype", "index_dtype", "reconstruction", "sampling", "temperature"),
    "full-distribution": ("draft_length", "temperature"),
    "colocated": ("draft_length", "temperature"),
    "target-only": ("temperature",),
}


class RunError(RuntimeError):
    """A run folder that cannot be started or resumed; the message says why."""


@dataclass(frozen=True)
class GridPoint:
    """One setting to measure: a scheme, its generation settings, the agents and a seed."""

    id: str
    config: str  # the id without the seed: repetitions of one configuration share it
    scheme: str
    generation: Generation
    agents: int  # agents drafting (0 for the in-process schemes)
    seed: int

    def params(self) -> dict[str, Any]:
        g = self.generation
        extra = {}
        if self.scheme in DISTRIBUTED:
            extra = {
                "draft_policy": g.draft_policy,
                "uplink_rate_bps": g.uplink_rate_bps,
                "batching": g.batching,
                "bandwidth_policy": g.bandwidth_policy,
                "verification": g.verification,  # "semantic" is WISV: lossy by design
                "hidden_upload": g.hidden_upload if g.verification == "semantic" else None,
            }
        return {
            "scheme": self.scheme,
            **{f: getattr(g, f) for f in SCHEME_FIELDS[self.scheme]},
            **extra,
            "agents": self.agents,
        }


def _point(scheme: str, generation: Generation, agents: int, seed: int) -> GridPoint:
    if scheme == "full-distribution":
        generation = replace(generation, index_dtype="none", prob_dtype="float32", sampling="full")
    if scheme == "colocated":
        # no wire: the verifier sees the drafter's own distribution
        generation = replace(generation, index_dtype="none", prob_dtype="float32")
    if scheme not in DISTRIBUTED:
        agents = 0
    generation = replace(generation, seed=seed)
    keys = [f"{f}={getattr(generation, f)}" for f in SCHEME_FIELDS[scheme]]
    if scheme in DISTRIBUTED:
        # named only when set, so that profiles without them keep short ids
        if generation.draft_policy != "fixed":
            keys.append(f"draft_policy={generation.draft_policy},gamma_max={generation.gamma_max}")
        if generation.uplink_rate_bps is not None:
            keys.append(f"uplink_rate_bps={generation.uplink_rate_bps:g}")
        if generation.bandwidth_policy != "none":
            keys.append(f"bandwidth_policy={generation.bandwidth_policy}")
        if generation.batching != "auto":
            keys.append(f"batching={generation.batching}")
        if generation.verification == "semantic":  # WISV: the id itself, and so summary.csv, says it is lossy
            keys.append(f"verification=semantic-lossy,hidden_upload={generation.hidden_upload}")
        keys.append(f"agents={agents}")
    config = f"{scheme}:" + ",".join(keys)
    return GridPoint(f"{config},seed={seed}", config, scheme, generation, agents, seed)


def expand_grid(experiment: Experiment) -> list[GridPoint]:
    """Every point of the run, in the order it runs: per seed, the baselines, then the top-K grid.

    The sweep is the Cartesian product of its fields in profile order; a
    baseline is measured once for each distinct setting of the fields it
    depends on (e.g. the full-distribution baseline once per γ and
    temperature), so each top-K point has a baseline to be compared with.
    """
    names = [n for n in experiment.sweep if n != "variants"]
    combos = [dict(zip(names, values, strict=True)) for values in _product([experiment.sweep[n] for n in names])]
    variants = experiment.sweep.get("variants")
    if variants:
        combos = [{**combo, **variant} for combo in combos for variant in variants]
    points: list[GridPoint] = []
    seen: set[str] = set()

    def add(p: GridPoint) -> None:
        if p.id not in seen:
            seen.add(p.id)
            points.append(p)

    for seed in experiment.seeds:
        settings = []
        for combo in combos:
            agents = combo.get("agents", experiment.agents)
            gen = replace(experiment.generation, **{k: v for k, v in combo.items() if k != "agents"})
            settings.append((gen, agents))
        for baseline in ("target-only", "colocated", "full-distribution"):
            if baseline in experiment.baselines:
                for gen, agents in settings:
                    add(_point(baseline, gen, agents, seed))
        if experiment.distributed:
            for gen, agents in settings:
                add(_point("top-k", gen, agents, seed))
    return points


def _product(lists: list[list]) -> list[tuple]:
    import itertools

    return list(itertools.product(*lists)) if lists else [()]


def single_point(experiment: Experiment, agents: int) -> list[GridPoint]:
    """The grid of ``specbed local``/``serve``: the profile's generation settings, top-K, ``agents`` agents.

    The sweep, the seeds and the baselines of the profile are not run; the
    point's seed is the generation's, so prompts get the seeds they get in a
    ``specbed run`` of the same settings.
    """
    return [_point("top-k", experiment.generation, agents, experiment.generation.seed)]

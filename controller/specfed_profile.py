"""``scheme: specfed`` experiment profiles: a drafter, M workers with weights, a K x strategy grid.

A SpecFed profile (``profiles/experiments/specfed.yaml``) has the fields of
an experiment that make sense here (``name``, ``description``, ``models``
(the pair's drafter drafts; its tokenizer is the workers'), ``prompts``,
``generation``, ``sweep`` over ``top_k`` and ``reconstruction``, ``seeds``,
``links``) and its own:

``scheme``     ``specfed``
``drafter``    ``controller`` (default: the drafter runs in the controller
               process) or ``agent``: it runs in a drafting agent (``python -m
               agent --name drafter``, started for the run, or a remote
               ``specbed agent`` with ``--bind``) that drafts as for the
               distributed scheme, sends q dense in float32 and applies the
               verdicts; the controller forwards its drafts to the workers
               (``controller.specfed_drafting``)
``workers``    a list of ``{name, model, weight | data_size}``: each worker's
               model spec (sharing the drafter's tokenizer) and its weight
               w_m, given or proportional to a declared data size; the
               weights are normalised to sum to 1
``baselines``  ``[dense]`` or ``[]``: the dense-aggregation baseline, every
               worker sending its full p_m in float32
``measure``    true (default): workers also send their dense p_m every
               round as measurement traffic, for the exact error quantities
``round_timeout_s``  a worker that has not answered a round after this long
               is lost (default 120)

Loading validates every field; ``ProfileError`` names the file and field.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from agent.models import ModelError, validate_spec
from agent.protocol import RECONSTRUCTIONS
from controller.profiles import (
    Generation,
    ModelPair,
    ProfileError,
    Prompt,
    load_generation,
    load_links,
    load_model_pair,
    select_prompts,
)
from controller.profiles.loaders.files import _read_yaml, _resolve, _typed, _unknown

SPECFED = "specfed"
DRAFTER_PLACES = ("controller", "agent")
DRAFTER_AGENT = "drafter"  # the drafting agent's name under ``drafter: agent``
FIELDS = (
    "name",
    "description",
    "scheme",
    "models",
    "prompts",
    "drafter",
    "workers",
    "generation",
    "sweep",
    "baselines",
    "measure",
    "seeds",
    "links",
    "round_timeout_s",
    "telemetry",
    "devices",
)


@dataclass(frozen=True)
class WorkerSpec:
    name: str
    model: dict
    weight: float  # normalised w_m


@dataclass(frozen=True)
class SpecFedPoint:
    """One setting: top-K payloads with a strategy, or the dense aggregation (``dense``)."""

    id: str
    generation: Generation
    dense: bool
    seed: int

    def params(self) -> dict[str, Any]:
        g = self.generation
        return {
            "scheme": "specfed-dense" if self.dense else SPECFED,
            "top_k": None if self.dense else g.top_k,
            "reconstruction": None if self.dense else g.reconstruction,
            "prob_dtype": g.prob_dtype,
            "draft_length": g.draft_length,
            "temperature": g.temperature,
        }


@dataclass(frozen=True)
class SpecFedExperiment:
    name: str
    path: str
    models: ModelPair
    prompts: list[Prompt]
    workers: list[WorkerSpec]
    generation: Generation
    sweep: dict[str, list] = field(default_factory=dict)
    baselines: list[str] = field(default_factory=list)
    measure: bool = True
    seeds: list[int] = field(default_factory=lambda: [0])
    links: dict = field(default_factory=dict)
    round_timeout_s: float = 120.0
    drafter: str = "controller"
    description: str = ""

    def grid(self) -> list[SpecFedPoint]:
        """Per seed: the dense baseline, then top_k x reconstruction in profile order."""
        points = []
        ks = self.sweep.get("top_k", [self.generation.top_k])
        strategies = self.sweep.get("reconstruction", [self.generation.reconstruction])
        for seed in self.seeds:
            g = replace(self.generation, seed=seed)
            if "dense" in self.baselines:
                dense = replace(g, index_dtype="none", prob_dtype="float32")
                points.append(SpecFedPoint(f"specfed-dense:seed={seed}", dense, True, seed))
            for k in ks:
                for strategy in strategies:
                    gk = replace(g, top_k=k, reconstruction=strategy)
                    pid = f"specfed:top_k={k},reconstruction={strategy},prob_dtype={g.prob_dtype},seed={seed}"
                    points.append(SpecFedPoint(pid, gk, False, seed))
        return points


def is_specfed(ref: str | None) -> bool:
    """Whether an experiment profile names ``scheme: specfed`` (unreadable files: not ours to judge)."""
    if not ref:
        return False
    try:
        return _read_yaml(_resolve(ref, "experiments", ".yaml")).get("scheme") == SPECFED
    except ProfileError:
        return False


def _workers(path: Path, data: Any) -> list[WorkerSpec]:
    _typed(path, "workers", data, list, "a list of {name, model, weight | data_size}")
    if not data:
        raise ProfileError(f"{path}: workers: at least one worker is needed")
    names, raw = set(), []
    for i, w in enumerate(data):
        where = f"workers[{i}]"
        _typed(path, where, w, dict, "a mapping with name, model and weight or data_size")
        _unknown(path, where, w, {"name", "model", "weight", "data_size"})
        name = _typed(path, f"{where}.name", w.get("name"), str, "a worker name")
        if name in names:
            raise ProfileError(f"{path}: {where}.name: {name!r} is repeated")
        names.add(name)
        try:
            validate_spec(w.get("model"), f"{where}.model")
        except ModelError as exc:
            raise ProfileError(f"{path}: {exc}") from None
        if ("weight" in w) == ("data_size" in w):
            raise ProfileError(f"{path}: {where}: give weight or data_size (one of them)")
        key = "weight" if "weight" in w else "data_size"
        value = _typed(path, f"{where}.{key}", w[key], (int, float), "a positive number")
        if not value > 0:
            raise ProfileError(f"{path}: {where}.{key}: expected a positive number, got {value}")
        raw.append((name, w["model"], float(value), key))
    if len({key for *_, key in raw}) > 1:
        raise ProfileError(f"{path}: workers: give every worker a weight, or every worker a data_size")
    total = sum(v for _, _, v, _ in raw)
    return [WorkerSpec(name, model, v / total) for name, model, v, _ in raw]


def load_specfed(ref: str) -> SpecFedExperiment:
    path = _resolve(ref, "experiments", ".yaml")
    data = _read_yaml(path)
    _unknown(path, "experiment", data, FIELDS)
    if data.get("scheme") != SPECFED:
        raise ProfileError(f"{path}: scheme: expected {SPECFED!r}, got {data.get('scheme')!r}")
    name = _typed(path, "name", data.get("name", path.stem), str, "a name")
    models = load_model_pair(_typed(path, "models", data.get("models"), str, "a model pair name"))
    prompts, _ = select_prompts(path, data.get("prompts"))
    drafter = data.get("drafter", "controller")
    if drafter not in DRAFTER_PLACES:
        raise ProfileError(f"{path}: drafter: expected one of {', '.join(DRAFTER_PLACES)}, got {drafter!r}")
    workers = _workers(path, data.get("workers"))
    if drafter == "agent" and any(w.name == DRAFTER_AGENT for w in workers):
        raise ProfileError(f"{path}: workers: {DRAFTER_AGENT!r} is the drafting agent's name under drafter: agent")
    generation = load_generation(path, data.get("generation"))
    sweep = _typed(path, "sweep", data.get("sweep") or {}, dict, "a mapping of top_k and reconstruction lists")
    _unknown(path, "sweep", sweep, {"top_k", "reconstruction"})
    for key, values in sweep.items():
        _typed(path, f"sweep.{key}", values, list, "a non-empty list")
        if not values:
            raise ProfileError(f"{path}: sweep.{key}: expected a non-empty list")
    for i, k in enumerate(sweep.get("top_k", [])):
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ProfileError(f"{path}: sweep.top_k[{i}]: expected a positive integer, got {k!r}")
    for i, s in enumerate(sweep.get("reconstruction", [])):
        if s not in RECONSTRUCTIONS:
            raise ProfileError(f"{path}: sweep.reconstruction[{i}]: expected one of {RECONSTRUCTIONS}, got {s!r}")
    baselines = _typed(path, "baselines", data.get("baselines", []), list, "a list: [dense] or []")
    for i, b in enumerate(baselines):
        if b != "dense":
            raise ProfileError(f"{path}: baselines[{i}]: expected 'dense', got {b!r}")
    measure = data.get("measure", True)
    if not isinstance(measure, bool):
        raise ProfileError(f"{path}: measure: expected true or false, got {measure!r}")
    seeds = _typed(path, "seeds", data.get("seeds", [generation.seed]), list, "a list of integers")
    for i, s in enumerate(seeds):
        _typed(path, f"seeds[{i}]", s, int, "an integer")
    timeout = _typed(path, "round_timeout_s", data.get("round_timeout_s", 120.0), (int, float), "seconds")
    if not timeout > 0:
        raise ProfileError(f"{path}: round_timeout_s: expected seconds > 0, got {timeout}")
    return SpecFedExperiment(
        name=name,
        path=str(path),
        models=models,
        prompts=prompts,
        workers=workers,
        generation=generation,
        sweep=sweep,
        baselines=list(baselines),
        measure=measure,
        seeds=list(seeds),
        links=load_links(path, data.get("links")),
        round_timeout_s=float(timeout),
        drafter=drafter,
        description=str(data.get("description", "")),
    )

"""Experiment profiles: every section an experiment names, checked before anything starts, into one ``Experiment``."""

from __future__ import annotations

import difflib
from dataclasses import asdict, dataclass, field
from typing import Any

from controller.liveness import load_liveness
from controller.profiles.base import ProfileError, check
from controller.profiles.experiment import (
    BASELINES,
    ExperimentProfile,
)
from controller.profiles.loaders.files import _read_yaml, _resolve, _typed, _unknown
from controller.profiles.loaders.generation import Generation, load_generation, load_sweep
from controller.profiles.loaders.hosts import Device, load_device
from controller.profiles.loaders.links import load_links
from controller.profiles.loaders.models import ModelPair, load_model_pair
from controller.profiles.loaders.prompts import Prompt, load_prompts, select_prompts


@dataclass(frozen=True)
class Experiment:
    name: str
    models: ModelPair
    prompts: list[Prompt]
    prompts_source: str
    agents: int = 2
    generation: Generation = field(default_factory=Generation)
    path: str = ""
    telemetry_rate_hz: float = 20.0  # samples per second on every host
    telemetry_host_sampler: str = "psutil"  # CPU/memory source: psutil | procfs
    description: str = ""
    sweep: dict[str, list] = field(default_factory=dict)  # SWEEPABLE field -> values, in grid order
    baselines: list[str] = field(default_factory=list)  # of BASELINES
    distributed: bool = True  # run the distributed top-K grid (False: baselines only)
    seeds: list[int] = field(default_factory=lambda: [0])  # one repetition per seed
    controller_device: Device | None = None
    agent_device: Device | None = None
    links: dict = field(default_factory=dict)  # see load_links
    dtypes: dict = field(default_factory=lambda: {"target": "auto", "drafter": "auto"})  # see controller.placement
    liveness: Any = None  # controller.liveness.Liveness: heartbeats and the round deadline

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


EXPERIMENT_FIELDS = set(ExperimentProfile.model_fields)


def load_experiment(ref: str, prompts: str | None = None, **overrides: Any) -> Experiment:
    """Load and validate an experiment profile; ``overrides`` replace generation fields.

    Everything an experiment names is checked here, before anything starts:
    the model pair (local paths must hold a model), the prompts, the devices,
    every grid point of the sweep.
    """
    path = _resolve(ref, "experiments", ".yaml")
    data = _read_yaml(path)
    from controller.placement import load_dtypes

    # these sections' own loaders first: their messages name the role or the setting
    dtypes = load_dtypes(path, data.get("dtype"))
    liveness = load_liveness(path, data.get("liveness"))
    check(ExperimentProfile, data, path, "experiment")
    telemetry = data.get("telemetry") or {}
    if not isinstance(telemetry, dict):
        raise ProfileError(f"{path}: telemetry: expected a mapping with rate_hz")
    _unknown(path, "telemetry", telemetry, {"rate_hz", "host_sampler"})
    host_sampler = telemetry.get("host_sampler", "psutil")
    if host_sampler not in ("psutil", "procfs"):
        raise ProfileError(f"{path}: telemetry.host_sampler: expected one of psutil, procfs, got {host_sampler!r}")
    rate = _typed(path, "telemetry.rate_hz", telemetry.get("rate_hz", 20.0), (int, float), "a rate in Hz")
    if not 0 < rate <= 1000:
        raise ProfileError(f"{path}: telemetry.rate_hz: expected a rate in (0, 1000] Hz, got {rate}")
    models = _typed(path, "models", data.get("models"), str, "the name or path of a model-pair profile")
    if prompts is not None:
        prompt_list, prompts_source = load_prompts(prompts), str(_resolve(prompts, "prompts", ".jsonl"))
    else:
        if "prompts" not in data:
            raise ProfileError(f"{path}: prompts: missing (the name or path of a prompts JSONL file)")
        try:
            prompt_list, prompts_source = select_prompts(path, data["prompts"])
        except ProfileError as exc:
            if str(exc).startswith(str(path)):
                raise
            raise ProfileError(f"{path}: prompts: {exc}") from None
    agents = _typed(path, "agents", data.get("agents", 2), int, "a positive integer")
    if agents < 1:
        raise ProfileError(f"{path}: agents: expected a positive integer, got {agents}")
    gen = dict(data.get("generation") or {})
    gen.update({k: v for k, v in overrides.items() if v is not None})
    generation = load_generation(path, gen)
    sweep = load_sweep(path, data.get("sweep"), generation)
    baselines = _typed(path, "baselines", data.get("baselines", []), list, f"a list of: {', '.join(BASELINES)}")
    for i, name in enumerate(baselines):
        if name not in BASELINES:
            close = difflib.get_close_matches(str(name), BASELINES, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ProfileError(f"{path}: baselines[{i}]: expected one of {', '.join(BASELINES)}, got {name!r}{hint}")
    if len(set(baselines)) != len(baselines):
        raise ProfileError(f"{path}: baselines: a baseline is repeated")
    distributed = data.get("distributed", True)
    if not isinstance(distributed, bool):
        raise ProfileError(f"{path}: distributed: expected true or false, got {distributed!r}")
    if not distributed and not baselines:
        raise ProfileError(f"{path}: distributed: false leaves nothing to run (add baselines)")
    if "seeds" in data:
        seeds = _typed(path, "seeds", data["seeds"], list, "a list of integer seeds")
        for i, seed in enumerate(seeds):
            if _typed(path, f"seeds[{i}]", seed, int, "an integer >= 0") < 0:
                raise ProfileError(f"{path}: seeds[{i}]: expected an integer >= 0, got {seed}")
        if not seeds or len(set(seeds)) != len(seeds):
            raise ProfileError(f"{path}: seeds: expected a non-empty list of distinct seeds")
        if "repetitions" in data and data["repetitions"] != len(seeds):
            raise ProfileError(f"{path}: repetitions: {data['repetitions']} disagrees with {len(seeds)} seeds")
    else:
        reps = _typed(path, "repetitions", data.get("repetitions", 1), int, "a positive integer")
        if reps < 1:
            raise ProfileError(f"{path}: repetitions: expected a positive integer, got {reps}")
        seeds = [generation.seed + r for r in range(reps)]
    devices = data.get("devices") or {}
    if not isinstance(devices, dict):
        raise ProfileError(f"{path}: devices: expected a mapping with controller and agents device profiles")
    _unknown(path, "devices", devices, {"controller", "agents"})
    picked: dict[str, Device | None] = {}
    for role in ("controller", "agents"):
        ref_ = devices.get(role)
        if ref_ is None:
            picked[role] = None
            continue
        _typed(path, f"devices.{role}", ref_, str, "the name or path of a device profile")
        try:
            picked[role] = load_device(ref_)
        except ProfileError as exc:
            raise ProfileError(f"{path}: devices.{role}: {exc}") from None
    try:
        pair = load_model_pair(models)
    except ProfileError as exc:
        raise ProfileError(f"{path}: models: {exc}") from None
    links = load_links(path, data.get("links"))
    policies = {generation.bandwidth_policy, *sweep.get("bandwidth_policy", [])}
    policies |= {v.get("bandwidth_policy") for v in sweep.get("variants", [])} - {None}
    if policies - {"none"} and "band_hz" not in links:
        raise ProfileError(f"{path}: links.band_hz: bandwidth_policy {sorted(policies - {'none'})[0]} needs a band")
    return Experiment(
        name=str(data.get("name", path.stem)),
        models=pair,
        prompts=prompt_list,
        prompts_source=prompts_source,
        agents=agents,
        generation=generation,
        path=str(path),
        telemetry_rate_hz=float(rate),
        telemetry_host_sampler=host_sampler,
        description=str(data.get("description", "")),
        sweep=sweep,
        baselines=list(baselines),
        distributed=distributed,
        seeds=list(seeds),
        controller_device=picked["controller"],
        agent_device=picked["agents"],
        links=links,
        dtypes=dtypes,
        liveness=liveness,
    )

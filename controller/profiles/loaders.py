"""Profiles: YAML files under ``profiles/`` describing what to run.

``profiles/experiments/NAME.yaml`` names a model pair
(``profiles/models/NAME.yaml``), a prompt set (``profiles/prompts/NAME.jsonl``
or any JSONL path, optionally filtered by task), the number of agents, the
generation settings, repetitions and seeds, a sweep (a grid over generation
settings and the number of agents) and the baselines measured in the same
run.  ``profiles/devices/NAME.yaml`` describes a kind of host;
``profiles/testbeds/NAME.yaml`` the hosts of a lab.  Every file is validated
on load; ``ProfileError`` names the file, the field and what was expected.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import asdict, dataclass, field, fields, make_dataclass, replace
from pathlib import Path
from typing import Any

import yaml

from agent.codec import RECONSTRUCTIONS
from agent.models import ModelError, validate_spec
from agent.protocol import PROB_DTYPES, SAMPLING_MODES
from controller.liveness import load_liveness
from controller.profiles.base import ProfileError, check
from controller.profiles.device import DeviceProfile
from controller.profiles.experiment import (
    BANDWIDTH_POLICIES,
    BASELINES,
    BATCHING_MODES,
    INDEX_ENCODINGS,
    SWEEPABLE,
    ExperimentProfile,
    GenerationProfile,
)
from controller.profiles.models import ModelPairProfile
from controller.profiles.testbed import TestbedProfile

PROFILES_DIR = Path(__file__).resolve().parent.parent.parent / "profiles"


def _generation_dataclass() -> type:
    """``Generation``: a frozen dataclass with ``GenerationProfile``'s fields and defaults.

    One place per setting: a new generation field is added to
    ``controller.profiles.experiment.GenerationProfile`` only.
    """
    spec = [(n, f.annotation, field(default=f.default)) for n, f in GenerationProfile.model_fields.items()]
    cls = make_dataclass("Generation", spec, frozen=True)
    cls.__module__ = __name__
    cls.__doc__ = "Generation settings of an experiment (fields: ``GenerationProfile``)."
    return cls


Generation = _generation_dataclass()


@dataclass(frozen=True)
class ModelPair:
    name: str
    target: dict
    drafter: dict
    path: str


@dataclass(frozen=True)
class Prompt:
    id: str
    prompt: str | None  # text, chat template applied when the model has one
    prompt_token_ids: list[int] | None  # or token ids given directly
    task: str | None = None  # chat, code, maths, summarisation, translation, ...
    where: str = ""  # file:line it was read from, for errors found later (token ids vs the target's vocabulary)


@dataclass(frozen=True)
class Device:
    """``profiles/devices/NAME.yaml``: a kind of host, what it runs models on and what it can measure."""

    name: str
    role: str  # "edge" | "server" | "any"
    torch_device: str  # "cpu" | "cuda"
    threads: int | None  # torch CPU threads (None: torch's choice)
    memory_gb: float | None
    accelerator: str | None
    memory_bandwidth_gbs: float | None  # peak DRAM bandwidth, for memory-bound floors
    power_sources: list[str]
    description: str
    path: str


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


def _resolve(ref: str, kind: str, suffix: str) -> Path:
    path = Path(ref).expanduser()
    if path.suffix in (".yaml", ".yml", ".jsonl") or path.exists():
        return path
    return PROFILES_DIR / kind / f"{ref}{suffix}"


def _read_yaml(path: Path) -> dict:
    if not path.is_file():
        raise ProfileError(f"{path}: no such profile")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ProfileError(f"{path}: not valid YAML ({exc})") from None
    if not isinstance(data, dict):
        raise ProfileError(f"{path}: expected a mapping at the top level")
    return data


def _typed(path: Path, where: str, value: Any, expected: type | tuple, what: str) -> Any:
    if isinstance(value, bool) or not isinstance(value, expected):
        raise ProfileError(f"{path}: {where}: expected {what}, got {value!r} ({type(value).__name__})")
    return value


def _unknown(path: Path, where: str, data: dict, allowed: set[str] | tuple) -> None:
    extra = sorted(set(data) - set(allowed), key=str)
    if extra:
        close = difflib.get_close_matches(str(extra[0]), [str(a) for a in allowed], n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ProfileError(
            f"{path}: {where}: unknown field {extra[0]!r}{hint}; allowed: {', '.join(sorted(map(str, allowed)))}"
        )


def load_model_pair(ref: str) -> ModelPair:
    path = _resolve(ref, "models", ".yaml")
    data = _read_yaml(path)
    check(ModelPairProfile, data, path, "model pair")
    for role in ("target", "drafter"):
        if role not in data:
            raise ProfileError(f"{path}: {role}: missing (a model spec with a 'source')")
        try:
            validate_spec(data[role], role)
        except ModelError as exc:
            raise ProfileError(f"{path}: {exc}") from None
    return ModelPair(str(data.get("name", path.stem)), data["target"], data["drafter"], str(path))


def load_prompts(ref: str) -> list[Prompt]:
    path = _resolve(ref, "prompts", ".jsonl")
    if not path.is_file():
        raise ProfileError(f"{path}: no such prompts file")
    prompts = []
    for lineno, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        where = f"{path}:{lineno}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ProfileError(f"{where}: not JSON ({exc.msg})") from None
        if not isinstance(obj, dict):
            raise ProfileError(f"{where}: expected a JSON object with a 'prompt' field")
        text, ids = obj.get("prompt"), obj.get("prompt_token_ids")
        if text is None and ids is None:
            raise ProfileError(f"{where}: prompt: missing (or give prompt_token_ids)")
        if text is not None and not isinstance(text, str):
            raise ProfileError(f"{where}: prompt: expected a string")
        if ids is not None and not (isinstance(ids, list) and ids):
            raise ProfileError(f"{where}: prompt_token_ids: expected a non-empty list of token ids")
        for t in ids or []:
            if isinstance(t, bool) or not isinstance(t, int) or not 0 <= t < 2**63:
                raise ProfileError(f"{where}: prompt_token_ids: {t!r} is not a token id (an integer in [0, 2^63))")
        task = obj.get("task")
        if task is not None and not isinstance(task, str):
            raise ProfileError(f"{where}: task: expected a string")
        prompts.append(Prompt(str(obj.get("id", f"p{len(prompts)}")), text, ids, task, where))
    if not prompts:
        raise ProfileError(f"{path}: no prompts")
    if len({p.id for p in prompts}) != len(prompts):
        raise ProfileError(f"{path}: id: prompt ids must be unique")
    return prompts


def check_token_ids(prompts: list[Prompt], vocab_size: int) -> None:
    """Refuse, before anything starts, a prompt whose token ids the target's vocabulary does not hold."""
    for p in prompts:
        bad = next((t for t in p.prompt_token_ids or [] if t >= vocab_size), None)
        if bad is not None:
            raise ProfileError(
                f"{p.where or 'prompts'}: prompt {p.id!r}: token id {bad} is outside the target's vocabulary "
                f"of {vocab_size} ids"
            )


PROMPT_FIELDS = {"source", "tasks", "per_task", "limit", "ids"}


def select_prompts(path: Path, spec: Any) -> tuple[list[Prompt], str]:
    """An experiment's ``prompts``: a set's name or path, or a mapping that filters one.

    Mapping fields: ``source`` (name or path), ``tasks`` (keep these task
    kinds, in this order), ``per_task`` (the first N of each task),
    ``limit`` (the first N overall), ``ids`` (exactly these prompts).
    """
    if isinstance(spec, str):
        return load_prompts(spec), str(_resolve(spec, "prompts", ".jsonl"))
    if not isinstance(spec, dict):
        raise ProfileError(f"{path}: prompts: expected the name or path of a prompts JSONL file, or a mapping")
    _unknown(path, "prompts", spec, PROMPT_FIELDS)
    source = _typed(path, "prompts.source", spec.get("source"), str, "the name or path of a prompts JSONL file")
    prompts = load_prompts(source)
    if "ids" in spec:
        ids = _typed(path, "prompts.ids", spec["ids"], list, "a list of prompt ids")
        by_id = {p.id: p for p in prompts}
        missing = [i for i in ids if i not in by_id]
        if missing:
            raise ProfileError(f"{path}: prompts.ids: {missing[0]!r} is not in {source}")
        prompts = [by_id[i] for i in ids]
    if "tasks" in spec:
        tasks = _typed(path, "prompts.tasks", spec["tasks"], list, "a list of task kinds")
        known = sorted({p.task for p in prompts if p.task})
        for t in tasks:
            if t not in known:
                raise ProfileError(
                    f"{path}: prompts.tasks: {t!r} is not a task of {source} (tasks: {', '.join(known)})"
                )
        prompts = [p for t in tasks for p in prompts if p.task == t]
    if "per_task" in spec:
        n = _typed(path, "prompts.per_task", spec["per_task"], int, "a positive integer")
        if n < 1:
            raise ProfileError(f"{path}: prompts.per_task: expected a positive integer, got {n}")
        seen: dict[str | None, int] = {}
        kept = []
        for p in prompts:
            seen[p.task] = seen.get(p.task, 0) + 1
            if seen[p.task] <= n:
                kept.append(p)
        prompts = kept
    if "limit" in spec:
        n = _typed(path, "prompts.limit", spec["limit"], int, "a positive integer")
        if n < 1:
            raise ProfileError(f"{path}: prompts.limit: expected a positive integer, got {n}")
        prompts = prompts[:n]
    if not prompts:
        raise ProfileError(f"{path}: prompts: the filters leave no prompt")
    return prompts, str(_resolve(source, "prompts", ".jsonl"))


def load_device(ref: str, where: str = "device") -> Device:
    """``profiles/devices/NAME.yaml``."""
    path = _resolve(ref, "devices", ".yaml")
    data = _read_yaml(path)
    check(DeviceProfile, data, path, where)
    allowed = {
        "name",
        "role",
        "torch_device",
        "threads",
        "memory_gb",
        "accelerator",
        "memory_bandwidth_gbs",
        "power_sources",
        "description",
    }
    _unknown(path, where, data, allowed)
    role = data.get("role", "any")
    if role not in ("edge", "server", "any"):
        raise ProfileError(f"{path}: role: expected one of edge, server, any, got {role!r}")
    torch_device = _typed(path, "torch_device", data.get("torch_device", "cpu"), str, "cpu, cuda or cuda:N")
    if not (torch_device == "cpu" or torch_device.startswith("cuda")):
        raise ProfileError(f"{path}: torch_device: expected cpu, cuda or cuda:N, got {torch_device!r}")
    threads = data.get("threads")
    if threads is not None and (_typed(path, "threads", threads, int, "a positive integer or null") < 1):
        raise ProfileError(f"{path}: threads: expected a positive integer or null, got {threads}")
    numbers = {}
    for key in ("memory_gb", "memory_bandwidth_gbs"):
        value = data.get(key)
        if value is not None and _typed(path, key, value, (int, float), "a positive number or null") <= 0:
            raise ProfileError(f"{path}: {key}: expected a positive number or null, got {value}")
        numbers[key] = None if value is None else float(value)
    sources = _typed(path, "power_sources", data.get("power_sources", []), list, "a list of sampler families")
    return Device(
        name=str(data.get("name", path.stem)),
        role=role,
        torch_device=torch_device,
        threads=threads,
        memory_gb=numbers["memory_gb"],
        accelerator=data.get("accelerator"),
        memory_bandwidth_gbs=numbers["memory_bandwidth_gbs"],
        power_sources=[str(x) for x in sources],
        description=str(data.get("description", "")),
        path=str(path),
    )


def check_generation(path: Path, g: Generation, where: str = "generation") -> Generation:
    """Types and ranges of generation settings; ``where`` prefixes the field names."""
    _typed(path, f"{where}.temperature", g.temperature, (int, float), "a number >= 0")
    if g.temperature < 0:
        raise ProfileError(f"{path}: {where}.temperature: expected a number >= 0, got {g.temperature}")
    for name, lo in (
        ("draft_length", 1),
        ("top_k", 1),
        ("max_new_tokens", 1),
        ("seed", 0),
        ("gamma_max", 1),
        ("realloc_rounds", 1),
    ):
        value = _typed(path, f"{where}.{name}", getattr(g, name), int, f"an integer >= {lo}")
        if value < lo:
            raise ProfileError(f"{path}: {where}.{name}: expected an integer >= {lo}, got {value}")
    for name, allowed in (
        ("prob_dtype", tuple(PROB_DTYPES)),
        ("sampling", SAMPLING_MODES),
        ("reconstruction", RECONSTRUCTIONS),
        ("index_dtype", INDEX_ENCODINGS),
        ("batching", BATCHING_MODES),
        ("bandwidth_policy", BANDWIDTH_POLICIES),
    ):
        if getattr(g, name) not in allowed:
            raise ProfileError(
                f"{path}: {where}.{name}: expected one of {', '.join(allowed)}, got {getattr(g, name)!r}"
            )
    window = _typed(path, f"{where}.batch_window_s", g.batch_window_s, (int, float), "seconds >= 0")
    if not 0 <= window < 60:
        raise ProfileError(f"{path}: {where}.batch_window_s: expected seconds in [0, 60), got {window}")
    if g.draft_length > g.gamma_max:
        raise ProfileError(f"{path}: {where}.draft_length: {g.draft_length} exceeds gamma_max {g.gamma_max}")
    if g.uplink_rate_bps is not None:
        rate = _typed(path, f"{where}.uplink_rate_bps", g.uplink_rate_bps, (int, float), "a rate in bit/s")
        if rate <= 0:
            raise ProfileError(f"{path}: {where}.uplink_rate_bps: expected a positive rate in bit/s, got {rate}")
    from controller.policies import policy_class

    try:
        policy_class(_typed(path, f"{where}.draft_policy", g.draft_policy, str, "a policy name"))
    except ValueError as exc:
        raise ProfileError(f"{path}: {where}.draft_policy: {exc}") from None
    return g


def load_links(path: Path, data: Any) -> dict:
    """``links``: emulated links, ``up``/``down`` for every agent and per-agent overrides.

    ``{up: LINK, down: LINK, seed: int, band_hz: Hz, agents: {NAME: {up: LINK, down: LINK, draft_delay_s: s}}}``;
    LINK fields are those of ``agent.link``; a ``trace_file`` (CSV ``t_s,value``) is read into ``trace``.
    ``band_hz`` is an uplink band the agents share (FDMA): each agent's uplink is then an SNR link
    (``snr_db`` or an SNR trace) whose ``bandwidth_hz`` the generation's ``bandwidth_policy`` sets.
    """
    from agent.link import Link, LinkError

    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ProfileError(f"{path}: links: expected a mapping with up, down, seed, agents")
    _unknown(path, "links", data, {"up", "down", "seed", "agents", "band_hz"})

    def link(where: str, spec: Any) -> dict:
        if spec is None:
            return {}
        if not isinstance(spec, dict):
            raise ProfileError(f"{path}: {where}: expected a mapping of link fields")
        spec = dict(spec)
        if "trace_file" in spec:
            spec["trace"] = read_trace(path, where, spec.pop("trace_file"))
        try:
            Link({"bandwidth_hz": 1.0, **spec} if band and where.endswith(".up") else spec)
        except LinkError as exc:
            raise ProfileError(f"{path}: {where}.{exc}") from None
        return spec

    band = data.get("band_hz")
    if band is not None:
        from agent.link import parse_bandwidth

        band = _positive_quantity(path, "links.band_hz", band, parse_bandwidth, "bandwidth in Hz")

    out: dict[str, Any] = {"up": link("links.up", data.get("up")), "down": link("links.down", data.get("down"))}
    out["seed"] = _typed(path, "links.seed", data.get("seed", 0), int, "an integer")
    if band is not None:
        out["band_hz"] = float(band)
    agents = data.get("agents") or {}
    if not isinstance(agents, dict):
        raise ProfileError(f"{path}: links.agents: expected a mapping of agent name to up/down/draft_delay_s")
    out["agents"] = {}
    for name, spec in agents.items():
        spec = spec or {}
        _unknown(path, f"links.agents.{name}", spec, {"up", "down", "draft_delay_s"})
        delay = _typed(
            path, f"links.agents.{name}.draft_delay_s", spec.get("draft_delay_s", 0.0), (int, float), "seconds"
        )
        if delay < 0:
            raise ProfileError(f"{path}: links.agents.{name}.draft_delay_s: expected seconds >= 0, got {delay}")
        out["agents"][str(name)] = {
            "up": link(f"links.agents.{name}.up", spec.get("up")),
            "down": link(f"links.agents.{name}.down", spec.get("down")),
            "draft_delay_s": float(delay),
        }
    if band is not None:
        for name, spec in [("links.up", out["up"])] + [
            (f"links.agents.{n}.up", a["up"]) for n, a in out["agents"].items()
        ]:
            if "rate_bps" in spec or spec.get("trace_kind", "rate") == "rate" and "trace" in spec:
                raise ProfileError(f"{path}: {name}: with links.band_hz an uplink has snr_db or an SNR trace, no rate")
        for n, a in out["agents"].items():
            up = {**out["up"], **a["up"]}
            if "snr_db" not in up and "trace" not in up:
                raise ProfileError(f"{path}: links.agents.{n}.up.snr_db: each agent sharing links.band_hz needs an SNR")
    return out


def read_trace(path: Path, where: str, ref: Any) -> list[list[float]]:
    """A trace CSV (``t_s,value`` per line, a header line allowed), relative to the profile's folder."""
    trace_path = Path(_typed(path, f"{where}.trace_file", ref, str, "a CSV path")).expanduser()
    if not trace_path.is_absolute():
        trace_path = path.parent / trace_path if (path.parent / trace_path).exists() else PROFILES_DIR / trace_path
    if not trace_path.is_file():
        raise ProfileError(f"{path}: {where}.trace_file: {ref} not found")
    rows = []
    for i, line in enumerate(trace_path.read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        cells = line.split(",")
        try:
            rows.append([float(cells[0]), float(cells[1])])
        except (ValueError, IndexError):
            if i == 1:
                continue  # a header
            raise ProfileError(f"{trace_path}:{i}: expected t_s,value") from None
    if not rows:
        raise ProfileError(f"{trace_path}: no rows")
    return rows


def load_generation(path: Path, data: Any) -> Generation:
    if not isinstance(data, dict):
        raise ProfileError(f"{path}: generation: expected a mapping")
    names = {f.name for f in fields(Generation)}
    _unknown(path, "generation", data, names)
    data = dict(data)
    if data.get("uplink_rate_bps") is not None:
        data["uplink_rate_bps"] = _rate(path, "generation.uplink_rate_bps", data["uplink_rate_bps"])
    return check_generation(path, Generation(**data))


def _rate(path: Path, where: str, value: Any) -> float:
    from agent.link import parse_rate

    return _positive_quantity(path, where, value, parse_rate, "rate in bit/s")


def _positive_quantity(path: Path, where: str, value: Any, parse, what: str) -> float:
    """A positive number with optional units (``parse`` from agent.link); errors name the field."""
    from agent.link import LinkError

    try:
        number = parse(value)
    except LinkError as exc:
        raise ProfileError(f"{path}: {where}: {exc}") from None
    if not number > 0:
        raise ProfileError(f"{path}: {where}: expected a positive {what}, got {value!r}")
    return number


def load_sweep(path: Path, data: Any, base: Generation) -> dict[str, list]:
    """``sweep``: field -> list of values (a Cartesian product), and optionally ``variants``.

    ``variants`` is a list of mappings of sweepable fields, each combined with
    every point of the product (e.g. fixed γ = 1, 2, 4, 8 and an adaptive
    policy, at every uplink rate).  Every combination is checked now, before
    anything runs.
    """
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ProfileError(f"{path}: sweep: expected a mapping of field to a list of values")
    _unknown(path, "sweep", data, (*SWEEPABLE, "variants"))
    sweep: dict[str, list] = {}

    def check(where: str, name: str, value: Any, gen: Generation) -> tuple[Generation, Any]:
        """The generation with the value set, and the value as the sweep keeps it (a rate in bit/s)."""
        if name == "agents":
            if _typed(path, where, value, int, "a positive integer") < 1:
                raise ProfileError(f"{path}: {where}: expected a positive integer, got {value}")
            return gen, value
        if name == "uplink_rate_bps":
            value = None if value is None else _rate(path, where, value)
            return replace(gen, uplink_rate_bps=value), value
        return check_generation(path, replace(gen, **{name: value}), where=f"{where} ->"), value

    for name, values in data.items():
        if name == "variants":
            continue
        if not isinstance(values, list) or not values:
            raise ProfileError(f"{path}: sweep.{name}: expected a non-empty list of values, got {values!r}")
        if len(set(map(repr, values))) != len(values):
            raise ProfileError(f"{path}: sweep.{name}: a value is repeated")
        sweep[name] = [check(f"sweep.{name}[{i}]", name, value, base)[1] for i, value in enumerate(values)]
    if "variants" in data:
        variants = data["variants"]
        if not isinstance(variants, list) or not variants:
            raise ProfileError(f"{path}: sweep.variants: expected a non-empty list of mappings")
        sweep["variants"] = []
        for i, variant in enumerate(variants):
            if not isinstance(variant, dict) or not variant:
                raise ProfileError(f"{path}: sweep.variants[{i}]: expected a mapping of sweepable fields")
            _unknown(path, f"sweep.variants[{i}]", variant, SWEEPABLE)
            both = set(variant) & set(sweep)
            if both:
                raise ProfileError(f"{path}: sweep.variants[{i}].{sorted(both)[0]}: also swept as a list; use one")
            gen, kept = base, {}
            for name, value in variant.items():
                gen, kept[name] = check(f"sweep.variants[{i}].{name}", name, value, gen)
            sweep["variants"].append(kept)
    return sweep


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


# --- testbeds --------------------------------------------------------------------------------------

TESTBED_AGENT_FIELDS = {"agent_name", "nvpmodel_mode", "uplink_rate", "agent_device"}


@dataclass(frozen=True)
class Testbed:
    """``profiles/testbeds/NAME.yaml``: the hosts an experiment runs on, checked against an inventory.

    ``controller`` is the server the controller runs on (in the inventory's
    ``servers`` group); ``agents`` maps every host of the ``jetsons`` group
    to the per-device settings that the inventory must agree with.
    """

    name: str
    inventory: str  # resolved path
    controller: str
    agents: dict[str, dict[str, Any]]
    path: str


def load_testbed(ref: str) -> Testbed:
    path = _resolve(ref, "testbeds", ".yaml")
    data = _read_yaml(path)
    check(TestbedProfile, data, path, "testbed")
    for key in ("inventory", "controller"):
        _typed(path, key, data.get(key), str, "a string")
    agents = _typed(path, "agents", data.get("agents"), dict, "a mapping of host name to settings")
    for host, settings in agents.items():
        settings = {} if settings is None else _typed(path, f"agents.{host}", settings, dict, "a mapping")
        _unknown(path, f"agents.{host}", settings, TESTBED_AGENT_FIELDS)
        _host_values(path, host, settings)
        agents[host] = settings
    inventory = Path(data["inventory"]).expanduser()
    if not inventory.is_absolute():
        # relative to the working folder, else to the repository (bundled profiles)
        inventory = inventory if inventory.exists() else PROFILES_DIR.parent / inventory
    if not inventory.exists():
        raise ProfileError(f"{path}: inventory: {data['inventory']} not found")
    return Testbed(str(data.get("name", path.stem)), str(inventory), data["controller"], agents, str(path))


def _host_values(path: Path, host: str, settings: dict) -> None:
    """Values that reach a board (names, rates) must match controller.hostvalues' grammar."""
    from controller.hostvalues import HostValueError, check_value, check_values

    try:
        check_value("agent_name", host, f"{path}: agents: host name ")
        check_values(settings, f"{path}: agents.{host}.")
    except HostValueError as exc:
        raise ProfileError(str(exc)) from None

"""Profiles: YAML files under ``profiles/`` describing what to run.

``profiles/experiments/NAME.yaml`` names a model pair
(``profiles/models/NAME.yaml``), a prompt set (``profiles/prompts/NAME.jsonl``
or any JSONL path), the number of agents and the generation settings.  Every
file is validated on load; ``ProfileError`` names the file and the field.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from agent.models import ModelError, validate_spec
from agent.protocol import PROB_DTYPES, SAMPLING_MODES
from controller.verify import RECONSTRUCTIONS

PROFILES_DIR = Path(__file__).resolve().parent.parent / "profiles"


class ProfileError(Exception):
    """A profile that cannot be used; the message names the file and the field."""


@dataclass(frozen=True)
class Generation:
    """Generation settings of an experiment."""

    temperature: float = 0.0  # 0 = greedy
    draft_length: int = 4  # γ
    top_k: int = 8  # K
    prob_dtype: str = "float16"
    sampling: str = "full"  # "full" | "top-k"
    reconstruction: str = "tail-fill"  # "renormalise" | "tail-fill"
    max_new_tokens: int = 48
    seed: int = 0


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


def _unknown(path: Path, where: str, data: dict, allowed: set[str]) -> None:
    extra = sorted(set(data) - allowed)
    if extra:
        raise ProfileError(f"{path}: {where}: unknown field {extra[0]!r}; allowed: {', '.join(sorted(allowed))}")


def load_model_pair(ref: str) -> ModelPair:
    path = _resolve(ref, "models", ".yaml")
    data = _read_yaml(path)
    _unknown(path, "model pair", data, {"name", "target", "drafter"})
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
        if ids is not None and not (isinstance(ids, list) and ids and all(isinstance(t, int) and t >= 0 for t in ids)):
            raise ProfileError(f"{where}: prompt_token_ids: expected a non-empty list of token ids")
        prompts.append(Prompt(str(obj.get("id", f"p{len(prompts)}")), text, ids))
    if not prompts:
        raise ProfileError(f"{path}: no prompts")
    if len({p.id for p in prompts}) != len(prompts):
        raise ProfileError(f"{path}: id: prompt ids must be unique")
    return prompts


def load_generation(path: Path, data: Any) -> Generation:
    if not isinstance(data, dict):
        raise ProfileError(f"{path}: generation: expected a mapping")
    names = {f.name for f in fields(Generation)}
    _unknown(path, "generation", data, names)
    g = Generation(**data)
    _typed(path, "generation.temperature", g.temperature, (int, float), "a number >= 0")
    if g.temperature < 0:
        raise ProfileError(f"{path}: generation.temperature: expected a number >= 0, got {g.temperature}")
    for name, lo in (("draft_length", 1), ("top_k", 1), ("max_new_tokens", 1), ("seed", 0)):
        value = _typed(path, f"generation.{name}", getattr(g, name), int, f"an integer >= {lo}")
        if value < lo:
            raise ProfileError(f"{path}: generation.{name}: expected an integer >= {lo}, got {value}")
    for name, allowed in (
        ("prob_dtype", PROB_DTYPES),
        ("sampling", SAMPLING_MODES),
        ("reconstruction", RECONSTRUCTIONS),
    ):
        if getattr(g, name) not in allowed:
            raise ProfileError(
                f"{path}: generation.{name}: expected one of {', '.join(allowed)}, got {getattr(g, name)!r}"
            )
    return g


def load_experiment(ref: str, prompts: str | None = None, **overrides: Any) -> Experiment:
    """Load and validate an experiment profile; ``overrides`` replace generation fields."""
    path = _resolve(ref, "experiments", ".yaml")
    data = _read_yaml(path)
    _unknown(path, "experiment", data, {"name", "models", "prompts", "agents", "generation", "telemetry"})
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
    prompts_ref = prompts or _typed(
        path, "prompts", data.get("prompts"), str, "the name or path of a prompts JSONL file"
    )
    agents = _typed(path, "agents", data.get("agents", 2), int, "a positive integer")
    if agents < 1:
        raise ProfileError(f"{path}: agents: expected a positive integer, got {agents}")
    gen = dict(data.get("generation") or {})
    gen.update({k: v for k, v in overrides.items() if v is not None})
    return Experiment(
        name=str(data.get("name", path.stem)),
        models=load_model_pair(models),
        prompts=load_prompts(prompts_ref),
        prompts_source=str(_resolve(prompts_ref, "prompts", ".jsonl")),
        agents=agents,
        generation=load_generation(path, gen),
        path=str(path),
        telemetry_rate_hz=float(rate),
        telemetry_host_sampler=host_sampler,
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
    _unknown(path, "testbed", data, {"name", "inventory", "controller", "agents"})
    for key in ("inventory", "controller"):
        _typed(path, key, data.get(key), str, "a string")
    agents = _typed(path, "agents", data.get("agents"), dict, "a mapping of host name to settings")
    for host, settings in agents.items():
        settings = {} if settings is None else _typed(path, f"agents.{host}", settings, dict, "a mapping")
        _unknown(path, f"agents.{host}", settings, TESTBED_AGENT_FIELDS)
        agents[host] = settings
    inventory = Path(data["inventory"]).expanduser()
    if not inventory.is_absolute():
        # relative to the working folder, else to the repository (bundled profiles)
        inventory = inventory if inventory.exists() else PROFILES_DIR.parent / inventory
    if not inventory.exists():
        raise ProfileError(f"{path}: inventory: {data['inventory']} not found")
    return Testbed(str(data.get("name", path.stem)), str(inventory), data["controller"], agents, str(path))

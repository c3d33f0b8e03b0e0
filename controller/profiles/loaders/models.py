"""Model-pair profiles (``profiles/models/NAME.yaml``): the target's and the drafter's specs."""

from __future__ import annotations

from dataclasses import dataclass

from agent.models import ModelError, validate_spec
from controller.profiles.base import ProfileError, check
from controller.profiles.loaders.files import _read_yaml, _resolve
from controller.profiles.models import ModelPairProfile


@dataclass(frozen=True)
class ModelPair:
    name: str
    target: dict
    drafter: dict
    path: str


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

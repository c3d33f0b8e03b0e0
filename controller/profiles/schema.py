"""JSON Schemas of the profile kinds (``specbed schema``), from the pydantic models."""

from __future__ import annotations

from typing import Any

from controller.profiles.device import DeviceProfile
from controller.profiles.experiment import ExperimentProfile
from controller.profiles.models import ModelPairProfile
from controller.profiles.testbed import TestbedProfile

#: kind -> (model, folder under profiles/)
KINDS = {
    "experiment": (ExperimentProfile, "experiments"),
    "model-pair": (ModelPairProfile, "models"),
    "device": (DeviceProfile, "devices"),
    "testbed": (TestbedProfile, "testbeds"),
}


def profile_schemas() -> dict[str, dict[str, Any]]:
    """kind -> JSON Schema (draft 2020-12) of its files."""
    out = {}
    for kind, (model, folder) in KINDS.items():
        schema = model.model_json_schema()
        schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
        schema["title"] = f"specbed {kind} profile (profiles/{folder}/NAME.yaml)"
        out[kind] = schema
    return out

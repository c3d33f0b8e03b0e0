"""``profiles/models/NAME.yaml``: a model pair (target and drafter specs, see ``agent.models``)."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from controller.profiles.base import Profile


class ModelPairProfile(Profile):
    """A target and a drafter; each spec's fields depend on its ``source`` and are checked by ``agent.models``."""

    name: str | None = Field(None, description="the pair's name (default: the file name)")
    target: dict[str, Any] = Field(description="a model spec with a 'source'")
    drafter: dict[str, Any] = Field(description="a model spec with a 'source'")

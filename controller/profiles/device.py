"""``profiles/devices/NAME.yaml``: a kind of host, what it runs models on and what it can measure."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from controller.profiles.base import Profile


class DeviceProfile(Profile):
    name: str | None = Field(None, description="the device's name (default: the file name)")
    role: Literal["edge", "server", "any"] = Field("any", description="one of edge, server, any")
    torch_device: str = Field("cpu", pattern=r"^(cpu|cuda(:\d+)?)$", description="cpu, cuda or cuda:N")
    threads: int | None = Field(None, ge=1, description="a positive integer or null")
    memory_gb: float | None = Field(None, gt=0, description="a positive number or null")
    accelerator: str | None = Field(None, description="the accelerator's name, or null")
    memory_bandwidth_gbs: float | None = Field(None, gt=0, description="a positive number or null")
    power_sources: list[str] = Field(default_factory=list, description="a list of sampler families")
    description: str = Field("", description="a string")

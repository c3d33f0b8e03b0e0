"""``profiles/testbeds/NAME.yaml``: the hosts of a lab, checked against an Ansible inventory."""

from __future__ import annotations

from pydantic import Field

from controller.profiles.base import Profile


class TestbedAgent(Profile):
    """Per-device settings the inventory's host_vars must agree with."""

    agent_name: str | None = Field(None, description="a string")
    nvpmodel_mode: int | None = Field(None, description="an integer")
    uplink_rate: str | None = Field(None, description="a tc rate such as 20mbit")
    agent_device: str | None = Field(None, description="a device profile name")


class TestbedProfile(Profile):
    __test__ = False  # not a pytest class

    name: str | None = Field(None, description="the testbed's name (default: the file name)")
    inventory: str = Field(description="a string")
    controller: str = Field(description="a string")
    agents: dict[str, TestbedAgent | None] = Field(description="a mapping of host name to settings")

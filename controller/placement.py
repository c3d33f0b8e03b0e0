"""Where each model of an experiment runs, and in which dtype.

Two roles run a model: the ``target`` (on the controller's host, also the
drafter of the ``colocated`` baseline) and the ``drafter`` (on every agent).
An experiment names the device profile of each host (``devices.controller``,
``devices.agents``: ``profiles/devices/*.yaml``, whose ``torch_device`` is
used) and a ``dtype`` per role::

    dtype: {target: bfloat16, drafter: auto}   # or one name for both: dtype: bfloat16

``auto`` (the default) is the checkpoint's own dtype on CUDA and float32 on
the CPU (``agent.models.resolve_dtype``).  The agents learn their device and
dtype from ``CONFIGURE`` (``device``, ``dtype``), so an agent started by hand
or by ``specbed agents start`` drafts where the experiment says.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

from agent.models import DTYPES

ROLES = ("target", "drafter")


def load_dtypes(path: Path, value: Any) -> dict[str, str]:
    """An experiment's ``dtype``: one name for both roles, or a mapping role -> name."""
    from controller.profiles.base import ProfileError

    if value is None:
        return {role: "auto" for role in ROLES}
    if isinstance(value, str):
        value = {role: value for role in ROLES}
        where = "dtype"
    elif isinstance(value, dict):
        where = None
    else:
        raise ProfileError(
            f"{path}: dtype: expected one of {', '.join(DTYPES)} or a mapping with target and drafter, got {value!r}"
        )
    out = {}
    for role, name in value.items():
        if role not in ROLES:
            close = difflib.get_close_matches(str(role), ROLES, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ProfileError(f"{path}: dtype: unknown role {role!r}{hint}; allowed: {', '.join(ROLES)}")
        if name not in DTYPES:
            close = difflib.get_close_matches(str(name), DTYPES, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ProfileError(
                f"{path}: {where or 'dtype.' + role}: expected one of {', '.join(DTYPES)}, got {name!r}{hint}"
            )
        out[role] = name
    return {role: out.get(role, "auto") for role in ROLES}


def controller_device(experiment: Any) -> str:
    """The torch device of the controller's host: the target's, and the colocated baseline's drafter's."""
    device = getattr(experiment, "controller_device", None)
    return device.torch_device if device else "cpu"


def agent_device(experiment: Any) -> str | None:
    """The agents' torch device, or None when the experiment names no agent device profile."""
    device = getattr(experiment, "agent_device", None)
    return device.torch_device if device else None


def role_dtype(experiment: Any, role: str) -> str:
    return (getattr(experiment, "dtypes", None) or {}).get(role, "auto")


def agent_settings(experiment: Any) -> dict[str, str]:
    """What ``CONFIGURE`` tells every agent about its drafter's placement: ``dtype`` and, if named, ``device``."""
    settings = {"dtype": role_dtype(experiment, "drafter")}
    device = agent_device(experiment)
    if device is not None:
        settings["device"] = device
    return settings

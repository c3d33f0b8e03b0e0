"""What the controller tells its agents in ``CONFIGURE``, built from a profile's generation settings.

The profile is the controller's edge: its values were checked when it was
read (``controller.profiles``), and what they must fit that only the loaded
target knows (K against the vocabulary) is checked by ``check_top_k``
before any agent starts.  Past that point a value is never changed on the
way: ``configure_settings`` builds the typed ``agent.settings.Settings``
the agent reads with the same class, so the K a profile names is the K
configured, sent, echoed in every payload (``RoundRecord.top_k``) and
reported.
"""

from __future__ import annotations

from typing import Any

from agent.protocol import DENSE, index_dtype_for
from agent.settings import Settings, TelemetrySettings
from controller.profiles import Generation, ProfileError
from controller.wisv.semantic import hidden_settings


def configure_settings(
    generation: Generation,
    vocab_size: int,
    drafter_spec: dict,
    telemetry: dict | None = None,
    agent_model: dict | None = None,
) -> Settings:
    """The ``CONFIGURE`` settings of a generation: a dense payload (K = vocabulary) when index_dtype is "none".

    ``telemetry`` is ``{"port", "rate_hz", "host_sampler"}``; ``agent_model``
    the drafter's ``dtype`` and optional ``device``
    (``controller.placement.agent_settings``).
    """
    dense = generation.index_dtype == DENSE
    index = index_dtype_for(vocab_size) if generation.index_dtype == "auto" else generation.index_dtype
    return Settings(
        drafter=drafter_spec,
        vocab_size=vocab_size,
        temperature=float(generation.temperature),
        top_k=vocab_size if dense else generation.top_k,
        sampling=generation.sampling,
        prob_dtype=generation.prob_dtype,
        index_dtype=index,
        reconstruction=generation.reconstruction,
        telemetry=TelemetrySettings(**telemetry) if telemetry else None,
        hidden=hidden_settings(generation),  # WISV semantic verification only
        **(agent_model or {}),
    )


def check_top_k(experiment: Any, vocab_size: int) -> None:
    """Refuse, before anything starts, a K the target's vocabulary cannot hold (it used to be cut silently).

    Looks at ``generation.top_k`` (when no sweep sets K), ``sweep.top_k[i]``
    and ``sweep.variants[i].top_k``; the ``ProfileError`` names the file and
    the field.
    """
    path = getattr(experiment, "path", "") or "profile"
    sweep = getattr(experiment, "sweep", None) or {}
    found: list[tuple[str, Any]] = [(f"sweep.top_k[{i}]", k) for i, k in enumerate(sweep.get("top_k") or [])]
    found += [
        (f"sweep.variants[{i}].top_k", v["top_k"]) for i, v in enumerate(sweep.get("variants") or []) if "top_k" in v
    ]
    if "top_k" not in sweep:
        found.append(("generation.top_k", experiment.generation.top_k))
    for where, k in found:
        if isinstance(k, int) and k > vocab_size:
            raise ProfileError(
                f"{path}: {where}: {k} exceeds the target's vocabulary of {vocab_size} ids "
                "(K is at most the vocabulary; index_dtype none sends all of it)"
            )

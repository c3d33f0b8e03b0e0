"""``profiles/experiments/NAME.yaml``: what one experiment runs.

One class per section: ``GenerationProfile`` (``generation``),
``PromptsFilter`` (``prompts`` as a mapping), ``TelemetryProfile``
(``telemetry``), ``SweepProfile`` (``sweep``), ``DevicesProfile``
(``devices``), ``DtypesProfile`` (``dtype`` as a mapping), ``LivenessProfile``
(``liveness``), ``LinksProfile`` (``links``, in ``controller.profiles.link``)
and ``ExperimentProfile`` (the file).  A new setting is one field here;
cross-field rules (a sweep's grid points, a band for a bandwidth policy)
stay in ``controller.profiles.loaders``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field

from agent.models import DTYPES
from agent.protocol import DENSE, INDEX_DTYPES, PROB_DTYPES, RECONSTRUCTIONS, SAMPLING_MODES
from controller.profiles.base import Profile
from controller.profiles.link import LinksProfile, Quantity

BATCHING_MODES = ("auto", "off", "homogeneous", "heterogeneous")
BANDWIDTH_POLICIES = ("none", "equal-split", "multispin-homogeneous", "multispin-heterogeneous")
#: Baselines an experiment may measure beside its distributed top-K grid.
BASELINES = ("target-only", "colocated", "full-distribution")
INDEX_ENCODINGS = ("auto", *INDEX_DTYPES, DENSE)

ProbDtype = Literal[tuple(PROB_DTYPES)]  # type: ignore[valid-type]
Sampling = Literal[tuple(SAMPLING_MODES)]  # type: ignore[valid-type]
Reconstruction = Literal[tuple(RECONSTRUCTIONS)]  # type: ignore[valid-type]
IndexEncoding = Literal[INDEX_ENCODINGS]  # type: ignore[valid-type]
Batching = Literal[BATCHING_MODES]  # type: ignore[valid-type]
BandwidthPolicy = Literal[BANDWIDTH_POLICIES]  # type: ignore[valid-type]
Baseline = Literal[BASELINES]  # type: ignore[valid-type]
Dtype = Literal[tuple(DTYPES)]  # type: ignore[valid-type]


class GenerationProfile(Profile):
    """Generation settings; ``controller.profiles.Generation`` (what the runner uses) is built from these fields.

    ``batching``: "off" verifies each payload on arrival; "homogeneous" waits for every busy agent, one
    forward pass; "heterogeneous" one pass over whatever arrived within ``batch_window_s`` of the first;
    "auto" the bandwidth policy's mode (homogeneous for equal-split and multispin-homogeneous,
    heterogeneous for multispin-heterogeneous, else off).  ``bandwidth_policy`` shares ``links.band_hz``
    among the agents: "none", "equal-split" (B/U each, fixed γ), "multispin-homogeneous",
    "multispin-heterogeneous" (ALGORITHMS.md section 5).  ``uplink_rate_bps`` overrides
    ``links.up.rate_bps`` for every agent; ``index_dtype`` "auto" picks the narrowest type for the vocabulary.
    """

    temperature: float = Field(0.0, ge=0, description="a number >= 0 (0: greedy)")
    draft_length: int = Field(4, ge=1, description="an integer >= 1 (γ)")
    top_k: int = Field(8, ge=1, description="an integer >= 1 (K)")
    prob_dtype: ProbDtype = Field("float16", description="the probabilities' wire type")
    sampling: Sampling = Field("full", description="how the drafter samples")
    reconstruction: Reconstruction = Field("tail-fill", description="how the server rebuilds q from the top K")
    index_dtype: IndexEncoding = Field("auto", description="token index wire type (none: dense)")
    max_new_tokens: int = Field(48, ge=1, description="an integer >= 1")
    seed: int = Field(0, ge=0, description="an integer >= 0")
    draft_policy: str = Field("fixed", description="a policy name: fixed, tkslt, a registered name or module:Class")
    gamma_max: int = Field(16, ge=1, description="an integer >= 1 (the largest γ a policy may choose)")
    uplink_rate_bps: Quantity | None = Field(None, description="a rate in bit/s (units allowed: 10mbit)")
    batching: Batching = Field("auto", description="batched verification mode")
    batch_window_s: float = Field(0.02, ge=0, lt=60, description="seconds in [0, 60)")
    bandwidth_policy: BandwidthPolicy = Field("none", description="how links.band_hz is shared")
    realloc_rounds: int = Field(8, ge=1, description="an integer >= 1")
    # WISV (ALGORITHMS.md section 6, controller.wisv): strict stays the default; semantic is lossy by design
    verification: Literal["strict", "semantic"] = Field("strict", description="strict, or semantic (WISV, lossy)")
    hidden_upload: Literal["full", "selective"] = Field("full", description="semantic: hidden states sent how")
    hidden_dtype: ProbDtype = Field("float16", description="the drafter hidden states' wire type")
    wisv_head: str | None = Field(None, description="semantic: the decision-head file (a path or under profiles/)")
    wisv_threshold: Literal["rate", "snr", "constant"] = Field("rate", description="the CSI the threshold follows")
    wisv_threshold_good: float = Field(0.9, ge=0, le=2, description="threshold on a good channel (above 1: never)")
    wisv_threshold_poor: float = Field(0.5, ge=0, le=2, description="threshold on a poor channel (above 1: never)")


class PromptsFilter(Profile):
    source: str = Field(description="the name or path of a prompts JSONL file")
    tasks: list[str] | None = Field(None, description="a list of task kinds")
    per_task: int | None = Field(None, ge=1, description="a positive integer")
    limit: int | None = Field(None, ge=1, description="a positive integer")
    ids: list[str] | None = Field(None, description="a list of prompt ids")


class TelemetryProfile(Profile):
    rate_hz: float = Field(20.0, gt=0, le=1000, description="a rate in (0, 1000] Hz")
    host_sampler: Literal["psutil", "procfs"] = Field("psutil", description="CPU/memory source")


def _values() -> Any:
    return Field(None, min_length=1, description="a non-empty list of values")


class SweepProfile(Profile):
    """Each field a list of values (a Cartesian product); ``variants`` are combined with every point.

    Values are checked per grid point by the loader (as the generation field they set).
    """

    top_k: list[Any] | None = _values()
    draft_length: list[Any] | None = _values()
    prob_dtype: list[Any] | None = _values()
    index_dtype: list[Any] | None = _values()
    reconstruction: list[Any] | None = _values()
    sampling: list[Any] | None = _values()
    temperature: list[Any] | None = _values()
    draft_policy: list[Any] | None = _values()
    uplink_rate_bps: list[Any] | None = _values()
    batching: list[Any] | None = _values()
    batch_window_s: list[Any] | None = _values()
    bandwidth_policy: list[Any] | None = _values()
    verification: list[Any] | None = _values()
    hidden_upload: list[Any] | None = _values()
    agents: list[Any] | None = _values()
    variants: list[dict[str, Any]] | None = Field(None, description="a list of mappings of sweepable fields")


#: Experiment fields a sweep may vary: the generation settings plus ``agents``.
SWEEPABLE = tuple(f for f in SweepProfile.model_fields if f != "variants")


class DevicesProfile(Profile):
    controller: str | None = Field(None, description="the name or path of a device profile")
    agents: str | None = Field(None, description="the name or path of a device profile")


class DtypesProfile(Profile):
    """``dtype`` per role (``controller.placement``); a role left out is ``auto``."""

    target: Dtype = Field("auto", description=f"the target's dtype: one of {', '.join(DTYPES)}")
    drafter: Dtype = Field("auto", description=f"the drafter's dtype: one of {', '.join(DTYPES)}")


def _seconds(what: str) -> Any:
    return Field(None, gt=0, le=86400, description=f"{what}: seconds in (0, 86400]")


class LivenessProfile(Profile):
    """Heartbeats and the round deadline (``controller.liveness``); interval below timeout."""

    heartbeat_ivl_s: float | None = _seconds("how often each side sends a heartbeat")
    heartbeat_timeout_s: float | None = _seconds("silence after which an agent is lost")
    round_timeout_s: float | None = _seconds("the longest wait for an agent's payload")


class ExperimentProfile(Profile):
    name: str | None = Field(None, description="the experiment's name (default: the file name)")
    description: str = Field("", description="a string")
    models: str = Field(description="the name or path of a model-pair profile")
    prompts: str | PromptsFilter = Field(description="the name or path of a prompts JSONL file, or a mapping")
    agents: int = Field(2, ge=1, description="a positive integer")
    generation: GenerationProfile | None = None
    telemetry: TelemetryProfile | None = None
    sweep: SweepProfile | None = None
    baselines: list[Baseline] = Field(default_factory=list, description=f"a list of: {', '.join(BASELINES)}")
    distributed: bool = Field(True, description="true or false")
    repetitions: int | None = Field(None, ge=1, description="a positive integer")
    seeds: list[Annotated[int, Field(ge=0, description="an integer >= 0")]] | None = Field(
        None, min_length=1, description="a non-empty list of distinct integer seeds"
    )
    devices: DevicesProfile | None = None
    links: LinksProfile | None = None
    dtype: Dtype | DtypesProfile | None = Field(
        None, description=f"one dtype for both roles ({', '.join(DTYPES)}), or a mapping with target and drafter"
    )
    liveness: LivenessProfile | None = None

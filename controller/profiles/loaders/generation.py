"""Generation settings: the ``Generation`` record, its cross-field checks and the sweep grid over it."""

from __future__ import annotations

from dataclasses import field, fields, make_dataclass, replace
from pathlib import Path
from typing import Any

from agent.protocol import PROB_DTYPES, RECONSTRUCTIONS, SAMPLING_MODES
from controller.profiles.base import ProfileError
from controller.profiles.experiment import (
    BANDWIDTH_POLICIES,
    BATCHING_MODES,
    INDEX_ENCODINGS,
    SWEEPABLE,
    GenerationProfile,
)
from controller.profiles.loaders.files import _positive_quantity, _typed, _unknown


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
    from controller.wisv.config import check_wisv

    check_wisv(path, g, where)
    try:
        policy_class(_typed(path, f"{where}.draft_policy", g.draft_policy, str, "a policy name"))
    except ValueError as exc:
        raise ProfileError(f"{path}: {where}.draft_policy: {exc}") from None
    return g


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

"""An experiment's ``links`` section: emulated up/down links, per-agent overrides, a shared band, trace files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from controller.profiles.base import ProfileError
from controller.profiles.loaders.files import PROFILES_DIR, _positive_quantity, _typed, _unknown


def load_links(path: Path, data: Any) -> dict:
    """``links``: emulated links, ``up``/``down`` for every agent and per-agent overrides.

    ``{up: LINK, down: LINK, seed: int, band_hz: Hz, agents: {NAME: {up: LINK, down: LINK, draft_delay_s: s}}}``;
    LINK fields are those of ``agent.link``; a ``trace_file`` (CSV ``t_s,value``) is read into ``trace``.
    ``band_hz`` is an uplink band the agents share (FDMA): each agent's uplink is then an SNR link
    (``snr_db`` or an SNR trace) whose ``bandwidth_hz`` the generation's ``bandwidth_policy`` sets.
    """
    from agent.link import Link, LinkError

    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ProfileError(f"{path}: links: expected a mapping with up, down, seed, agents")
    _unknown(path, "links", data, {"up", "down", "seed", "agents", "band_hz"})

    def link(where: str, spec: Any) -> dict:
        if spec is None:
            return {}
        if not isinstance(spec, dict):
            raise ProfileError(f"{path}: {where}: expected a mapping of link fields")
        spec = dict(spec)
        if "trace_file" in spec:
            spec["trace"] = read_trace(path, where, spec.pop("trace_file"))
        try:
            Link({"bandwidth_hz": 1.0, **spec} if band and where.endswith(".up") else spec)
        except LinkError as exc:
            raise ProfileError(f"{path}: {where}.{exc}") from None
        return spec

    band = data.get("band_hz")
    if band is not None:
        from agent.link import parse_bandwidth

        band = _positive_quantity(path, "links.band_hz", band, parse_bandwidth, "bandwidth in Hz")

    out: dict[str, Any] = {"up": link("links.up", data.get("up")), "down": link("links.down", data.get("down"))}
    out["seed"] = _typed(path, "links.seed", data.get("seed", 0), int, "an integer")
    if band is not None:
        out["band_hz"] = float(band)
    agents = data.get("agents") or {}
    if not isinstance(agents, dict):
        raise ProfileError(f"{path}: links.agents: expected a mapping of agent name to up/down/draft_delay_s")
    out["agents"] = {}
    for name, spec in agents.items():
        spec = spec or {}
        _unknown(path, f"links.agents.{name}", spec, {"up", "down", "draft_delay_s"})
        delay = _typed(
            path, f"links.agents.{name}.draft_delay_s", spec.get("draft_delay_s", 0.0), (int, float), "seconds"
        )
        if delay < 0:
            raise ProfileError(f"{path}: links.agents.{name}.draft_delay_s: expected seconds >= 0, got {delay}")
        out["agents"][str(name)] = {
            "up": link(f"links.agents.{name}.up", spec.get("up")),
            "down": link(f"links.agents.{name}.down", spec.get("down")),
            "draft_delay_s": float(delay),
        }
    if band is not None:
        for name, spec in [("links.up", out["up"])] + [
            (f"links.agents.{n}.up", a["up"]) for n, a in out["agents"].items()
        ]:
            if "rate_bps" in spec or spec.get("trace_kind", "rate") == "rate" and "trace" in spec:
                raise ProfileError(f"{path}: {name}: with links.band_hz an uplink has snr_db or an SNR trace, no rate")
        for n, a in out["agents"].items():
            up = {**out["up"], **a["up"]}
            if "snr_db" not in up and "trace" not in up:
                raise ProfileError(f"{path}: links.agents.{n}.up.snr_db: each agent sharing links.band_hz needs an SNR")
    return out


def read_trace(path: Path, where: str, ref: Any) -> list[list[float]]:
    """A trace CSV (``t_s,value`` per line, a header line allowed), relative to the profile's folder."""
    trace_path = Path(_typed(path, f"{where}.trace_file", ref, str, "a CSV path")).expanduser()
    if not trace_path.is_absolute():
        trace_path = path.parent / trace_path if (path.parent / trace_path).exists() else PROFILES_DIR / trace_path
    if not trace_path.is_file():
        raise ProfileError(f"{path}: {where}.trace_file: {ref} not found")
    rows = []
    for i, line in enumerate(trace_path.read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        cells = line.split(",")
        try:
            rows.append([float(cells[0]), float(cells[1])])
        except (ValueError, IndexError):
            if i == 1:
                continue  # a header
            raise ProfileError(f"{trace_path}:{i}: expected t_s,value") from None
    if not rows:
        raise ProfileError(f"{trace_path}: no rows")
    return rows

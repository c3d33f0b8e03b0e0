"""An experiment's ``links``: emulated uplinks and downlinks (fields of ``agent.link``)."""

from __future__ import annotations

from pydantic import Field

from controller.profiles.base import Profile

Quantity = float | str  # a number or a string with units ("10mbit", "20ms", "2.5MHz")


class LinkProfile(Profile):
    rate_bps: Quantity | None = Field(None, description="a rate in bit/s (units allowed: 10mbit)")
    delay_s: Quantity | None = Field(None, description="seconds (units allowed: 20ms)")
    jitter_s: Quantity | None = Field(None, description="seconds (units allowed: 2ms)")
    loss: float | None = Field(None, ge=0, le=1, description="a loss probability in [0, 1]")
    rto_s: Quantity | None = Field(None, description="seconds")
    mss_bytes: int | None = Field(None, ge=1, description="a positive integer")
    trace: list[list[float]] | None = Field(None, description="a list of [t_s, value] rows")
    trace_file: str | None = Field(None, description="a CSV path (t_s,value per line)")
    trace_kind: str | None = Field(None, description="what the trace's values are: rate or snr")
    bandwidth_hz: Quantity | None = Field(None, description="bandwidth in Hz (units allowed: 2.5MHz)")
    snr_db: float | None = Field(None, description="signal-to-noise ratio in dB")


class AgentLinkProfile(Profile):
    up: LinkProfile | None = None
    down: LinkProfile | None = None
    draft_delay_s: float = Field(0.0, ge=0, description="seconds >= 0")


class LinksProfile(Profile):
    up: LinkProfile | None = None
    down: LinkProfile | None = None
    seed: int = Field(0, description="an integer")
    band_hz: Quantity | None = Field(None, description="an uplink band the agents share, in Hz")
    agents: dict[str, AgentLinkProfile | None] | None = Field(
        None, description="a mapping of agent name to up/down/draft_delay_s"
    )

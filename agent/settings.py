"""The body of ``CONFIGURE``: one typed object, validated once where it enters the agent.

The controller builds a ``Settings`` from a profile (where every value was
already checked, see ``controller.profiles``), sends ``to_wire()``; the agent
reads ``Settings.from_wire`` and trusts the result from then on: the drafter,
the link emulator and the telemetry publisher take typed fields, and the
payloads echo ``top_k``, ``index_dtype`` and ``prob_dtype`` from it.  A bad
value raises ``ProtocolError`` whose message names the field
(``settings.top_k``) and whose code is the counter the receiver bumps.

One name per concept, as in the papers: ``top_k`` is K (the entries of each
draft position sent; the vocabulary for a dense payload), ``draft_length``
is γ (not a setting: it travels in each request and verdict).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from agent.drafter import DraftSettings
from agent.protocol.hidden import HIDDEN_DTYPES, HIDDEN_UPLOADS
from agent.protocol.wire import (
    DENSE,
    MODEL_DTYPES,
    PROB_DTYPES,
    RECONSTRUCTIONS,
    SAMPLING_MODES,
    WIRE_INDEX_DTYPES,
    _check,
    _int,
    _map,
    _number,
    _one_of,
    _str,
)

HOST_SAMPLERS = ("psutil", "procfs")  # agent.telemetry.HOST_SAMPLERS, kept here so settings load without psutil
MAX_TOP_K = 1 << 32


@dataclass(frozen=True)
class TelemetrySettings:
    """Where and how often the agent publishes its samples: the controller's SUB ``port``, ``rate_hz``."""

    port: int
    rate_hz: float = 20.0
    host_sampler: str = "psutil"

    @classmethod
    def from_wire(cls, data: Any) -> TelemetrySettings:
        tele = _map(data, "settings.telemetry")
        return cls(
            _int(tele.get("port"), "settings.telemetry.port", 1, 65535),
            _number(tele.get("rate_hz", 20.0), "settings.telemetry.rate_hz", 1e-3),
            _one_of(tele.get("host_sampler", "psutil"), HOST_SAMPLERS, "malformed", "settings.telemetry.host_sampler"),
        )

    def to_wire(self) -> dict:
        return {"port": self.port, "rate_hz": self.rate_hz, "host_sampler": self.host_sampler}


@dataclass(frozen=True)
class HiddenSettings:
    """WISV: upload the drafter's last-layer hidden states, ``full`` (every payload) or ``selective`` (on request)."""

    upload: str
    dtype: str = "float16"

    @classmethod
    def from_wire(cls, data: Any) -> HiddenSettings:
        h = _map(data, "settings.hidden")
        return cls(
            _one_of(h.get("upload"), HIDDEN_UPLOADS, "malformed", "settings.hidden.upload"),
            _one_of(h.get("dtype", "float16"), HIDDEN_DTYPES, "bad_dtype", "settings.hidden.dtype"),
        )

    def to_wire(self) -> dict:
        return {"upload": self.upload, "dtype": self.dtype}


@dataclass(frozen=True)
class Settings:
    """What one agent drafts with and how it packs, sends and samples.

    ``vocab_size`` is the target's; ``top_k`` is K, 1 <= K <= ``vocab_size``,
    and equal to it for a dense payload (``index_dtype`` "none");
    ``temperature`` >= 0 (0: greedy); ``draft_delay_s`` seconds of emulated
    drafting per token; ``link`` the emulated ``up``/``down`` links and their
    ``seed`` (``agent.link`` checks the links themselves); ``device`` None
    means the agent's own ``--device``.
    """

    drafter: dict
    vocab_size: int
    temperature: float
    top_k: int
    sampling: str = "full"
    prob_dtype: str = "float16"
    index_dtype: str = "uint16"
    reconstruction: str = "tail-fill"
    link: dict | None = None
    draft_delay_s: float = 0.0
    telemetry: TelemetrySettings | None = None
    device: str | None = None
    dtype: str = "auto"
    hidden: HiddenSettings | None = None  # WISV semantic verification only

    @property
    def dense(self) -> bool:
        return self.index_dtype == DENSE

    @classmethod
    def from_wire(cls, data: Any) -> Settings:
        """The settings in a ``CONFIGURE`` map; ``ProtocolError`` naming the first bad field."""
        s = _map(data, "settings")
        for key in ("drafter", "vocab_size", "temperature", "top_k", "sampling", "prob_dtype", "index_dtype"):
            _check(key in s, "malformed", f"settings.{key} missing")
        vocab = _int(s["vocab_size"], "settings.vocab_size", 1, MAX_TOP_K)
        index_dtype = _one_of(s["index_dtype"], WIRE_INDEX_DTYPES, "bad_dtype", "settings.index_dtype")
        top_k = _int(s["top_k"], "settings.top_k", 1, vocab)
        if index_dtype == DENSE:
            _check(top_k == vocab, "malformed", f"settings.top_k={top_k} must be the vocabulary {vocab} when dense")
        link = s.get("link")
        if link is not None:
            link = _map(link, "settings.link")
            _int(link.get("seed", 0), "settings.link.seed")
            for side in ("up", "down"):
                _map(link.get(side, {}), f"settings.link.{side}")
        device = s.get("device")
        _check(
            device is None or isinstance(device, str) and (device == "cpu" or device.startswith("cuda")),
            "malformed",
            f"settings.device must be cpu, cuda or cuda:N, got {device!r:.80}",
        )
        tele = s.get("telemetry")
        return cls(
            drafter=_map(s["drafter"], "settings.drafter"),
            vocab_size=vocab,
            temperature=_number(s["temperature"], "settings.temperature"),
            top_k=top_k,
            sampling=_one_of(s["sampling"], SAMPLING_MODES, "malformed", "settings.sampling"),
            prob_dtype=_one_of(s["prob_dtype"], PROB_DTYPES, "bad_dtype", "settings.prob_dtype"),
            index_dtype=index_dtype,
            reconstruction=_one_of(
                _str(s.get("reconstruction", "tail-fill"), "settings.reconstruction"),
                RECONSTRUCTIONS,
                "malformed",
                "settings.reconstruction",
            ),
            link=link or None,
            draft_delay_s=_number(s.get("draft_delay_s", 0.0), "settings.draft_delay_s"),
            telemetry=None if tele is None else TelemetrySettings.from_wire(tele),
            device=device,
            dtype=_one_of(s.get("dtype", "auto"), MODEL_DTYPES, "bad_dtype", "settings.dtype"),
            hidden=None if s.get("hidden") is None else HiddenSettings.from_wire(s["hidden"]),
        )

    def to_wire(self) -> dict:
        """The ``CONFIGURE`` map; optional fields only when set, so older agents read it too."""
        out: dict[str, Any] = {
            "drafter": self.drafter,
            "vocab_size": self.vocab_size,
            "temperature": float(self.temperature),
            "top_k": self.top_k,
            "sampling": self.sampling,
            "prob_dtype": self.prob_dtype,
            "index_dtype": self.index_dtype,
            "reconstruction": self.reconstruction,
        }
        if self.link is not None:
            out["link"] = self.link
        if self.draft_delay_s:
            out["draft_delay_s"] = self.draft_delay_s
        if self.telemetry is not None:
            out["telemetry"] = self.telemetry.to_wire()
        if self.device is not None:
            out["device"] = self.device
        out["dtype"] = self.dtype
        if self.hidden is not None:
            out["hidden"] = self.hidden.to_wire()
        return out

    def draft_settings(self) -> DraftSettings:
        """The drafter's share of the settings (how to draft and pack)."""
        return DraftSettings(
            self.temperature, self.top_k, self.sampling, self.prob_dtype, self.index_dtype, self.reconstruction
        )

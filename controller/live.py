"""What an experiment is doing right now, per agent, from the round records as they arrive.

``RoundStats`` folds round records (``RoundRecord`` or rows of rounds.jsonl)
and telemetry rows into per-agent figures; ``LivePanel`` draws them as a rich
Live table (one row per agent, the controller's verify time in the caption);
``controller.metrics`` exports the same records to Prometheus.  ``Observers``
fans one round out to all of them.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from dataclasses import asdict, dataclass, field, is_dataclass
from typing import Any, Protocol

from controller.acceptance_metrics import AcceptanceCounts

log = logging.getLogger(__name__)

#: Telemetry columns read as a host's power draw, first present wins (Jetson rails sum, NVML board power).
POWER_COLUMNS = ("power_total_w", "gpu_power_w")
VERIFY_WINDOW = 64  # rounds in the controller's mean verify time


def as_row(record: Any) -> dict:
    """A round record as a dict (records arrive as ``RoundRecord`` or as rows)."""
    return asdict(record) if is_dataclass(record) else record


def verify_s(row: dict) -> float | None:
    """The controller's time on a round: target forward pass and verification (seconds).

    From the round's phases when recorded (``target_forward`` start to
    ``verification`` end), else from decoding to verified.
    """
    phases = row.get("phases") or {}
    fwd, ver = phases.get("target_forward"), phases.get("verification")
    if fwd and ver:
        return (ver[1] - fwd[0]) / 1e9
    if row.get("ctrl_verified_ns") and row.get("ctrl_decoded_ns"):
        return (row["ctrl_verified_ns"] - row["ctrl_decoded_ns"]) / 1e9
    return None


@dataclass
class AgentStats:
    prompts: int = 0
    tokens: int = 0
    bytes_up: int = 0
    first_ns: int | None = None  # the controller's clock at the agent's first round
    last_ns: int | None = None
    acceptance: AcceptanceCounts = field(default_factory=AcceptanceCounts)
    watts: float | None = None

    def tokens_per_s(self) -> float | None:
        """Tokens over the agent's first to last round (at least 1 s, so a first round is no spike).

        An agent with nothing left to do keeps the rate it had, rather than decaying to zero.
        """
        if self.first_ns is None or self.last_ns is None:
            return None
        return self.tokens / max((self.last_ns - self.first_ns) / 1e9, 1.0)


class RoundStats:
    """Per-agent running figures: prompts done, tokens/s, acceptance, mean γ, uplink bytes per draft token, watts."""

    def __init__(self) -> None:
        self.agents: dict[str, AgentStats] = {}
        self.verify_s: deque[float] = deque(maxlen=VERIFY_WINDOW)
        self.last_agent: str | None = None
        self.controller_watts: float | None = None
        self.started_ns = time.monotonic_ns()

    def agent(self, name: str) -> AgentStats:
        return self.agents.setdefault(name, AgentStats())

    def on_round(self, record: Any) -> None:
        row = as_row(record)
        a = self.agent(row["agent"])
        now = time.monotonic_ns()
        a.first_ns = a.first_ns or now
        a.last_ns = now
        a.tokens += row["emitted"]
        a.bytes_up += row["bytes_up"]
        a.acceptance.add(row["draft_length"], row["accepted"])
        v = verify_s(row)
        if v is not None:
            self.verify_s.append(v)
        self.last_agent = row["agent"]

    def on_output(self) -> None:
        """A prompt finished: the server reports it right after that prompt's last round."""
        if self.last_agent is not None:
            self.agent(self.last_agent).prompts += 1

    def on_telemetry(self, host: str, columns: list[str], rows: list[list]) -> None:
        """The latest power reading of a host (an agent's row, or the controller's caption)."""
        for name in POWER_COLUMNS:
            if name not in columns:
                continue
            i = columns.index(name)
            values = [r[i] for r in rows if r[i] is not None]
            if values:
                if host == "controller":
                    self.controller_watts = float(values[-1])
                elif host in self.agents:
                    self.agents[host].watts = float(values[-1])
                return

    def mean_verify_ms(self) -> float | None:
        return 1000 * sum(self.verify_s) / len(self.verify_s) if self.verify_s else None


class Observer(Protocol):
    def on_round(self, record: Any) -> None: ...
    def on_output(self) -> None: ...


class Observers:
    """Fans round records and finished prompts out to the live panel and the metrics endpoint."""

    def __init__(self, *observers: Observer | None) -> None:
        self.observers = [o for o in observers if o is not None]

    def on_round(self, record: Any) -> None:
        row = as_row(record)
        for o in self.observers:
            try:
                o.on_round(row)
            except Exception:  # a display must never stop the run
                log.exception("observer %s failed on a round", type(o).__name__)

    def on_output(self) -> None:
        for o in self.observers:
            o.on_output()


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def stats_table(stats: RoundStats, title: str = "specbed: live") -> Any:
    """The panel's table (a rich ``Table``)."""
    from rich.table import Table

    table = Table(
        title=title,
        caption=f"controller verify time: {_fmt(stats.mean_verify_ms(), '.1f')} ms/round"
        + (f", {stats.controller_watts:.1f} W" if stats.controller_watts is not None else ""),
    )
    for head in ("agent", "prompts", "tok/s", "acceptance", "acc. len", "mean γ", "B up/draft tok", "W"):
        table.add_column(head, justify="left" if head == "agent" else "right")
    for name in sorted(stats.agents):
        a = stats.agents[name]
        acc = a.acceptance
        if name == "controller" and not acc.num_drafts:
            continue
        table.add_row(
            name,
            str(a.prompts),
            _fmt(a.tokens_per_s(), ".1f"),
            _fmt(acc.num_accepted_tokens / acc.num_draft_tokens if acc.num_draft_tokens else None, ".3f"),
            _fmt(acc.mean_acceptance_length, ".2f"),
            _fmt(acc.num_draft_tokens / acc.num_drafts if acc.num_drafts else None, ".2f"),
            _fmt(a.bytes_up / acc.num_draft_tokens if acc.num_draft_tokens else None, ".1f"),
            _fmt(a.watts, ".1f"),
        )
    return table


class LivePanel:
    """A rich Live table redrawn 4 times a second; a context manager.  Off (no output) when ``enabled`` is false."""

    def __init__(self, stats: RoundStats, enabled: bool, console: Any = None, extra: Any = None) -> None:
        self.stats = stats
        self.enabled = enabled
        self.console = console
        self.extra = extra  # e.g. a progress bar drawn under the table
        self._live = None

    def _render(self) -> Any:
        from rich.console import Group

        table = stats_table(self.stats)
        return Group(table, self.extra) if self.extra is not None else table

    def __enter__(self) -> LivePanel:
        from controller.collector import ROW_LISTENERS

        ROW_LISTENERS.append(self.stats.on_telemetry)
        if self.enabled:
            from rich.live import Live

            self._live = Live(get_renderable=self._render, console=self.console, refresh_per_second=4)
            self._live.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        from controller.collector import ROW_LISTENERS

        if self.stats.on_telemetry in ROW_LISTENERS:
            ROW_LISTENERS.remove(self.stats.on_telemetry)
        if self._live is not None:
            self._live.__exit__(*exc)
            self._live = None

"""An optional Prometheus endpoint (``--metrics-port``) fed by the round records.

Names follow Prometheus conventions (``_total`` counters, base units,
``agent`` label); the acceptance counters are vLLM's
(``controller.acceptance_metrics``) so the same PromQL works on both:

* ``specbed_tokens_total{agent}``: tokens added to outputs
* ``specbed_rounds_total{agent}``: verification rounds (vLLM's num_drafts)
* ``specbed_draft_tokens_total{agent}``: drafted tokens
* ``specbed_draft_tokens_accepted_total{agent}``: accepted drafts
* ``specbed_draft_tokens_accepted_per_position_total{agent,position}``
* ``specbed_prompts_completed_total{agent}``
* ``specbed_uplink_bytes_total{agent}``, ``specbed_downlink_bytes_total{agent}``: ZMTP frame bytes
* ``specbed_draft_length{agent}``: γ the policy chose for the agent's next round
* ``specbed_verify_duration_seconds``: histogram of the controller's forward pass plus verification

Mean acceptance length = 1 + rate(accepted) / rate(rounds).
"""

from __future__ import annotations

import logging
from typing import Any

from controller.live import as_row, verify_s

log = logging.getLogger(__name__)


class MetricsServer:
    """Counters in a registry of their own, served over HTTP at ``port`` (0: a free port) until ``close``."""

    def __init__(self, port: int, addr: str = "127.0.0.1") -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

        self.registry = CollectorRegistry()
        r = self.registry

        def counter(name: str, doc: str, labels: tuple[str, ...] = ("agent",)) -> Any:
            return Counter(name, doc, labels, registry=r)

        self.tokens = counter("specbed_tokens", "Tokens added to the outputs")
        self.rounds = counter("specbed_rounds", "Verification rounds (drafts)")
        self.draft_tokens = counter("specbed_draft_tokens", "Drafted tokens")
        self.accepted = counter("specbed_draft_tokens_accepted", "Accepted draft tokens")
        self.accepted_pos = counter(
            "specbed_draft_tokens_accepted_per_position",
            "Rounds that accepted the draft at this 0-based position",
            ("agent", "position"),
        )
        self.prompts = counter("specbed_prompts_completed", "Prompts finished")
        self.bytes_up = counter("specbed_uplink_bytes", "Payload bytes received (ZMTP frames)")
        self.bytes_down = counter("specbed_downlink_bytes", "Verdict bytes sent (ZMTP frames)")
        self.gamma = Gauge("specbed_draft_length", "Draft length chosen for the next round", ["agent"], registry=r)
        self.verify = Histogram(
            "specbed_verify_duration_seconds",
            "Controller time per round: target forward pass and verification",
            registry=r,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
        )
        self._last_agent: str | None = None
        started = start_http_server(port, addr=addr, registry=r)
        self._server = started[0] if isinstance(started, tuple) else None
        self.port = self._server.server_port if self._server is not None else port
        log.info("Prometheus metrics on http://%s:%d/metrics", addr, self.port)

    def on_round(self, record: Any) -> None:
        row = as_row(record)
        agent = row["agent"]
        self.tokens.labels(agent).inc(row["emitted"])
        self.rounds.labels(agent).inc()
        self.draft_tokens.labels(agent).inc(row["draft_length"])
        self.accepted.labels(agent).inc(row["accepted"])
        for i in range(row["accepted"]):
            self.accepted_pos.labels(agent, str(i)).inc()
        self.bytes_up.labels(agent).inc(row["bytes_up"])
        self.bytes_down.labels(agent).inc(row["bytes_down"])
        if row.get("next_draft_length") is not None:
            self.gamma.labels(agent).set(row["next_draft_length"])
        v = verify_s(row)
        if v is not None:
            self.verify.observe(v)
        self._last_agent = agent

    def on_output(self) -> None:
        if self._last_agent is not None:
            self.prompts.labels(self._last_agent).inc()

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

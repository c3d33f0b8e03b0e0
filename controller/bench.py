"""Benchmarks behind ``specbed bench``; results are recorded in BENCHMARKS.md."""

from __future__ import annotations

import os
import time

from agent.telemetry import TelemetryThread, auto_samplers


def bench_telemetry(rate_hz: float = 20.0, duration_s: float = 10.0, host_sampler: str = "psutil") -> dict:
    """Sampling overhead: the sampler thread's CPU time per second of wall time.

    Runs every sampler this host can read, as an agent does, batching rows
    as the publisher would, for ``duration_s``.
    """
    rows: list[dict] = []
    samplers = auto_samplers(os.getpid(), host_sampler)
    thread = TelemetryThread(samplers, "bench", rate_hz=rate_hz, on_batch=rows.extend)
    t0 = time.monotonic()
    thread.start()
    time.sleep(duration_s)
    thread.stop()
    wall = time.monotonic() - t0
    expected = int(rate_hz * wall)
    return {
        "rate_hz": rate_hz,
        "duration_s": round(wall, 3),
        "samplers": [s.name for s in samplers],
        "samples": thread.samples,
        "rows_delivered": len(rows),
        "expected_samples": expected,
        "missed_ticks": thread.missed_ticks,
        "thread_cpu_s": round(thread.thread_cpu_s, 4),
        "cpu_percent_of_one_core": round(100 * thread.thread_cpu_s / wall, 3),
        "cpu_us_per_tick": round(1e6 * thread.thread_cpu_s / max(thread.samples, 1), 1),
        "sampler_errors": dict(thread.sampler_errors),
    }

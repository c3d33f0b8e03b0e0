"""``specbed bench`` (telemetry): the sampling thread's CPU cost per second of wall time on this host."""

from __future__ import annotations

import os
import time

from agent.telemetry import TelemetryThread, auto_samplers


def bench_telemetry(rate_hz: float = 20.0, duration_s: float = 10.0, host_sampler: str = "psutil") -> dict:
    """Sampling overhead: the sampler thread's CPU time per second of wall time.

    Runs every sampler this host can read, as an agent does, batching rows
    as the publisher would, for ``duration_s`` seconds at ``rate_hz``.
    Returned fields: ``thread_cpu_s`` is the thread's own CPU time (s);
    ``cpu_percent_of_one_core`` is 100 * thread_cpu_s / duration_s;
    ``per_tick_us`` is CPU µs per sample; ``tick_wall_us`` is the mean wall
    time a tick spends reading sensors (µs, includes waits on I/O such as
    I2C that cost no CPU); ``expected_samples`` is rate_hz * the measured
    wall time; ``missing`` says why each absent sampler family is absent.
    """
    rows: list[dict] = []
    samplers = auto_samplers(os.getpid(), host_sampler=host_sampler)
    thread = TelemetryThread(samplers, "bench", rate_hz=rate_hz, on_batch=rows.extend)
    t0 = time.monotonic()
    thread.start()
    time.sleep(duration_s)
    thread.stop()
    wall_s = time.monotonic() - t0
    samplers.close()
    cpu_s = thread.cpu_time_s()
    n = max(thread.samples, 1)
    return {
        "rate_hz": rate_hz,
        "duration_s": round(wall_s, 3),
        "samplers": [s.name for s in samplers],
        "samples": thread.samples,
        "expected_samples": int(rate_hz * wall_s),
        "rows_delivered": len(rows),
        "batches": thread.batches,
        "missed_ticks": thread.missed_ticks,
        "thread_cpu_s": round(cpu_s, 4),
        "cpu_percent_of_one_core": round(100 * cpu_s / wall_s, 3),
        "per_tick_us": round(1e6 * cpu_s / n, 1),
        "tick_wall_us": round(1e6 * thread.tick_wall_s / n, 1),
        "sampler_errors": dict(thread.sampler_errors),
        "missing": {d["sampler"]: d["missing_reason"] for d in samplers.describe_missing()},
    }

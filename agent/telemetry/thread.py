"""The sampling thread: reads the samplers on an absolute schedule and hands batches of rows on."""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable

from agent.telemetry.sampler import Reading, Sample, Sampler

log = logging.getLogger(__name__)


class TelemetryThread:
    """Samples on an absolute schedule in a daemon thread; batches of rows go to ``on_batch``.

    Tick k is due at start + k / rate_hz, so delays never accumulate; a tick
    that comes too late to keep the grid is skipped and counted in
    ``missed_ticks``.  ``t_ns`` is taken before the sensors are read.  A
    sampler that raises is counted in ``sampler_errors`` and its metrics are
    None that tick; the thread carries on.  ``on_batch`` is called from the
    thread every ``batch_size`` rows (default: about every 0.5 s) and once
    more with the rest when stopped.  ``stop()`` lets one more tick of the
    grid happen after it is called, so the readings bracket every moment
    before it (the last round of a run gets its energy).
    """

    def __init__(
        self,
        samplers: list[Sampler],
        host: str,
        rate_hz: float = 20.0,
        on_batch: Callable[[list[Sample]], None] | None = None,
        batch_size: int | None = None,
    ) -> None:
        if rate_hz <= 0:
            raise ValueError(f"rate_hz must be positive, got {rate_hz}")
        self.samplers = list(samplers)
        self.host = host
        self.period_ns = round(1e9 / rate_hz)
        self.on_batch = on_batch or (lambda rows: None)
        self.batch_size = max(1, batch_size if batch_size is not None else round(rate_hz * 0.5))
        self.template: Reading = {m: None for s in self.samplers for m in s.metrics}
        self.samples = 0
        self.missed_ticks = 0
        self.batches = 0
        self.sampler_errors: Counter[str] = Counter()
        self.tick_wall_s = 0.0  # wall time spent reading sensors, all ticks together
        self._cpu_s = 0.0
        self._stop = threading.Event()
        self._stop_ns = 0  # when stop() was called: the last tick is the first one at or after it
        self._thread = threading.Thread(target=self._run, name=f"telemetry-{host}", daemon=True)

    def cpu_time_s(self) -> float:
        """CPU seconds the sampling thread has used so far (``time.thread_time`` inside it)."""
        return self._cpu_s

    def tick(self) -> Sample:
        """One row: every sampler read once, failures isolated."""
        row: Sample = {"t_ns": time.monotonic_ns(), "host": self.host, "source": ""}
        row.update(self.template)
        answered = []
        for s in self.samplers:
            try:
                row.update(s.read())
                answered.append(s.name)
            except Exception as exc:  # a failing sensor must not stop the others
                self.sampler_errors[s.name] += 1
                level = logging.WARNING if self.sampler_errors[s.name] == 1 else logging.DEBUG
                log.log(level, "sampler %s failed (%d so far): %r", s.name, self.sampler_errors[s.name], exc)
        row["source"] = "+".join(answered)
        return row

    def _run(self) -> None:
        cpu0 = time.thread_time()
        start = time.monotonic_ns()
        k = 0
        batch: list[Sample] = []
        while True:
            row = self.tick()
            now = time.monotonic_ns()
            self.tick_wall_s += (now - row["t_ns"]) / 1e9
            batch.append(row)
            self.samples += 1
            if self._stop.is_set() and row["t_ns"] >= self._stop_ns:
                break
            if len(batch) >= self.batch_size:
                self._flush(batch)
                batch = []
            k += 1
            next_ns = start + k * self.period_ns
            now = time.monotonic_ns()
            if next_ns < now:  # late: skip the ticks already missed, keep the grid
                skipped = (now - next_ns) // self.period_ns + 1
                self.missed_ticks += skipped
                k += skipped
                next_ns = start + k * self.period_ns
            self._cpu_s = time.thread_time() - cpu0
            # time.sleep wakes for about half the CPU of Event.wait, which
            # serves only the long waits of slow rates.
            delay_s = (next_ns - now) / 1e9
            if delay_s > 0.1 and self._stop.wait(delay_s):  # stopped: the closing tick still keeps the grid
                delay_s = (next_ns - time.monotonic_ns()) / 1e9
            if delay_s > 0:
                time.sleep(delay_s)
        self._flush(batch)
        self._cpu_s = time.thread_time() - cpu0

    def _flush(self, batch: list[Sample]) -> None:
        if not batch:
            return
        self.batches += 1
        try:
            self.on_batch(batch)
        except Exception:
            log.exception("telemetry batch callback failed")

    def start(self) -> None:
        self._thread.start()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop after one more tick, deliver the last batch and wait for the thread (``timeout_s`` past that tick)."""
        self._stop_ns = time.monotonic_ns()
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout_s + self.period_ns / 1e9)
            if self._thread.is_alive():
                log.warning("telemetry thread %s did not stop within %.1f s", self._thread.name, timeout_s)

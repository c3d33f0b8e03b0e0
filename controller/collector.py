"""Telemetry collection: a SUB socket for the agents' batches, CSV per host.

Agents publish ``TELEMETRY`` batches on an XPUB socket connected to this
collector's SUB; the controller's own sampler writes here directly.  Each
host gets ``telemetry/<host>.csv`` with one row per sample; the columns are
those of the host's first batch (``t_ns`` first, on that host's monotonic
clock; ``manifest.json`` holds the offsets to the controller's clock).
Empty cells are missing readings, never zeros.
"""

from __future__ import annotations

import csv
import logging
import threading
import time
from collections import Counter
from pathlib import Path

import zmq

from agent.limits import TELEMETRY_FRAME_BYTES
from agent.protocol import ProtocolError, Telemetry, decode
from controller.keys import Enrolment

log = logging.getLogger(__name__)


#: Called with (host, columns, rows) for every batch of telemetry rows written, in any collector
#: of this process (the live view reads power from it); ``controller.live`` adds and removes itself.
ROW_LISTENERS: list = []


class TelemetryCollector:
    """Receives and writes telemetry in a background thread."""

    def __init__(
        self,
        out_dir: Path,
        endpoint: str = "tcp://127.0.0.1:*",
        subdir: str = "telemetry",
        enrolment: Enrolment | None = None,
    ) -> None:
        self.dir = Path(out_dir) / subdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.ctx = zmq.Context.instance()
        self.sock = self.ctx.socket(zmq.SUB)
        self.sock.setsockopt(zmq.SUBSCRIBE, b"")
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.MAXMSGSIZE, TELEMETRY_FRAME_BYTES)
        # with CURVE, only enrolled agents publish, each under its own name only
        self.secure = enrolment is not None and enrolment.secure
        if enrolment is not None:
            enrolment.serve(self.sock)
        self.sock.bind(endpoint)
        self.endpoint = self.sock.getsockopt_string(zmq.LAST_ENDPOINT)
        self.rows: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self.dropped_columns: Counter[str] = Counter()
        self.ended: set[str] = set()  # hosts whose publisher sent the end of its stream
        self._files: dict[str, tuple[object, csv.writer, list[str]]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="telemetry-collector", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def write(self, host: str, columns: list[str], rows: list[list]) -> None:
        """Append rows for ``host`` (thread-safe; the controller's sampler calls it too)."""
        with self._lock:
            if host not in self._files:
                safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in host)
                fh = open(self.dir / f"{safe}.csv", "w", newline="", encoding="utf-8")
                writer = csv.writer(fh)
                writer.writerow(columns)
                self._files[host] = (fh, writer, list(columns))
            fh, writer, header = self._files[host]
            if columns == header:
                writer.writerows([["" if v is None else v for v in row] for row in rows])
            else:
                where = {c: i for i, c in enumerate(columns)}
                for c in set(columns) - set(header):
                    self.dropped_columns[f"{host}:{c}"] += len(rows)
                for row in rows:
                    writer.writerow(["" if (i := where.get(c)) is None or row[i] is None else row[i] for c in header])
            fh.flush()
            self.rows[host] += len(rows)
        for listener in list(ROW_LISTENERS):
            listener(host, columns, rows)

    def _handle(self, frame: zmq.Frame) -> None:
        try:
            msg = decode(frame.bytes)
            if not isinstance(msg, Telemetry):
                raise ProtocolError("unexpected", f"{type(msg).__name__} on the telemetry socket")
            if self.secure and msg.host != (enrolled := frame.get("User-Id")):
                raise ProtocolError("not_enrolled", f"telemetry for {msg.host!r} from the key of {enrolled!r}")
            if msg.ends_stream:
                self.ended.add(msg.host)
            else:
                self.write(msg.host, msg.columns, msg.rows)
        except ProtocolError as exc:
            self.errors[exc.code] += 1
            log.warning("bad telemetry frame: %s", exc)
        except Exception:  # the collector outlives any frame
            self.errors["internal"] += 1
            log.exception("failed writing a telemetry frame")

    def _run(self) -> None:
        poller = zmq.Poller()
        poller.register(self.sock, zmq.POLLIN)
        while not self._stop.is_set():
            if poller.poll(100):
                self._handle(self.sock.recv(copy=False))

    def stop(self, expect: set[str] | frozenset[str] = frozenset(), quiet_s: float = 0.5, max_s: float = 5.0) -> None:
        """Stop the thread, write what is still arriving, close the files.

        An agent flushes its last batch when the controller says bye, then ends
        its stream with an empty batch.  Frames are read until every host in
        ``expect`` has ended its stream, or else until ``quiet_s`` passes
        without a frame (a host that was lost, or a publisher that sends no
        end), ``max_s`` at most.
        """
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)
        deadline = time.monotonic() + max_s
        while time.monotonic() < deadline and not (expect and set(expect) <= self.ended):
            if not self.sock.poll(int(quiet_s * 1000)):
                break
            self._handle(self.sock.recv(copy=False))
        with self._lock:
            for fh, _, _ in self._files.values():
                fh.close()
            self._files.clear()
        self.sock.close()

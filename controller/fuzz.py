"""``specbed bench fuzz``: malformed frames against ``agent.protocol.decode``, seeded.

Every receiver (controller, agent, telemetry collector) hands each frame to
``decode`` first, so ``decode`` must turn any bytes into a message or a
``ProtocolError`` quickly and without keeping memory.  The generator mixes
random bytes, truncated and bit-flipped valid frames, one field replaced by
a value of another type (every field of every message type in turn), huge
declared lengths, deep nesting and amplification layouts (a 16 MB frame of
empty arrays, a frame that declares a 4 GiB string).  The report counts
exceptions other than ``ProtocolError`` (must be 0), calls that take more than
``SLOW_CALL_S`` of CPU time (must be 0; CPU time, because wall time on a
shared machine also counts other processes' turns; the slowest wall time
is reported beside it) and the process's resident memory before and
after.
"""

from __future__ import annotations

import gc
import os
import random
import time
from collections import Counter
from collections.abc import Callable, Iterator

import msgpack
import numpy as np

from agent.protocol import (
    PROTOCOL_VERSION,
    Bye,
    Configure,
    DraftPayload,
    DraftRequest,
    Error,
    Hello,
    HiddenAnswer,
    HiddenRequest,
    LinkUpdate,
    Message,
    MsgType,
    ProtocolError,
    Ready,
    Telemetry,
    TimePing,
    TimePong,
    Verdict,
    decode,
    encode,
)

SLOW_CALL_S = 0.1
VOCAB = 49152
AMPLIFY_BYTES = 16 * 1024 * 1024


def rss_bytes() -> int:
    """Resident set size of this process (Linux /proc; 0 elsewhere)."""
    try:
        with open(f"/proc/{os.getpid()}/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def valid_messages() -> list[Message]:
    """One well-formed message of every type (the seeds mutations start from)."""
    rng = np.random.default_rng(0)
    gamma, k = 4, 8
    idx = np.stack([rng.choice(VOCAB, size=k, replace=False) for _ in range(gamma)])
    probs = (rng.dirichlet(np.ones(k * 4), size=gamma)[:, :k]).astype(np.float16)
    payload = DraftPayload(
        3, 1, gamma, k, "uint16", "float16", idx[:, 0], probs[:, 0].astype(np.float32), idx, probs, [1, 2, 3, 0, 0]
    )
    settings = {
        "drafter": {"source": "bundled", "name": "d"},
        "vocab_size": VOCAB,
        "temperature": 1.0,
        "top_k": k,
        "sampling": "full",
        "prob_dtype": "float16",
        "index_dtype": "uint16",
        "telemetry": {"port": 5556, "rate_hz": 20.0, "host_sampler": "psutil"},
        "link": {"up": {"rate_bps": 1e6}, "down": {}, "seed": 1},
    }
    return [
        Hello("orin-1", {"hostname": "orin-1", "cpu_count": 8, "pid": 42}),
        Configure(settings),
        Ready({"drafter": "d", "vocab_size": VOCAB, "load_s": 1.5}),
        DraftRequest(7, "p0", [1, 2, 3, 4, 5], 4, 99),
        payload,
        Verdict(3, 1, 2, 77, False, 4, [10, 20]),
        Error("malformed", "bad", {"field": "x"}),
        Bye("done"),
        TimePing(1, 123),
        TimePong(1, 123, 456, 789),
        Telemetry("orin-1", ["t_ns", "cpu_percent", "gpu"], [[1, 50.0, None], [2, 51.5, "x"]]),
        LinkUpdate({"rate_bps": 1e6}, {}),
        HiddenRequest(3, 1, [0, 2]),
        HiddenAnswer(3, 1, [0, 2], "float16", 6, np.ones((2, 6), dtype=np.float16)),
    ]


def confusing_values(rng: random.Random) -> list:
    """Values of every msgpack type, edge-sized, for type confusion."""
    big = rng.choice([4096, 70000])
    return [
        None,
        True,
        False,
        0,
        -1,
        2**63 - 1,
        2**64 - 1,
        -(2**63),
        1.5,
        float("nan"),
        float("inf"),
        "",
        "float16",
        "x" * big,
        b"",
        b"\x00" * big,
        [],
        {},
        [[]],
        {"a": []},
        ["float16"],
        {"float16": 1},
        [1] * big,
        [[[[[[[[[[]]]]]]]]]],
        {"t_ns": [None] * 10},
        list(range(40)),
    ]


def _header_prefixes() -> list[bytes]:
    """Valid frame headers: fixarray of each type's field count, version, type code."""
    out = []
    for msg in valid_messages():
        frame = encode(msg)
        out.append(frame[:3])
    return out


class FrameGenerator:
    """Malformed (and a few well-formed) frames, reproducible from ``seed``."""

    def __init__(self, seed: int = 0) -> None:
        self.rng = random.Random(seed)
        self.valid = [encode(m) for m in valid_messages()]
        self.wires = [[PROTOCOL_VERSION, int(m.TYPE), *m.to_wire()] for m in valid_messages()]
        self.heads = _header_prefixes()
        self._amplify = self._amplification_frames()
        self.kinds: list[tuple[str, int, Callable[[], bytes]]] = [
            ("random_bytes", 20, self.random_bytes),
            ("truncated", 15, self.truncated),
            ("bit_flip", 15, self.bit_flip),
            ("field_type", 30, self.field_type),
            ("huge_length", 8, self.huge_length),
            ("deep_nesting", 5, self.deep_nesting),
            ("valid", 6, self.valid_frame),
            ("amplification", 1, self.amplification),
        ]
        self._weights = [w for _, w, _ in self.kinds]

    def __iter__(self) -> Iterator[tuple[str, bytes]]:
        while True:
            kind, _, make = self.rng.choices(self.kinds, weights=self._weights)[0]
            yield kind, make()

    def random_bytes(self) -> bytes:
        n = self.rng.choice([0, 1, 2, 3, 8, 32, 256, 4096])
        head = self.rng.choice([b"", *self.heads])
        return head + self.rng.randbytes(n)

    def truncated(self) -> bytes:
        frame = self.rng.choice(self.valid)
        return frame[: self.rng.randrange(len(frame))]

    def bit_flip(self) -> bytes:
        frame = bytearray(self.rng.choice(self.valid))
        for _ in range(self.rng.randint(1, 4)):
            i = self.rng.randrange(len(frame))
            frame[i] ^= 1 << self.rng.randrange(8)
        return bytes(frame)

    def field_type(self) -> bytes:
        """One field (or a key of a map field) replaced by a value of another type."""
        wire = list(self.rng.choice(self.wires))
        i = self.rng.randrange(2, len(wire))
        value = self.rng.choice(confusing_values(self.rng))
        if isinstance(wire[i], dict) and wire[i] and self.rng.random() < 0.5:
            field = dict(wire[i])
            field[self.rng.choice(sorted(field))] = value
            wire[i] = field
        elif isinstance(wire[i], list) and wire[i] and self.rng.random() < 0.5:
            field = list(wire[i])
            field[self.rng.randrange(len(field))] = value
            wire[i] = field
        else:
            wire[i] = value
        if self.rng.random() < 0.1:
            wire.append(value)  # a field too many
        return msgpack.packb(wire, use_bin_type=True)

    def huge_length(self) -> bytes:
        """A container, string or binary that declares up to 4 GiB it does not hold."""
        marker = self.rng.choice([b"\xdd", b"\xdf", b"\xdb", b"\xc6", b"\xc9", b"\xdc", b"\xde", b"\xda", b"\xc5"])
        width = {b"\xdc": 2, b"\xde": 2, b"\xda": 2, b"\xc5": 2}.get(marker, 4)
        length = (1 << (8 * width)) - 1 - self.rng.randrange(16)
        body = marker + length.to_bytes(width, "big") + (b"\x01" if marker == b"\xc9" else b"")
        return self.rng.choice(self.heads) + body + self.rng.randbytes(self.rng.choice([0, 16, 1024]))

    def deep_nesting(self) -> bytes:
        depth = self.rng.choice([10, 100, 1000, 5000, 100_000])
        opener = self.rng.choice([b"\x91", b"\x81\xa1a"])
        return self.rng.choice(self.heads) + opener * depth + b"\xc0"

    def valid_frame(self) -> bytes:
        return self.rng.choice(self.valid)

    def _amplification_frames(self) -> list[bytes]:
        n = AMPLIFY_BYTES
        rows = b"\xdd" + (n).to_bytes(4, "big") + b"\x90" * n  # array32 of n empty arrays
        tele = b"\x95\x03\x0b\xa1h\x91\xa4t_ns" + rows
        return [
            b"\x90" * n,  # 16 MB of empty arrays, no header
            tele,  # a telemetry batch of 16 M empty rows
            b"\x9f\x03\x05" + b"\x90" * n,  # a draft payload of empty arrays
            b"\x95\x03\x04\x01\xa1p" + rows,  # a draft request of 16 M empty token ids
            b"\x9f\x03\x05" + b"\xc4\x00" * (n // 2),  # a payload of empty binaries
        ]

    def amplification(self) -> bytes:
        return self.rng.choice(self._amplify)


def run_fuzz(frames: int, seed: int = 0, progress: Callable[[int], None] | None = None) -> dict:
    """Feed ``frames`` generated frames to ``decode`` (with and without a vocabulary); the report."""
    gen = FrameGenerator(seed)
    gc.collect()
    rss_before = rss_bytes()
    outcomes: Counter[str] = Counter()
    kinds: Counter[str] = Counter()
    other: Counter[str] = Counter()
    examples: list[dict] = []
    slow = 0
    worst_s = worst_cpu_s = 0.0
    t0 = time.monotonic()
    rss_after_warmup = None
    for n, (kind, frame) in enumerate(gen):
        if n >= frames:
            break
        if n == min(1000, frames // 10):
            gc.collect()
            rss_after_warmup = rss_bytes()
        kinds[kind] += 1
        vocab = VOCAB if n % 2 else None
        start, start_cpu = time.perf_counter(), time.thread_time()
        try:
            decode(frame, vocab_size=vocab)
            outcome = "ok"
        except ProtocolError as exc:
            outcome = exc.code
        except Exception as exc:  # the finding this command exists for
            outcome = "other_exception"
            other[type(exc).__name__] += 1
            if len(examples) < 10:
                examples.append({"kind": kind, "exception": repr(exc)[:200], "frame_hex": frame[:64].hex()})
        cpu_s = time.thread_time() - start_cpu
        worst_s, worst_cpu_s = max(worst_s, time.perf_counter() - start), max(worst_cpu_s, cpu_s)
        if cpu_s > SLOW_CALL_S:
            slow += 1
        outcomes[outcome] += 1
        if progress and n % 10_000 == 0:
            progress(n)
        del frame
    gc.collect()
    rss_after = rss_bytes()
    return {
        "frames": sum(kinds.values()),
        "seed": seed,
        "kinds": dict(sorted(kinds.items())),
        "outcomes": dict(sorted(outcomes.items())),
        "other_exceptions": sum(other.values()),
        "other_exception_types": dict(other),
        "examples": examples,
        "slow_calls": slow,
        "slow_call_threshold_s": SLOW_CALL_S,
        "slowest_call_cpu_s": round(worst_cpu_s, 4),
        "slowest_call_wall_s": round(worst_s, 4),
        "rss_before_bytes": rss_before,
        "rss_after_warmup_bytes": rss_after_warmup,
        "rss_after_bytes": rss_after,
        "wall_s": round(time.monotonic() - t0, 1),
    }


def fuzz_ok(result: dict) -> bool:
    """The pass criteria: no other exception, no slow call."""
    return result["other_exceptions"] == 0 and result["slow_calls"] == 0


__all__ = ["FrameGenerator", "MsgType", "run_fuzz", "fuzz_ok", "rss_bytes"]

"""What one frame may cost its receiver: byte, container and nesting bounds per message type.

msgpack turns every byte of a frame into up to ~60 bytes of Python objects
(an empty array is one byte on the wire and a list in memory), so a frame is
only unpacked once its header says which message it claims to be, and then
with that message type's limits: a draft payload holds a handful of fields
and four byte strings, never thousands of arrays; a telemetry batch holds
rows of numbers, never maps.  Everything over a limit is ``ProtocolError``
("too_large" or "malformed") before any large allocation.

The receiving sockets also carry ``ZMQ_MAXMSGSIZE`` (``max_frame_bytes``):
ZeroMQ closes a connection that announces a larger frame before reading it.
"""

from __future__ import annotations

from dataclasses import dataclass

KIB = 1024
MIB = 1024 * KIB


@dataclass(frozen=True)
class Limits:
    """Bounds for one message type; ``frame_bytes`` None: bounded by the socket's ZMQ_MAXMSGSIZE."""

    frame_bytes: int | None
    array_len: int
    map_len: int
    str_len: int
    bin_len: int
    depth: int  # containers inside containers, the frame's own array counting 1


#: The largest prompt, in tokens, a draft request may carry.
MAX_PROMPT_TOKENS = 1 << 16
#: Telemetry batches: a second of 20 Hz samples of ~40 columns is ~10 KiB.
TELEMETRY_FRAME_BYTES = 256 * KIB

# keyed by MsgType value (agent.protocol imports this module)
TYPE_LIMITS: dict[int, Limits] = {
    1: Limits(64 * KIB, 64, 128, 4 * KIB, 0, 4),  # HELLO: name, facts
    2: Limits(256 * KIB, 1024, 128, 4 * KIB, 0, 8),  # CONFIGURE: settings (links may hold traces)
    3: Limits(256 * KIB, 256, 128, 4 * KIB, 0, 8),  # READY: info (telemetry sampler descriptions)
    4: Limits(8 * MAX_PROMPT_TOKENS + KIB, MAX_PROMPT_TOKENS, 0, 4 * KIB, 0, 2),  # DRAFT_REQUEST
    5: Limits(None, 16, 8, 64, 1 << 31, 2),  # DRAFT_PAYLOAD: scalars, 4-5 byte strings, times, link
    6: Limits(KIB, 16, 0, 64, 0, 2),  # VERDICT
    7: Limits(64 * KIB, 64, 64, 16 * KIB, 0, 3),  # ERROR: code, message, context
    8: Limits(16 * KIB, 4, 0, 8 * KIB, 0, 1),  # BYE
    9: Limits(KIB, 4, 0, 0, 0, 1),  # TIME_PING
    10: Limits(KIB, 8, 0, 0, 0, 1),  # TIME_PONG
    11: Limits(TELEMETRY_FRAME_BYTES, 4096, 0, 256, 0, 3),  # TELEMETRY: host, columns, rows of scalars
    12: Limits(KIB, 4, 4, 64, 0, 2),  # LINK
    13: Limits(8 * MAX_PROMPT_TOKENS + KIB, MAX_PROMPT_TOKENS, 0, 64, 0, 2),  # SCORE_REQUEST (SpecFed)
    14: Limits(None, 16, 8, 64, 1 << 31, 2),  # SCORE_PAYLOAD (SpecFed): like DRAFT_PAYLOAD
    15: Limits(8 * KIB, 1024, 0, 0, 0, 2),  # HIDDEN_REQUEST (WISV): up to 1024 positions
    16: Limits(None, 1024, 0, 64, 1 << 31, 2),  # HIDDEN_ANSWER (WISV): positions and one block of rows
}


def payload_frame_bytes(vocab_size: int, gamma_max: int) -> int:
    """The largest legal ``DRAFT_PAYLOAD`` frame of a session, in bytes.

    The worst legal layout: K = V entries per draft token with 4-byte indices
    and 4-byte probabilities (8·V bytes), plus the token, q(x) and TV arrays
    (12 bytes) per token, times γ_max, plus 1 KiB of scalars, times and link
    state.  A dense float32 payload (V·4·γ) is smaller, also with WISV's
    hidden states (d·4 bytes per token) as long as the drafter's hidden size
    d is at most V, as in every model pair specbed names.
    """
    return gamma_max * (8 * vocab_size + 12) + KIB


def controller_frame_bytes(vocab_size: int, gamma_max: int) -> int:
    """ZMQ_MAXMSGSIZE of the controller's ROUTER: a payload, or the largest other message."""
    return max(payload_frame_bytes(vocab_size, gamma_max), 256 * KIB)


#: ZMQ_MAXMSGSIZE of an agent's DEALER: the largest draft request or CONFIGURE.
AGENT_FRAME_BYTES = max(TYPE_LIMITS[4].frame_bytes, TYPE_LIMITS[2].frame_bytes)


def depth_of(obj: object, limit: int) -> int:
    """Nesting depth of lists and maps in ``obj`` (1 for a flat list), counted up to ``limit + 1``.

    Iterative, so a deep frame cannot exhaust the interpreter's stack; it
    stops descending once ``limit`` is exceeded.
    """
    deepest = 0
    stack = [(obj, 1)]
    while stack:
        item, d = stack.pop()
        if isinstance(item, list):
            children = item
        elif isinstance(item, dict):
            children = list(item.values())
        else:
            continue
        deepest = max(deepest, d)
        if deepest > limit:
            return deepest
        stack.extend((c, d + 1) for c in children if isinstance(c, (list, dict)))
    return deepest

"""The specbed wire protocol: every message between agent and controller.

One ZeroMQ frame carries one message, a msgpack array::

    [PROTOCOL_VERSION, type_code, field_1, field_2, ...]

Positional fields keep the per-round draft payload small (the top-K payload
is the quantity the papers measure, so its framing overhead matters).
Arrays travel as raw little-endian bytes whose dtype and shape are given by
other fields, never as msgpack lists.

Message types (direction, fields in order):

``HELLO`` (1, agent -> controller)
    ``agent`` str name, ``facts`` map of host facts (hostname, platform,
    python, torch, cpu_count, memory_bytes, pid, accelerator).
``CONFIGURE`` (2, controller -> agent)
    ``settings`` map: ``drafter`` (model spec, see ``agent.models``),
    ``vocab_size`` int (the target's), ``temperature`` float >= 0,
    ``top_k`` int, ``sampling`` "full" | "top-k", ``prob_dtype`` "float16" |
    "float32", ``index_dtype`` "uint8" | "uint16" | "uint32" | "none"
    ("none": the dense full distribution, ``top_k`` equal to the vocabulary
    and no indices sent); optional ``reconstruction`` "renormalise" |
    "tail-fill" (what the server rebuilds q from; the agent measures the
    fidelity of that reconstruction), ``link`` map (``up`` and ``down``
    link descriptions emulated in the agent's transport, see ``agent.link``,
    and ``seed``), ``draft_delay_s`` float (emulated extra drafting time per
    token, for devices slower than the host) and ``telemetry`` map: ``port`` int
    (the controller's SUB socket on the controller's host), ``rate_hz``
    float, ``host_sampler`` str; optional ``device`` "cpu" | "cuda" |
    "cuda:N" (where to draft; default: the agent's ``--device``) and
    ``dtype`` "auto" | "bfloat16" | "float16" | "float32" (the drafter's
    weights, see ``agent.models.resolve_dtype``).  A controller may send ``CONFIGURE`` again
    between requests (a new grid point of an experiment); the agent keeps a
    drafter already loaded when spec, device and dtype are unchanged and answers ``READY``.
``READY`` (3, agent -> controller)
    ``info`` map: ``drafter`` name, ``vocab_size``, ``load_s``, ``device``
    and ``dtype`` (where and in which dtype the drafter was loaded).
``DRAFT_REQUEST`` (4, controller -> agent)
    ``request_id`` int, ``prompt_id`` str, ``token_ids`` list of int (the
    whole committed sequence: the agent resets its state to it),
    ``draft_length`` int (γ of the first round), ``seed`` int (drafting RNG).
``DRAFT_PAYLOAD`` (5, agent -> controller), one per round
    ``request_id``, ``round`` int, ``draft_length`` γ, ``top_k`` K,
    ``index_dtype`` code, ``prob_dtype`` code, ``token_ids`` bytes [γ]
    (index dtype), ``draft_probs`` bytes [γ] float32 (exact q_i(x_i) of the
    distribution the token was sampled from), ``topk_indices`` bytes [γ, K]
    (index dtype; empty for index dtype "none", where the K = V values are in
    token order), ``topk_probs`` bytes [γ, K] (prob dtype), ``times`` list
    of 5 ints, agent monotonic ns: draft start, draft end, packed/sent,
    receipt of the previous verdict and the end of its rollback (both 0 on a
    request's first round), ``tv`` bytes [γ] float32 or empty: the
    total-variation distance between the distribution the token was drawn
    from and the server's reconstruction of it from this payload, computed
    by the drafter (empty when not measured, e.g. greedy drafting),
    ``link`` map: the channel state the payload saw on an emulated link,
    ``rate_bps`` and ``snr_db`` (float or nil) when it was sent, ``up_s`` the
    emulated uplink seconds it was held back, ``down_s`` those of the
    previous verdict (empty map without emulation).
``VERDICT`` (6, controller -> agent), one per round
    ``request_id``, ``round``, ``n_accepted`` int, ``next_token`` int (the
    recovered or bonus token), ``done`` bool, ``draft_length`` int (γ of the
    next round), ``times`` list of 2 ints, controller monotonic ns: payload
    received, verdict sent.
``ERROR`` (7, either way)
    ``code`` str (one of ``ERROR_CODES``), ``message`` str, ``context`` map.
``BYE`` (8, either way)
    ``reason`` str.
``TIME_PING`` (9, controller -> agent)
    ``seq`` int, ``t1_ns`` controller monotonic ns at sending.
``TIME_PONG`` (10, agent -> controller)
    ``seq``, ``t1_ns`` echoed, ``t2_ns`` agent ns at receipt, ``t3_ns``
    agent ns at reply: NTP's four timestamps with the controller's receipt.
``TELEMETRY`` (11, agent XPUB -> controller SUB)
    ``host`` str, ``columns`` list of str, ``rows`` list of lists (numbers
    or nil for a missing reading), ``t_ns`` the first column, on the
    agent's clock.
``LINK`` (12, controller -> agent)
    ``up`` map and ``down`` map, each empty or with ``rate_bps`` (a new
    fixed rate, bit/s) or ``bandwidth_hz`` (a new share of the band an SNR
    link is mapped through): a bandwidth re-allocation, applied by the
    agent's link emulator from its next message on.  A controller sends it
    before the verdict it applies to.

``SCORE_REQUEST`` (13, controller -> worker), one per worker per round (SpecFed)
    ``request_id`` int (the session: a worker keeps one KV cache per
    request), ``round`` int, ``base`` int (how many tokens of the previous
    request's sequence to keep; 0 for a new request), ``token_ids`` list of
    int (the tokens after those ``base``: the sequence is the committed
    context followed by the γ drafts), ``draft_length`` γ int (the last γ
    tokens of the sequence are the drafts), ``measure`` bool (also send the
    dense distributions, measurement traffic).
``SCORE_PAYLOAD`` (14, worker -> controller), the answer to a score request
    ``request_id``, ``round``, ``draft_length`` γ, ``top_k`` K,
    ``index_dtype`` code, ``prob_dtype`` code (as in ``DRAFT_PAYLOAD``),
    ``topk_indices`` bytes [γ + 1, K] (index dtype; empty for "none"),
    ``topk_probs`` bytes [γ + 1, K] (prob dtype): the worker's distribution
    p_m at each draft position and at the bonus position, ``dense_probs``
    bytes [γ + 1, V] float32 or empty: the full p_m when ``measure`` was
    asked (measurement traffic, not counted as uplink bytes and not held by
    an emulated uplink), ``times`` list of 3 ints, worker monotonic ns:
    request received, forward pass done, sent, ``link`` map as in
    ``DRAFT_PAYLOAD``.

WISV (protocol version 5, ``agent.protocol.hidden``): ``CONFIGURE``'s
optional ``hidden`` map (``upload`` "full" | "selective", ``dtype``
"float16" | "float32") asks the drafter for its last-layer hidden states.
With "full", every ``DRAFT_PAYLOAD`` of that agent carries a 14th field,
``hidden`` bytes [γ, width] (hidden dtype), and a receiver decodes with
``decode(..., hidden_dtype=...)``; without it a payload has 13 fields and a
14th is refused.  With "selective":

``HIDDEN_REQUEST`` (15, controller -> agent), after a payload with mismatches
    ``request_id``, ``round`` (the payload asked about), ``positions`` list of
    1 to 1024 distinct increasing ints: the mismatched draft positions.
``HIDDEN_ANSWER`` (16, agent -> controller), the answer to one request
    ``request_id``, ``round``, ``positions`` (echoed), ``hidden_dtype``
    "float16" | "float32", ``width`` int in [1, 65536] (the drafter's hidden
    size), ``hidden`` bytes [len(positions), width] (hidden dtype).

Decoding validates everything and raises ``ProtocolError`` whose ``code``
is the counter the receiver increments.

The package holds one part each: ``wire`` (version, dtypes, error codes,
field validators), ``messages`` (the control messages), ``draft`` (the
draft payload), ``specfed`` (the score messages), ``hidden`` (WISV's hidden
states) and ``frames`` (``encode`` and ``decode``); this module hands their
names on.
"""

from agent.protocol.draft import DraftPayload
from agent.protocol.frames import MESSAGE_TYPES, decode, encode
from agent.protocol.hidden import HIDDEN_DTYPES, HIDDEN_UPLOADS, HiddenAnswer, HiddenRequest
from agent.protocol.messages import (
    Bye,
    Configure,
    DraftRequest,
    Error,
    Hello,
    LinkUpdate,
    Ready,
    Telemetry,
    TimePing,
    TimePong,
    Verdict,
)
from agent.protocol.specfed import ScorePayload, ScoreRequest
from agent.protocol.wire import (
    DENSE,
    ERROR_CODES,
    INDEX_DTYPES,
    MODEL_DTYPES,
    NAME_PATTERN,
    PAYLOAD_TIMES,
    PROB_DTYPES,
    PROTOCOL_VERSION,
    RECONSTRUCTIONS,
    SAMPLING_MODES,
    WIRE_INDEX_DTYPES,
    Message,
    MsgType,
    ProtocolError,
    index_dtype_for,
    zmtp_frame_bytes,
)

__all__ = [
    "DENSE",
    "ERROR_CODES",
    "HIDDEN_DTYPES",
    "HIDDEN_UPLOADS",
    "INDEX_DTYPES",
    "MESSAGE_TYPES",
    "MODEL_DTYPES",
    "NAME_PATTERN",
    "PAYLOAD_TIMES",
    "PROB_DTYPES",
    "PROTOCOL_VERSION",
    "RECONSTRUCTIONS",
    "SAMPLING_MODES",
    "WIRE_INDEX_DTYPES",
    "Bye",
    "Configure",
    "DraftPayload",
    "DraftRequest",
    "Error",
    "Hello",
    "HiddenAnswer",
    "HiddenRequest",
    "LinkUpdate",
    "Message",
    "MsgType",
    "ProtocolError",
    "Ready",
    "ScorePayload",
    "ScoreRequest",
    "Telemetry",
    "TimePing",
    "TimePong",
    "Verdict",
    "decode",
    "encode",
    "index_dtype_for",
    "zmtp_frame_bytes",
]

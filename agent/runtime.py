"""The agent process: a DEALER that drafts for the controller until told to stop.

Life of an agent: connect, ``HELLO`` with host facts, receive ``CONFIGURE``
(load the drafter it names), ``READY``; then for each ``DRAFT_REQUEST``
draft γ tokens, send a ``DRAFT_PAYLOAD``, apply the ``VERDICT`` (roll the
cache back to the accepted prefix, append the recovered or bonus token) and
draft again, until the verdict says ``done``; ``BYE`` ends the process.
"""

from __future__ import annotations

import logging
import os
import platform
import socket
import sys
import time

import zmq

from agent.drafter import Draft, Drafter
from agent.limits import AGENT_FRAME_BYTES
from agent.models import ModelError, load_model
from agent.protocol import (
    Bye,
    Configure,
    DraftPayload,
    DraftRequest,
    Error,
    Hello,
    HiddenRequest,
    LinkUpdate,
    Message,
    ProtocolError,
    Ready,
    Telemetry,
    TimePing,
    TimePong,
    Verdict,
    decode,
    encode,
    zmtp_frame_bytes,
)
from agent.security import ClientKeys, apply_client
from agent.settings import Settings

log = logging.getLogger(__name__)


def agent_facts(name: str) -> dict:
    import torch

    facts = {
        "agent": name,
        "hostname": socket.gethostname(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "pid": os.getpid(),
        "accelerator": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    try:
        facts["memory_bytes"] = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        facts["memory_bytes"] = None
    return facts


def rows_to_columns(rows: list[dict], shift_ns: int = 0) -> tuple[list[str], list[list]]:
    """Sample dicts to (columns, rows) for a ``TELEMETRY`` message; ``t_ns`` first."""
    names = sorted({k for r in rows for k in r} - {"t_ns", "host", "source"})
    columns = ["t_ns", *names]
    return columns, [[r["t_ns"] + shift_ns, *(r.get(c) for c in names)] for r in rows]


class TelemetryPublisher:
    """Samples this host off the drafting loop and publishes batches on an XPUB socket.

    The socket is connected here, in the agent's thread, so the connection
    is up before the first batch; afterwards only the sampler thread uses it.
    A PUB socket drops what it sends before the collector's subscription
    has arrived (ZeroMQ's slow joiner), so the socket is an XPUB, which
    receives that subscription: batches wait in ``pending`` until it has
    arrived, ``PENDING_BATCHES`` at most (the oldest beyond are dropped and
    counted in ``batches_dropped``); ``stop()`` waits up to
    ``SUBSCRIBE_WAIT_S`` for it before giving up on what is still pending.
    """

    PENDING_BATCHES = 240  # about 2 minutes of batches at the default two a second
    SUBSCRIBE_WAIT_S = 2.0

    def __init__(
        self,
        ctx: zmq.Context,
        endpoint: str,
        host: str,
        rate_hz: float,
        shift_ns: int,
        host_sampler: str = "psutil",
        keys: ClientKeys | None = None,
    ) -> None:
        from agent.telemetry import TelemetryThread, auto_samplers

        self.host, self.shift_ns = host, shift_ns
        self.sock = ctx.socket(zmq.XPUB)
        self.sock.setsockopt(zmq.LINGER, 2000)
        apply_client(self.sock, keys)
        self.sock.connect(endpoint)
        self.subscribed = False
        self.pending: list[bytes] = []
        self.batches_sent = 0
        self.batches_dropped = 0
        self.samplers = auto_samplers(os.getpid(), host_sampler=host_sampler)
        self.thread = TelemetryThread(self.samplers, host, rate_hz=rate_hz, on_batch=self._publish)

    def _check_subscribed(self, wait_s: float = 0.0) -> bool:
        """Read the collector's subscription off the XPUB, waiting up to ``wait_s`` for it."""
        deadline = time.monotonic() + wait_s
        while not self.subscribed:
            left_ms = max(0, round((deadline - time.monotonic()) * 1000))
            if not self.sock.poll(left_ms, zmq.POLLIN):
                break
            if self.sock.recv()[:1] == b"\x01":  # a subscribe (\x00 is an unsubscribe)
                self.subscribed = True
        return self.subscribed

    def _send(self, frame: bytes, wait_s: float = 0.0) -> None:
        self.pending.append(frame)
        if self._check_subscribed(wait_s):
            for f in self.pending:
                self.sock.send(f)
            self.batches_sent += len(self.pending)
            self.pending.clear()
        elif len(self.pending) > self.PENDING_BATCHES:
            del self.pending[0]
            self.batches_dropped += 1
            if self.batches_dropped == 1:
                log.warning("telemetry: no subscription from the collector yet; dropping the oldest batches")

    def _publish(self, rows: list[dict]) -> None:
        if rows:
            columns, data = rows_to_columns(rows, self.shift_ns)
            self._send(encode(Telemetry(self.host, columns, data)))

    def describe(self) -> list[dict]:
        return self.samplers.describe()  # the missing families too, with reasons

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.thread.stop()  # publishes the last samples
        if not self.thread.alive:  # a sampler stuck in a sensor read still owns the socket
            # the end of this host's stream (a batch with no rows): the collector stops waiting for it
            self._send(encode(Telemetry(self.host, ["t_ns"], [])), wait_s=self.SUBSCRIBE_WAIT_S)
            if self.pending:
                self.batches_dropped += len(self.pending) - 1
                log.warning("telemetry: the collector never subscribed; %d batches not sent", self.batches_dropped)
        self.sock.close()


class Agent:
    """One drafter serving one controller over a DEALER socket."""

    def __init__(
        self,
        connect: str,
        name: str,
        device: str = "cpu",
        idle_timeout_s: float = 600.0,
        clock_shift_ns: int = 0,
        keys: ClientKeys | None = None,
    ) -> None:
        self.name = name
        self.keys = keys  # CURVE keys (agent.security); None: in the clear (--insecure)
        # Added to every timestamp this agent reports: lets tests give an
        # agent a clock with a known offset from the controller's.
        self.clock_shift_ns = clock_shift_ns
        self.device = device
        self.idle_timeout_s = idle_timeout_s
        self.ctx = zmq.Context.instance()
        self.sock = self.ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 1000)
        self.sock.setsockopt(zmq.MAXMSGSIZE, AGENT_FRAME_BYTES)  # a larger frame closes the connection unread
        apply_client(self.sock, keys)
        self.sock.connect(connect)
        self.connect = connect
        self.drafter: Drafter | None = None
        self.loaded = None  # LoadedModel, kept across CONFIGUREs naming the same spec
        self.loaded_spec: tuple | None = None  # (spec, device, dtype) of the loaded drafter
        self.vocab_size: int | None = None
        self.request: DraftRequest | None = None
        self.round = 0
        self.draft_length = 1
        self.last_verdict_ns = 0
        self.last_rollback_ns = 0
        self.errors_received = 0
        self.errors_sent = 0  # bad frames from the controller and requests this agent could not serve
        self.telemetry = None  # TelemetryPublisher once configured with an endpoint
        self.uplink = self.downlink = None  # agent.link.Link when the controller asks for emulation
        self.draft_delay_s = 0.0
        self.last_down_s = 0.0
        self.hidden = None  # agent.wisv.HiddenUpload when the controller asks for WISV hidden states

    def now_ns(self) -> int:
        """This agent's clock: monotonic ns plus the configured shift."""
        return time.monotonic_ns() + self.clock_shift_ns

    def send(self, message: Message) -> None:
        self.sock.send(encode(message))

    def run(self) -> int:
        """Serve until ``BYE``; returns a process exit code."""
        self.send(Hello(self.name, agent_facts(self.name)))
        poller = zmq.Poller()
        poller.register(self.sock, zmq.POLLIN)
        while True:
            if not poller.poll(int(self.idle_timeout_s * 1000)):
                log.error("no message from the controller for %.0f s; exiting", self.idle_timeout_s)
                return 3
            frame = self.sock.recv()
            recv_ns = self.now_ns()
            self.last_verdict_bytes = zmtp_frame_bytes(len(frame))
            try:
                msg = decode(frame, vocab_size=self.vocab_size)
            except ProtocolError as exc:
                log.warning("bad frame from the controller: %s", exc)
                self.errors_sent += 1
                self.send(Error(exc.code, exc.message, {}))
                continue
            if isinstance(msg, Bye):
                log.info("controller said bye: %s", msg.reason)
                if self.telemetry:
                    self.telemetry.stop()
                    self.telemetry = None
                return 0
            try:
                self.dispatch(msg, recv_ns)
            except ModelError as exc:  # the drafter cannot be loaded as configured: nothing to serve
                log.error("cannot load the drafter: %s", exc)
                self.send(Error("malformed", f"settings.drafter: {exc}", {}))
                return 4
            except Exception as exc:  # a bad request must not end the agent: report it, keep serving
                code, text = (exc.code, exc.message) if isinstance(exc, ProtocolError) else ("internal", repr(exc))
                if code == "internal":
                    log.exception("failed handling %s", type(msg).__name__)
                self.errors_sent += 1
                req = getattr(msg, "request_id", None)
                self.request = None  # whatever it held is failed over by the controller
                self.send(Error(code, text[:4000], {} if req is None else {"request_id": req}))

    def dispatch(self, msg: Message, recv_ns: int) -> None:
        if isinstance(msg, Configure):
            self.configure(msg.settings)
        elif isinstance(msg, DraftRequest):
            if self.drafter is None:
                raise ProtocolError("unexpected", "draft request before configure")
            self.request, self.round, self.draft_length = msg, 0, msg.draft_length
            self.drafter.start(msg.token_ids, msg.seed)
            self.last_verdict_ns = self.last_rollback_ns = 0
            self.draft_and_send()
        elif isinstance(msg, TimePing):
            self.send(TimePong(msg.seq, msg.t1_ns, recv_ns, self.now_ns()))
        elif isinstance(msg, Verdict):
            self.on_verdict(msg, recv_ns)
        elif isinstance(msg, LinkUpdate):
            self.update_link(msg)
        elif isinstance(msg, HiddenRequest):
            self.answer_hidden(msg)
        elif isinstance(msg, Error):
            self.errors_received += 1
            log.warning("controller reports %s: %s", msg.code, msg.message)
            if msg.code == "unknown_agent":
                # the controller lost this agent (say its connection closed and ZeroMQ reopened it): the
                # prompt in hand went back to the controller's queue, so drop it and join again
                self.request = None
                self.send(Hello(self.name, agent_facts(self.name)))
        else:
            raise ProtocolError("unexpected", f"{type(msg).__name__} is not sent to an agent")

    def configure(self, wire: dict) -> None:
        """Load the drafter (kept when a later CONFIGURE names the same spec) and answer READY."""
        t0 = time.monotonic()
        settings = Settings.from_wire(wire)  # the one check of CONFIGURE's fields; trusted from here on
        device = settings.device or self.device
        placed = (settings.drafter, device, settings.dtype)
        if self.loaded is None or self.loaded_spec != placed:
            self.loaded = load_model(settings.drafter, device, settings.dtype)
            self.loaded_spec = placed
        loaded = self.loaded
        draft_settings = settings.draft_settings()
        self.drafter = Drafter(loaded.model, draft_settings, loaded.device)
        self.vocab_size = loaded.vocab_size
        self._configure_link(settings.link, settings.draft_delay_s)
        self._configure_hidden(settings, loaded.model)
        info = {
            "drafter": loaded.name,
            "vocab_size": loaded.vocab_size,
            "load_s": time.monotonic() - t0,
            "device": loaded.device,
            "dtype": loaded.dtype,
        }
        tele = settings.telemetry
        if tele and self.telemetry is None:
            self.telemetry = TelemetryPublisher(
                self.ctx,
                self.connect.rsplit(":", 1)[0] + f":{tele.port}",
                self.name,
                tele.rate_hz,
                self.clock_shift_ns,
                tele.host_sampler,
                self.keys,
            )
            self.telemetry.start()
        if self.telemetry:  # in every READY: the controller keeps the latest one of a session
            info["telemetry"] = self.telemetry.describe()
        self.send(Ready(info))

    def _configure_link(self, link: dict | None, draft_delay_s: float) -> None:
        from agent.link import Link, LinkError

        self.draft_delay_s = draft_delay_s
        self.uplink = self.downlink = None
        if not link:
            return
        seed = link.get("seed", 0)
        now = time.monotonic()
        try:
            self.uplink = Link(link.get("up"), seed=seed, start_s=now)
            self.downlink = Link(link.get("down"), seed=seed + 1, start_s=now)
        except LinkError as exc:
            raise ProtocolError("malformed", f"settings.link: {exc}") from None

    def _configure_hidden(self, settings: Settings, model) -> None:
        from agent.wisv import HiddenUpload

        if self.hidden is not None:
            self.hidden.close()
        h = settings.hidden
        self.hidden = None if h is None else HiddenUpload(model, h.upload, h.dtype)

    def answer_hidden(self, msg: HiddenRequest) -> None:
        """WISV selective upload: the kept states of the asked positions, over the emulated links."""
        if self.hidden is None or self.request is None:
            raise ProtocolError("unexpected", "hidden-state request to an agent not configured for WISV")
        if self.downlink is not None and self.downlink.active:
            time.sleep(self.downlink.transfer(self.last_verdict_bytes, time.monotonic()).seconds)
        answer = self.hidden.answer(msg)
        if self.uplink is not None and self.uplink.active:
            time.sleep(self.uplink.transfer(zmtp_frame_bytes(len(encode(answer))), time.monotonic()).seconds)
        self.send(answer)

    def update_link(self, msg: LinkUpdate) -> None:
        """A bandwidth re-allocation: a new rate or band share for the emulated links."""
        from agent.link import LinkError

        for name, link, update in (("up", self.uplink, msg.up), ("down", self.downlink, msg.down)):
            if not update:
                continue
            if link is None:
                raise ProtocolError("unexpected", f"LINK.{name} for an agent without an emulated {name}link")
            try:
                if "rate_bps" in update:
                    link.set_rate(float(update["rate_bps"]))
                else:
                    link.set_bandwidth(float(update["bandwidth_hz"]))
            except LinkError as exc:
                raise ProtocolError("unexpected", f"LINK.{name}: {exc}") from None

    def on_verdict(self, msg: Verdict, recv_ns: int) -> None:
        req = self.request
        if req is None or msg.request_id != req.request_id or msg.round != self.round:
            raise ProtocolError("unexpected", f"verdict for request {msg.request_id} round {msg.round}")
        if self.downlink is not None and self.downlink.active:
            held = self.downlink.transfer(self.last_verdict_bytes, time.monotonic()).seconds
            time.sleep(held)
            self.last_down_s = held
            recv_ns = self.now_ns()  # the verdict "arrives" after the emulated downlink
        drafts = self.last_draft.token_ids[: msg.n_accepted].tolist()
        self.drafter.accept(drafts, msg.next_token)
        self.last_verdict_ns = recv_ns
        self.last_rollback_ns = self.now_ns()
        if msg.done:
            self.request = None
            return
        self.round += 1
        self.draft_length = msg.draft_length
        self.draft_and_send()

    def draft_and_send(self) -> None:
        s = self.drafter.settings
        t_start = self.now_ns()
        if self.hidden is not None:
            self.hidden.capture.clear()
        draft: Draft = self.drafter.draft(self.draft_length)
        if self.draft_delay_s:
            time.sleep(self.draft_delay_s * self.draft_length)  # an emulated slower device
        t_end = self.now_ns()
        self.last_draft = draft
        payload = DraftPayload(
            request_id=self.request.request_id,
            round=self.round,
            draft_length=self.draft_length,
            top_k=s.top_k,
            index_dtype=s.index_dtype,
            prob_dtype=s.prob_dtype,
            token_ids=draft.token_ids,
            draft_probs=draft.draft_probs,
            topk_indices=draft.topk_indices,
            topk_probs=draft.topk_probs,
            times=[t_start, t_end, 0, self.last_verdict_ns, self.last_rollback_ns],
            tv=draft.tv,
        )
        if self.hidden is not None:
            self.hidden.keep(payload)
        payload.times[2] = self.now_ns()
        if self.uplink is not None and self.uplink.active:
            rate, snr = self.uplink.state(time.monotonic())
            payload.link = {"rate_bps": rate, "snr_db": snr, "up_s": 0.0, "down_s": float(self.last_down_s)}
            # floats pack to a fixed 9 bytes, so the frame's size does not change with up_s
            size = zmtp_frame_bytes(len(encode(payload)))
            held = self.uplink.transfer(size, time.monotonic())
            payload.link["up_s"] = float(held.seconds)
            time.sleep(held.seconds)
        self.send(payload)

    def close(self) -> None:
        if self.telemetry:
            self.telemetry.stop()
        self.sock.close()

"""The target for verification: one persistent, preallocated KV cache with a row per session.

Why not ``agent.lm.CachedLM`` on a GPU: a growing ``DynamicCache`` changes
the attention's key length every round, so cuDNN's SDPA re-plans every
round, and the eager forward is launch-bound (one Python-issued kernel after
another).  Here every session owns a row of one static cache
``[rows, kv_heads, 2, max_len, head_dim]`` per layer; a round writes its new
keys and values at each row's own positions and attends over the whole
``max_len`` with a mask, so no shape moves from round to round and rolling
back is resetting a length.  On CUDA, the forward of each (batch bucket,
new tokens) shape is captured once in a CUDA graph and replayed; on the CPU
the same code runs eagerly (tests, CI, the bundled pair).

Works for any Hugging Face causal LM whose attention layers call
``cache.update(k, v, layer_idx, ...)`` and the registered attention
interface (Llama, Qwen2, SmolLM2): the model's attention implementation is
switched to ``specbed_static``, a fixed-length masked SDPA that folds the
query heads sharing a key/value head into the query axis (no key copies for
grouped-query attention) and never uses cuDNN.
"""

from __future__ import annotations

import contextlib
import logging
import math

import numpy as np
import torch

log = logging.getLogger(__name__)

ATTN_NAME = "specbed_static"
#: Largest number of new tokens per row that goes through a captured graph; longer (a prefill) runs eagerly.
GRAPH_MAX_NEW = 32
LEN_QUANTUM = 256  # the cache length grows in these steps (a new length re-captures the graphs)


def _static_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **_kwargs):
    """Masked attention over the whole static cache; returns ([B, T, Hq, D], None) as transformers expects.

    query [B, Hq, T, D]; key/value [B, Hkv, L, D]; attention_mask [B, 1, G·T, L] or [B, 1, T, L]
    bool (True: attend).  The G = Hq / Hkv query heads of a group share the group's keys, so they
    are stacked along the query axis ([B, Hkv, G·T, D]) instead of repeating the keys G times;
    two batched matrix products and one masked softmax (fused on the fast path), no cuDNN.
    """
    if attention_mask is None:  # a causal pass without padding (e.g. CachedLM on the same model)
        from transformers.integrations.sdpa_attention import sdpa_attention_forward

        return sdpa_attention_forward(module, query, key, value, None, scaling=scaling, dropout=dropout, **_kwargs)
    from controller.fused import masked_softmax

    b, hq, t, d = query.shape
    hkv, length = key.shape[1], key.shape[2]
    g = hq // hkv
    q = query.reshape(b, hkv, g * t, d)
    mask = attention_mask
    if mask.shape[2] != g * t:  # not folded by the caller (StaticTarget folds it once per pass)
        mask = mask.expand(b, 1, t, length).unsqueeze(2).expand(b, 1, g, t, length).reshape(b, 1, g * t, length)
    if mask.dtype != torch.bool:  # an additive float mask (transformers' own): 0 where attended
        mask = mask == 0
    scores = torch.matmul(q, key.transpose(-1, -2))  # [B, Hkv, G·T, L]
    probs = masked_softmax(scores, mask, scaling if scaling is not None else d**-0.5)
    out = torch.matmul(probs, value)  # [B, Hkv, G·T, D]
    return out.reshape(b, hq, t, d).transpose(1, 2).contiguous(), None


def _register_attention(model) -> None:
    """Make ``specbed_static`` the model's attention; other callers of the model (``CachedLM``) get SDPA's masks."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(ATTN_NAME, _static_attention)
    AttentionMaskInterface.register(ATTN_NAME, sdpa_mask)
    try:
        model.set_attn_implementation(ATTN_NAME)
    except (AttributeError, ValueError):
        model.config._attn_implementation = ATTN_NAME


class _RowsCache:
    """What the model sees as its cache during one pass: writes at each row's positions, returns the rows.

    Each layer's buffer is [rows, Hkv, 2, L, D] (keys and values side by side, so one scatter
    writes both and one gather reads both).  ``update`` writes the new keys/values
    [B, Hkv, T, D] at (rows[b], positions[b, t]) and returns the batch's rows [B, Hkv, L, D].
    ``aligned``: batch position b is row b (rows[b] == b), so the rows are read in place, as
    a view of the buffer's first B rows, instead of gathered: on an H200 the gather of 8 rows
    cost 2.4 ms of a 9.4 ms pass of the 8B target.
    """

    is_compileable = False

    def __init__(self, kv: list[torch.Tensor], rows: torch.Tensor, pos: torch.Tensor, aligned: bool = False):
        self.kv, self.rows, self.aligned = kv, rows, aligned
        b, t = pos.shape
        rows = rows.reshape(b, 1, 1, 1)
        heads = kv[0].shape[1]
        dev = pos.device
        self.index = (
            rows,
            torch.arange(heads, device=dev).view(1, heads, 1, 1),
            torch.arange(2, device=dev).view(1, 1, 2, 1),
            pos.view(b, 1, 1, t),
        )
        self.layers: list = []
        self.is_sliding = [False] * len(kv)  # transformers asks per layer

    def update(self, key_states, value_states, layer_idx, *args, **kwargs):
        buf = self.kv[layer_idx]
        buf.index_put_(self.index, torch.stack([key_states, value_states], dim=2).to(buf.dtype))
        rows = buf[: key_states.shape[0]] if self.aligned else buf[self.rows]  # [B, Hkv, 2, L, D]
        return rows[:, :, 0], rows[:, :, 1]

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return 0

    def get_mask_sizes(self, *args, **kwargs):
        return self.kv[0].shape[3], 0

    def __len__(self) -> int:
        return len(self.kv)


class TargetSlot:
    """One session's row of the static cache: the token ids it holds keys and values for."""

    def __init__(self, owner: StaticTarget, row: int) -> None:
        self.owner = owner
        self.row = row
        self.fed: list[int] = []

    def reset(self) -> None:
        """Forget the sequence (a new prompt): the row's length goes to 0."""
        self.fed = []

    def release(self) -> None:
        """Give the row back (the session left)."""
        self.owner.release(self)


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n


def _bucket(n: int) -> int:
    return 1 << max(0, math.ceil(math.log2(max(n, 1))))


class StaticTarget:
    """A target model with one static cache and CUDA graphs of its verification forwards.

    ``logits(slots, sequences, starts)`` has the meaning of ``CachedLM.logits`` for each slot
    but returns one device tensor [B, T, V] (row b's valid rows are 0 .. len(seq_b) - start_b - 1)
    that is only valid until the next call.  ``use_graphs`` defaults to True on CUDA.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        device: str = "cpu",
        rows: int = 4,
        max_len: int = 1024,
        use_graphs: bool | None = None,
        fused: bool | None = None,
    ) -> None:
        self.model = model
        self.device = torch.device(device)
        self.cuda = self.device.type == "cuda"
        self.use_graphs = self.cuda if use_graphs is None else use_graphs
        config = model.config
        text = config.get_text_config() if hasattr(config, "get_text_config") else config
        self.n_layers = text.num_hidden_layers
        self.kv_heads = getattr(text, "num_key_value_heads", None) or text.num_attention_heads
        self.head_dim = getattr(text, "head_dim", None) or text.hidden_size // text.num_attention_heads
        self.groups = text.num_attention_heads // self.kv_heads
        # the fused fast path (controller.fused) inside the captured graphs; off: the general path
        self.fused = self.use_graphs if fused is None else fused
        if self.fused:
            from controller import fused as fused_path

            fused_path.install(model)
        self.dtype = next(model.parameters()).dtype
        _register_attention(model)
        if self.cuda:
            # cuDNN's SDPA re-plans per shape; the masked attention here never needs it.
            torch.backends.cuda.enable_cudnn_sdp(False)
        self.capacity = 0
        self.max_len = 0
        self.kv: list[torch.Tensor] = []  # per layer [rows, Hkv, 2, max_len, D]
        self.free: list[int] = []
        self.slots: list[TargetSlot] = []
        self.graphs: dict[tuple[int, int], _Graph] = {}
        self.pool = None
        # WISV (keep_hidden): the last pass's last-layer hidden states [B', T, d], in the callers' order
        self.hidden: torch.Tensor | None = None
        self._hidden_hook = None
        # the last row is scratch for padding; the rows before it a power of two, so that an aligned
        # batch bucket (see forward) fits in the buffer
        self._allocate(_bucket(max(rows, 1)) + 1, _round_len(max_len))

    # --- rows ---------------------------------------------------------------

    def _allocate(self, capacity: int, max_len: int) -> None:
        """(Re)allocate the buffers, keeping what the rows hold; drops the captured graphs."""
        shape = (capacity, self.kv_heads, 2, max_len, self.head_dim)
        new_kv = [torch.zeros(shape, dtype=self.dtype, device=self.device) for _ in range(self.n_layers)]
        old_rows = self.capacity - 1  # the old scratch row is not kept
        if old_rows > 0:
            length = min(self.max_len, max_len)
            for new, old in zip(new_kv, self.kv, strict=True):
                new[:old_rows, :, :, :length] = old[:old_rows, :, :, :length]
        self.free += list(range(max(old_rows, 0), capacity - 1))
        self.kv = new_kv
        self.capacity, self.max_len = capacity, max_len
        self.scratch = capacity - 1
        self.graphs.clear()
        log.info("static target cache: %d rows x %d positions", capacity - 1, max_len)

    def slot(self) -> TargetSlot:
        """A row for a new session (the cache grows when none is free)."""
        if not self.free:
            self._allocate(2 * (self.capacity - 1) + 1, self.max_len)
        self.free.sort()
        s = TargetSlot(self, self.free.pop(0))
        self.slots.append(s)
        return s

    def release(self, slot: TargetSlot) -> None:
        if slot in self.slots:
            self.slots.remove(slot)
            self.free.append(slot.row)

    # --- hidden states (WISV) -----------------------------------------------

    def keep_hidden(self) -> None:
        """From now on every pass leaves the target's last-layer hidden states in ``hidden``.

        They are the input of the output head (a forward pre-hook on
        ``get_output_embeddings()``), row for row like the logits ``forward``
        returns.  A captured CUDA graph keeps the hook's tensor as one of its
        static buffers, so graphs captured before the hook are dropped and
        captured again.  ValueError for a model without an output head to hook.
        """
        if self._hidden_hook is not None:
            return
        head = self.model.get_output_embeddings()
        if head is None:
            raise ValueError(f"{type(self.model).__name__} has no output embeddings: its hidden states cannot be read")

        def hook(module, args):
            self.hidden = args[0]

        self._hidden_hook = head.register_forward_pre_hook(hook)
        self.graphs.clear()

    # --- forward ------------------------------------------------------------

    def logits(self, slots: list[TargetSlot], sequences: list[list[int]], starts: list[int]) -> list[torch.Tensor]:
        """``[CachedLM.logits(seq, start) ...]`` for the slots: per row, [len(seq) - start, V] (device views)."""
        out, offsets = self.forward(slots, sequences, starts)
        return [
            out[b, o : o + len(seq) - start]
            for b, (o, seq, start) in enumerate(zip(offsets, sequences, starts, strict=True))
        ]

    @torch.no_grad()
    def forward(
        self, slots: list[TargetSlot], sequences: list[list[int]], starts: list[int]
    ) -> tuple[torch.Tensor, list[int]]:
        """One pass over the slots' new tokens: (logits [B', T, V], offsets).

        Row b's logit at index offsets[b] + j predicts token starts[b] + j + 1.  B' >= B
        (a padded batch bucket); the tensor is valid until the next call.
        """
        news, keeps = [], []
        for s, seq, start in zip(slots, sequences, starts, strict=True):
            if not 0 <= start < len(seq):
                raise ValueError(f"start={start} outside a sequence of {len(seq)} tokens")
            keep = min(_common_prefix(s.fed, seq), start)
            del s.fed[keep:]
            news.append(seq[keep:])
            keeps.append(keep)
        t_new = max(len(n) for n in news)
        need = max(k + t_new for k in keeps)
        if need > self.max_len - 1:  # the last position is scratch (aligned padding writes there)
            self._allocate(self.capacity, _round_len(need + 1))
        graphed = self.use_graphs and t_new <= GRAPH_MAX_NEW
        batch = _bucket(len(slots)) if graphed else len(slots)
        rows = [s.row for s in slots]
        # aligned: the slots hold rows 0 .. n-1 (sessions take the lowest free row, so a batch of
        # every session is), each goes to batch position = its row and the rows are read in place;
        # padding positions are the rows after them, writing only the scratch position max_len - 1
        aligned = sorted(rows) == list(range(len(slots))) and batch <= self.capacity
        # ids, positions, rows in one host array (one copy to the device); padding slots write
        # positions 0.. of the scratch row (or, aligned, the scratch position of their row)
        inp = np.zeros((3, batch, t_new), dtype=np.int64)
        if aligned:
            inp[1] = self.max_len - 1
            inp[2] = np.arange(batch)[:, None]
        else:
            inp[1] = np.arange(t_new)
            inp[2] = self.scratch
        for b, (s, new, keep) in enumerate(zip(slots, news, keeps, strict=True)):
            at = s.row if aligned else b
            inp[0, at, : len(new)] = new
            inp[1, at] = np.arange(t_new) + keep
            inp[2, at] = s.row
            s.fed.extend(new)
        if graphed:
            out = self._graph(batch, t_new, aligned).run(inp)
        else:
            dev = torch.from_numpy(inp).to(self.device)
            out = self._forward(dev[0], dev[1], dev[2, :, 0], aligned)
        if aligned and rows != list(range(len(slots))):
            order = torch.tensor(rows, device=out.device)
            out = out[order]  # back to the callers' order
            if self._hidden_hook is not None:
                self.hidden = self.hidden[order]
        return out, [start - keep for start, keep in zip(starts, keeps, strict=True)]

    def _forward(self, ids: torch.Tensor, pos: torch.Tensor, rows: torch.Tensor, aligned: bool = False) -> torch.Tensor:
        """One eager pass: writes the rows' new keys/values, returns logits [B, T, V]."""
        arange = torch.arange(self.max_len, device=ids.device)
        mask = (arange[None, None, :] <= pos[:, :, None]).unsqueeze(1)  # [B, 1, T, L]
        mask = mask.repeat(1, 1, self.groups, 1)  # [B, 1, G·T, L]: folded once for every layer
        cache = _RowsCache(self.kv, rows, pos, aligned)
        out = self.model(input_ids=ids, position_ids=pos, attention_mask=mask, past_key_values=cache, use_cache=True)
        return out.logits

    def _graph(self, batch: int, t_new: int, aligned: bool) -> _Graph:
        key = (batch, t_new, aligned)
        if key not in self.graphs:
            if self.pool is None:
                self.pool = torch.cuda.graph_pool_handle()
            self.graphs[key] = _Graph(self, batch, t_new, self.pool, aligned)
        return self.graphs[key]

    def warmup(self, batches: list[int], t_new: int) -> None:
        """Capture the graphs a session will replay (batch buckets x γ + 1) before its first round."""
        if self.use_graphs:
            for b in sorted({_bucket(n) for n in batches}):
                self._graph(b, t_new, aligned=False)
                if b <= self.capacity:
                    self._graph(b, t_new, aligned=True)


def _round_len(n: int) -> int:
    return LEN_QUANTUM * math.ceil(max(n, 1) / LEN_QUANTUM)


class _Graph:
    """One captured forward of a fixed (batch, new tokens) shape; inputs are copied into static buffers."""

    def __init__(self, target: StaticTarget, batch: int, t_new: int, pool, aligned: bool = False) -> None:
        from controller import fused

        dev = target.device
        self.target = target
        self.inp = torch.zeros(3, batch, t_new, dtype=torch.long, device=dev)  # ids, positions, rows
        if aligned:  # warm-up and capture write only each row's scratch position
            self.inp[1] = target.max_len - 1
            self.inp[2] = torch.arange(batch, device=dev)[:, None]
        else:
            self.inp[1] = torch.arange(t_new, device=dev)
            self.inp[2] = target.scratch
        self.ids, self.pos, self.rows = self.inp[0], self.inp[1], self.inp[2, :, 0]
        self.aligned = aligned
        self.host = torch.empty(3, batch, t_new, dtype=torch.long, pin_memory=True)

        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        on = fused.active() if target.fused else contextlib.nullcontext()
        with on:
            with torch.cuda.stream(stream):  # warm-up passes (and compiles) write only the scratch row
                for _ in range(3):
                    target._forward(self.ids, self.pos, self.rows, aligned)
            torch.cuda.current_stream().wait_stream(stream)
            self.graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self.graph, pool=pool):
                self.out = target._forward(self.ids, self.pos, self.rows, aligned)
            self.hidden = target.hidden if target._hidden_hook is not None else None  # a static buffer too
        log.info("captured the target forward for batch %d x %d new tokens", batch, t_new)

    def run(self, inp: np.ndarray) -> torch.Tensor:
        """Replay on ``inp`` [3, batch, t_new] (ids, positions, rows); the last round synchronised, so the
        pinned buffer is free to overwrite."""
        self.host.numpy()[:] = inp
        self.inp.copy_(self.host, non_blocking=True)
        self.graph.replay()
        if self.hidden is not None:
            self.target.hidden = self.hidden
        return self.out

"""The agent's side of WISV: capture the drafter's last-layer hidden states and upload them.

The last-layer hidden state of a position is the input of the model's
output head (``get_output_embeddings()``: after the final norm, before the
vocabulary projection), so a forward pre-hook on that head sees it for every
position a forward pass computes, without asking the model for every
layer's states and without changing how the drafter calls its model.  The
drafter runs one forward pass per draft token and the last row of the pass
that drafted x_i is the position that predicted x_i: the same position
whose target row gives p_i (ALGORITHMS.md section 6).

``full`` upload attaches the states of every draft token to the payload;
``selective`` keeps them until the controller asks for the mismatched
positions (``HIDDEN_REQUEST``) and answers with those rows only.
"""

from __future__ import annotations

import numpy as np
import torch

from agent.protocol import HIDDEN_DTYPES, DraftPayload, HiddenAnswer, HiddenRequest, ProtocolError


class HiddenCapture:
    """Keeps the last row of every forward pass of ``model`` since ``clear()`` (float32, on the CPU)."""

    def __init__(self, model: torch.nn.Module) -> None:
        head = model.get_output_embeddings()
        if head is None:
            raise ValueError(f"{type(model).__name__} has no output embeddings to read hidden states from")
        self.rows: list[torch.Tensor] = []  # [d] each
        self.width = int(head.weight.shape[1])
        self._handle = head.register_forward_pre_hook(self._hook)

    def _hook(self, module: torch.nn.Module, args: tuple) -> None:
        self.rows.append(args[0][0, -1].detach().float().cpu())  # args[0]: [B, T, d]

    def clear(self) -> None:
        self.rows = []

    def take(self, n: int) -> torch.Tensor:
        """The last rows of the last ``n`` forward passes, [n, d] float32."""
        if len(self.rows) < n:
            raise RuntimeError(f"{len(self.rows)} forward passes captured, {n} asked for")
        return torch.stack(self.rows[-n:])

    def close(self) -> None:
        self._handle.remove()


class HiddenUpload:
    """One configured agent's hidden-state upload (``agent.settings.HiddenSettings``)."""

    def __init__(self, model: torch.nn.Module, upload: str, dtype: str) -> None:
        self.capture = HiddenCapture(model)
        self.upload, self.dtype = upload, dtype
        self.kept: np.ndarray | None = None  # [γ, d] this round's states, in the wire dtype
        self.kept_for: tuple[int, int] | None = None  # (request id, round) they belong to

    def keep(self, payload: DraftPayload) -> None:
        """After drafting: keep the round's states; attach them to the payload for full upload."""
        self.kept = self.capture.take(payload.draft_length).numpy().astype(HIDDEN_DTYPES[self.dtype])
        self.kept_for = (payload.request_id, payload.round)
        if self.upload == "full":
            payload.hidden = self.kept

    def answer(self, msg: HiddenRequest) -> HiddenAnswer:
        """The kept rows of the asked positions; ``ProtocolError`` for a round or position this agent has not."""
        if self.upload != "selective" or self.kept_for != (msg.request_id, msg.round):
            raise ProtocolError("unexpected", f"hidden states asked for request {msg.request_id} round {msg.round}")
        if msg.positions[-1] >= len(self.kept):
            raise ProtocolError(
                "unexpected", f"hidden states asked for position {msg.positions[-1]} of a γ={len(self.kept)} draft"
            )
        rows = self.kept[msg.positions]
        return HiddenAnswer(msg.request_id, msg.round, list(msg.positions), self.dtype, rows.shape[1], rows)

    def close(self) -> None:
        self.capture.close()

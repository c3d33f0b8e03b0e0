"""The acceptance figures users of vLLM and llama.cpp compare by.

Definitions follow vLLM's speculative-decoding metrics (``SpecDecodingStats``
of the v1 engine): each verification round is one *draft* of ``γ`` tokens of
which the first ``accepted`` are accepted (acceptance is a prefix).

* ``num_drafts``: rounds;
* ``num_draft_tokens``: Σ γ;
* ``num_accepted_tokens``: Σ accepted;
* ``num_accepted_tokens_per_pos[i]``: rounds that accepted the draft at position ``i`` (0-based),
  i.e. rounds with ``accepted > i``;
* mean acceptance length = 1 + num_accepted_tokens / num_drafts (tokens per round counting the
  target's own token; at the end of a prompt fewer may be emitted);
* acceptance rate at position ``i`` = num_accepted_tokens_per_pos[i] / num_drafts.

With an adaptive γ a round with γ <= i cannot accept position i; like vLLM, the
rate still divides by every draft, and ``drafts_per_pos`` gives the rounds that
drafted position i for the conditional rate.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


class AcceptanceCounts:
    """Running counts over rounds; ``add`` one round at a time."""

    def __init__(self) -> None:
        self.num_drafts = 0
        self.num_draft_tokens = 0
        self.num_accepted_tokens = 0
        self.accepted_per_pos: list[int] = []
        self.drafts_per_pos: list[int] = []

    def add(self, draft_length: int, accepted: int) -> None:
        self.num_drafts += 1
        self.num_draft_tokens += draft_length
        self.num_accepted_tokens += accepted
        grow = draft_length - len(self.drafts_per_pos)
        if grow > 0:
            self.accepted_per_pos += [0] * grow
            self.drafts_per_pos += [0] * grow
        for i in range(draft_length):
            self.drafts_per_pos[i] += 1
        for i in range(accepted):
            self.accepted_per_pos[i] += 1

    @property
    def mean_acceptance_length(self) -> float | None:
        return 1 + self.num_accepted_tokens / self.num_drafts if self.num_drafts else None

    @property
    def acceptance_rate_per_position(self) -> list[float]:
        return [a / self.num_drafts for a in self.accepted_per_pos] if self.num_drafts else []

    def figures(self) -> dict[str, Any]:
        """The summary's fields."""
        return {
            "num_drafts": self.num_drafts,
            "num_draft_tokens": self.num_draft_tokens,
            "num_accepted_tokens": self.num_accepted_tokens,
            "num_accepted_tokens_per_pos": list(self.accepted_per_pos),
            "num_drafts_per_pos": list(self.drafts_per_pos),
            "mean_acceptance_length": self.mean_acceptance_length,
            "acceptance_rate_per_position": self.acceptance_rate_per_position,
        }


def acceptance_figures(rounds: Iterable[Any]) -> dict[str, Any]:
    """``AcceptanceCounts.figures`` over round records (``RoundRecord`` or rows of rounds.jsonl)."""
    counts = AcceptanceCounts()
    for r in rounds:
        if isinstance(r, dict):
            counts.add(int(r["draft_length"]), int(r["accepted"]))
        else:
            counts.add(int(r.draft_length), int(r.accepted))
    return counts.figures()


def acceptance_columns(rounds: Iterable[Any]) -> dict[str, Any]:
    """summary.csv's columns: mean acceptance length and the per-position rates as one cell ("0.81 0.62 ...")."""
    fig = acceptance_figures(rounds)
    return {
        "mean_acceptance_length": fig["mean_acceptance_length"],
        "acceptance_rate_per_position": " ".join(f"{a:.3f}" for a in fig["acceptance_rate_per_position"]),
    }

"""A causal LM with its KV cache: the state both ends of a round keep.

The agent's drafter and the controller's target each keep one ``CachedLM``
per generation.  It remembers which token ids have keys and values in the
cache (``fed``); ``logits(sequence, start)`` crops the cache to the longest
common prefix of ``fed`` and ``sequence`` (rolling back rejected drafts),
feeds the rest in one forward pass and returns the logits of positions
``start`` onward.
"""

from __future__ import annotations

import torch


def probs_from_logits(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Next-token distribution(s) in float32; temperature 0 is treated as 1.

    Greedy decoding reads only the argmax, which temperature does not move,
    and the payload's top-K still reports the model's own distribution.
    """
    t = temperature if temperature > 0 else 1.0
    return torch.softmax(logits.float() / t, dim=-1)


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n


class CachedLM:
    """One sequence's keys and values in one model."""

    def __init__(self, model: torch.nn.Module, device: str = "cpu") -> None:
        self.model = model
        self.device = device
        self.fed: list[int] = []
        self.cache = None

    def reset(self) -> None:
        """Forget everything (a new prompt)."""
        from transformers import DynamicCache

        self.fed = []
        self.cache = DynamicCache()

    def rollback(self, keep: int) -> None:
        """Keep the first ``keep`` cached positions, drop the rest."""
        drop = len(self.fed) - keep
        if drop > 0:
            # transformers >= 5 takes a negative count of tokens to drop,
            # and older versions read a negative argument the same way.
            self.cache.crop(-drop)
            del self.fed[keep:]

    def prepare(self, sequence: list[int], start: int) -> list[int]:
        """Roll the cache back to what it shares with ``sequence`` (at most ``start`` positions); the tokens to feed."""
        if self.cache is None:
            self.reset()
        if not 0 <= start < len(sequence):
            raise ValueError(f"start={start} outside a sequence of {len(sequence)} tokens")
        self.rollback(min(_common_prefix(self.fed, sequence), start))
        return sequence[len(self.fed) :]

    @torch.no_grad()
    def logits(self, sequence: list[int], start: int) -> torch.Tensor:
        """Logits [len(sequence) - start, V]: row j predicts token start + j + 1.

        Reuses the cached prefix shared with ``sequence`` (at most ``start``
        positions, so row 0 is always computed) and feeds the rest.
        """
        new = self.prepare(sequence, start)
        keep = len(self.fed)
        ids = torch.tensor([new], dtype=torch.long, device=self.device)
        out = self.model(input_ids=ids, past_key_values=self.cache, use_cache=True)
        self.cache = out.past_key_values
        self.fed.extend(new)
        return out.logits[0, start - keep :]

"""Prompts the controller generates for: a job, its seed, when it is done.

A module of ``controller/serve/``, the controller in pieces of one concept each; they import downward only.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from agent.models import LoadedModel


def job_seed(seed: int, prompt_id: str) -> int:
    """Per-prompt seed: a prompt's output does not depend on which agent ran it."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{prompt_id}".encode()).digest()[:7], "little")


@dataclass
class Job:
    """One prompt to generate for."""

    prompt_id: str
    prompt_token_ids: list[int]
    max_new_tokens: int
    seed: int
    generated: list[int] = field(default_factory=list)
    started_ns: int = 0  # controller clock: first draft request sent
    done_ns: int = 0  # controller clock: last token verified
    # the request it runs under (rounds carry it); -1 while queued, so the rounds
    # of an attempt abandoned by a lost agent can be told from the final ones
    request_id: int = -1

    def extend(self, new: list[int], eos_ids: set[int]) -> tuple[list[int], bool]:
        """Append a round's tokens, cut at max_new_tokens and after an end-of-sequence token.

        Returns the tokens kept and whether the prompt is done.
        """
        new = new[: self.max_new_tokens - len(self.generated)]
        for i, tok in enumerate(new):
            if tok in eos_ids:
                new = new[: i + 1]
                break
        self.generated.extend(new)
        return new, len(self.generated) >= self.max_new_tokens or bool(new and new[-1] in eos_ids)


def eos_token_ids(model: LoadedModel) -> set[int]:
    """The end-of-sequence ids of a model's generation config (none for the tiny test models)."""
    eos = model.model.generation_config.eos_token_id
    return set(eos if isinstance(eos, list) else [eos] if eos is not None else [])

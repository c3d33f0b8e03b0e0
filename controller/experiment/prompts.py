"""A prompt's token ids (the chat template applied to its text) and generated ids back to text."""

from __future__ import annotations

from typing import Any

from controller.profiles import Prompt


def prompt_token_ids(prompt: Prompt, tokenizer: Any) -> list[int]:
    """Token ids of a prompt: given directly, or the chat template applied to its text."""
    if prompt.prompt_token_ids is not None:
        return list(prompt.prompt_token_ids)
    if tokenizer is None:
        raise ValueError(f"prompt {prompt.id!r} has text but the target model has no tokenizer; give prompt_token_ids")
    if getattr(tokenizer, "chat_template", None):
        encoded = tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt.prompt}], add_generation_prompt=True, tokenize=True
        )
        ids = encoded["input_ids"] if hasattr(encoded, "keys") else encoded
        return [int(t) for t in ids]
    return list(tokenizer(prompt.prompt).input_ids)


def decode_text(tokenizer: Any, token_ids: list[int]) -> str:
    if tokenizer is None:
        return " ".join(map(str, token_ids))
    return tokenizer.decode(token_ids, skip_special_tokens=True)

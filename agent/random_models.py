"""Random-initialised models of the papers' shapes, built on the device without downloading weights.

A ``source: random`` model spec names one of ``RANDOM_CONFIGS`` (``config``)
and a ``seed``.  The parameters are allocated directly on the device in the
wanted dtype (no float32 copy on the host), so an 8B model takes seconds on
a GPU.  The outputs mean nothing; the shapes, the weight bytes a forward
reads, and so the timings, are the real models'.
"""

from __future__ import annotations

import torch

_LLAMA3 = {"vocab_size": 128256, "rope_theta": 500000.0, "max_position_embeddings": 8192}
_QWEN25 = {"rope_theta": 1000000.0, "max_position_embeddings": 32768, "rms_norm_eps": 1e-6}

#: Architecture ("llama" | "qwen2") and config keyword arguments of each named shape.
RANDOM_CONFIGS: dict[str, tuple[str, dict]] = {
    "Llama-3.1-8B": (
        "llama",
        {
            **_LLAMA3,
            "hidden_size": 4096,
            "intermediate_size": 14336,
            "num_hidden_layers": 32,
            "num_attention_heads": 32,
            "num_key_value_heads": 8,
            "head_dim": 128,
            "tie_word_embeddings": False,
        },
    ),
    "Llama-3.2-1B": (
        "llama",
        {
            **_LLAMA3,
            "hidden_size": 2048,
            "intermediate_size": 8192,
            "num_hidden_layers": 16,
            "num_attention_heads": 32,
            "num_key_value_heads": 8,
            "head_dim": 64,
            "tie_word_embeddings": True,
        },
    ),
    "Qwen2.5-7B": (
        "qwen2",
        {
            **_QWEN25,
            "vocab_size": 152064,
            "hidden_size": 3584,
            "intermediate_size": 18944,
            "num_hidden_layers": 28,
            "num_attention_heads": 28,
            "num_key_value_heads": 4,
            "tie_word_embeddings": False,
        },
    ),
    "Qwen2.5-0.5B": (
        "qwen2",
        {
            **_QWEN25,
            "vocab_size": 151936,
            "hidden_size": 896,
            "intermediate_size": 4864,
            "num_hidden_layers": 24,
            "num_attention_heads": 14,
            "num_key_value_heads": 2,
            "tie_word_embeddings": True,
        },
    ),
    # the same code paths on a CPU in seconds (tests)
    "tiny": (
        "llama",
        {
            "vocab_size": 1000,
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "max_position_embeddings": 2048,
        },
    ),
    "tiny-qwen2": (
        "qwen2",
        {
            "vocab_size": 1000,
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "max_position_embeddings": 2048,
            "tie_word_embeddings": True,
        },
    ),
}


def random_model(config: str | dict, device: str = "cpu", dtype: torch.dtype = torch.float32, seed: int = 0):
    """A random ``LlamaForCausalLM`` / ``Qwen2ForCausalLM`` built in place on ``device`` in ``dtype``.

    ``config`` is a name of ``RANDOM_CONFIGS`` or a dict of Llama config keyword arguments.
    """
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

    if isinstance(config, str):
        if config not in RANDOM_CONFIGS:
            raise ValueError(f"config: expected one of {', '.join(RANDOM_CONFIGS)}, got {config!r}")
        arch, shape = RANDOM_CONFIGS[config]
    else:
        arch, shape = "llama", config
    config_cls, model_cls = (LlamaConfig, LlamaForCausalLM) if arch == "llama" else (Qwen2Config, Qwen2ForCausalLM)
    cfg = config_cls(**shape, bos_token_id=0, eos_token_id=1)
    old = torch.get_default_dtype()
    torch.manual_seed(seed)
    try:
        torch.set_default_dtype(dtype)
        with torch.device(device):
            model = model_cls(cfg)
    finally:
        torch.set_default_dtype(old)
    return model.eval()

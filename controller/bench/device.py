"""What the verification benchmarks run on: the random model shapes, the device's memory bandwidth and its facts."""

from __future__ import annotations

import time

from agent.random_models import RANDOM_CONFIGS

#: Model shapes for ``bench_verify``: LlamaConfig keyword arguments of a target and a drafter.
#: "paper": Llama-3.1-8B (target) and Llama-3.2-1B (drafter), randomly initialised;
#: "tiny": the same code path on a CPU in seconds.
VERIFY_CONFIGS: dict[str, dict[str, dict]] = {
    "paper": {"target": RANDOM_CONFIGS["Llama-3.1-8B"][1], "drafter": RANDOM_CONFIGS["Llama-3.2-1B"][1]},
    "tiny": {
        "target": {
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "vocab_size": 1000,
            "max_position_embeddings": 2048,
        },
        "drafter": {
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "num_key_value_heads": 1,
            "vocab_size": 1000,
            "max_position_embeddings": 2048,
            "tie_word_embeddings": True,
        },
    },
}


def measure_bandwidth(device: str, nbytes: int = 4 << 30, iters: int = 10) -> float:
    """Device memory bandwidth in bytes/s: ``dst.copy_(src)`` of ``nbytes``, counting read + write."""
    import torch

    src = torch.ones(nbytes // 2, dtype=torch.bfloat16, device=device)
    dst = torch.empty_like(src)
    dst.copy_(src)  # warm-up
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(iters):
        dst.copy_(src)
    _sync(device)
    elapsed = time.perf_counter() - t0
    del src, dst
    return 2 * nbytes * iters / elapsed


def _sync(device: str) -> None:
    import torch

    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def _device_info(device: str) -> dict:
    import torch
    import transformers

    info = {"device": "cpu", "driver": None, "torch": torch.__version__, "transformers": transformers.__version__}
    if str(device).startswith("cuda"):
        info["device"] = torch.cuda.get_device_name(device)
        try:
            import pynvml

            pynvml.nvmlInit()
            driver = pynvml.nvmlSystemGetDriverVersion()
            info["driver"] = driver.decode() if isinstance(driver, bytes) else driver
        except Exception:  # no NVML: leave the driver unknown
            pass
    return info

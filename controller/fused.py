"""A fused fast path for the captured target forwards: fewer, larger kernels per layer.

A CUDA graph removes the host's launch cost, not the kernels: an eager
Llama layer still runs ~45 small kernels (RMSNorm alone is ~7, the rotary
embedding ~10), and on an H200 the gaps between ~1,400 tiny kernels cost
more than reading the weights.  Here RMSNorm, the rotary embedding and the
MLP's activation are replaced, only while ``active()`` is on (inside the
static target's graph warm-up, capture and replay), by ``torch.compile``d
functions with the same arithmetic, each a single Triton kernel per shape.
Anything else that runs the model (the eager prefill, ``CachedLM``, a
drafter of the same architecture) takes the original code.  The static
target's logits are checked against the general path's
(``controller.bench.core``'s ``logits_check``).
"""

from __future__ import annotations

import contextlib
import logging
import sys

import torch
import torch.nn.functional as F

log = logging.getLogger(__name__)

_ON = False


@contextlib.contextmanager
def active():
    """Route patched modules through the fused functions inside this block."""
    global _ON
    old, _ON = _ON, True
    try:
        yield
    finally:
        _ON = old


def _rms(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    xf = x.float()
    xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)
    return weight * xf.to(x.dtype)


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x[..., : x.shape[-1] // 2], x[..., x.shape[-1] // 2 :]
    return torch.cat((-x2, x1), dim=-1)


def _rope(q, k, cos, sin, unsqueeze_dim: int = 1):
    cos, sin = cos.unsqueeze(unsqueeze_dim), sin.unsqueeze(unsqueeze_dim)
    return (q * cos) + (_rotate_half(q) * sin), (k * cos) + (_rotate_half(k) * sin)


def _silu_mul(gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    return F.silu(gate) * up


def _masked_softmax(scores: torch.Tensor, mask: torch.Tensor, scale: float) -> torch.Tensor:
    return (scores.float() * scale).masked_fill(~mask, float("-inf")).softmax(-1).to(scores.dtype)


def masked_softmax(scores: torch.Tensor, mask: torch.Tensor, scale: float) -> torch.Tensor:
    """softmax(scale · scores) over the keys the mask allows, in float32, back in the scores' dtype."""
    return _c("masked_softmax", _masked_softmax)(scores, mask, scale) if _ON else _masked_softmax(scores, mask, scale)


_compiled: dict[str, object] = {}


def _c(name: str, fn):
    if name not in _compiled:
        _compiled[name] = torch.compile(fn, fullgraph=True, dynamic=False)
    return _compiled[name]


def install(model: torch.nn.Module) -> int:
    """Patch the model's RMSNorm, MLP and rotary embedding; returns how many modules were patched."""
    patched = 0
    rms, silu_mul, rope = _c("rms", _rms), _c("silu_mul", _silu_mul), _c("rope", _rope)
    for module in model.modules():
        name = type(module).__name__
        if getattr(module, "_specbed_fused", False):
            continue
        if name.endswith("RMSNorm") and hasattr(module, "variance_epsilon") and hasattr(module, "weight"):

            def norm_forward(x, _m=module, _orig=module.forward):
                return rms(x, _m.weight, _m.variance_epsilon) if _ON else _orig(x)

            module.forward = norm_forward
        elif name.endswith("MLP") and all(hasattr(module, a) for a in ("gate_proj", "up_proj", "down_proj")):
            if getattr(getattr(module, "config", None), "hidden_act", "silu") != "silu":
                continue

            def mlp_forward(x, _m=module, _orig=module.forward):
                return _m.down_proj(silu_mul(_m.gate_proj(x), _m.up_proj(x))) if _ON else _orig(x)

            module.forward = mlp_forward
        elif name.endswith("Attention"):
            mod = sys.modules[type(module).__module__]
            orig_rope = getattr(mod, "apply_rotary_pos_emb", None)
            if orig_rope is not None and not getattr(orig_rope, "_specbed_fused", False):

                def rope_dispatch(q, k, cos, sin, *args, _orig=orig_rope, **kwargs):
                    if _ON and not args and not kwargs:
                        return rope(q, k, cos, sin)
                    return _orig(q, k, cos, sin, *args, **kwargs)

                rope_dispatch._specbed_fused = True
                mod.apply_rotary_pos_emb = rope_dispatch
            continue
        else:
            continue
        module._specbed_fused = True
        patched += 1
    log.info("fused fast path: %d modules patched", patched)
    return patched

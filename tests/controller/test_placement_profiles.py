"""The experiment's ``dtype`` field, CONFIGURE's ``device``/``dtype`` and ``load_model``'s dtype."""

from __future__ import annotations

import pytest
import torch
import yaml

from agent.models import ModelError, load_model, resolve_dtype
from agent.protocol import Configure, ProtocolError, decode, encode
from agent.settings import Settings
from controller.placement import agent_settings
from controller.profiles import PROFILES_DIR, ProfileError, load_experiment


def profile(tmp_path, **extra) -> str:
    data = yaml.safe_load((PROFILES_DIR / "experiments" / "tiny.yaml").read_text())
    data.update(extra)
    path = tmp_path / "x.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def test_dtype_per_role_and_for_both(tmp_path):
    x = load_experiment(profile(tmp_path, dtype={"target": "bfloat16"}))
    assert x.dtypes == {"target": "bfloat16", "drafter": "auto"}
    assert load_experiment(profile(tmp_path, dtype="float16")).dtypes == {"target": "float16", "drafter": "float16"}
    y = load_experiment(profile(tmp_path, dtype={"drafter": "float16"}, devices={"agents": "jetson-agx-orin"}))
    assert agent_settings(y) == {"dtype": "float16", "device": "cuda"}
    assert agent_settings(load_experiment("tiny")) == {"dtype": "auto"}  # no agent device: the agent's own


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"targt": "bfloat16"}, "dtype: unknown role 'targt' (did you mean 'target'?)"),
        ({"drafter": "bf16"}, "dtype.drafter: expected one of auto, bfloat16, float16, float32, got 'bf16'"),
        ("float64", "dtype: expected one of auto, bfloat16, float16, float32, got 'float64'"),
        (16, "dtype: expected one of auto"),
    ],
)
def test_bad_dtype_names_the_file_and_field(tmp_path, value, message):
    path = profile(tmp_path, dtype=value)
    with pytest.raises(ProfileError) as err:
        load_experiment(path)
    assert str(err.value).startswith(path) and message in str(err.value)


def test_configure_validates_device_and_dtype():
    base = {
        "drafter": {"source": "tiny-llama"},
        "vocab_size": 64,
        "temperature": 0.0,
        "top_k": 8,
        "sampling": "full",
        "prob_dtype": "float16",
        "index_dtype": "uint8",
    }
    ok = Settings.from_wire(decode(encode(Configure({**base, "device": "cuda:1", "dtype": "bfloat16"}))).settings)
    assert ok.device == "cuda:1" and ok.dtype == "bfloat16"
    for bad, code in (({"dtype": "int8"}, "bad_dtype"), ({"device": "tpu"}, "malformed"), ({"device": 3}, "malformed")):
        with pytest.raises(ProtocolError) as err:
            Settings.from_wire(decode(encode(Configure({**base, **bad}))).settings)
        assert err.value.code == code and next(iter(bad)) in err.value.message


def test_load_model_dtypes():
    spec = {"source": "tiny-llama", "seed": 3}
    default = load_model(spec)
    assert default.dtype == "float32" and default.device == "cpu"
    assert next(default.model.parameters()).dtype == torch.float32
    half = load_model(spec, "cpu", "bfloat16")
    assert half.dtype == "bfloat16" and all(p.dtype == torch.bfloat16 for p in half.model.parameters())
    assert load_model(spec, dtype="auto").dtype == "float32"
    assert resolve_dtype("auto", "cuda") is None  # the checkpoint's own
    assert resolve_dtype(None, "cpu") == torch.float32
    with pytest.raises(ModelError, match="dtype: expected one of"):
        load_model(spec, dtype="fp8")

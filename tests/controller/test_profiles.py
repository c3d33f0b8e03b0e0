"""Profiles fail on load with a message naming the file and the field."""

from __future__ import annotations

import pytest

from controller.profiles import ProfileError, load_experiment, load_model_pair


def write(tmp_path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_shipped_profiles_load():
    exp = load_experiment("quickstart")
    assert exp.generation.top_k == 8 and exp.generation.draft_length == 4 and exp.generation.temperature == 0
    assert exp.agents == 2 and len(exp.prompts) >= 4
    assert load_model_pair("smollm2-135m").drafter["bits"] == 4


def test_typo_in_a_generation_field(tmp_path):
    path = write(tmp_path, "e.yaml", "models: tiny-llama\nprompts: tiny\ngeneration:\n  top_kk: 8\n")
    with pytest.raises(ProfileError, match=r"e\.yaml: generation: unknown field 'top_kk'"):
        load_experiment(path)


def test_wrong_type(tmp_path):
    path = write(tmp_path, "e.yaml", "models: tiny-llama\nprompts: tiny\ngeneration:\n  draft_length: four\n")
    with pytest.raises(ProfileError, match=r"generation\.draft_length: expected an integer"):
        load_experiment(path)


def test_bad_choice(tmp_path):
    path = write(tmp_path, "e.yaml", "models: tiny-llama\nprompts: tiny\ngeneration:\n  reconstruction: magic\n")
    with pytest.raises(ProfileError, match=r"generation\.reconstruction: expected one of renormalise, tail-fill"):
        load_experiment(path)


def test_missing_model_path(tmp_path):
    pair = write(
        tmp_path, "m.yaml", "target:\n  source: local\n  path: /nonexistent/model\ndrafter:\n  source: bundled\n"
    )
    with pytest.raises(ProfileError, match=r"m\.yaml: target\.path: '/nonexistent/model' holds no config\.json"):
        load_model_pair(pair)


def test_prompt_line_without_prompt(tmp_path):
    prompts = write(tmp_path, "p.jsonl", '{"id": "a", "prompt": "hi"}\n{"id": "b"}\n')
    with pytest.raises(ProfileError, match=r"p\.jsonl:2: prompt: missing"):
        load_experiment("tiny", prompts=prompts)


def test_bad_telemetry_settings(tmp_path):
    path = write(tmp_path, "e.yaml", "models: tiny-llama\nprompts: tiny\ntelemetry:\n  host_sampler: top\n")
    with pytest.raises(ProfileError, match=r"telemetry\.host_sampler: expected one of psutil, procfs"):
        load_experiment(path)
    path = write(tmp_path, "f.yaml", "models: tiny-llama\nprompts: tiny\ntelemetry:\n  rate_hz: 0\n")
    with pytest.raises(ProfileError, match=r"telemetry\.rate_hz"):
        load_experiment(path)

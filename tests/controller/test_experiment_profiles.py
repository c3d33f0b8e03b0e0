"""Experiment profiles fail before anything starts, naming the field; grids expand as documented."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from controller.experiment import expand_grid, run_experiment
from controller.profiles import ProfileError, load_device, load_experiment, load_prompts

REPO = Path(__file__).resolve().parents[2]

BASE = {
    "name": "t",
    "models": "tiny-llama",
    "prompts": "tiny",
    "agents": 2,
    "generation": {"temperature": 1.0, "draft_length": 3, "top_k": 4, "max_new_tokens": 8},
    "sweep": {"top_k": [2, 8], "reconstruction": ["renormalise", "tail-fill"]},
    "baselines": ["target-only", "full-distribution"],
}


def write(tmp_path, data, name="exp.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return str(path)


def fails(tmp_path, data, *needles):
    with pytest.raises(ProfileError) as info:
        load_experiment(write(tmp_path, data))
    message = str(info.value)
    assert "exp.yaml" in message, message
    for needle in needles:
        assert needle in message, message
    return message


def with_(**changes):
    data = yaml.safe_load(yaml.safe_dump(BASE))
    for dotted, value in changes.items():
        *parents, leaf = dotted.split("__")
        node = data
        for p in parents:
            node = node[p]
        node[leaf] = value
    return data


def test_the_base_profile_loads(tmp_path):
    experiment = load_experiment(write(tmp_path, BASE))
    assert experiment.sweep == {"top_k": [2, 8], "reconstruction": ["renormalise", "tail-fill"]}
    assert experiment.seeds == [0]


@pytest.mark.parametrize(
    "data, needles",
    [
        (with_(generation__top_kk=4), ("generation", "'top_kk'", "did you mean 'top_k'")),
        (with_(sweeep={"top_k": [1]}), ("'sweeep'", "did you mean 'sweep'")),
        (with_(sweep={"topk": [1, 2]}), ("sweep", "'topk'", "did you mean 'top_k'")),
        (with_(baselines=["target_only"]), ("baselines[0]", "did you mean 'target-only'")),
        (with_(prompts={"source": "tiny", "taks": ["chat"]}), ("prompts", "'taks'", "did you mean 'tasks'")),
    ],
)
def test_a_typo_in_a_field_name_is_named(tmp_path, data, needles):
    fails(tmp_path, data, *needles)


@pytest.mark.parametrize(
    "data, needles",
    [
        (with_(agents="two"), ("agents", "expected a positive integer", "'two'")),
        (with_(generation__draft_length=2.5), ("generation.draft_length", "expected an integer")),
        (with_(generation__temperature="hot"), ("generation.temperature", "expected a number")),
        (with_(sweep={"top_k": 8}), ("sweep.top_k", "expected a non-empty list")),
        (with_(sweep={"top_k": [2, "8"]}), ("sweep.top_k[1]", "top_k", "expected an integer")),
        (with_(sweep={"reconstruction": ["renormalise", "tailfill"]}), ("sweep.reconstruction[1]", "tail-fill")),
        (with_(sweep={"agents": [1, 0]}), ("sweep.agents[1]", "positive integer")),
        (with_(seeds=[0, "1"]), ("seeds[1]", "expected an integer")),
        (with_(repetitions=0), ("repetitions", "positive integer")),
        (with_(distributed="yes"), ("distributed", "true or false")),
        (with_(generation__index_dtype="int17"), ("generation.index_dtype", "uint16")),
        (with_(baselines="target-only"), ("baselines", "expected a list")),
    ],
)
def test_a_wrong_type_is_named(tmp_path, data, needles):
    fails(tmp_path, data, *needles)


def test_a_missing_model_path_fails_before_anything_starts(tmp_path):
    pair = tmp_path / "pair.yaml"
    pair.write_text(
        yaml.safe_dump(
            {
                "name": "mine",
                "target": {"source": "local", "path": str(tmp_path / "no-such-model")},
                "drafter": {"source": "tiny-llama", "vocab_size": 64},
            }
        )
    )
    message = fails(tmp_path, with_(models=str(pair)), "models", "target.path", "no-such-model", "config.json")
    assert "pair.yaml" in message
    out = tmp_path / "run"
    with pytest.raises(ProfileError):
        run_experiment(write(tmp_path, with_(models=str(pair))), out)
    assert not out.exists(), "nothing is written for a profile that does not load"


def test_missing_prompts_and_devices_are_named(tmp_path):
    fails(tmp_path, with_(prompts="no-such-prompts"), "no such prompts file")
    fails(tmp_path, with_(devices={"agents": "no-such-device"}), "devices.agents", "no such profile")
    fails(tmp_path, with_(prompts={"source": "mixed", "tasks": ["poetry"]}), "prompts.tasks", "'poetry'")


def test_bundled_profiles_load():
    for name in ("quickstart", "tiny", "tiny-sweep", "k-sweep"):
        load_experiment(name)
    for name in ("jetson-agx-orin", "a40-server", "cpu-host"):
        device = load_device(name)
        assert device.name == name
    mixed = load_prompts("mixed")
    tasks = {}
    for p in mixed:
        tasks[p.task] = tasks.get(p.task, 0) + 1
    assert tasks == {t: 12 for t in ("chat", "code", "maths", "summarisation", "translation")}


def test_prompt_filters(tmp_path):
    data = with_(prompts={"source": "mixed", "tasks": ["maths", "code"], "per_task": 2})
    experiment = load_experiment(write(tmp_path, data))
    assert [p.id for p in experiment.prompts] == ["maths-01", "maths-02", "code-01", "code-02"]


def test_grid_expansion(tmp_path):
    data = with_(seeds=[3, 4])
    data["baselines"] = ["target-only", "colocated", "full-distribution"]
    data["sweep"]["draft_length"] = [2, 4]
    grid = expand_grid(load_experiment(write(tmp_path, data)))
    by_scheme = {}
    for p in grid:
        by_scheme.setdefault(p.scheme, []).append(p)
    # per seed: 2 K x 2 reconstructions x 2 γ top-K points, a full-distribution and a colocated
    # point per γ, one target-only point
    assert {s: len(v) for s, v in by_scheme.items()} == {
        "top-k": 16,
        "full-distribution": 4,
        "colocated": 4,
        "target-only": 2,
    }
    assert len({p.id for p in grid}) == len(grid)
    assert {p.seed for p in grid} == {3, 4}
    full = by_scheme["full-distribution"][0].generation
    assert (full.index_dtype, full.prob_dtype) == ("none", "float32")
    # baselines of a seed run before its top-K grid
    first_topk = next(i for i, p in enumerate(grid) if p.scheme == "top-k")
    assert all(p.scheme != "top-k" for p in grid[:first_topk])
    assert grid[first_topk].seed == 3


@pytest.mark.parametrize(
    "data, needles",
    [
        (with_(generation__bandwidth_policy="multispin"), ("generation.bandwidth_policy", "multispin-homogeneous")),
        (with_(generation__batching="sometimes"), ("generation.batching", "heterogeneous")),
        (with_(generation__batch_window_s=-1), ("generation.batch_window_s",)),
        (with_(generation__bandwidth_policy="equal-split"), ("links.band_hz", "needs a band")),
        (
            with_(sweep={"bandwidth_policy": ["none", "multispin-heterogeneous"]}),
            ("links.band_hz", "multispin-heterogeneous"),
        ),
        (with_(links={"band_hz": 1e6, "agents": {"a": {"up": {"rate_bps": 1e6}}}}), ("links.agents.a.up", "no rate")),
        (with_(links={"band_hz": 1e6, "agents": {"a": {"draft_delay_s": 0.1}}}), ("links.agents.a.up.snr_db",)),
        (with_(links={"band_hz": "wide"}), ("links.band_hz",)),
    ],
)
def test_band_and_batching_errors_name_the_field(tmp_path, data, needles):
    fails(tmp_path, data, *needles)


@pytest.mark.parametrize("name", sorted(p.stem for p in (REPO / "profiles" / "experiments").glob("*.yaml")))
def test_every_bundled_experiment_loads_and_expands(name):
    from controller.specfed_profile import is_specfed, load_specfed

    if is_specfed(name):  # `scheme: specfed`: another kind of experiment, with its own loader
        assert load_specfed(name).name == name
        return
    experiment = load_experiment(name)
    assert experiment.name == name  # `specbed run NAME` finds it by its file name
    assert expand_grid(experiment)

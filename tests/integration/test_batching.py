"""Batched verification and a shared band on real agents (tiny models)."""

from __future__ import annotations

import json
import math

import pytest
import yaml

from controller.experiment import run_experiment
from tests.conftest import point_setting, read_finished_jsonl


def _run(
    tmp_path,
    tiny_pair,
    name: str,
    generation: dict,
    links: dict | None = None,
    sweep: dict | None = None,
    prompts: str = "tiny",
):
    profile = {
        "name": name,
        "models": "tiny-llama",
        "prompts": prompts,
        "agents": 3,
        "generation": {"temperature": 0, "draft_length": 3, "top_k": 4, "max_new_tokens": 10, **generation},
    }
    if links:
        profile["links"] = links
    if sweep:
        profile["sweep"] = sweep
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(profile))
    out = tmp_path / name
    run_experiment(str(path), out, target=tiny_pair[0])
    rounds = [json.loads(x) for x in (out / "rounds.jsonl").read_text().splitlines()]
    outputs = {}
    for line in (out / "outputs.jsonl").read_text().splitlines():
        o = json.loads(line)
        outputs[(o.get("point"), o["prompt_id"])] = o["token_ids"]
    return rounds, outputs


def test_batched_verification_gives_the_unbatched_outputs(tmp_path, tiny_pair):
    rounds, outputs = _run(
        tmp_path,
        tiny_pair,
        "batching",
        {"batch_window_s": 0.05},
        sweep={"batching": ["off", "homogeneous", "heterogeneous"]},
    )
    by_mode = {}
    for (point, prompt), tokens in outputs.items():
        mode = point_setting(point, "batching")
        by_mode.setdefault(mode, {})[prompt] = tokens
    assert set(by_mode) == {"off", "homogeneous", "heterogeneous"}
    # greedy: the same tokens whichever way the target's passes were grouped
    assert by_mode["homogeneous"] == by_mode["off"] == by_mode["heterogeneous"]
    sizes = {m: [r["batch_size"] for r in rounds if f"batching={m}" in r["point"]] for m in by_mode}
    assert set(sizes["off"]) == {1}
    assert max(sizes["homogeneous"]) == 3 and max(sizes["heterogeneous"]) >= 2
    for r in rounds:
        wait = r["phases"]["batch_wait"]
        assert wait[1] >= wait[0]


POLICIES = ["equal-split", "multispin-homogeneous", "multispin-heterogeneous"]
BAND_HZ = 400e3
SNR_DB = {"agent-0": 0.0, "agent-1": 10.0, "agent-2": 20.0}  # η = 1, 3.46, 6.66 bit/s/Hz


@pytest.fixture(scope="module")
def shared_band_rounds(tmp_path_factory, tiny_pair):
    """One run, one point per policy (the same three agents serve them in turn): the rounds of each."""
    tmp = tmp_path_factory.mktemp("band")
    links = {"band_hz": BAND_HZ, "agents": {n: {"up": {"snr_db": s}} for n, s in SNR_DB.items()}}
    # enough work that every agent drafts several rounds after the first re-allocation, whichever
    # agent starts last (with the 4 bundled tiny prompts one agent could get a single short prompt)
    prompts = tmp / "prompts.jsonl"
    prompts.write_text(
        "".join(json.dumps({"id": f"b{i}", "prompt_token_ids": [0, 3 + 5 * i, 4 + i]}) + "\n" for i in range(12))
    )
    rounds, _ = _run(
        tmp,
        tiny_pair,
        "shared-band",
        {"temperature": 1.0, "realloc_rounds": 3, "max_new_tokens": 24},
        links=links,
        sweep={"bandwidth_policy": POLICIES},
        prompts=str(prompts),
    )
    by_policy: dict[str, list[dict]] = {}
    for r in rounds:
        by_policy.setdefault(point_setting(r["point"], "bandwidth_policy"), []).append(r)
    return by_policy


@pytest.mark.parametrize("policy", POLICIES)
def test_shared_band_is_allocated_and_applied(shared_band_rounds, policy):
    band, snr = BAND_HZ, SNR_DB
    rounds = shared_band_rounds.get(policy)
    assert rounds

    for r in rounds:
        eta = math.log2(1 + 10 ** (snr[r["agent"]] / 10))
        assert r["band_hz"] is not None and 0 < r["band_hz"] < band
        # the emulated link carried the payload at the agent's share of the band
        assert r["channel"]["rate_bps"] == pytest.approx(r["band_hz"] * eta, rel=1e-9)
        assert r["channel"]["up_s"] == pytest.approx(8 * r["bytes_up"] / r["channel"]["rate_bps"], rel=1e-6)
    shares = {}
    for r in rounds:
        shares.setdefault(r["agent"], set()).add(round(r["band_hz"]))
    first = [r for r in rounds if r["round"] == 0]
    assert all(r["band_hz"] == pytest.approx(band / 3) for r in first[:3])
    later = [r for r in rounds if r["predicted_goodput"] is not None]
    assert later, "the allocation was never re-solved"
    if policy == "equal-split":
        assert all(s == {round(band / 3)} for s in shares.values())
        assert {r["draft_length"] for r in rounds} == {3}
    else:
        assert any(len(s) > 1 for s in shares.values()), "the band was never re-allocated"
    if policy == "multispin-homogeneous":
        # one γ for all: within a batch every payload has the same length
        batches = {}
        for r in rounds:
            batches.setdefault(r["phases"]["target_forward"][0], set()).add(r["draft_length"])
        assert all(len(g) == 1 for g in batches.values())


def test_an_agent_that_leaves_gives_its_share_to_the_others(tmp_path, tiny_pair):
    """A local agent killed mid-run: the two left split the band between them, and its prompt is redone."""
    import os
    import signal
    import threading
    import time

    import psutil

    band = 40e3
    snr = {"agent-0": 0.0, "agent-1": 10.0, "agent-2": 20.0}
    links = {"band_hz": band, "agents": {n: {"up": {"snr_db": s}} for n, s in snr.items()}}
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(
        "".join(json.dumps({"id": f"b{i}", "prompt_token_ids": [0, 3 + 5 * i, 4 + i]}) + "\n" for i in range(9))
    )
    rounds_file = tmp_path / "leave" / "rounds.jsonl"
    killed = threading.Event()

    def kill_agent_2_after_its_second_round():
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not killed.is_set():
            if sum(r["agent"] == "agent-2" for r in read_finished_jsonl(rounds_file)) >= 2:
                for child in psutil.Process(os.getpid()).children(recursive=True):
                    cmd = child.cmdline()
                    if "agent" in cmd and "agent-2" in cmd:
                        child.send_signal(signal.SIGKILL)
                        killed.set()
                        return
            time.sleep(0.02)

    watcher = threading.Thread(target=kill_agent_2_after_its_second_round, daemon=True)
    watcher.start()
    rounds, outputs = _run(
        tmp_path,
        tiny_pair,
        "leave",
        {"temperature": 1.0, "bandwidth_policy": "equal-split", "realloc_rounds": 3, "max_new_tokens": 24},
        links=links,
        prompts=str(prompts),
    )
    watcher.join(timeout=5)
    assert killed.is_set(), "agent-2 was never killed"
    assert len(outputs) == 9  # its unfinished prompt went to the others
    # agent-2's rounds of the prompt it was killed in were moved to discarded_rounds.jsonl (redone by the others)
    discarded_file = tmp_path / "leave" / "discarded_rounds.jsonl"
    discarded = [json.loads(x) for x in discarded_file.read_text().splitlines()] if discarded_file.exists() else []
    assert discarded and {r["agent"] for r in discarded} == {"agent-2"}
    last_of_2 = max(r["ctrl_reply_ns"] for r in rounds + discarded if r["agent"] == "agent-2")
    after = [r for r in rounds if r["ctrl_recv_ns"] > last_of_2]
    assert {r["agent"] for r in after} == {"agent-0", "agent-1"}
    # every payload used a third of the band while three agents shared it, half once two did
    assert {round(r["band_hz"]) for r in rounds + discarded} == {round(band / 3), round(band / 2)}
    for name in ("agent-0", "agent-1"):
        mine = [r for r in after if r["agent"] == name]
        assert mine[-1]["band_hz"] == pytest.approx(band / 2)
        eta = math.log2(1 + 10 ** (snr[name] / 10))
        assert mine[-1]["channel"]["rate_bps"] == pytest.approx(band / 2 * eta, rel=1e-9)

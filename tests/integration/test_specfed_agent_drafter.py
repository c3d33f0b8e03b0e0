"""SpecFed with ``drafter: agent``: a drafting agent process, its drafts forwarded to the workers, a lost drafter."""

from __future__ import annotations

import json
import re
import signal
import time

import psutil
import pytest
import yaml

from agent.protocol import zmtp_frame_bytes
from controller.profiles import ProfileError
from controller.specfed_profile import load_specfed
from controller.specfed_report import bound_violations
from controller.specfed_run import run_specfed
from tests.integration.test_specfed import read_jsonl, write_profile

PROMPTS = [[0, 7, 21, 3], [0, 50, 1], [0, 12, 60, 44, 8, 2]]
GREEDY = {"temperature": 0.0, "draft_length": 3, "max_new_tokens": 12}
VOCAB = 64  # the tiny pair's (test_specfed.TINY)


def test_agent_drafter_output_is_the_controller_drafters_token_for_token(tmp_path):
    outputs, rounds = {}, {}
    for place in ("controller", "agent"):
        folder = tmp_path / place
        folder.mkdir()
        profile = write_profile(
            folder, PROMPTS, drafter=place, generation=GREEDY, sweep={"top_k": [4], "reconstruction": ["tail-fill"]}
        )
        out = run_specfed(profile, folder / "run")
        outputs[place] = {(o["point"], o["prompt_id"]): o["token_ids"] for o in read_jsonl(out / "outputs.jsonl")}
        rounds[place] = read_jsonl(out / "rounds.jsonl")
        manifest = json.loads((out / "manifest.json").read_text())
        assert manifest["drafter"] == place and "failed" not in manifest
        assert ("Drafted by the drafting agent" in (out / "report.md").read_text()) == (place == "agent")
    # the dense aggregation and K = 4, every prompt: identical outputs, token for token
    assert len(outputs["agent"]) == 2 * len(PROMPTS)
    assert outputs["agent"] == outputs["controller"]
    assert all(len(t) == 12 for t in outputs["agent"].values())
    for place, rs in rounds.items():
        assert rs and all(r["drafter"] == place for r in rs)
        assert all(r["metrics"] is not None for r in rs)
        assert bound_violations(rs) == []
    dense = [r for r in rounds["agent"] if r["point"].startswith("specfed-dense")]
    assert dense and max(max(r["metrics"]["aggregation_bias"]) for r in dense) < 1e-9
    # the same drafts every round (the agent's cache rolled back as the in-process drafter's): same acceptances
    accepted = {p: [(r["point"], r["prompt_id"], r["round"], r["accepted"]) for r in rs] for p, rs in rounds.items()}
    assert sorted(accepted["agent"]) == sorted(accepted["controller"])
    # the drafting agent's frames are counted every round: γ drafts with q dense in float32 up, a verdict down
    for r in rounds["agent"]:
        assert r["drafter_bytes_up"] > zmtp_frame_bytes(r["draft_length"] * VOCAB * 4)
        assert 0 < r["drafter_bytes_down"] < 100
    assert all(r["drafter_bytes_up"] == r["drafter_bytes_down"] == 0 for r in rounds["controller"])
    # the workers' scheme bytes do not depend on where the drafts came from
    per_position = {p: sorted({r["bytes_up_per_position"] for r in rs}) for p, rs in rounds.items()}
    assert per_position["agent"] == per_position["controller"]


def one_agent_drafted_point(tmp_path, **extra):
    """A profile of one top-4 point, drafted by the drafting agent, long enough to be cut at round 2."""
    return write_profile(
        tmp_path,
        PROMPTS,
        drafter="agent",
        baselines=[],
        generation={**GREEDY, "max_new_tokens": 40},
        sweep={"top_k": [4], "reconstruction": ["tail-fill"]},
        **extra,
    )


@pytest.mark.parametrize(
    "how, why",
    [(signal.SIGKILL, "exited with code -9|connection closed"), (signal.SIGSTOP, "no payload for 5 s")],
    ids=["killed", "stalled"],
)
def test_a_drafting_agent_lost_mid_point_ends_the_run_with_a_record(tmp_path, how, why):
    # the round deadline that catches a stalled drafter (controller.liveness)
    profile = one_agent_drafted_point(tmp_path, round_timeout_s=5)
    killed = {}

    def kill_the_drafter(status: str) -> None:
        if killed or "round 2," not in status:
            return
        for child in psutil.Process().children(recursive=True):
            if "drafter" in child.cmdline() and "--role" not in child.cmdline():
                child.send_signal(how)
                killed["pid"], killed["t"] = child.pid, time.monotonic()

    with pytest.raises(RuntimeError, match="drafting agent"):
        run_specfed(profile, tmp_path / "run", on_progress=kill_the_drafter)
    # ended within the round deadline (and far inside the 60 s heartbeat), never waiting for the agent to return
    assert killed and time.monotonic() - killed["t"] < 30
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert re.search(why, manifest["failed"]) and "drafting agent" in manifest["failed"]
    (point,) = manifest["points"].values()
    assert point["failed"] == manifest["failed"]
    assert manifest["drafter_exit_code"] == -signal.SIGKILL  # a stalled one is killed once lost
    assert not psutil.pid_exists(killed["pid"]) or psutil.Process(killed["pid"]).status() == psutil.STATUS_ZOMBIE
    assert all(not w["lost"] for w in manifest["workers"].values())  # the workers were told bye, not lost
    assert read_jsonl(tmp_path / "run" / "rounds.jsonl")  # the rounds before the loss are kept


def test_every_worker_lost_under_an_agent_drafter_ends_the_run_and_the_agent_is_told_bye(tmp_path):
    profile = one_agent_drafted_point(tmp_path)
    killed = []

    def kill_the_workers(status: str) -> None:
        if killed or "round 2," not in status:
            return
        for child in psutil.Process().children(recursive=True):
            if "worker" in child.cmdline():
                child.send_signal(signal.SIGKILL)
                killed.append(child.pid)

    with pytest.raises(RuntimeError, match="no worker answered|every worker is lost"):
        run_specfed(profile, tmp_path / "run", on_progress=kill_the_workers)
    assert len(killed) == 3
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert "worker" in manifest["failed"] and all(w["lost"] for w in manifest["workers"].values())
    assert manifest["drafter_exit_code"] == 0  # the drafting agent was told bye and left


def test_drafter_places_and_the_drafting_agents_name_are_checked(tmp_path):
    profile = write_profile(tmp_path, PROMPTS, drafter="agent", generation=GREEDY)
    assert load_specfed(profile).drafter == "agent"
    data = yaml.safe_load(open(profile))
    with pytest.raises(ProfileError, match="drafter: expected one of controller, agent, got 'edge'"):
        load_specfed(write_profile(tmp_path, PROMPTS, drafter="edge"))
    data["workers"][0]["name"] = "drafter"
    (tmp_path / "clash.yaml").write_text(yaml.safe_dump(data))
    with pytest.raises(ProfileError, match="workers: 'drafter' is the drafting agent's name"):
        load_specfed(str(tmp_path / "clash.yaml"))

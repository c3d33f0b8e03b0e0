"""Testbed profiles against inventories: the bundled lab pair agrees, edits are caught."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from controller import provision
from controller.profiles import PROFILES_DIR, ProfileError, load_testbed
from controller.provision import check_testbed

EXAMPLE = PROFILES_DIR.parent / "playbooks" / "inventory" / "example"


def write_profile(tmp_path: Path, **changes) -> Path:
    data = yaml.safe_load((PROFILES_DIR / "testbeds" / "lab.yaml").read_text())
    data["inventory"] = str(EXAMPLE / "hosts.yml")
    data.update(changes)
    path = tmp_path / "tb.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_bundled_lab_profile_agrees_with_the_example_inventory():
    tb = load_testbed("lab")
    assert tb.controller == "a40" and set(tb.agents) == {"orin-1", "orin-2"}
    assert check_testbed(tb) == []


def test_generated_profile_agrees_and_carries_host_vars():
    generated = provision.testbed_from_inventory(str(EXAMPLE / "hosts.yml"), "gen")
    assert generated["agents"]["orin-2"]["nvpmodel_mode"] == 3
    assert generated["agents"]["orin-2"]["uplink_rate"] == "5mbit"


def test_disagreements_are_listed_by_host_and_field(tmp_path):
    lab = yaml.safe_load((PROFILES_DIR / "testbeds" / "lab.yaml").read_text())
    agents = lab["agents"]
    agents["orin-2"]["uplink_rate"] = "50mbit"
    agents["orin-3"] = {"agent_name": "orin-3"}
    problems = check_testbed(load_testbed(str(write_profile(tmp_path, agents=agents, controller="orin-1"))))
    assert any("orin-2.uplink_rate" in p and "'50mbit'" in p and "'5mbit'" in p for p in problems)
    assert any("orin-3" in p and "jetsons" in p for p in problems)
    assert any("controller 'orin-1'" in p for p in problems)
    assert len(problems) == 3


def test_unknown_field_and_missing_inventory_name_the_field(tmp_path):
    bad_agent = {"orin-1": {"agent_name": "orin-1", "uplink": "5mbit"}, "orin-2": {}}
    with pytest.raises(ProfileError, match=r"agents\.orin-1: unknown field 'uplink'"):
        load_testbed(str(write_profile(tmp_path, agents=bad_agent)))
    with pytest.raises(ProfileError, match=r"inventory: /nonexistent/hosts.yml not found"):
        load_testbed(str(write_profile(tmp_path, inventory="/nonexistent/hosts.yml")))
    with pytest.raises(ProfileError, match="controller: expected a string"):
        load_testbed(str(write_profile(tmp_path, controller=None)))


def test_the_provisioning_commands_run_without_importing_torch():
    """Checking a testbed and naming the drafter's files need no torch: a provisioning call starts in a blink."""
    import subprocess
    import sys
    from pathlib import Path

    code = """
import sys

class NoTorch:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] == "torch":
            raise ImportError("a provisioning command imported torch")

sys.meta_path.insert(0, NoTorch())
import controller.cli.playbook, controller.cli.provision, controller.hostvalues, controller.provision
from agent.models import cache_dirs
from controller.cli import main
from controller.profiles import load_model_pair

assert main(["testbed", "check", "lab"]) == 0
print(cache_dirs(load_model_pair("smollm2-135m").drafter))
"""
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=Path(__file__).resolve().parents[2]
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "smollm2-135m-instruct-q4g128" in out.stdout, out.stdout

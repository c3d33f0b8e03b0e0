"""Values that reach hosts as root: one strict grammar in the CLI, the same in every role."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from controller.hostvalues import PATTERNS, HostValueError, check_inventory, check_value
from controller.profiles import ProfileError, load_testbed

ROLES = Path(__file__).resolve().parents[2] / "playbooks" / "roles"


def specbed(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "controller.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(ROLES.parents[1])},
        timeout=120,
    )


def write_inventory(path: Path, hostvars: dict) -> Path:
    path.write_text(
        yaml.safe_dump(
            {"all": {"children": {"servers": {"hosts": {"srv": {}}}, "jetsons": {"hosts": {"orin-1": hostvars}}}}}
        )
    )
    return path


def test_an_injected_rate_is_refused_and_runs_nothing(tmp_path):
    inventory = write_inventory(tmp_path / "inv.yml", {"ansible_host": "10.0.0.9"})
    out = specbed("shape", "-i", str(inventory), "--qdisc", "htb", "--rate", "1mbit; touch X #", cwd=tmp_path)
    assert out.returncode == 2, out.stdout + out.stderr
    assert "error: --rate: uplink_rate: '1mbit; touch X #' is not a tc rate" in out.stderr
    assert "PLAY" not in out.stdout  # no playbook started
    assert sorted(os.listdir(tmp_path)) == ["inv.yml"]  # X was not created


@pytest.mark.parametrize(
    ("flag", "value"), [("--delay", "20ms$(id)"), ("--loss", "1%;reboot"), ("--loss", "101%"), ("--rate", "10 mbit")]
)
def test_bad_shaping_values_are_refused_by_name(tmp_path, flag, value):
    inventory = write_inventory(tmp_path / "inv.yml", {})
    out = specbed("shape", "-i", str(inventory), flag, value, cwd=tmp_path)
    assert out.returncode == 2 and f"error: {flag}: " in out.stderr and repr(value) in out.stderr, out.stderr


def test_inventory_host_vars_and_extra_vars_are_checked(tmp_path):
    inventory = write_inventory(tmp_path / "inv.yml", {"agent_name": "orin-1;id", "link_loss": "1%"})
    out = specbed("agents", "status", "-i", str(inventory), cwd=tmp_path)
    assert out.returncode == 2, out.stderr
    assert "orin-1: agent_name: 'orin-1;id' is not letters, digits" in out.stderr
    good = write_inventory(tmp_path / "good.yml", {"agent_name": "orin-1"})
    out = specbed("agents", "status", "-i", str(good), "-e", "link_delay=5ms`id`", cwd=tmp_path)
    assert out.returncode == 2 and "--extra-vars link_delay: '5ms`id`' is not a tc time" in out.stderr


def test_check_inventory_lists_every_bad_value_and_leaves_templates_to_the_roles():
    inv = {
        "_meta": {
            "hostvars": {
                "a": {"uplink_rate": "5mbit", "agent_name": "a", "controller_address": "{{ hostvars.s.ip }}"},
                "b": {"uplink_rate": "5mbit|x", "shape_interface": "eth0 root"},
            }
        }
    }
    assert check_inventory(inv) == [
        "b: shape_interface: 'eth0 root' is not a network interface name such as eth0",
        "b: uplink_rate: '5mbit|x' is not a tc rate such as 10mbit or 500kbit",
    ]


@pytest.mark.parametrize(
    ("key", "good", "bad"),
    [
        ("uplink_rate", ["10mbit", "1.5Mbit", "500kbit", "2gbit", ""], ["10", "mbit", "1e3mbit", "10mbit\n"]),
        ("link_delay", ["20ms", "1.5s", "100us", ""], ["20", "-1ms", "20ms 5ms"]),
        ("link_loss", ["1%", "0.5%", "100%", ""], ["1", "101%", "1 %", "-1%"]),
        ("agent_name", ["orin-1", "a.b_c"], ["", "-x", "a b", "a/b", "a;b", "x" * 64]),
        ("controller_address", ["10.0.0.1", "ctrl.lab", "fe80::1"], ["", "a b", "$(id)"]),
        ("agent_device", ["cpu", "cuda", "cuda:1"], ["gpu", "cuda;id"]),
    ],
)
def test_grammar(key, good, bad):
    for value in good:
        assert check_value(key, value) == value
    for value in bad:
        with pytest.raises(HostValueError, match=key):
            check_value(key, value)


def test_types_other_than_strings_are_refused():
    with pytest.raises(HostValueError, match="uplink_rate: expected a string, got list"):
        check_value("uplink_rate", ["10mbit"])


def test_the_roles_check_the_same_grammar():
    """Each role's validate.yml carries the CLI's pattern for every value it checks."""
    seen = set()
    for path in sorted(ROLES.glob("*/tasks/validate.yml")):
        (task,) = yaml.safe_load(path.read_text())
        for item in task["loop"]:
            assert item["pattern"] == PATTERNS[item["key"]][0], f"{path}: {item['key']}"
            assert item["meaning"] == PATTERNS[item["key"]][1], f"{path}: {item['key']}"
            seen.add(item["key"])
    assert seen == set(PATTERNS)
    for role in ("agent", "link_shaping"):
        specs = yaml.safe_load((ROLES / role / "meta" / "argument_specs.yml").read_text())
        assert specs["argument_specs"]["main"]["options"]


def test_no_role_runs_a_shell():
    for path in ROLES.glob("*/tasks/*.yml"):
        assert "ansible.builtin.shell" not in path.read_text(), path


def test_a_testbed_profile_with_a_bad_value_is_refused(tmp_path):
    inventory = write_inventory(tmp_path / "inv.yml", {})
    profile = tmp_path / "tb.yaml"
    profile.write_text(
        yaml.safe_dump(
            {"inventory": str(inventory), "controller": "srv", "agents": {"orin-1": {"uplink_rate": "1mbit; reboot"}}}
        )
    )
    with pytest.raises(ProfileError, match=r"agents\.orin-1\.uplink_rate: '1mbit; reboot' is not a tc rate"):
        load_testbed(str(profile))

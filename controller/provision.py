"""The controller's front end over Ansible: provision, deploy, agents, shape, facts.

Each command runs one playbook of ``playbooks/`` with ``ansible-playbook``
against an inventory, shows Ansible's task lines as they come, and ends
with a per-host table built from the PLAY RECAP (failed and unreachable
hosts first).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import yaml

from agent.models import cache_dirs, prepare_model

REPO_ROOT = Path(__file__).resolve().parent.parent
PLAYBOOKS = REPO_ROOT / "playbooks"
RECAP = re.compile(
    r"^(?P<host>\S+)\s+:\s+ok=(?P<ok>\d+)\s+changed=(?P<changed>\d+)\s+unreachable=(?P<unreachable>\d+)"
    r"\s+failed=(?P<failed>\d+)\s+skipped=(?P<skipped>\d+)"
)


class ProvisionError(Exception):
    """A playbook could not run, or hosts failed; the message names them."""


@dataclass
class HostRecap:
    host: str
    ok: int
    changed: int
    unreachable: int
    failed: int
    skipped: int


def ansible_bin(name: str) -> str:
    local = Path(sys.executable).parent / name
    found = str(local) if local.exists() else shutil.which(name)
    if not found:
        raise ProvisionError(f"{name} not found: install the controller extra (pip install 'specbed[controller]')")
    return found


def build_wheel(out_dir: Path) -> Path:
    """Build the specbed wheel that the agent role installs on the boards."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for old in out_dir.glob("specbed-*.whl"):
        old.unlink()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            str(REPO_ROOT),
            "-w",
            str(out_dir),
        ],
        check=True,
    )
    return next(out_dir.glob("specbed-*.whl"))


def deploy_vars(pair_ref: str | None, work_dir: Path) -> dict:
    """Extra vars for the agent role: the wheel and the drafter's model folders."""
    extra: dict = {"specbed_wheel": str(build_wheel(work_dir))}
    if pair_ref:
        from controller.profiles import load_model_pair

        pair = load_model_pair(pair_ref)
        prepare_model(pair.drafter)
        extra["specbed_models"] = cache_dirs(pair.drafter)
    return extra


def run_playbook(
    playbook: str,
    inventory: str,
    extra_vars: dict | None = None,
    check: bool = False,
    limit: str | None = None,
    echo: bool = True,
) -> dict[str, HostRecap]:
    """Run one playbook; returns the recap per host, raises ProvisionError on failures."""
    cmd = [ansible_bin("ansible-playbook"), "-i", inventory, str(PLAYBOOKS / playbook)]
    if extra_vars:
        cmd += ["-e", json.dumps(extra_vars)]
    if check:
        cmd.append("--check")
    if limit:
        cmd += ["--limit", limit]
    env = {"ANSIBLE_CONFIG": str(PLAYBOOKS / "ansible.cfg"), "ANSIBLE_FORCE_COLOR": "0", "PYTHONUNBUFFERED": "1"}
    import os

    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={**os.environ, **env}, cwd=PLAYBOOKS
    )
    recap: dict[str, HostRecap] = {}
    failures: list[str] = []
    assert proc.stdout is not None
    for line in proc.stdout:
        if echo and (
            line.startswith(("TASK", "PLAY", "fatal", "failed", "changed", "ok:", "skipping")) or "msg" in line
        ):
            print(line.rstrip(), flush=True)
        m = RECAP.match(line.strip())
        if m:
            recap[m["host"]] = HostRecap(
                m["host"], *(int(m[k]) for k in ("ok", "changed", "unreachable", "failed", "skipped"))
            )
        if line.startswith("fatal:") or line.startswith("failed:"):
            failures.append(line.strip()[:300])
    rc = proc.wait()
    bad = [h for h, r in recap.items() if r.failed or r.unreachable]
    if rc != 0 or bad:
        detail = "\n".join(failures[-10:])
        raise ProvisionError(
            f"{playbook}: exit {rc}; failed or unreachable: {', '.join(bad) or 'none listed'}\n{detail}"
        )
    return recap


def recap_table(title: str, recap: dict[str, HostRecap]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for col in ("host", "ok", "changed", "unreachable", "failed", "skipped"):
        table.add_column(col, justify="left" if col == "host" else "right")
    for r in sorted(recap.values(), key=lambda r: (-(r.failed + r.unreachable), r.host)):
        table.add_row(r.host, str(r.ok), str(r.changed), str(r.unreachable), str(r.failed), str(r.skipped))
    Console().print(table)


def inventory_hosts(inventory: str) -> dict:
    """``ansible-inventory --list`` as a dict (groups and hostvars)."""
    out = subprocess.run(
        [ansible_bin("ansible-inventory"), "-i", inventory, "--list"], capture_output=True, text=True, check=True
    ).stdout
    return json.loads(out)


def check_testbed(testbed_path: str, inventory: str) -> list[str]:
    """Disagreements between a testbed profile and an inventory (empty = they agree)."""
    tb = yaml.safe_load(Path(testbed_path).read_text())
    inv = inventory_hosts(inventory)
    hostvars = inv.get("_meta", {}).get("hostvars", {})
    servers = set(inv.get("servers", {}).get("hosts", []))
    jetsons = set(inv.get("jetsons", {}).get("hosts", []))
    problems = []
    if tb.get("controller") not in servers:
        problems.append(
            f"controller {tb.get('controller')!r} is not in the inventory's servers group {sorted(servers)}"
        )
    agents = tb.get("agents") or {}
    if set(agents) != jetsons:
        problems.append(f"agents {sorted(agents)} != the inventory's jetsons {sorted(jetsons)}")
    for host, settings in agents.items():
        hv = hostvars.get(host, {})
        for key, value in (settings or {}).items():
            have = hv.get(key, hv.get("agent_name", host) if key == "agent_name" else None)
            if have != value:
                problems.append(f"{host}.{key}: testbed says {value!r}, inventory says {have!r}")
    return problems


def testbed_from_inventory(inventory: str, name: str) -> dict:
    """A testbed profile generated from an inventory (what `specbed testhosts up` writes)."""
    inv = inventory_hosts(inventory)
    hostvars = inv.get("_meta", {}).get("hostvars", {})
    servers = inv.get("servers", {}).get("hosts", [])
    agents = {}
    for host in inv.get("jetsons", {}).get("hosts", []):
        hv = hostvars.get(host, {})
        agents[host] = {k: hv[k] for k in ("agent_name", "uplink_rate") if k in hv}
    return {"name": name, "inventory": inventory, "controller": servers[0] if servers else None, "agents": agents}


def facts_table(facts_dir: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"host facts ({facts_dir})")
    for col in ("host", "groups", "board", "L4T / GPU", "memory MiB", "cpus", "python", "torch"):
        table.add_column(col)
    for path in sorted(facts_dir.glob("*.json")):
        f = json.loads(path.read_text())
        py = f.get("specbed_python") or {}
        table.add_row(
            f["host"],
            ",".join(f.get("groups", [])),
            str(f.get("board") or "-"),
            str(f.get("l4t") or f.get("gpu") or "-"),
            str(f.get("memory_mb")),
            str(f.get("cpus")),
            str(py.get("python", "-")),
            str(py.get("torch", "-")),
        )
    Console().print(table)


def work_dir() -> Path:
    return Path(tempfile.mkdtemp(prefix="specbed-deploy-"))

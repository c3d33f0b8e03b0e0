"""The controller's front end over Ansible: provision, deploy, agents, shape, facts.

Each command runs one playbook of ``playbooks/`` with ``ansible-playbook``
against an inventory, shows Ansible's task lines as they come, and ends
with a per-host table built from the PLAY RECAP (failed and unreachable
hosts first).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from agent.models import cache_dirs, cache_root, prepare_model
from controller.hostvalues import check_inventory
from controller.profiles import TESTBED_AGENT_FIELDS, Testbed

REPO_ROOT = Path(__file__).resolve().parent.parent
PLAYBOOKS = REPO_ROOT / "playbooks"
RECAP = re.compile(
    r"^(?P<host>\S+)\s+:\s+ok=(?P<ok>\d+)\s+changed=(?P<changed>\d+)\s+unreachable=(?P<unreachable>\d+)"
    r"\s+failed=(?P<failed>\d+)\s+skipped=(?P<skipped>\d+)"
)


class ProvisionError(Exception):
    """A playbook could not run, or hosts failed; the message names them.

    ``recap`` holds the PLAY RECAP per host and ``host_errors`` each failed
    host's last error message, when the playbook got that far.
    """

    def __init__(self, message: str, recap: dict | None = None, host_errors: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.recap = recap or {}
        self.host_errors = host_errors or {}


FAILURE = re.compile(r"^(?:fatal|failed): \[(?P<host>[^\]]+)\].*?(?:FAILED|UNREACHABLE)! => (?P<body>.*)$")


def _failure_message(body: str) -> str:
    try:
        data = json.loads(body)
    except json.JSONDecodeError:
        return body[:300]
    msg = data.get("msg") or data.get("stderr") or body
    return str(msg).strip()[:300]


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


#: What goes into the wheel: its metadata files and its packages' folders (see pyproject.toml).
WHEEL_SOURCES = ("pyproject.toml", "README.md", "agent", "controller")


def source_key(root: Path = REPO_ROOT) -> str:
    """A digest of the files the wheel is built from (names and bytes; caches and bytecode left out)."""
    digest = hashlib.sha256()
    for name in WHEEL_SOURCES:
        top = root / name
        files = sorted(top.rglob("*")) if top.is_dir() else [top]
        for path in files:
            if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
                digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def build_wheel(out_dir: Path) -> Path:
    """The specbed wheel that the agent role installs on the boards, in ``out_dir``.

    Built once per source state (``source_key``) and kept in the cache
    (``~/.cache/specbed/wheels``, the latest build only): a second
    ``specbed provision`` or ``deploy`` of unchanged sources copies it, and
    copies the same bytes, so the boards install nothing again.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    for old in out_dir.glob("specbed-*.whl"):
        old.unlink()
    wheels = cache_root() / "wheels"
    kept = wheels / source_key()
    if not any(kept.glob("specbed-*.whl")):
        wheels.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=wheels, prefix=".build-") as tmp:
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
                    tmp,
                ],
                check=True,
                # fixed zip timestamps: the same source gives the same wheel, so a
                # second deploy copies nothing and reinstalls nothing
                env={**os.environ, "SOURCE_DATE_EPOCH": "315532800"},
            )
            try:
                os.rename(tmp, kept)  # whole or not at all; a concurrent build's copy may be there first
            except OSError:
                if not any(kept.glob("specbed-*.whl")):
                    raise
            else:
                os.mkdir(tmp)  # for TemporaryDirectory's clean-up
        for other in wheels.iterdir():  # earlier source states
            if other.is_dir() and other.name != kept.name and not other.name.startswith(".build-"):
                shutil.rmtree(other, ignore_errors=True)
    wheel = next(kept.glob("specbed-*.whl"))
    shutil.copyfile(wheel, out_dir / wheel.name)
    return out_dir / wheel.name


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
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={**os.environ, **env}, cwd=PLAYBOOKS
    )
    recap: dict[str, HostRecap] = {}
    host_errors: dict[str, str] = {}
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
        f = FAILURE.match(line.strip())
        if f and "...ignoring" not in line:
            host_errors[f["host"]] = _failure_message(f["body"])
    rc = proc.wait()
    bad = sorted(h for h, r in recap.items() if r.failed or r.unreachable)
    if rc != 0 or bad:
        per_host = "".join(f"\n  {h}: {host_errors.get(h, 'see the output above')}" for h in bad)
        # a failure line followed by "...ignoring" does not fail the host
        host_errors = {h: e for h, e in host_errors.items() if h in bad}
        raise ProvisionError(
            f"{playbook} exited {rc}; failed or unreachable: {', '.join(bad) or 'none listed'}{per_host}",
            recap,
            host_errors,
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
    print(recap_line(recap))


def recap_line(recap: dict[str, HostRecap]) -> str:
    """One line for logs and scripts: 'recap: 3 hosts, 2 changed (orin-1, orin-2), 0 failed, 0 unreachable'."""
    parts = [f"recap: {len(recap)} hosts"]
    for what in ("changed", "failed", "unreachable"):
        hosts = sorted(h for h, r in recap.items() if getattr(r, what))
        parts.append(f"{len(hosts)} {what}" + (f" ({', '.join(hosts)})" if hosts else ""))
    return ", ".join(parts)


def inventory_hosts(inventory: str) -> dict:
    """``ansible-inventory --list`` as a dict (groups and hostvars)."""
    if not Path(inventory).exists():
        raise ProvisionError(f"inventory {inventory} not found")
    proc = subprocess.run(
        [ansible_bin("ansible-inventory"), "-i", inventory, "--list"],
        capture_output=True,
        text=True,
        env={**os.environ, "ANSIBLE_VERBOSITY": "0"},  # JSON only on stdout, whatever the caller's verbosity
    )
    if proc.returncode != 0:
        raise ProvisionError(f"ansible-inventory could not read {inventory}: {proc.stderr.strip()[-500:]}")
    return json.loads(proc.stdout)


def check_testbed(testbed: Testbed, inventory: str | None = None) -> list[str]:
    """Disagreements between a testbed profile and an inventory (empty = they agree).

    The inventory is the profile's own unless another is given.  Checked:
    the inventory's values match controller.hostvalues' grammar, the
    controller is a server, the agents are exactly the jetsons, and
    every setting the profile gives a board equals the inventory's value
    for it (host_vars, group_vars and role defaults that the inventory sets).
    """
    inv = inventory_hosts(inventory or testbed.inventory)
    hostvars = inv.get("_meta", {}).get("hostvars", {})
    servers = set(inv.get("servers", {}).get("hosts", []))
    jetsons = set(inv.get("jetsons", {}).get("hosts", []))
    problems = check_inventory(inv)  # values that would reach a host (names, rates)
    if testbed.controller not in servers:
        problems.append(f"controller {testbed.controller!r} is not in the inventory's servers group {sorted(servers)}")
    if set(testbed.agents) != jetsons:
        problems.append(f"agents {sorted(testbed.agents)} != the inventory's jetsons {sorted(jetsons)}")
    for host, settings in testbed.agents.items():
        hv = hostvars.get(host, {})
        for key, value in settings.items():
            have = hv.get(key, host if key == "agent_name" else None)
            if str(have) != str(value):
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
        agents[host] = {k: hv[k] for k in sorted(TESTBED_AGENT_FIELDS) if k in hv}
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


def agent_names(inventory: str) -> list[str]:
    """The agent names of an inventory's jetsons (agent_name, else the host name)."""
    inv = inventory_hosts(inventory)
    hostvars = inv.get("_meta", {}).get("hostvars", {})
    return [hostvars.get(h, {}).get("agent_name", h) for h in inv.get("jetsons", {}).get("hosts", [])]


def ensure_keys(keys_dir: Path, agents: list[str]) -> Path:
    """The controller's keys folder with a key for every agent; made with `specbed keys` when new.

    Layout (``specbed keys``): ``controller.key``, ``controller.key_secret``,
    ``agents/NAME.key``, ``agents/NAME.key_secret`` (zmq.auth certificates,
    secrets mode 0600).  Returns the absolute folder for the agent role.
    """
    keys_dir = Path(keys_dir).resolve()
    if not (keys_dir / "controller.key").is_file():
        cmd = [sys.executable, "-m", "controller.cli", "keys", "--dir", str(keys_dir), "--agents", ",".join(agents)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise ProvisionError(
                f"`specbed keys` could not make {keys_dir}: {(proc.stderr or proc.stdout).strip()[-300:]}"
            )
    missing = [n for n in agents if not (keys_dir / "agents" / f"{n}.key_secret").is_file()]
    if missing:
        raise ProvisionError(
            f"{keys_dir} holds no key for {', '.join(missing)}: run `specbed keys --dir {keys_dir} "
            f"--agents {','.join(missing)}`"
        )
    return keys_dir

"""Test hosts without hardware: network namespaces with veth pairs and sshd.

``specbed testhosts up --dir DIR`` makes one namespace per host, each with a
veth pair (root side 10.231.N.1/24, host side 10.231.N.2/24), its own sshd
(generated host key, key-only root login, listening on the host side) and
its own install root under DIR/hosts/NAME, then writes DIR/known_hosts
(every host's key, which SSH verifies) and DIR/inventory.yml for the
playbooks.  The first hosts are ``servers``, the rest ``jetsons``
(stand-ins: no Jetson tasks run on them, see ``jetson_expected``).
``specbed testhosts down --dir DIR`` stops every process the hosts run and
deletes the namespaces.  Needs root, iproute2 and openssh-server; systemd is
not needed (agents run as supervised processes with pid files).

Namespace hosts share this machine's filesystem and hostname, which is why
each gets an install root of its own.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import yaml

NETNS_PREFIX = "specbed-"
SUBNET = "10.231"
SSHD = "/usr/sbin/sshd"


class TestHostError(Exception):
    """Test hosts could not be made; the message says what is missing."""


@dataclass
class TestHost:
    name: str
    group: str  # "servers" | "jetsons"
    index: int
    netns: str
    root_ip: str  # the controller's address as this host sees it
    host_ip: str
    root_if: str
    host_if: str
    install_root: str


def _run(*cmd: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise TestHostError(f"`{' '.join(cmd)}` failed: {proc.stderr.strip()}")
    return proc


def preflight() -> None:
    problems = []
    if os.geteuid() != 0:
        problems.append("root is needed to create network namespaces")
    for tool, hint in (("ip", "iproute2"), ("tc", "iproute2"), ("ssh-keygen", "openssh-client")):
        if not shutil.which(tool):
            problems.append(f"{tool} not found (install {hint})")
    if not Path(SSHD).is_file():
        problems.append(f"{SSHD} not found (install openssh-server)")
    if problems:
        raise TestHostError("; ".join(problems))


def plan(names: list[str], servers: int, out_dir: Path, first_index: int = 0) -> list[TestHost]:
    if not 0 <= first_index <= 255 - len(names):
        raise TestHostError(f"first_index {first_index} leaves no room for {len(names)} hosts in {SUBNET}.0-255")
    hosts = []
    for i, name in enumerate(names, start=first_index):
        hosts.append(
            TestHost(
                name=name,
                group="servers" if i - first_index < servers else "jetsons",
                index=i,
                netns=f"{NETNS_PREFIX}{name}",
                root_ip=f"{SUBNET}.{i}.1",
                host_ip=f"{SUBNET}.{i}.2",
                root_if=f"sbr{i}",
                host_if=f"sbh{i}",
                install_root=str(out_dir / "hosts" / name / "root"),
            )
        )
    return hosts


SSHD_CONFIG = """\
Port 22
ListenAddress {host_ip}
HostKey {dir}/ssh_host_ed25519_key
PidFile {dir}/sshd.pid
AuthorizedKeysFile {keys}
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
PrintMotd no
Subsystem sftp internal-sftp
# Bash sources ~/.bashrc for every command sshd starts unless SHLVL says the
# shell is nested.  Namespace hosts share this machine's root home, whose rc
# (pyenv and the like on a developer's machine) no board has; running it
# would add a shell start-up to every Ansible task.
SetEnv SHLVL=1
"""


def _wait_port(ip: str, port: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((ip, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise TestHostError(f"sshd on {ip}:{port} did not come up in {timeout_s} s")


def up(
    out_dir: Path, names: list[str], servers: int = 1, controller_python: str | None = None, first_index: int = 0
) -> Path:
    """Create the hosts and write DIR/inventory.yml; returns its path."""
    preflight()
    out_dir = Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    hosts = plan(names, servers, out_dir, first_index)
    down(out_dir, quiet=True)
    key = out_dir / "id_ed25519"
    if not key.exists():
        _run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "specbed-testhosts", "-f", str(key))
    (out_dir / "authorized_keys").write_text((out_dir / "id_ed25519.pub").read_text())
    Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege-separation directory
    for h in hosts:
        # leftovers of an earlier run whose state folder is gone
        if h.netns in _run("ip", "netns", "list", check=False).stdout.split():
            _run("ip", "netns", "del", h.netns, check=False)
        _run("ip", "link", "del", h.root_if, check=False)
        _run("ip", "netns", "add", h.netns)
        _run("ip", "link", "add", h.root_if, "type", "veth", "peer", "name", h.host_if)
        _run("ip", "link", "set", h.host_if, "netns", h.netns)
        _run("ip", "addr", "add", f"{h.root_ip}/24", "dev", h.root_if)
        _run("ip", "link", "set", h.root_if, "up")
        ns = ("ip", "netns", "exec", h.netns)
        _run(*ns, "ip", "addr", "add", f"{h.host_ip}/24", "dev", h.host_if)
        _run(*ns, "ip", "link", "set", h.host_if, "up")
        _run(*ns, "ip", "link", "set", "lo", "up")
        hdir = out_dir / "hosts" / h.name
        hdir.mkdir(parents=True, exist_ok=True)
        Path(h.install_root).mkdir(parents=True, exist_ok=True)
        hostkey = hdir / "ssh_host_ed25519_key"
        if not hostkey.exists():
            _run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(hostkey))
        cfg = hdir / "sshd_config"
        cfg.write_text(SSHD_CONFIG.format(host_ip=h.host_ip, dir=hdir, keys=out_dir / "authorized_keys"))
        _run(*ns, SSHD, "-f", str(cfg))
    for h in hosts:
        _wait_port(h.host_ip, 22, 10)
    write_known_hosts(out_dir, hosts)
    (out_dir / "hosts.json").write_text(json.dumps([asdict(h) for h in hosts], indent=2))
    inventory = write_inventory(out_dir, hosts, key, controller_python or sys.executable)
    return inventory


def write_known_hosts(out_dir: Path, hosts: list[TestHost]) -> Path:
    """DIR/known_hosts: each host's address and its sshd's public key, which SSH then verifies."""
    lines = []
    for h in hosts:
        kind, key = (out_dir / "hosts" / h.name / "ssh_host_ed25519_key.pub").read_text().split()[:2]
        lines.append(f"{h.host_ip} {kind} {key}\n")
    path = out_dir / "known_hosts"
    path.write_text("".join(lines))
    return path


def write_inventory(out_dir: Path, hosts: list[TestHost], key: Path, controller_python: str) -> Path:
    venv_site = subprocess.run(
        [controller_python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    base_python = subprocess.run(
        [controller_python, "-c", "import sys; print(getattr(sys, '_base_executable', sys.executable))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    groups: dict[str, dict] = {"servers": {"hosts": {}}, "jetsons": {"hosts": {}}}
    for h in hosts:
        hv = {
            "ansible_host": h.host_ip,
            "specbed_root": h.install_root,
            "controller_address": h.root_ip,
            "shape_interface": h.host_if,
        }
        if h.group == "jetsons":
            hv.update({"agent_name": h.name, "agent_device": "cpu", "agent_threads": 1, "uplink_rate": "10mbit"})
        groups[h.group]["hosts"][h.name] = hv
    inventory = {
        "all": {
            "vars": {
                "ansible_user": "root",
                "ansible_ssh_private_key_file": str(key),
                # host keys are verified against the keys generated in up()
                "ansible_ssh_common_args": f"-o StrictHostKeyChecking=yes -o UserKnownHostsFile={out_dir / 'known_hosts'}",
                "ansible_python_interpreter": "/usr/bin/python3",
                # Namespace hosts share this machine: no OS packages, no
                # systemd, dependencies shared from the controller's venv.
                "testbed_kind": "netns",
                "manage_os_packages": False,
                "server_require_gpu": False,
                "jetson_expected": False,
                "specbed_python": base_python,
                "specbed_install_deps": False,
                "specbed_extra_site_packages": [venv_site],
            },
            "children": groups,
        }
    }
    path = out_dir / "inventory.yml"
    path.write_text(
        "# Written by `specbed testhosts up`; namespace test hosts.\n" + yaml.safe_dump(inventory, sort_keys=False)
    )
    return path


def _kill_pidfile(path: Path) -> None:
    """Terminate a pid file's process and, if it leads one, its process group."""
    try:
        pid = int(path.read_text().strip())
    except (OSError, ValueError):
        return
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for kill in (os.killpg, os.kill):
            try:
                kill(pid, sig)
            except (ProcessLookupError, PermissionError):
                pass
        time.sleep(0.3)
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return


def down(out_dir: Path, quiet: bool = False) -> None:
    """Stop what the hosts run (sshd, agents) and delete their namespaces."""
    out_dir = Path(out_dir).resolve()
    for pidfile in sorted(out_dir.glob("hosts/*/sshd.pid")) + sorted(out_dir.glob("hosts/*/root/run/*.pid")):
        _kill_pidfile(pidfile)
    listed = _run("ip", "netns", "list", check=False).stdout.split("\n")
    hosts_file = out_dir / "hosts.json"
    names = {h["netns"] for h in json.loads(hosts_file.read_text())} if hosts_file.exists() else set()
    for line in listed:
        ns = line.split(" ")[0]
        if ns in names:
            # anything still running inside (an agent started by hand) goes too
            for pid in _run("ip", "netns", "pids", ns, check=False).stdout.split():
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except (ProcessLookupError, ValueError):
                    pass
            _run("ip", "netns", "del", ns, check=False)
    if not quiet:
        print(f"test hosts in {out_dir} are down")


def add_arguments(p) -> None:
    """``up`` and ``down`` on an argparse parser (``specbed testhosts`` and ``main``)."""
    sub = p.add_subparsers(dest="cmd", required=True)
    u = sub.add_parser("up", help="create namespace hosts with sshd and write DIR/inventory.yml")
    u.add_argument("--dir", default="testhosts", help="state folder (keys, sshd configs, install roots)")
    u.add_argument("--names", default="server,orin-1,orin-2", help="comma-separated host names")
    u.add_argument("--servers", type=int, default=1, help="how many of the first names are servers")
    u.add_argument(
        "--first-index",
        type=int,
        default=0,
        help="number of the first host: addresses 10.231.N.1/2, interfaces sbrN/sbhN (default 0)",
    )
    d = sub.add_parser("down", help="stop the hosts' processes and delete their namespaces")
    d.add_argument("--dir", default="testhosts")


def main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="specbed testhosts", description=__doc__.split("\n\n")[0])
    add_arguments(p)
    return run(p.parse_args(argv))


def run(args) -> int:
    """``up`` or ``down`` with parsed options; the exit status."""
    try:
        if args.cmd == "up":
            inv = up(Path(args.dir), args.names.split(","), args.servers, first_index=args.first_index)
            from controller.provision import testbed_from_inventory

            testbed = Path(args.dir) / "testbed.yaml"
            testbed.write_text(yaml.safe_dump(testbed_from_inventory(str(inv), "testhosts"), sort_keys=False))
            print(f"test hosts up; inventory: {inv}; testbed profile: {testbed}")
        else:
            down(Path(args.dir))
    except TestHostError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0

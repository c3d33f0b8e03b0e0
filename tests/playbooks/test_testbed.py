"""The playbooks against real SSH hosts: three network namespaces with sshd.

One namespace stands in for the GPU server and two for Jetson boards.  The
steps run in order on the same hosts, each through the `specbed` command a
user would type: provision twice (the second run changes nothing), start
the agents, rate-limit their uplinks with tbf, serve the quickstart
experiment from this (the root) namespace to the agents in theirs, collect
their logs, stop them.  Jetson-only tasks run in check mode with the board
facts given, since no Jetson exists here; the server's GPU check must fail
clearly on a host without one.

Needs root, iproute2, openssh-server and ansible-core; `.ci/run` installs
them and sets SPECBED_REQUIRE_TESTHOSTS=1 so that a missing piece fails the
run instead of skipping these tests.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from controller import testhosts

pytestmark = pytest.mark.slow

NAMES = ["tb-server", "tb-orin-1", "tb-orin-2"]
FIRST_INDEX = 200  # 10.231.200-202.x, sbr200..: clear of hosts a user made with the defaults
PORT = 5599
PLAYBOOKS = Path(__file__).resolve().parents[2] / "playbooks"


def _missing() -> str | None:
    try:
        testhosts.preflight()
    except testhosts.TestHostError as exc:
        return str(exc)
    if not (Path(sys.executable).parent / "ansible-playbook").exists():
        return "ansible-playbook is not installed next to this Python (pip install -e '.[dev]')"
    return None


@pytest.fixture(scope="module")
def hosts(tmp_path_factory):
    why = _missing()
    if why:
        if os.environ.get("SPECBED_REQUIRE_TESTHOSTS") == "1":
            pytest.fail(f"namespace test hosts required but unavailable: {why}")
        pytest.skip(f"namespace test hosts unavailable: {why}")
    state = tmp_path_factory.mktemp("testhosts")
    testhosts.up(state, NAMES, servers=1, first_index=FIRST_INDEX)
    try:
        # --out is a folder: the profile is DIR/<name>.yaml, here state/testbed.yaml
        rc = specbed(
            "testbed", "generate", "-i", str(state / "inventory.yml"), "--name", "testbed", "--out", str(state)
        )
        assert rc.returncode == 0, rc.stdout
        yield state
    finally:
        testhosts.down(state, quiet=True)


def specbed(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run the specbed command as a user would; stdout and stderr together."""
    return subprocess.run(
        [sys.executable, "-m", "controller.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout,
        env={**os.environ, "COLUMNS": "200"},
    )


def recap(out: str) -> dict[str, int]:
    """The 'recap: N hosts, C changed (...), F failed, U unreachable' line as numbers."""
    m = re.search(r"recap: (\d+) hosts, (\d+) changed.*?, (\d+) failed.*?, (\d+) unreachable", out)
    assert m, f"no recap line in:\n{out[-3000:]}"
    return dict(zip(("hosts", "changed", "failed", "unreachable"), map(int, m.groups()), strict=True))


def in_ns(host: str, *cmd: str) -> str:
    return subprocess.run(
        ["ip", "netns", "exec", f"specbed-{host}", *cmd], capture_output=True, text=True, check=True
    ).stdout


def agent_pid(hosts: Path, name: str) -> int | None:
    pidfile = hosts / "hosts" / name / "root" / "run" / "agent.pid"
    if not pidfile.exists():
        return None
    pid = int(pidfile.read_text())
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    return pid


def ping(inventory: Path, host: str, tmp: Path) -> subprocess.CompletedProcess:
    """An Ansible ping over SSH with a fresh connection (no multiplexed master to reuse)."""
    control = tmp / "cp"
    control.mkdir(parents=True, exist_ok=True)
    return subprocess.run(
        [str(Path(sys.executable).parent / "ansible"), host, "-i", str(inventory), "-m", "ansible.builtin.ping"],
        capture_output=True,
        text=True,
        timeout=120,
        env={
            **os.environ,
            "ANSIBLE_CONFIG": str(PLAYBOOKS / "ansible.cfg"),
            "ANSIBLE_SSH_CONTROL_PATH_DIR": str(control),
            "ANSIBLE_TIMEOUT": "60",  # sshd's banner can take seconds on a loaded CI machine,
        },
    )


def test_ssh_verifies_host_keys(hosts, tmp_path):
    """The inventory names a known_hosts file with each host's key; a wrong or missing entry fails."""
    inventory = yaml.safe_load((hosts / "inventory.yml").read_text())
    assert "StrictHostKeyChecking=yes" in inventory["all"]["vars"]["ansible_ssh_common_args"]
    ok = ping(hosts / "inventory.yml", NAMES[1], tmp_path / "right")
    assert ok.returncode == 0 and '"ping": "pong"' in ok.stdout, ok.stdout + ok.stderr
    lines = (hosts / "known_hosts").read_text().splitlines()
    ip1, ip2 = (f"10.231.{FIRST_INDEX + i}.2" for i in (1, 2))
    key2 = next(ln for ln in lines if ln.startswith(ip2 + " ")).split(" ", 1)[1]
    for case, entries in {
        "wrong": [f"{ip1} {key2}"],
        "missing": [ln for ln in lines if not ln.startswith(ip1)],
    }.items():
        known = tmp_path / f"known_hosts.{case}"
        known.write_text("\n".join(entries) + "\n")
        args = inventory["all"]["vars"]["ansible_ssh_common_args"].replace(str(hosts / "known_hosts"), str(known))
        bad = tmp_path / f"inventory.{case}.yml"
        bad.write_text(
            yaml.safe_dump(
                {
                    **inventory,
                    "all": {**inventory["all"], "vars": {**inventory["all"]["vars"], "ansible_ssh_common_args": args}},
                }
            )
        )
        out = ping(bad, NAMES[1], tmp_path / case)
        assert out.returncode != 0, f"{case} known_hosts entry accepted: {out.stdout}"
        assert "UNREACHABLE" in out.stdout and "Host key verification failed" in out.stdout + out.stderr, out.stdout


def test_testbed_profile_agrees_with_the_inventory(hosts):
    out = specbed("testbed", "check", str(hosts / "testbed.yaml"))
    assert out.returncode == 0, out.stdout
    assert "controller tb-server, agents tb-orin-1, tb-orin-2" in out.stdout


def test_site_twice_second_run_changes_nothing(hosts):
    tb = str(hosts / "testbed.yaml")
    keys = str(hosts / "keys")  # made by provision (`specbed keys`): the boards get theirs, serve enrols them
    first = specbed("provision", "--testbed", tb, "--keys", keys, "-e", f"controller_port={PORT}")
    assert first.returncode == 0, first.stdout[-4000:]
    assert recap(first.stdout) | {"changed": 0} == {"hosts": 3, "changed": 0, "failed": 0, "unreachable": 0}
    assert recap(first.stdout)["changed"] >= 2  # fresh hosts: at least the two agents were installed
    for name in NAMES[1:]:
        root = hosts / "hosts" / name / "root"
        assert (root / "venv" / "bin" / "python").exists()
        assert f"tcp://10.231.{FIRST_INDEX + NAMES.index(name)}.1:{PORT}" in (root / "config" / "agent.env").read_text()
        assert any((root / "cache" / "models").iterdir()), "drafter files were not copied to the board"
    second = specbed("provision", "--testbed", tb, "--keys", keys, "-e", f"controller_port={PORT}")
    assert second.returncode == 0, second.stdout[-4000:]
    assert recap(second.stdout) == {"hosts": 3, "changed": 0, "failed": 0, "unreachable": 0}, second.stdout[-4000:]


def test_agents_start_and_report_running(hosts):
    out = specbed("agents", "start", "--testbed", str(hosts / "testbed.yaml"))
    assert out.returncode == 0, out.stdout[-4000:]
    assert recap(out.stdout)["changed"] == 2
    for name in NAMES[1:]:
        assert agent_pid(hosts, name) is not None, f"{name}: no running agent"
        assert f"{name}: running (pid" in out.stdout
    again = specbed("agents", "start", "--testbed", str(hosts / "testbed.yaml"))
    assert recap(again.stdout)["changed"] == 0  # already running


def test_shape_applies_tbf_on_the_device_uplinks(hosts):
    out = specbed("shape", "--testbed", str(hosts / "testbed.yaml"), "--rate", "10mbit")
    assert out.returncode == 0, out.stdout[-4000:]
    for i, name in enumerate(NAMES[1:], start=FIRST_INDEX + 1):
        qdisc = in_ns(name, "tc", "qdisc", "show", "dev", f"sbh{i}", "root")
        assert "qdisc tbf" in qdisc and "rate 10Mbit" in qdisc, qdisc
    assert "qdisc tbf" not in in_ns(NAMES[0], "tc", "qdisc", "show", "dev", f"sbh{FIRST_INDEX}", "root")
    again = specbed("shape", "--testbed", str(hosts / "testbed.yaml"), "--rate", "10mbit")
    assert recap(again.stdout)["changed"] == 0


def test_shape_applies_htb_with_argv_and_refuses_injection(hosts, tmp_path):
    tb = str(hosts / "testbed.yaml")
    out = specbed("shape", "--testbed", tb, "--qdisc", "htb", "--rate", "5mbit")
    assert out.returncode == 0, out.stdout[-4000:]
    for i, name in enumerate(NAMES[1:], start=FIRST_INDEX + 1):
        assert "qdisc htb 1: root" in in_ns(name, "tc", "qdisc", "show", "dev", f"sbh{i}", "root")
        cls = in_ns(name, "tc", "class", "show", "dev", f"sbh{i}")
        assert "class htb 1:10 root" in cls and "rate 5Mbit ceil 5Mbit" in cls, cls
    # refused by the CLI before any playbook runs
    refused = specbed("shape", "--testbed", tb, "--qdisc", "htb", "--rate", "1mbit; touch X #")
    assert refused.returncode == 2 and "--rate: uplink_rate: '1mbit; touch X #' is not a tc rate" in refused.stdout
    assert "PLAY" not in refused.stdout
    # and by the role itself, when the playbook is run by hand
    marker = tmp_path / "injected"
    direct = subprocess.run(
        [str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(hosts / "inventory.yml"), "shape.yml"]
        + ["-e", json.dumps({"shape_qdisc": "htb", "uplink_rate": f"1mbit; touch {marker} #"})],
        capture_output=True,
        text=True,
        cwd=PLAYBOOKS,
        timeout=300,
        env={**os.environ, "ANSIBLE_CONFIG": str(PLAYBOOKS / "ansible.cfg")},
    )
    assert direct.returncode != 0
    assert "is not a tc rate such as 10mbit" in direct.stdout, direct.stdout[-3000:]
    assert not marker.exists()
    for i, name in enumerate(NAMES[1:], start=FIRST_INDEX + 1):  # the shaping in place is untouched
        assert "rate 5Mbit" in in_ns(name, "tc", "class", "show", "dev", f"sbh{i}")


def test_quickstart_served_to_the_namespace_agents(hosts):
    run = hosts / "run"
    out = specbed(
        "serve",
        "--bind",
        f"tcp://0.0.0.0:{PORT}",
        "--keys",
        str(hosts / "keys"),
        "--agents",
        "2",
        "--profile",
        "quickstart",
        "--max-new-tokens",
        "8",
        "--out",
        str(run),
    )
    assert out.returncode == 0, out.stdout[-4000:]
    (summary,) = json.loads((run / "summary.json").read_text())["points"].values()  # the one point's figures
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["kind"] == "experiment" and manifest["command"] == "serve"
    (segment,) = manifest["segments"]
    assert segment["kind"] == "remote"
    assert segment["security"]["mode"] == "curve"  # only the enrolled boards were served
    assert segment["security"]["enrolled"] == ["tb-orin-1", "tb-orin-2"]
    assert summary["prompts"] == summary["prompts_requested"] == 4
    assert set(summary["agents"]) == {"tb-orin-1", "tb-orin-2"}
    assert all(a["prompts"] >= 1 and a["clock"]["samples"] > 0 for a in summary["agents"].values())
    outputs = [json.loads(line) for line in (run / "outputs.jsonl").read_text().splitlines()]
    assert len(outputs) == 4 and all(len(o["token_ids"]) == 8 for o in outputs)
    rounds = [json.loads(line) for line in (run / "rounds.jsonl").read_text().splitlines()]
    assert {r["agent"] for r in rounds} == {"tb-orin-1", "tb-orin-2"}
    for name in NAMES[1:]:  # telemetry came back over the shaped links
        lines = (run / "telemetry" / "segment-0" / f"{name}.csv").read_text().splitlines()
        assert lines[0].startswith("t_ns,") and len(lines) > 5


def test_collect_fetches_agent_logs_into_the_run(hosts):
    run = hosts / "run"
    out = specbed("collect", str(run), "--testbed", str(hosts / "testbed.yaml"))
    assert out.returncode == 0, out.stdout[-4000:]
    for name in NAMES[1:]:
        log = (run / "hosts" / name / "agent.log").read_text()
        assert name in log


def test_agents_stop_and_shaping_removed(hosts):
    tb = str(hosts / "testbed.yaml")
    out = specbed("agents", "stop", "--testbed", tb)
    assert out.returncode == 0, out.stdout[-4000:]
    assert all(agent_pid(hosts, name) is None for name in NAMES[1:])
    status = specbed("agents", "status", "--testbed", tb)
    assert status.stdout.count(": not running") == 2, status.stdout[-2000:]
    removed = specbed("shape", "--testbed", tb, "--remove")
    assert removed.returncode == 0, removed.stdout[-4000:]
    assert "qdisc tbf" not in in_ns(NAMES[1], "tc", "qdisc", "show", "dev", f"sbh{FIRST_INDEX + 1}", "root")


def test_deploy_distributes_each_board_its_key(hosts, tmp_path):
    """Each board gets its own secret key and the controller's public key, 0600, never printed.

    A board's model file changed since the last deploy, or its mode, is copied again.
    """
    import zmq.auth

    from agent.models import cache_root

    keys = tmp_path / "keys"
    (keys / "agents").mkdir(parents=True)
    zmq.auth.create_certificates(str(keys), "controller")
    for name in NAMES[1:]:
        zmq.auth.create_certificates(str(keys / "agents"), name)
    boards = [hosts / "hosts" / name / "root" / "cache" / "models" for name in NAMES[1:]]
    (model,) = (p.name for p in boards[0].iterdir())  # copied by provision: the bundled drafter
    with open(boards[0] / model / "config.json", "a") as fh:
        fh.write(" ")
    (boards[1] / model / "tokenizer_config.json").chmod(0o600)
    out = specbed("deploy", "-i", str(hosts / "inventory.yml"), "--keys", str(keys), "--limit", "jetsons")
    assert out.returncode == 0, out.stdout[-4000:]
    for board in boards:
        for path in (cache_root() / "models" / model).iterdir():
            assert (board / model / path.name).read_bytes() == path.read_bytes(), path.name
            assert (board / model / path.name).stat().st_mode & 0o777 == 0o644, path.name
    for name in NAMES[1:]:
        root = hosts / "hosts" / name / "root"
        secret = root / "keys" / "agent.key_secret"
        assert secret.read_bytes() == (keys / "agents" / f"{name}.key_secret").read_bytes()
        assert (root / "keys" / "controller.key").read_bytes() == (keys / "controller.key").read_bytes()
        for path in (secret, root / "keys" / "controller.key"):
            assert path.stat().st_mode & 0o777 == 0o600 and path.stat().st_uid == 0
        assert (root / "keys").stat().st_mode & 0o777 == 0o700
        env = (root / "config" / "agent.env").read_text()
        assert f"SPECBED_KEY={root}/keys/agent.key_secret" in env
        assert f"SPECBED_SERVER_KEY={root}/keys/controller.key" in env
        assert (
            'set -- "$@" --key "$SPECBED_KEY" --server-key "$SPECBED_SERVER_KEY"'
            in (root / "bin" / "specbed-agent").read_text()
        )
        secret_z85 = [ln for ln in secret.read_text().splitlines() if "secret-key" in ln][0].split('"')[1]
        assert secret_z85 not in out.stdout  # no_log


def test_jetson_tasks_in_check_mode_with_board_facts(hosts):
    """Every Jetson task is reached on a stand-in told it is an L4T R36.4 board; nothing changes."""
    inventory = str(hosts / "inventory.yml")
    agent_env = hosts / "hosts" / NAMES[1] / "root" / "config" / "agent.env"
    before = agent_env.read_text()
    out = subprocess.run(
        [sys.executable, "-m", "controller.cli", "provision", "-i", inventory, "--limit", NAMES[1], "--check"]
        + ["-e", "jetson_expected=true", "-e", "jetson_l4t_release=36.4", "-e", "nvpmodel_mode=3"]
        + ["-e", "jetson_clocks=true", "-e", f"jetson_pip={Path(sys.executable).parent / 'pip'}"]
        + ["-e", "jetson_torch_wheel=/opt/wheels/torch-2.5.0a0-cp310-cp310-linux_aarch64.whl"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=600,
        env={**os.environ, "ANSIBLE_VERBOSITY": "1", "COLUMNS": "200"},
    )
    assert out.returncode == 0, out.stdout[-4000:]
    text = out.stdout
    assert "L4T R36.4, nvpmodel mode 3" in text
    for task in ("Set the nvpmodel mode", "Lock clocks with jetson_clocks"):
        block = text.split(f"TASK [jetson : {task}]", 1)[1].split("TASK [", 1)[0]
        assert "Command would have run if not in check mode" in block, block
    for task in ("Install jetson-stats", "Install NVIDIA's torch wheel"):
        block = text.split(f"TASK [jetson : {task}]", 1)[1].split("TASK [", 1)[0]
        assert f"changed: [{NAMES[1]}]" in block, block  # would install
    assert agent_env.read_text() == before  # check mode wrote nothing


def test_jetson_role_refuses_a_host_that_is_no_jetson(hosts):
    out = specbed(
        "provision", "-i", str(hosts / "inventory.yml"), "--limit", NAMES[2], "--check", "-e", "jetson_expected=true"
    )
    assert out.returncode == 1
    assert recap(out.stdout)["failed"] == 1
    assert f"{NAMES[2]}: {NAMES[2]}: /etc/nv_tegra_release not found: not a Jetson" in out.stdout


def test_server_role_fails_clearly_without_a_gpu(hosts):
    out = specbed("provision", "-i", str(hosts / "inventory.yml"), "--limit", NAMES[0], "-e", "server_require_gpu=true")
    assert out.returncode == 1
    assert f"{NAMES[0]}: {NAMES[0]}: nvidia-smi failed" in out.stdout
    assert "Install the NVIDIA driver" in out.stdout


# --- what a board's environment keeps: the system's jtop, its own torch ----------------------------


def agent_python(hosts: Path, name: str) -> str:
    return str(hosts / "hosts" / name / "root" / "venv" / "bin" / "python")


def test_agent_venv_imports_a_system_installed_jtop(hosts, tmp_path):
    """jetson-stats lives in the system Python next to its service; the agent's venv must see it."""
    import yaml

    base = yaml.safe_load((hosts / "inventory.yml").read_text())["all"]["vars"]["specbed_python"]
    site_dir = subprocess.run(
        [base, "-c", "import site; print(site.getsitepackages()[0])"], capture_output=True, text=True, check=True
    ).stdout.strip()
    standin = tmp_path / "standin"
    (standin / "jtop").mkdir(parents=True)
    (standin / "jtop" / "__init__.py").write_text(
        "STANDIN = 'system jtop'\n\nclass jtop:\n    def start(self):\n        raise ConnectionError('stand-in')\n"
    )
    pth = Path(site_dir) / f"specbed-test-jtop-{os.getpid()}.pth"
    pth.write_text(f"{standin}\n")  # installed into the system Python, as `pip3 install jetson-stats` would
    try:
        probe = [agent_python(hosts, NAMES[1]), "-c", "import jtop; print(jtop.STANDIN, jtop.__file__)"]
        out = subprocess.run(probe, capture_output=True, text=True)
    finally:
        pth.unlink()
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.startswith("system jtop " + str(standin)), out.stdout


def changed_wheel(out_dir: Path) -> Path:
    """The specbed wheel with one file more (a new build of changed sources), RECORD updated."""
    import base64
    import hashlib
    import zipfile

    from controller.provision import build_wheel

    wheel = build_wheel(out_dir / "built")
    changed = out_dir / wheel.name
    marker = b"# a changed specbed\n"
    digest = base64.urlsafe_b64encode(hashlib.sha256(marker).digest()).rstrip(b"=").decode()
    with zipfile.ZipFile(wheel) as src, zipfile.ZipFile(changed, "w", zipfile.ZIP_DEFLATED) as dst:
        for item in src.infolist():
            data = src.read(item)
            if item.filename.endswith(".dist-info/RECORD"):
                data += f"agent/_deploy_marker.py,sha256={digest},{len(marker)}\n".encode()
            dst.writestr(item, data)
        dst.writestr("agent/_deploy_marker.py", marker)
    return changed


def test_deploy_of_a_changed_wheel_keeps_the_boards_torch(hosts, tmp_path):
    """A stand-in for NVIDIA's Jetson torch in the agent's venv survives `specbed deploy` with dependencies on."""
    name = NAMES[1]
    python = agent_python(hosts, name)
    site_dir = Path(
        subprocess.run(
            [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )
    dist = site_dir / "torch-2.8.0+l4t36.standin.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: torch\nVersion: 2.8.0+l4t36.standin\n")
    (dist / "INSTALLER").write_text("nvidia\n")
    (dist / "RECORD").write_text(f"{dist.name}/METADATA,,\n{dist.name}/INSTALLER,,\n{dist.name}/RECORD,,\n")
    try:
        out = specbed(
            "deploy",
            "-i",
            str(hosts / "inventory.yml"),
            "--limit",
            name,
            "-e",
            f"specbed_wheel={changed_wheel(tmp_path)}",
            "-e",
            "specbed_install_deps=true",  # a board that reaches the package index installs dependencies
            "-e",
            "specbed_pip_extra_args=--no-index",  # ... but none may be fetched: every one is there already
            "-e",
            f"controller_port={PORT}",
        )
        assert out.returncode == 0, out.stdout[-4000:]
        shown = subprocess.run([python, "-m", "pip", "show", "torch"], capture_output=True, text=True).stdout
        assert "Version: 2.8.0+l4t36.standin" in shown, shown
        assert (site_dir / "agent" / "_deploy_marker.py").is_file(), "the changed wheel was not installed"
        pins = (hosts / "hosts" / name / "root" / "config" / "constraints.txt").read_text()
        assert "torch==2.8.0+l4t36.standin" in pins
    finally:
        shutil.rmtree(dist, ignore_errors=True)

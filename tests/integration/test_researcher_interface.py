"""The researcher's interface: every --help, the README's agent form, metrics, the loader, acceptance figures."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import urllib.request

import pytest

from controller.cli import build_parser

pytestmark = pytest.mark.slow


def _subcommands(parser, prefix=()) -> list[tuple[str, ...]]:
    """Every command path of the parser, e.g. ("bench", "verify")."""
    import argparse

    out = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                out.append((*prefix, name))
                out += _subcommands(sub, (*prefix, name))
    return out


def test_every_subcommand_help_exits_0():
    commands = _subcommands(build_parser())
    assert ("agent",) in commands and ("testhosts",) in commands and ("bench", "verify") in commands
    assert len(commands) >= 20
    for command in commands:
        proc = subprocess.run(
            [sys.executable, "-m", "controller.cli", *command, "--help"], capture_output=True, text=True, timeout=120
        )
        assert proc.returncode == 0, (command, proc.stderr)
        assert "usage: specbed " + " ".join(command) in proc.stdout, (command, proc.stdout[:200])
        # every command takes the log options the same way
        assert "--log-level" in proc.stdout and "-v, --verbose" in proc.stdout, command


def test_the_readme_agent_form_runs_against_a_real_controller(tmp_path, tiny_pair):
    """``specbed agent --connect tcp://HOST:PORT --name NAME --key K --server-key C -v`` joins a controller
    waiting for remote agents (CURVE keys made as `specbed keys` makes them)."""
    from controller.keys import make_keys
    from controller.local import run_local
    from controller.profiles import load_experiment

    keys = tmp_path / "keys"
    make_keys(keys, ["readme-agent"])

    experiment = load_experiment("tiny", max_new_tokens=8)
    endpoint: list[str] = []
    listening = threading.Event()
    result: dict = {}

    def on_listening(e: str) -> None:
        endpoint.append(e)
        listening.set()

    def serve() -> None:
        try:
            result["run"] = run_local(
                experiment,
                tmp_path / "run",
                agents=1,
                target=tiny_pair[0],
                bind="tcp://127.0.0.1:*",
                on_listening=on_listening,
                wait_agents_s=300,
                keys_dir=keys,
            )
        except Exception as exc:  # reported below
            result["error"] = exc
        finally:
            listening.set()

    thread = threading.Thread(target=serve)
    thread.start()
    assert listening.wait(300) and endpoint, result
    log = open(tmp_path / "agent.log", "wb")
    agent = subprocess.Popen(
        [
            *(sys.executable, "-m", "controller.cli", "agent", "--connect", endpoint[0], "--name", "readme-agent"),
            *("--key", str(keys / "agents" / "readme-agent.key_secret"), "--server-key", str(keys / "controller.key")),
            "-v",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        thread.join(600)
        assert not thread.is_alive()
        assert agent.wait(120) == 0
    finally:
        if agent.poll() is None:
            agent.kill()
    assert "error" not in result, result
    summary = result["run"].summary
    assert list(summary["agents"]) == ["readme-agent"]
    assert summary["prompts"] == summary["prompts_requested"] == len(experiment.prompts)
    assert "DEBUG" in (tmp_path / "agent.log").read_text(), "-v reaches the agent's log level"


def _scrape(port: int) -> dict[str, float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    out = {}
    for line in text.splitlines():
        m = re.match(r"^([a-z_]+)(\{[^}]*\})? ([0-9.e+-]+)$", line)
        if m:
            out[m.group(1) + (m.group(2) or "")] = float(m.group(3))
    return out


def test_metrics_port_loader_and_acceptance_of_one_cli_run(tmp_path, monkeypatch):
    """One ``specbed local --metrics-port`` run: the counters rise while it runs (real HTTP GETs from
    inside the round callback), and the folder it writes loads into DataFrames whose rows, columns
    and acceptance figures agree with its files."""
    import socket

    from controller import metrics
    from controller.cli import main
    from controller.local import local_summary
    from controller.results import load_run

    with socket.socket() as s:  # a free port for --metrics-port
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    seen: list[float] = []
    original = metrics.MetricsServer.on_round

    def on_round_then_scrape(self, record):
        original(self, record)
        values = _scrape(port)
        seen.append(sum(v for k, v in values.items() if k.startswith("specbed_tokens_total{")))

    monkeypatch.setattr(metrics.MetricsServer, "on_round", on_round_then_scrape)
    out = tmp_path / "run"
    argv = ["local", "tiny", "--agents", "1", "--max-new-tokens", "16", "--out", str(out)]
    assert main([*argv, "--metrics-port", str(port), "--no-live", "-v"]) == 0
    assert len(seen) >= 2 and seen[-1] > seen[0] > 0, seen
    assert seen == sorted(seen), "a counter never falls"

    rounds_lines = [json.loads(x) for x in (out / "rounds.jsonl").read_text().splitlines() if x.strip()]
    outputs_lines = [json.loads(x) for x in (out / "outputs.jsonl").read_text().splitlines() if x.strip()]
    summary = local_summary(out)
    assert seen[-1] == sum(r["emitted"] for r in rounds_lines) == summary["tokens_generated"]

    versions = json.loads((out / "manifest.json").read_text())["versions"]
    for dist in ("psutil", "nvidia-ml-py", "jetson-stats", "pyzmq", "msgpack", "torch", "transformers"):
        assert dist in versions, dist  # None where not installed (jetson-stats off a Jetson)
    assert versions["pyzmq"] and versions["psutil"] and versions["msgpack"]

    run = load_run(out)
    assert len(run.rounds) == len(rounds_lines) == summary["rounds"]
    assert len(run.outputs) == len(outputs_lines)
    assert list(run.outputs["prompt_id"]) == [o["prompt_id"] for o in outputs_lines]
    for name in ("drafting", "uplink", "target_forward", "verification"):
        col = f"phase_{name}_s"
        assert col in run.rounds.columns
        first = rounds_lines[0]["phases"][name]
        assert run.rounds[col].iloc[0] == pytest.approx((first[1] - first[0]) / 1e9)
    assert "phases" not in run.rounds.columns
    assert run.rounds["accepted"].tolist() == [r["accepted"] for r in rounds_lines]
    assert run.summary["tokens"].iloc[0] == summary["tokens_generated"]
    # telemetry: every CSV row, agents' samples mapped to the controller's clock by the manifest's estimate
    csv_rows = {p.stem: len(p.read_text().splitlines()) - 1 for p in (out / "telemetry" / "segment-0").glob("*.csv")}
    assert {h: int(n) for h, n in run.telemetry.groupby("host").size().items()} == csv_rows
    clock = run.manifest["segments"][0]["clock_offsets"]["agent-0"]
    agent = run.telemetry[run.telemetry["host"] == "agent-0"].iloc[0]
    drift = 1 + (clock.get("drift_ppm") or 0) * 1e-6
    assert agent["t_ns"] == round((agent["t_agent_ns"] - clock["offset_ns"]) / drift)

    # acceptance figures as vLLM's, counted here from rounds.jsonl
    n = len(rounds_lines)
    gamma = max(r["draft_length"] for r in rounds_lines)
    per_pos = [sum(1 for r in rounds_lines if r["accepted"] > i) for i in range(gamma)]
    assert summary["num_drafts"] == n
    assert summary["num_accepted_tokens_per_pos"] == per_pos
    assert summary["acceptance_rate_per_position"] == pytest.approx([c / n for c in per_pos])
    accepted = sum(r["accepted"] for r in rounds_lines)
    assert summary["mean_acceptance_length"] == pytest.approx(1 + accepted / n)
    assert sum(per_pos) == accepted  # acceptance is a prefix: the positions add up to the accepted drafts


def test_schema_validates_every_bundled_profile_and_a_typo_is_named(tmp_path):
    import jsonschema
    import yaml

    from controller.cli import main
    from controller.profiles import PROFILES_DIR, ProfileError, load_device, load_model_pair

    assert main(["schema", str(tmp_path / "schemas")]) == 0
    folders = {"experiment": "experiments", "model-pair": "models", "device": "devices", "testbed": "testbeds"}
    checked = 0
    for kind, folder in folders.items():
        schema = json.loads((tmp_path / "schemas" / f"{kind}.schema.json").read_text())
        jsonschema.Draft202012Validator.check_schema(schema)
        validator = jsonschema.Draft202012Validator(schema)
        for path in sorted((PROFILES_DIR / folder).glob("*.yaml")):
            data = yaml.safe_load(path.read_text())
            if kind == "experiment" and data.get("scheme") == "specfed":
                # a SpecFed experiment is another kind of file, read by its own loader
                from controller.specfed_profile import load_specfed

                assert load_specfed(str(path)).name == data["name"]
                continue
            errors = [e.message for e in validator.iter_errors(data)]
            assert not errors, (path, errors)
            checked += 1
        # and the schema rejects a misspelt field, as the loader does
        bad = {**yaml.safe_load(next((PROFILES_DIR / folder).glob("*.yaml")).read_text()), "nmae": "x"}
        assert list(validator.iter_errors(bad)), kind
    assert checked >= 14
    device = yaml.safe_load((PROFILES_DIR / "devices" / "cpu-host.yaml").read_text())
    (tmp_path / "d.yaml").write_text(yaml.safe_dump({**device, "torch_devise": "cpu"}))
    with pytest.raises(
        ProfileError, match=r"d\.yaml: device: unknown field 'torch_devise' \(did you mean 'torch_device'"
    ):
        load_device(str(tmp_path / "d.yaml"))
    (tmp_path / "m.yaml").write_text(yaml.safe_dump({"name": "m", "target": {"source": "bundled"}, "drafterr": {}}))
    with pytest.raises(ProfileError, match=r"m\.yaml: model pair: unknown field 'drafterr' \(did you mean 'drafter'"):
        load_model_pair(str(tmp_path / "m.yaml"))


def test_generation_model_and_dataclass_agree():
    """One setting, one default: the typed model and the runner's dataclass list the same fields."""
    from dataclasses import fields

    from controller.profiles import Generation
    from controller.profiles.experiment import GenerationProfile

    model = GenerationProfile()
    assert {f.name: f.default for f in fields(Generation)} == model.model_dump()


def test_flags_mean_one_thing(tmp_path, capsys):
    from controller.cli import main

    parser = build_parser()
    a = parser.parse_args(["local", "tiny"])
    b = parser.parse_args(["local", "--profile", "tiny"])
    c = parser.parse_args(["run", "tiny"])
    d = parser.parse_args(["run", "--profile", "tiny", "-v"])
    from controller.cli.common import profile_of

    assert profile_of(a) == profile_of(b) == profile_of(c) == profile_of(d) == "tiny"
    assert profile_of(parser.parse_args(["serve", "--bind", "tcp://127.0.0.1:5555"])) == "quickstart"
    assert d.verbose and parser.parse_args(["-v", "run", "tiny"]).verbose
    assert parser.parse_args(["report", "x", "--log-level", "info"]).log_level == "INFO"
    assert main(["local", "tiny", "--profile", "quickstart"]) == 2
    assert "disagree" in capsys.readouterr().err
    # --out is a folder for every command that has it; --json is a flag (stdout), never a file name
    import argparse

    def leaves(parser):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub in action.choices.values():
                    yield sub
                    yield from leaves(sub)

    outs = jsons = 0
    for sub in leaves(parser):
        for action in sub._actions:
            if "--out" in action.option_strings:
                outs += 1
                assert action.metavar == "DIR", sub.prog
            if "--json" in action.option_strings:
                jsons += 1
                assert action.nargs == 0, sub.prog
    assert outs >= 8 and jsons >= 5, (outs, jsons)

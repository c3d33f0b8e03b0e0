"""The run folder's files: the manifest and profile copy at the start, JSONL appended as a run goes.

A run folder holds:

``profile.yaml``   the experiment profile as it was when the run started
                   (``--resume`` reads this copy, not the file in profiles/)
``manifest.json``  the grid (every point in order), versions, hosts, and one
                   entry per segment (a start or a resume of the run), with
                   the live figures of each distributed point (``summaries``)
``rounds.jsonl``   one object per round, with its ``point``; appended and
                   flushed as rounds happen
``outputs.jsonl``  one object per finished (point, prompt): tokens, text,
                   timing; a prompt counts as done once its line is here
``telemetry/segment-N/HOST.csv``  samples of every host, per segment
``logs/segment-N/AGENT.log``  the output of local agents
``summary.csv``, ``summary.json``, ``report.md``, ``report/*.png``  see
                   ``controller.analysis``

``specbed run``, ``local`` and ``serve`` all write this layout; ``command``
in the manifest says which one did.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from controller.experiment.grid import GridPoint, RunError
from controller.profiles import Experiment, load_experiment
from controller.results import versions, write_json_atomic


class Appender:
    """An append-only JSONL file, flushed per line."""

    def __init__(self, path: Path) -> None:
        self.fh = open(path, "a", encoding="utf-8")

    def write(self, obj: dict) -> None:
        self.fh.write(json.dumps(obj, separators=(",", ":")) + "\n")
        self.fh.flush()

    def close(self) -> None:
        self.fh.close()


@dataclass
class Progress:
    """What ``on_progress`` is told: grid point i of n, prompts of the point, tokens and rate."""

    point_index: int
    points: int
    point: GridPoint | None
    prompts_done: int
    prompts: int
    tokens: int
    tokens_per_s: float | None
    status: str = ""
    record: dict | None = None  # the round just recorded (None: a prompt finished or a status changed)
    output: bool = False  # a prompt just finished


def create(out_dir: Path, experiment: Experiment, grid: list[GridPoint], command: str) -> dict:
    """Start a run folder (``out_dir`` new or empty): profile copy, manifest, empty JSONL files."""
    if out_dir.exists() and any(out_dir.iterdir()):
        raise RunError(f"{out_dir} exists and is not empty; use --resume {out_dir} to finish it, or another --out")
    out_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(experiment.path, out_dir / "profile.yaml")
    manifest = {
        "kind": "experiment",
        "command": command,
        "experiment": experiment.name,
        "profile_source": experiment.path,
        "profile": experiment.to_dict(),
        "grid": [{"id": p.id, "config": p.config, "seed": p.seed, **p.params()} for p in grid],
        # WISV: the points whose output may differ from the target's (semantic verification is lossy)
        "lossy_points": [p.id for p in grid if p.generation.verification == "semantic"],
        "versions": versions(),
        "started_unix_s": time.time(),
        "segments": [],
    }
    write_json_atomic(out_dir / "manifest.json", manifest)
    for name in ("rounds.jsonl", "outputs.jsonl"):
        (out_dir / name).touch()
    return manifest


def open_for_resume(out_dir: Path, profile: str | None) -> tuple[Experiment, dict]:
    """The experiment and manifest of a `specbed run` folder to finish."""
    manifest_path = out_dir / "manifest.json"
    if not manifest_path.is_file() or not (out_dir / "profile.yaml").is_file():
        raise RunError(f"{out_dir}: no manifest.json and profile.yaml; not a `specbed run` folder")
    manifest = json.loads(manifest_path.read_text())
    if manifest.get("kind") != "experiment":
        raise RunError(f"{out_dir}: written by `specbed {manifest.get('kind')}`, not `specbed run`; cannot resume")
    if manifest.get("command", "run") != "run":
        # its profile.yaml is the source file, without the command line's overrides
        raise RunError(f"{out_dir}: written by `specbed {manifest['command']}`, not `specbed run`; cannot resume")
    experiment = load_experiment(str(out_dir / "profile.yaml"))
    if profile is not None and load_experiment(profile).name != experiment.name:
        raise RunError(f"{out_dir} holds experiment {experiment.name!r}, not {profile!r}")
    return experiment, manifest

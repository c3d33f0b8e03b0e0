"""A finished (or interrupted) run folder as pandas DataFrames, for a notebook.

``load_run(DIR)`` (also ``controller.results.load_run``) returns a ``Run``:

``rounds``     one row per line of rounds.jsonl; ``phases`` flattened into
               ``phase_<name>_start_ns``/``_end_ns``/``_s`` (controller clock),
               ``channel`` into ``channel_<field>``; ``agent_energy_j`` and
               ``controller_energy_j``: the joules the round's agent's host and
               the controller's host used in the round, where a power source was
               readable, else null (``controller.measurement.join_round_energy``)
``outputs``    one row per line of outputs.jsonl (token lists kept as lists)
``telemetry``  every host's samples, one row per sample: ``host``, ``segment``
               (``specbed run``; 0 for ``local``/``serve``), ``t_ns`` on the
               controller's clock (the manifest's clock estimate per host:
               offset and drift) and ``t_agent_ns`` as recorded
``summary``    summary.csv, one row per configuration (every run folder has it; a
               folder written before ``local`` and ``serve`` shared the runner has
               only summary.json, read as a one-row frame)
``manifest``   manifest.json as a dict

pandas is the ``data`` extra: ``pip install 'specbed[data]'``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from controller.clocksync import clock_to_controller
from controller.measurement import host_series, join_round_energy
from controller.records import read_jsonl


@dataclass
class Run:
    dir: Path
    manifest: dict
    rounds: Any  # pandas.DataFrame
    outputs: Any
    telemetry: Any
    summary: Any


def flatten_round(row: dict) -> dict:
    """A round with ``phases`` and ``channel`` spread into columns."""
    out = {k: v for k, v in row.items() if k not in ("phases", "channel")}
    for name, span in (row.get("phases") or {}).items():
        start, end = span
        out[f"phase_{name}_start_ns"] = start
        out[f"phase_{name}_end_ns"] = end
        out[f"phase_{name}_s"] = (end - start) / 1e9 if start is not None and end is not None else None
    for key, value in (row.get("channel") or {}).items():
        out[f"channel_{key}"] = value
    return out


def _telemetry_files(run_dir: Path, manifest: dict) -> list[tuple[int, Path, dict | None]]:
    """(segment, CSV, clock estimate of its host) for every telemetry file of the run."""
    files = []
    if manifest.get("kind") == "experiment":
        for i, seg in enumerate(manifest.get("segments", [])):
            folder = run_dir / seg.get("telemetry_dir", f"telemetry/segment-{i}")
            clocks = seg.get("clock_offsets") or {}
            files += [(i, p, clocks.get(p.stem)) for p in sorted(folder.glob("*.csv"))]
    else:
        clocks = manifest.get("clock_offsets") or {}
        files += [(0, p, clocks.get(p.stem)) for p in sorted((run_dir / "telemetry").glob("*.csv"))]
    return files


def load_run(run_dir: str | Path) -> Run:
    """The run in ``run_dir`` as DataFrames (see the module's docstring)."""
    import pandas as pd

    run_dir = Path(run_dir)
    manifest_path = run_dir / "manifest.json"
    if not manifest_path.is_file():
        raise FileNotFoundError(f"{run_dir}: no manifest.json (not a run folder)")
    manifest = json.loads(manifest_path.read_text())
    records = read_jsonl(run_dir / "rounds.jsonl")[0]
    energy = join_round_energy(records, host_series(_telemetry_files(run_dir, manifest)))
    rounds = pd.DataFrame([flatten_round(r) | e for r, e in zip(records, energy, strict=True)])
    outputs = pd.DataFrame(read_jsonl(run_dir / "outputs.jsonl")[0])
    frames = []
    for segment, path, clock in _telemetry_files(run_dir, manifest):
        df = pd.read_csv(path)
        if "t_ns" not in df.columns or df.empty:
            continue
        to_ctrl = clock_to_controller(clock)
        df.insert(0, "host", path.stem)
        df.insert(1, "segment", segment)
        df["t_agent_ns"] = df["t_ns"]
        if to_ctrl is not None:
            df["t_ns"] = df["t_ns"].map(lambda t, f=to_ctrl: f(int(t)))
        frames.append(df)
    telemetry = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["host", "segment", "t_ns"])
    if (run_dir / "summary.csv").is_file():
        summary = pd.read_csv(run_dir / "summary.csv")
    elif (run_dir / "summary.json").is_file():
        data = json.loads((run_dir / "summary.json").read_text())
        summary = pd.json_normalize(data)
    else:
        summary = pd.DataFrame()
    return Run(run_dir, manifest, rounds, outputs, telemetry, summary)

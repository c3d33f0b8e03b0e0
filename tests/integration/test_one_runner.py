"""`specbed local` is a one-point `specbed run`: both write one folder layout, and report and compare read either."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from controller.cli import main


def files_of(run_dir: Path) -> set[str]:
    return {str(p.relative_to(run_dir)) for p in run_dir.rglob("*") if p.is_file()}


def test_local_and_run_write_one_layout_that_report_and_compare_read(tmp_path, capsys):
    local, run = tmp_path / "local", tmp_path / "run"
    assert main(["local", "--agents", "2", "--profile", "tiny", "--out", str(local), "--no-live"]) == 0
    assert main(["run", "tiny", "--out", str(run), "--no-live"]) == 0

    assert files_of(local) == files_of(run)
    for name in ("manifest.json", "profile.yaml", "rounds.jsonl", "outputs.jsonl", "summary.csv", "summary.json"):
        assert name in files_of(local), name
    assert {"report.md", "report/power.png", "report/latency.png"} <= files_of(local)
    assert {"telemetry/segment-0/controller.csv", "logs/segment-0/agent-1.log"} <= files_of(local)

    for out, command in ((local, "local"), (run, "run")):
        manifest = json.loads((out / "manifest.json").read_text())
        assert manifest["kind"] == "experiment" and manifest["command"] == command
        summary = json.loads((out / "summary.json").read_text())
        with open(out / "summary.csv", newline="") as fh:
            rows = list(csv.DictReader(fh))
        # summary.json holds summary.csv's figures, and each distributed point's live figures
        assert [r["config"] for r in summary["configurations"]] == [r["config"] for r in rows]
        assert [str(r["tokens"]) for r in summary["configurations"]] == [r["tokens"] for r in rows]
        [point] = summary["points"].values()
        assert point["tokens_generated"] == sum(int(r["tokens"]) for r in rows) > 0
        assert set(point["hosts"]) == {"controller", "agent-0", "agent-1"}

    capsys.readouterr()
    for out in (local, run):
        before = (out / "summary.csv").read_text()
        assert main(["report", str(out)]) == 0
        assert (out / "summary.csv").read_text() == before  # rewritten from the folder's files: the same
    assert "power.png" in capsys.readouterr().out
    assert main(["compare", str(local), str(run), "--json"]) == 0
    [row] = json.loads(capsys.readouterr().out)  # one configuration, measured in both folders
    assert row["config"].startswith("top-k:") and row["tokens_per_s_a"] > 0 and row["tokens_per_s_b"] > 0

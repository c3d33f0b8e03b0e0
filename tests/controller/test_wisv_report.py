"""The WISV summary and report of a run folder: per-mode rows, standard errors, lossy labels, plots."""

from __future__ import annotations

import csv
import json

from controller.wisv.report import write_wisv_report


def _run(tmp_path):
    grid, outputs, rounds = [], [], []
    for mode, upload in (("strict", None), ("semantic", "full"), ("semantic", "selective")):
        for rate in (32e3, 1e6):
            pid = f"top-k:{mode},{upload},{rate:g},seed=0"
            grid.append(
                {
                    "id": pid,
                    "config": pid[:-7],
                    "seed": 0,
                    "scheme": "top-k",
                    "uplink_rate_bps": rate,
                    "verification": mode,
                    "hidden_upload": upload,
                }
            )
            for j, (prompt, text) in enumerate((("sum-24", "1 + 8 = 9"), ("capital-17", "It is Paris."))):
                outputs.append(
                    {
                        "point": pid,
                        "prompt_id": prompt,
                        "text": text,
                        "tokens": 8,
                        "started_ns": 0,
                        "done_ns": int((1 + j) * 1e9),
                    }
                )
                for rnd in range(2 + j):
                    extra = 1 if upload == "selective" else 0
                    rounds.append(
                        {
                            "point": pid,
                            "prompt_id": prompt,
                            "round": rnd,
                            "accepted": 2 + j,
                            "bytes_up": 100,
                            "bytes_down": 20,
                            "wisv": None
                            if mode == "strict"
                            else {"hidden_bytes_up": 64, "round_trips": 1 + extra, "semantic_accepted": 1},
                        }
                    )
    prompts = tmp_path / "p.jsonl"
    prompts.write_text(
        '{"id": "sum-24", "prompt": "x", "answer": "9"}\n{"id": "capital-17", "prompt": "y", "answer": "Rome"}\n'
    )
    (tmp_path / "manifest.json").write_text(json.dumps({"grid": grid, "profile": {"prompts_source": str(prompts)}}))
    (tmp_path / "outputs.jsonl").write_text("".join(json.dumps(o) + "\n" for o in outputs))
    (tmp_path / "rounds.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rounds))
    return tmp_path


def test_wisv_report_rows_and_labels(tmp_path):
    paths = write_wisv_report(_run(tmp_path))
    rows = list(csv.DictReader((tmp_path / "wisv_summary.csv").open()))
    assert len(rows) == 6
    strict = [r for r in rows if r["mode"] == "strict"]
    assert all("lossless" in r["lossy"] for r in strict)
    assert all("lossy by design" in r["lossy"] for r in rows if r["mode"] != "strict")
    r = strict[0]
    assert float(r["accuracy"]) == 0.5 and float(r["rounds_per_prompt"]) == 2.5
    assert float(r["latency_s_per_prompt"]) == 1.5 and float(r["latency_s_per_prompt_se"]) == 0.5
    assert float(r["accepted_per_round"]) == (2 * 2 + 3 * 3) / 5
    sel = [r for r in rows if r["mode"] == "semantic/selective"][0]
    assert float(sel["extra_round_trips_per_prompt"]) == 2.5
    md = (tmp_path / "report_wisv.md").read_text()
    assert "lossy by design" in md and "LOSSY" in md
    assert len([p for p in paths if p.suffix == ".png"]) == 6

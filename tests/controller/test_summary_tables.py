"""The run summary names how each configuration chose γ and its uplink, and prints shared settings once."""

from __future__ import annotations

import csv

from controller.analysis import format_rate, policy_columns, table_cell
from controller.cli import _print_run_summary

COMMON = {
    "scheme": "top-k",
    "top_k": "8",
    "reconstruction": "tail-fill",
    "agents": "2",
    "batching": "auto",
    "bandwidth_policy": "none",
    "tokens_per_s": "6.1",
    "acceptance_rate": "0.6",
    "bytes_up_per_draft_token": "58",
    "mean_tv_distance": "0.18",
    "greedy_agreement": "",
    "prompts": "4",
    "prompts_expected": "4",
}


def _row(**kw):
    return {**COMMON, **kw}


def test_format_rate():
    assert format_rate(8000.0) == "8 kbit/s"
    assert format_rate("1e+06") == "1 Mbit/s"
    assert format_rate(32768) == "32.77 kbit/s"
    assert format_rate(500) == "500 bit/s"
    assert format_rate("") == format_rate(None) == format_rate(float("nan")) == "n/a"


def test_policy_columns_only_when_a_run_has_them():
    fixed = [_row(draft_length="4", draft_policy="fixed", uplink_rate_bps="", mean_draft_length="4")]
    assert policy_columns(fixed) == []
    rows = [
        _row(draft_length="1", draft_policy="fixed", uplink_rate_bps="8000", mean_draft_length="1"),
        _row(draft_length="4", draft_policy="tkslt", uplink_rate_bps="1e+06", mean_draft_length="1.45"),
    ]
    keys = [k for k, _ in policy_columns(rows)]
    assert keys == ["policy", "mean_draft_length", "uplink_rate_bps"]
    assert [table_cell(r, "policy") for r in rows] == ["fixed γ=1", "tkslt"]
    assert [table_cell(r, "uplink_rate_bps") for r in rows] == ["8 kbit/s", "1 Mbit/s"]
    band = [_row(draft_length="4", draft_policy="fixed", bandwidth_policy="multispin-homogeneous", uplink_rate_bps="")]
    assert [k for k, _ in policy_columns(band)] == ["policy", "mean_draft_length"]
    assert table_cell(band[0], "policy") == "multispin-homogeneous"


def test_run_summary_tells_the_policies_and_rates_apart(tmp_path, capsys):
    rows = [
        _row(draft_length=str(g), draft_policy=p, uplink_rate_bps=str(rate), mean_draft_length=m)
        for rate in (8000.0, 1e6)
        for g, p, m in ((1, "fixed", "1"), (4, "tkslt", "1.4"))
    ]
    with open(tmp_path / "summary.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    assert _print_run_summary(tmp_path) == 0
    out = capsys.readouterr().out
    lines = [ln for ln in out.splitlines() if "top-k" in ln]
    assert len(lines) == 4
    # every row says its policy and its rate: no two rows look alike
    assert len(set(lines)) == 4
    assert sum("tkslt" in ln for ln in lines) == 2 and sum("fixed γ=1" in ln for ln in lines) == 2
    assert sum("8 kbit/s" in ln for ln in lines) == 2 and sum("1 Mbit/s" in ln for ln in lines) == 2
    # the settings every row shares are printed once, under the table
    assert "every configuration: K 8, recon. tail-fill, agents 2" in out

"""report.md's statements checked against the summary table they come from."""

from __future__ import annotations

import math
import re

from controller.answers import answers, rate_se
from controller.tkslt_report import smallest_k_within


def _row(scheme: str, tps: float, std: float | None, reps: int, bytes_: float | None = None, **kw) -> dict:
    return {
        "scheme": scheme,
        "tokens_per_s": tps,
        "tokens_per_s_std": std,
        "repetitions": reps,
        "bytes_up_per_draft_token": bytes_,
        "bytes_up_per_draft_token_se": 0.1 if bytes_ else None,
        "energy_j_per_token": None,
        "greedy_agreement": None,
        "mean_tv_distance": None,
        **kw,
    }


def label(r: dict) -> str:
    return r["scheme"] + ("" if r.get("top_k") is None else f" K={r['top_k']}")


def test_one_repetition_is_never_ranked():
    rows = [_row("top-k", 5.0, None, 1, 61.9, top_k=8), _row("full-distribution", 4.0, None, 1, 196_638.0)]
    text = "\n".join(answers(rows, label))
    assert "not distinguishable" in text and "n = 1" in text
    assert "**fastest**" not in text


def test_fastest_named_only_beyond_two_standard_errors():
    far = [_row("top-k", 6.0, 0.3, 4, 61.9, top_k=8), _row("full-distribution", 4.0, 0.3, 4, 196_638.0)]
    text = "\n".join(answers(far, label))
    line = next(x for x in text.splitlines() if "**fastest**" in x)
    diff, se = map(float, re.search(r"([+-][\d.]+) ± ([\d.]+)", line).groups())
    # the statement's numbers are the table's
    assert diff == round(6.0 - 4.0, 3)
    assert math.isclose(se, math.hypot(rate_se(far[0]), rate_se(far[1])), rel_tol=0.05)
    assert abs(diff) > 2 * se
    near = [_row("top-k", 4.2, 0.5, 3, 61.9, top_k=8), _row("full-distribution", 4.0, 0.5, 3, 196_638.0)]
    assert "not distinguishable" in "\n".join(answers(near, label))


def test_bytes_ratio_is_the_tables_ratio():
    rows = [_row("top-k", 5.0, None, 1, 61.9, top_k=8), _row("full-distribution", 4.0, None, 1, 196_638.0)]
    line = next(x for x in answers(rows, label) if "fewest bytes" in x)
    ratio = float(re.search(r"([\d,]+)x", line).group(1).replace(",", ""))
    assert ratio == round(196_638.0 / 61.9)
    assert "±" in line  # with its uncertainty


def test_smallest_k_within_one_point_follows_the_paired_differences():
    rows = [{"mode": "dense", "top_k": None, "paired_diff": 0.0}]
    rows += [
        {"mode": "top-k", "top_k": k, "paired_diff": d}
        for k, d in ((8, -0.042), (32, -0.019), (128, -0.007), (256, -0.004))
    ]
    rows += [{"mode": "full", "top_k": 8, "paired_diff": 0.0}]
    assert smallest_k_within(rows)["top_k"] == 128

"""report.md's "Answers": statements the summary table supports, and no more.

A difference between configurations is stated only when it exceeds twice its
standard error; otherwise the report says "not distinguishable".  Standard
errors of throughput come from repetitions (seeds): with one repetition
there is none, and the report says n = 1 instead of ranking.  Ratios (bytes
against the dense baseline) carry their uncertainty.
"""

from __future__ import annotations

import math

from controller.stats import distinguishable


def rate_se(row: dict) -> float | None:
    """SE of a configuration's tokens/s from its repetitions (None with one)."""
    std, n = row.get("tokens_per_s_std"), int(row.get("repetitions") or 1)
    return std / math.sqrt(n) if std is not None and n >= 2 else None


def compare(
    a: float | None, se_a: float | None, b: float | None, se_b: float | None
) -> tuple[float | None, float | None]:
    """(a − b, its SE for independent estimates); SE None when either has none."""
    if a is None or b is None:
        return None, None
    if se_a is None or se_b is None:
        return a - b, None
    return a - b, math.sqrt(se_a**2 + se_b**2)


def fastest_statement(rows: list[dict], label) -> str | None:
    """The fastest configuration, named only if it beats the runner-up by more than 2 SE."""
    measured = sorted((r for r in rows if r.get("tokens_per_s") is not None), key=lambda r: -r["tokens_per_s"])
    if not measured:
        return None
    top = measured[0]
    if len(measured) == 1:
        return f"- **throughput**: one configuration, `{label(top)}` at {top['tokens_per_s']:.3g} tokens/s"
    second = measured[1]
    diff, se = compare(top["tokens_per_s"], rate_se(top), second["tokens_per_s"], rate_se(second))
    if se is None:
        return (
            f"- **throughput**: highest `{label(top)}` at {top['tokens_per_s']:.3g} tokens/s, next "
            f"`{label(second)}` at {second['tokens_per_s']:.3g}; n = 1 repetition, so no standard error: "
            "not distinguishable"
        )
    if distinguishable(diff, se):
        return (
            f"- **fastest**: `{label(top)}` at {top['tokens_per_s']:.3g} tokens/s, "
            f"{diff:+.3g} ± {se:.2g} over the next (`{label(second)}`)"
        )
    return (
        f"- **throughput**: `{label(top)}` ({top['tokens_per_s']:.3g}) and `{label(second)}` "
        f"({second['tokens_per_s']:.3g}) differ by {diff:+.3g} ± {se:.2g} tokens/s: not distinguishable"
    )


def bytes_statement(rows: list[dict], label) -> str | None:
    """The smallest payload and its ratio to the dense baseline, with the ratio's uncertainty."""
    wire = [r for r in rows if r.get("bytes_up_per_draft_token") is not None]
    if not wire:
        return None
    cheapest = min(wire, key=lambda r: r["bytes_up_per_draft_token"])
    text = f"- **fewest bytes**: `{label(cheapest)}` at {cheapest['bytes_up_per_draft_token']:.1f} uplink B per draft token"
    dense = [r for r in wire if r["scheme"] == "full-distribution"]
    if dense and cheapest is not dense[0]:
        d = dense[0]["bytes_up_per_draft_token"]
        ratio = d / cheapest["bytes_up_per_draft_token"]
        spread = _bytes_spread(cheapest)
        unc = f" ± {ratio * spread:,.0f}" if spread else ""
        text += f", {ratio:,.0f}x{unc} fewer than the dense full distribution ({d:,.0f} B)"
    return text


def _bytes_spread(row: dict) -> float | None:
    """Relative uncertainty of bytes per draft token: γ and frame headers vary per round (from the table)."""
    se = row.get("bytes_up_per_draft_token_se")
    v = row.get("bytes_up_per_draft_token")
    return se / v if se is not None and v else None


def answers(rows: list[dict], label) -> list[str]:
    """The Answers section's lines."""
    lines = ["## Answers", ""]
    for statement in (fastest_statement(rows, label), bytes_statement(rows, label)):
        if statement:
            lines.append(statement)
    energy = [r for r in rows if r.get("energy_j_per_token") is not None]
    if energy:
        e = min(energy, key=lambda r: r["energy_j_per_token"])
        lines.append(
            f"- **least energy** (point estimate, no SE): `{label(e)}` at {e['energy_j_per_token']:.3g} J/token "
            f"(hosts: {e['energy_hosts']})"
        )
    else:
        lines.append("- **energy**: not measured (no host had a readable power source; see manifest.json)")
    lines.extend(_tv_lines(rows, label))
    greedy = [r for r in rows if r.get("greedy_agreement") is not None]
    if greedy:
        worst = min(greedy, key=lambda r: r["greedy_agreement"])
        lines.append(
            f"- **greedy agreement with target-only**: lowest {worst['greedy_agreement']:.3g} (`{label(worst)}`)"
        )
    lines.append("")
    return lines


def _tv_lines(rows: list[dict], label) -> list[str]:
    """Reconstruction fidelity compared only between configurations that differ in K or reconstruction."""
    tv = [r for r in rows if r.get("mean_tv_distance") is not None]
    settings = {(r.get("top_k"), r.get("reconstruction"), r.get("sampling")) for r in tv}
    if len(settings) < 2:
        return []
    best = min(tv, key=lambda r: r["mean_tv_distance"])
    return [
        f"- **reconstruction**: lowest mean TV {best['mean_tv_distance']:.3g} at `{label(best)}` "
        "(TV is measured per draft token by the drafter; no SE: a point estimate)"
    ]

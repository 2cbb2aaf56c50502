"""A paired comparison written down: compare.json, compare.md (a table per pair, the sentence
a paper states, per-class differences) and the same tables on the console."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from rich.table import Table

from pathlab.evaluation.comparison import paired_comparison, pairs_of
from pathlab.evaluation.metrics import METRICS, metric_names
from pathlab.runtime.files import atomic_write_json, atomic_write_text
from pathlab.runtime.terminal import wide_console

COMPARE_JSON = "compare.json"
COMPARE_MD = "compare.md"


def compare_runs(
    sources: list[str | Path], out_dir: str | Path = ".", n_boot: int = 1000, seed: int = 0
) -> dict[str, Any]:
    """Compare runs pairwise (pathlab.evaluation.comparison), write compare.json and
    compare.md into `out_dir` and print the tables; returns compare.json's record."""
    result = paired_comparison(sources, n_boot, seed)
    pairs = pairs_of(result)
    out_dir = Path(out_dir)
    atomic_write_json(out_dir / COMPARE_JSON, result)
    atomic_write_text(out_dir / COMPARE_MD, compare_markdown(pairs))
    print_pairs(pairs)
    return result


def _pts(value: float, sign: str = "+") -> str:
    """Points of a share, 2 decimals; a value that rounds to zero is 0.00, never -0.00."""
    text = f"{100 * value:{sign}.2f}"
    return text if text.strip("+-") != "0.00" else f"{0:{sign}.2f}"


def _p(value: float) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.2g}" if value >= 1e-4 else f"{value:.1e}"


def headline_sentence(pair: dict[str, Any]) -> str:
    """The sentence a paper states: who is ahead on ACC, by how much, the interval and p."""
    delta, (lo, hi) = pair["delta_acc"], pair["delta_acc_ci95"]
    if delta == 0:
        return (
            f"{pair['a']} and {pair['b']} have the same ACC ({pair['acc_a']:.4f}; McNemar p = "
            f"{_p(pair['mcnemar_p'])}, n = {pair['n']} images)."
        )
    ahead, behind, sign = (pair["a"], pair["b"], 1) if delta >= 0 else (pair["b"], pair["a"], -1)
    lo, hi = sorted((sign * lo, sign * hi))
    text = (
        f"{ahead} beats {behind} by {100 * abs(delta):.2f} points of ACC "
        f"(95% CI {_pts(lo, '')} to {_pts(hi, '')}, McNemar p = {_p(pair['mcnemar_p'])}"
    )
    if "mcnemar_p_holm" in pair:
        text += f", Holm-adjusted {_p(pair['mcnemar_p_holm'])}"
    text += f"; n = {pair['n']} images)."
    if lo <= 0:
        text += " The interval contains 0: this test split does not tell them apart."
    if (lo > 0) != (pair["mcnemar_p"] < 0.05):
        text += (
            " The bootstrap interval (class counts held fixed) and McNemar's test (images as a"
            " random draw, class counts too) disagree: the difference sits in a few classes,"
            " see the per-class table."
        )
    return text


def _pair_rows(pair: dict[str, Any]) -> list[tuple[str, str, str, str, str, str, str]]:
    rows = []
    for m in metric_names(interval=True):
        if f"{m}_a" not in pair:
            continue
        lo, hi = pair[f"delta_{m}_ci95"]
        test = {"acc": f"McNemar {_p(pair['mcnemar_p'])}", "auc": f"DeLong {_p(pair['delong_p'])}"}
        rows.append(
            (
                METRICS[m].label,
                f"{pair[f'{m}_a']:.4f}",
                f"{pair[f'{m}_b']:.4f}",
                _pts(pair[f"delta_{m}"]),
                f"{_pts(lo)} to {_pts(hi)}",
                _p(pair[f"delta_{m}_p"]),
                test.get(m, ""),
            )
        )
    return rows


def compare_markdown(pairs: list[dict[str, Any]]) -> str:
    lines = [f"# Paired comparison on {pairs[0]['n']} test images", ""]
    boot = pairs[0]["bootstrap"]
    lines += [
        f"Differences are A - B in points (x100). Intervals and bootstrap p-values: "
        f"{boot['method']}, B = {boot['n_boot']}, seed {boot['seed']}. McNemar: exact test on "
        "the images only one run gets right. DeLong: the macro AUC's paired variance.",
        "",
    ]
    if len(pairs) > 1:
        lines += [
            "## Pairs (Holm-adjusted over the pairs)",
            "",
            "| A | B | ΔACC | 95% CI | McNemar p | Holm | ΔAUC | DeLong p | Holm |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for p in pairs:
            lo, hi = p["delta_acc_ci95"]
            lines.append(
                f"| {p['a']} | {p['b']} | {_pts(p['delta_acc'])} | {_pts(lo)} to {_pts(hi)} "
                f"| {_p(p['mcnemar_p'])} | {_p(p['mcnemar_p_holm'])} | {_pts(p['delta_auc'])} "
                f"| {_p(p['delong_p'])} | {_p(p['delong_p_holm'])} |"
            )
        lines.append("")
    for p in pairs:
        lines += [f"## A = {p['a']}, B = {p['b']}", "", headline_sentence(p), ""]
        lines += [f"- A: `{p['a_source']}`", f"- B: `{p['b_source']}`", ""]
        if "warning" in p:
            lines += [f"**Warning:** {p['warning']}", ""]
        lines += [
            "| metric | A | B | A - B (points) | 95% CI | bootstrap p | test |",
            "|---|---:|---:|---:|---:|---:|---|",
        ]
        lines += ["| " + " | ".join(row) + " |" for row in _pair_rows(p)]
        lines += [
            "",
            "| class | support | recall A | recall B | Δ recall (95% CI) | Δ F1 (95% CI) | Δ AUC (95% CI) |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for row in p["per_class"]:
            cells = []
            for m in ("recall", "f1", "auc"):
                lo, hi = row[f"delta_{m}_ci95"]
                cells.append(
                    "n/a"
                    if math.isnan(row[f"delta_{m}"])
                    else f"{_pts(row[f'delta_{m}'])} ({_pts(lo)} to {_pts(hi)})"
                )
            lines.append(
                f"| {row['class']} | {row['support']} | {row['recall_a']:.3f} "
                f"| {row['recall_b']:.3f} | " + " | ".join(cells) + " |"
            )
        lines.append("")
    return "\n".join(lines)


def print_pairs(pairs: list[dict[str, Any]]) -> None:
    console = wide_console()
    for p in pairs:
        table = Table(title=f"A = {p['a']}  vs  B = {p['b']}  ({p['n']} images)")
        for column in ("metric", "A", "B", "A - B (pts)", "95% CI", "bootstrap p", "test"):
            table.add_column(column, justify="left" if column in ("metric", "test") else "right")
        for row in _pair_rows(p):
            table.add_row(*row)
        console.print(table)
        console.print(headline_sentence(p))

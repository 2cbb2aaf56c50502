"""pathlab.summarize's statistics: the 95% t-interval across seeds, the paired test against the
best group (Wilcoxon from 6 pairs, else paired t), ranking by the metric's direction, and the
folds of one cross-validation summarised as one group."""

from __future__ import annotations

import csv
import json

import pytest
import yaml

from pathlab.evaluation.stats import paired_test, t_interval
from pathlab.summarize import main


def fake_run(root, name, overrides, metrics, optimized="val/auc"):
    run = root / name
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    summary = {"status": "completed", "metrics": metrics, "optimized_metric": optimized}
    (run / "metrics.json").write_text(json.dumps(summary))
    return run


def read_csv(path):
    with open(path) as f:
        return {row["group"]: row for row in csv.DictReader(f)}


def test_interval_and_paired_t_over_three_seeds(tmp_path):
    ce = [0.90, 0.92, 0.91]
    focal = [0.88, 0.91, 0.885]
    for seed, (a, b) in enumerate(zip(ce, focal, strict=True)):
        fake_run(tmp_path, f"ce_{seed}", ["loss=ce", f"seed={seed}"], {"val/auc": a})
        fake_run(tmp_path, f"focal_{seed}", ["loss=focal", f"seed={seed}"], {"val/auc": b})
    assert main([str(tmp_path)]) == 0
    rows = read_csv(tmp_path / "summary.csv")
    lo, hi = t_interval(ce)
    assert float(rows["loss=ce"]["val/auc_ci95_lo"]) == pytest.approx(lo, abs=1e-6)
    assert float(rows["loss=ce"]["val/auc_ci95_hi"]) == pytest.approx(hi, abs=1e-6)
    text = (tmp_path / "summary.md").read_text()
    assert f"[{lo:.4f}, {hi:.4f}]" in text
    expected = paired_test(ce, focal)
    assert expected["test"] == "paired t"
    assert "## Paired tests against the best group on val/auc" in text
    assert (
        f"| loss=focal | 3 | {expected['mean_diff']:+.4f} | paired t | {expected['p']:.3g} |"
        in text
    )


def test_wilcoxon_from_six_seeds_and_pairs_by_seed(tmp_path):
    a = [0.91, 0.92, 0.90, 0.93, 0.95, 0.94, 0.90]
    b = [0.90, 0.90, 0.87, 0.89, 0.90, 0.88]  # seed 6 failed for b: 6 pairs remain
    for seed, value in enumerate(a):
        fake_run(tmp_path, f"a_{seed}", ["model=a", f"seed={seed}"], {"val/auc": value})
    for seed, value in enumerate(b):
        fake_run(tmp_path, f"b_{seed}", ["model=b", f"seed={seed}"], {"val/auc": value})
    assert main([str(tmp_path)]) == 0
    text = (tmp_path / "summary.md").read_text()
    assert "| model=b | 6 | " in text and "| Wilcoxon signed-rank | 0.0312 |" in text


def test_a_loss_ranks_its_lowest_group_first(tmp_path):
    for seed in range(2):
        fake_run(tmp_path, f"lo_{seed}", ["lr=0.01", f"seed={seed}"], {"val/loss": 0.3}, "val/loss")
        fake_run(tmp_path, f"hi_{seed}", ["lr=0.1", f"seed={seed}"], {"val/loss": 0.9}, "val/loss")
    assert main([str(tmp_path)]) == 0
    text = (tmp_path / "summary.md").read_text()
    assert "| **lr=0.01** (best) |" in text and "minimised" in text
    assert text.index("lr=0.01") < text.index("| lr=0.1 |")


def test_cv_folds_are_one_group(tmp_path, capsys):
    accs = [0.81, 0.84, 0.80]
    for fold, acc in enumerate(accs):
        fake_run(
            tmp_path,
            f"f{fold}",
            ["cv.folds=3", f"cv.fold={fold}"],
            {"val/auc": 0.9, "test/acc": acc},
        )
    assert main([str(tmp_path)]) == 0
    rows = read_csv(tmp_path / "summary.csv")
    assert list(rows) == ["(common settings)"] and rows["(common settings)"]["n"] == "3"
    lo, hi = t_interval(accs)
    assert float(rows["(common settings)"]["test/acc_ci95_lo"]) == pytest.approx(lo, abs=1e-6)
    assert float(rows["(common settings)"]["test/acc_ci95_hi"]) == pytest.approx(hi, abs=1e-6)
    # said as folds, not seeds, in the console, summary.md and the figure
    assert "mean ± std over cv folds" in capsys.readouterr().out
    assert "(mean over cv folds," in (tmp_path / "summary.md").read_text()


def test_the_console_table_keeps_whole_names_in_a_pipe(tmp_path, capsys):
    # rich squeezed it to 80 columns in CI and `| tail`: "loss=…", "val/a…"
    for seed in (0, 1):
        for loss in ("ce", "focal"):
            fake_run(
                tmp_path,
                f"{loss}{seed}",
                [f"loss={loss}", f"seed={seed}", "optim.lr=0.001", "data.batch_size=64"],
                {
                    "val/auc": 0.9 + seed / 100,
                    "test/acc": 0.8,
                    "test/auc": 0.95,
                    "test/f1_macro": 0.7,
                },
            )
    assert main([str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "mean ± std over seeds" in out and "loss=focal" in out and "loss=ce" in out
    assert "test/f1_macro" in out and "…" not in out


def test_two_seeds_interval_stays_within_what_an_accuracy_can_be(tmp_path, capsys):
    # t(0.975, 1 df) = 12.7: two accuracies 0.95 and 0.99 give a raw interval of [0.716, 1.224]
    for seed, (a, b) in enumerate(((0.95, 0.90), (0.99, 0.91))):
        fake_run(tmp_path, f"ce{seed}", ["loss=ce", f"seed={seed}"], {"val/acc": a}, "val/acc")
        fake_run(tmp_path, f"fo{seed}", ["loss=focal", f"seed={seed}"], {"val/acc": b}, "val/acc")
    raw_lo, raw_hi = t_interval([0.95, 0.99])
    assert raw_hi > 1
    assert main([str(tmp_path)]) == 0
    row = read_csv(tmp_path / "summary.csv")["loss=ce"]
    assert float(row["val/acc_ci95_hi"]) == 1.0
    assert float(row["val/acc_ci95_lo"]) == pytest.approx(raw_lo, abs=1e-6)
    out = " ".join(capsys.readouterr().out.split())
    # the console gives the ranking metric's interval and says which way the difference runs
    assert "95% CI" in out and f"[{raw_lo:.4f}, 1.0000]" in out
    assert "loss=focal vs the best (loss=ce) on val/acc: best - group = +0.0650 over 2" in out

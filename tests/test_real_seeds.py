"""bench_real's several-seed summary (benchmarks/real_seeds.py) and the agreement groups it reads."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import bench_real  # noqa: E402
import real_seeds  # noqa: E402


def group(rows, acc, rule):
    return {"rows": rows, "acc": acc, "rule": rule, "right": 0.5, "train": 0.5, "mean_p": 0.5, "pred_true": 0.5}


def result(seed, variant, acc, groups, case="math-unseen", **extra):
    values = {"case": case, "variant": variant, "seed": seed, "acc": acc, "agreement": 0.80, "ece": 0.04,
              "pattern_ece": 0.03, "pred_true": 0.45, "true": 0.44, "groups": groups}
    values.update(extra)
    return values


def cells(line: str) -> list[str]:
    return [c.strip() for c in line.split("  ") if c.strip()]


def test_agreement_groups_count_each_row_once_with_the_rules_accuracy_beside():
    reference = {"agreeing": [0, 0, 1, 4, 3], "agreement": [False, False, True, True, True], "train_right": {0: 0.1, 3: 0.9}}
    decided, truth, p = [False, True, True, True, False], [False, False, False, True, True], [0.1, 0.6, 0.7, 0.9, 0.4]
    groups = bench_real.agreement_groups(reference, decided, truth, p)
    assert list(groups) == [0, 1, 3] and sum(g["rows"] for g in groups.values()) == 5
    assert groups[0] == {"rows": 2, "acc": 0.5, "rule": 1.0, "right": 0.0, "train": 0.1, "mean_p": 0.35, "pred_true": 0.5}
    assert groups[3]["rows"] == 2 and groups[3]["acc"] == 0.5 and groups[3]["rule"] == 1.0  # 3 and 4 agreeing: "3+"
    assert groups[1]["train"] is None


def test_the_summary_gives_mean_and_range_over_seeds_and_what_the_text_adds():
    tables = {
        0: [result(0, "evidence", 0.83, {0: group(300, 0.95, 0.95), 1: group(120, 0.70, 0.72), 2: group(40, 0.5, 0.9)}),
            result(0, "both", 0.84, {0: group(300, 0.96, 0.95), 1: group(120, 0.66, 0.72), 2: group(40, 0.5, 0.9)})],
        1: [result(1, "evidence", 0.85, {0: group(300, 0.95, 0.95), 1: group(120, 0.74, 0.72)}),
            result(1, "both", 0.85, {0: group(300, 0.94, 0.95), 1: group(120, 0.74, 0.72)})],
    }
    lines = real_seeds.summary_lines(tables)
    assert lines[0].startswith("over split seeds 0,1")
    evidence = cells(next(line for line in lines if line.startswith("math-unseen") and "evidence" in line))
    # acc, over the agreement rule (points), ECE, ECE - floor, predT - true, the worst group of >= 100 rows
    assert evidence[2:] == ["0.8400 [0.8300, 0.8500]", "+4.00 [+3.0, +5.0]", "0.0400 [0.0400, 0.0400]",
                            "+1.00 [+1.0, +1.0]", "+1.00 [+1.0, +1.0]", "-1.00 [-2.0, +0.0]"]  # the 40-row group left out
    both = cells(next(line for line in lines if line.startswith("math-unseen") and " both " in line))
    assert both[-1] == "-3.50 [-6.0, -1.0]"  # seed 0: the 1-agreeing group (-6); seed 1: the 0-agreeing one (-1)
    text = cells(lines[lines.index(next(line for line in lines if line.startswith("text + evidence"))) + 2])
    assert text == ["math-unseen", "+0.50 [+0.0, +1.0]", "-2.50 [-4.0, -1.0]"]


def test_seen_cases_are_measured_against_the_known_label_rule():
    seen = result(0, "evidence", 0.97, {}, case="math-seen", **{"known-label": 0.96})
    del seen["pattern_ece"]
    line = cells(real_seeds.summary_lines({0: [seen]})[2])
    assert line[3] == "+1.00 [+1.0, +1.0]" and len(line) == 6  # no floor (seen), no group of >= 100 rows

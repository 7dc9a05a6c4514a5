"""Several split seeds of ``bench_real.py`` in one summary: is a difference larger than the split's noise?

One seed's split holds a few hundred test questions, so a cell moves by a few rows (0.1-0.5 points)
between splits and between changes that do nothing; a goal missed or met by that much on one split
says little. ``python benchmarks/bench_real.py --seeds 0,1,2 ...`` runs every case on each seed's
split (the split seed of ``real_cases.write_case``; the training seed stays the config's), prints
each seed's table, then these lines: per case and variant the mean over the seeds and, in brackets,
the lowest and highest seed's value, of

- ``acc``: accuracy at the stored threshold;
- ``over rule``: acc minus the rule to beat on the same rows (known-label on seen cases, agreement
  on unseen), in points;
- ``ECE`` and, on unseen cases, ``- floor``: minus the pattern rule's ECE (``bench_real.rules``);
- ``predT - true``: the predicted-True rate minus the true rate, in points;
- ``worst group``: the agreement group (``bench_real.agreement_groups``) of at least ``min_rows``
  rows that is furthest below the agreement rule on its own rows, in points;

and, for cases run with both the ``evidence`` and ``both`` variants, what the text adds: text +
evidence minus evidence only, overall and in the group of at least ``min_rows`` rows where it is
lowest, in points.
"""

from __future__ import annotations


def spread(values: list[float], points: bool = False) -> str:
    """'mean [min, max]' of one quantity over the seeds; ``points``: signed, x 100, one decimal."""
    if not values:
        return ""
    if points:
        scaled = [100 * v for v in values]
        return f"{sum(scaled) / len(scaled):+.2f} [{min(scaled):+.1f}, {max(scaled):+.1f}]"
    return f"{sum(values) / len(values):.4f} [{min(values):.4f}, {max(values):.4f}]"


def rule_to_beat(result: dict) -> float:
    """The known-label rule where the case has one (seen), else agreement."""
    return result["known-label"] if "known-label" in result else result["agreement"]


def worst_group(result: dict, min_rows: int) -> float | None:
    """The lowest acc - rule over agreement groups of at least ``min_rows`` rows (None: no such group)."""
    gaps = [g["acc"] - g["rule"] for g in result["groups"].values() if g["rows"] >= min_rows]
    return min(gaps) if gaps else None


def text_effect(both: dict, evidence: dict, min_rows: int) -> tuple[float, float | None]:
    """(overall, lowest group of >= ``min_rows`` rows) of text + evidence minus evidence only."""
    groups = [both["groups"][k]["acc"] - g["acc"] for k, g in evidence["groups"].items()
              if g["rows"] >= min_rows and k in both["groups"]]
    return both["acc"] - evidence["acc"], (min(groups) if groups else None)


def summary_lines(tables: dict[int, list[dict]], min_rows: int = 100) -> list[str]:
    """``tables``: seed -> ``bench_real.run_cases``'s results. Returns the printed summary."""
    runs: dict[tuple[str, str], list[dict]] = {}
    for table in tables.values():
        for result in table:
            runs.setdefault((result["case"], result["variant"]), []).append(result)
    lines = [f"over split seeds {','.join(str(s) for s in tables)}: mean [lowest, highest]; differences in points",
             f"{'case':<20} {'variant':<9} {'acc':<24} {'over rule':<19} {'ECE':<24} {'- floor':<19} "
             f"{'predT - true':<19} {'worst group':<19}"]
    for (case, variant), results in runs.items():
        floors = [r["ece"] - r["pattern_ece"] for r in results if "pattern_ece" in r]
        worst = [w for w in (worst_group(r, min_rows) for r in results) if w is not None]
        lines.append(f"{case:<20} {variant:<9} {spread([r['acc'] for r in results]):<24} "
                     f"{spread([r['acc'] - rule_to_beat(r) for r in results], True):<19} "
                     f"{spread([r['ece'] for r in results]):<24} {spread(floors, True):<19} "
                     f"{spread([r['pred_true'] - r['true'] for r in results], True):<19} {spread(worst, True):<19}")
    effects = []
    for (case, variant), results in runs.items():
        if variant != "both" or (case, "evidence") not in runs:
            continue
        evidence = {r["seed"]: r for r in runs[(case, "evidence")]}
        pairs = [text_effect(r, evidence[r["seed"]], min_rows) for r in results if r["seed"] in evidence]
        effects.append(f"{case:<20} {spread([o for o, _ in pairs], True):<19} "
                       f"{spread([g for _, g in pairs if g is not None], True):<19}")
    if effects:
        lines += [f"text + evidence minus evidence only, same seeds (groups of >= {min_rows} rows):",
                  f"{'case':<20} {'overall':<19} {'lowest group':<19}"] + effects
    return lines

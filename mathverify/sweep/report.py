"""Results of a sweep: a table sorted by the objective, a CSV, Optuna's plots, the best fit config.

Written to ``<sweep folder>/results/``: ``trials.csv``, ``history.png`` (optimisation history),
``importances.png`` (parameter importances), ``parallel.png`` (parallel coordinates) and
``best.yaml`` (``mathverify fit --config best.yaml`` re-runs the best trial as a normal run).
"""

from __future__ import annotations

import csv
import math
import os
import subprocess
import sys
from pathlib import Path

from mathverify.sweep.spec import SweepSpec, cli_value

STATE_ORDER = {"COMPLETE": 0, "PRUNED": 1, "RUNNING": 2, "WAITING": 3, "FAIL": 4}


def rows(study, spec: SweepSpec) -> list[dict]:
    """One row per trial, best first: completed by objective, then pruned (by their last value), then the rest."""
    keys = list(spec.choices()) + list(spec.tied)
    out = []
    for t in study.get_trials(deepcopy=False):
        metrics = t.user_attrs.get("metrics", {})
        if t.value is not None:
            objective = t.value
        elif t.intermediate_values:
            objective = t.intermediate_values[max(t.intermediate_values)]
        else:
            objective = float("nan")
        values = {**t.params, **t.user_attrs.get("tied", {})}
        row = {"trial": t.number, **{k: values.get(k, "") for k in keys}, spec.metric: objective,
               "val/acc": metrics.get("val/acc", float("nan")), "val/f1": metrics.get("val/f1", float("nan")),
               "threshold": metrics.get("val/threshold_acc", float("nan")),
               "rounds": metrics.get("round", 0), "seconds": t.user_attrs.get("seconds", float("nan")),
               "state": t.state.name}
        out.append(row)
    sign = 1 if spec.mode == "min" else -1

    def order(row):
        value = row[spec.metric]
        return STATE_ORDER.get(row["state"], 5), sign * value if math.isfinite(value) else math.inf, row["trial"]

    return sorted(out, key=order)


def _cell(value) -> str:
    if isinstance(value, float):
        if not math.isfinite(value):
            return "-"
        return f"{value:.4g}" if abs(value) < 1e-2 and value != 0 else f"{value:.4f}"
    return str(value)


def format_table(table: list[dict]) -> str:
    if not table:
        return "(no trials yet)"
    heads = list(table[0])
    cells = [[_cell(r[h]) if h != "seconds" else _cell(round(r[h])) if math.isfinite(r[h]) else "-" for h in heads]
             for r in table]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(heads)]
    lines = ["  ".join(h.rjust(w) for h, w in zip(heads, widths))]
    lines += ["  ".join(c.rjust(w) for c, w in zip(row, widths)) for row in cells]
    return "\n".join(lines)


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write_csv(table: list[dict], path: Path) -> None:
    if not table:
        return
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(table[0]))
        writer.writeheader()
        writer.writerows(table)
    os.replace(tmp, path)


def write_plots(study, folder: Path) -> list[str]:
    """Optuna's matplotlib plots; a plot that needs more finished trials is skipped with its reason."""
    import warnings

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as vis

    notes = []
    for name, plot in (("history", vis.plot_optimization_history), ("importances", vis.plot_param_importances),
                       ("parallel", vis.plot_parallel_coordinate)):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # Optuna marks its matplotlib plots experimental
                axes = plot(study)
            figure = (axes.flat[0] if hasattr(axes, "flat") else axes).get_figure()
            figure.set_size_inches(9, 5.5)
            figure.tight_layout()
            tmp = folder / f".{name}.{os.getpid()}.png"
            figure.savefig(tmp, dpi=100)
            os.replace(tmp, folder / f"{name}.png")
            plt.close(figure)
        except Exception as err:  # e.g. importances need two finished trials with different values
            notes.append(f"{name}.png skipped: {str(err).splitlines()[0] if str(err) else type(err).__name__}")
    return notes


def best_config(study, spec: SweepSpec, folder: Path) -> Path | None:
    """The best trial's full fit config, as LightningCLI itself prints it (no sweep callback)."""
    from optuna.trial import TrialState

    if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        return None
    best = study.best_trial
    values = {**best.params, **best.user_attrs.get("tied", {})}
    configs = [*spec.configs, *([str(folder / "fixed.yaml")] if spec.fixed else [])]
    cmd = [sys.executable, "-m", "mathverify", "fit"]
    for config in configs:
        cmd += ["--config", config]
    cmd += [f"--{k}={cli_value(v)}" for k, v in values.items()]
    cmd += ["--run_name", f"{spec.name}-best", "--print_config"]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        print(f"mathverify sweep: could not write best.yaml: {done.stderr.strip()[-300:]}", file=sys.stderr)
        return None
    path = folder / "results" / "best.yaml"
    header = (f"# Best trial {best.number} of sweep {spec.name}: {spec.metric} = {best.value:.4f}\n"
              f"# mathverify fit --config {path}\n")
    _atomic_write(path, header + done.stdout)
    return path


def report(study, spec: SweepSpec, folder: Path) -> None:
    """Print the table and write the CSV, plots and best config under ``<folder>/results``."""
    results = folder / "results"
    results.mkdir(parents=True, exist_ok=True)
    table = rows(study, spec)
    print(format_table(table))
    write_csv(table, results / "trials.csv")
    notes = write_plots(study, results)
    best = best_config(study, spec, folder)
    states = {}
    for row in table:
        states[row["state"]] = states.get(row["state"], 0) + 1
    print(f"mathverify sweep: {spec.name}: " + ", ".join(f"{n} {s.lower()}" for s, n in states.items())
          + f"; results in {results}" + (f"; best config {best}" if best else ""))
    for note in notes:
        print(f"mathverify sweep: {note}")

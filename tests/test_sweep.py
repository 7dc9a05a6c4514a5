"""``mathverify sweep``: real workers (subprocesses) sharing one Optuna storage, each trial a real ``fit``.

Trials are the tiny backbone for one or two rounds of two steps (~10 s each on a loaded 2-core
machine). The sweep file parser is checked in-process, including the shipped sweep configs.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from mathverify.sweep.spec import SweepError, load_spec

ROOT = Path(__file__).resolve().parents[1]
FIT = {
    "seed_everything": 0,
    "trainer": {"accelerator": "cpu", "devices": 1, "enable_progress_bar": False, "enable_model_summary": False,
                "log_every_n_steps": 1,
                "callbacks": [{"class_path": "callbacks.rounds.StepRounds", "init_args": {"rounds": [{"steps": 2}]}},
                              {"class_path": "callbacks.metrics.VerificationMetrics"},
                              {"class_path": "callbacks.threshold.DecisionThreshold"},
                              {"class_path": "callbacks.checkpoint.RoundCheckpoint"}]},
    "model": {"backbone": "tiny", "max_length": 256, "lora_r": 4, "lora_alpha": 8,
              "optimizer": {"class_path": "torch.optim.AdamW", "init_args": {"lr": 0.002}}},
    "data": {"train_files": "synthetic:300:0", "val_size": 40, "val_scan_rows": 300, "batch_size": 4,
             "eval_batch_size": 16, "buffer_size": 32},
}


def _clean_env() -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PL_", "LIGHTNING_", "MASTER_", "RANK"))}
    env["MATHVERIFY_CACHE"] = os.environ["MATHVERIFY_CACHE"]  # conftest's cache: tiny backbone built once
    env["PYTHONPATH"] = str(ROOT)
    env["TOKENIZERS_PARALLELISM"] = "false"
    return env


def _write_sweep(tmp_path: Path, **sweep) -> Path:
    (tmp_path / "fit.yaml").write_text(yaml.safe_dump(FIT))
    spec = {"name": "t", "config": str(tmp_path / "fit.yaml"), "objective": {"metric": "val/loss", "mode": "min"},
            "heartbeat": {"interval": 1, "grace": 4, "retries": 2}, **sweep}
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def _start(tmp_path: Path, *extra: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "mathverify", "sweep", "--sweep", str(tmp_path / "sweep.yaml"),
           "--dir", str(tmp_path / "sweep"), *extra]
    return subprocess.Popen(cmd, cwd=tmp_path, env=_clean_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)


def _finish(proc: subprocess.Popen, timeout: float = 240) -> str:
    out, _ = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, out[-3000:]
    return out


def _trials(tmp_path: Path):
    import optuna

    study = optuna.load_study(study_name="t", storage=f"sqlite:///{tmp_path / 'sweep' / 'study.db'}")
    return study.get_trials()


def _fits_running(folder: Path) -> list[int]:
    """Processes whose command line names this sweep folder (a trial's fit)."""
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if str(folder).encode() in (proc / "cmdline").read_bytes():
                found.append(int(proc.name))
        except OSError:
            continue
    return found


def _grid_cells(trials, state) -> list[tuple]:
    return sorted(tuple(sorted(t.params.items())) for t in trials if t.state.name == state)


@pytest.mark.e2e
def test_two_workers_share_the_grid_and_the_best_config_reruns(tmp_path):
    _write_sweep(tmp_path, sampler="grid", space={"model.lora_r": [2, 4], "model.optimizer.init_args.lr": [1e-3, 3e-3]},
                 tied={"model.lora_alpha": {"of": "model.lora_r", "times": 2}})
    workers = [_start(tmp_path), _start(tmp_path)]
    outputs = [_finish(w) for w in workers]
    trials = _trials(tmp_path)
    grid = sorted(tuple(sorted({"model.lora_r": r, "model.optimizer.init_args.lr": lr}.items()))
                  for r in (2, 4) for lr in (1e-3, 3e-3))
    assert _grid_cells(trials, "COMPLETE") == grid and len(trials) == 4  # every point once, nothing else
    hosts_pids = [o.count("started;") for o in outputs]
    assert all(n >= 1 for n in hosts_pids) and sum(hosts_pids) == 4, outputs  # disjoint, both worked
    runs = {t.user_attrs["run"] for t in trials}
    assert len(runs) == 4
    for t in trials:  # every trial: an ordinary run folder with its events, checkpoint and tied alpha
        run_dir = tmp_path / "sweep" / t.user_attrs["run"] / "version_0"
        assert (run_dir / "checkpoints" / "last.ckpt").is_file() and list(run_dir.glob("events.out.tfevents.*"))
        assert t.user_attrs["tied"] == {"model.lora_alpha": 2 * t.params["model.lora_r"]}
    results = tmp_path / "sweep" / "results"
    rows = (results / "trials.csv").read_text().splitlines()
    assert len(rows) == 5 and rows[0].startswith("trial,model.lora_r,")
    best = min((t for t in trials), key=lambda t: t.value)
    assert int(rows[1].split(",")[0]) == best.number  # sorted by the objective
    assert (results / "history.png").stat().st_size > 1000 and (results / "parallel.png").is_file()

    # The best trial's config is a complete fit config: it re-runs as a normal run, same values.
    best_yaml = yaml.safe_load((results / "best.yaml").read_text())
    assert not any("sweep_pruning" in str(c) for c in best_yaml["trainer"]["callbacks"])
    cmd = [sys.executable, "-m", "mathverify", "fit", "--config", str(results / "best.yaml"),
           "--logs_dir", str(tmp_path / "rerun")]
    done = subprocess.run(cmd, cwd=tmp_path, env=_clean_env(), capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    saved = yaml.safe_load((tmp_path / "rerun" / "t-best" / "version_0" / "config.yaml").read_text())
    assert saved["model"]["lora_r"] == best.params["model.lora_r"]
    assert saved["model"]["lora_alpha"] == 2 * best.params["model.lora_r"]
    assert saved["model"]["optimizer"]["init_args"]["lr"] == best.params["model.optimizer.init_args.lr"]


@pytest.mark.e2e
def test_a_killed_worker_trial_is_retried_and_the_grid_completes_once(tmp_path):
    _write_sweep(tmp_path, sampler="grid", space={"model.lora_r": [2, 4]})
    first = _start(tmp_path)
    deadline = time.monotonic() + 120
    log = None
    while time.monotonic() < deadline:  # wait until a trial's fit is running, then kill its worker
        logs = list((tmp_path / "sweep").glob("trial_*/fit.log"))
        if logs and logs[0].stat().st_size > 0:
            log = logs[0]
            break
        time.sleep(0.2)
    assert log is not None, "no trial started"
    first.send_signal(signal.SIGKILL)
    first.communicate(timeout=30)
    killed = {t.number for t in _trials(tmp_path) if t.state.name == "RUNNING"}
    assert len(killed) == 1  # the dead worker's trial is left RUNNING, its heartbeat stops
    time.sleep(1)
    assert not _fits_running(tmp_path / "sweep"), "the dead worker's fit outlived it"

    out = _finish(_start(tmp_path))  # the same command: resumes, retries the dead trial after its grace
    trials = _trials(tmp_path)
    assert _grid_cells(trials, "COMPLETE") == [(("model.lora_r", 2),), (("model.lora_r", 4),)], out
    failed = [t for t in trials if t.state.name == "FAIL"]
    assert [t.number for t in failed] == sorted(killed)
    retry = [t for t in trials if t.system_attrs.get("failed_trial") in killed]
    assert len(retry) == 1 and retry[0].state.name == "COMPLETE" and retry[0].params == failed[0].params
    assert len(trials) == 3


@pytest.mark.e2e
def test_a_pruned_trial_keeps_its_logs_and_a_finished_sweep_says_so(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    fit_rounds = [{"steps": 2}, {"steps": 2}]
    FIT_2 = {**FIT, "trainer": {**FIT["trainer"], "callbacks": [
        {"class_path": "callbacks.rounds.StepRounds", "init_args": {"rounds": fit_rounds}},
        *FIT["trainer"]["callbacks"][1:]]}}
    (tmp_path / "fit2.yaml").write_text(yaml.safe_dump(FIT_2))
    # Every loss is above 0: Optuna's ThresholdPruner prunes the trial at its first round end.
    _write_sweep(tmp_path, sampler={"name": "random", "seed": 0}, n_trials=1, config=str(tmp_path / "fit2.yaml"),
                 space={"model.optimizer.init_args.lr": {"low": "1e-4", "high": "1e-2", "log": True}},
                 pruner={"name": "ThresholdPruner", "upper": 0.0})
    out = _finish(_start(tmp_path))
    (trial,) = _trials(tmp_path)
    assert trial.state.name == "PRUNED" and list(trial.intermediate_values) == [0], out
    assert 1e-4 <= trial.params["model.optimizer.init_args.lr"] <= 1e-2
    run_dir = tmp_path / "sweep" / trial.user_attrs["run"] / "version_0"
    acc = EventAccumulator(str(run_dir))
    acc.Reload()
    assert len(acc.Scalars("val/loss")) == 1  # one round of two, then stopped; its curve is kept
    assert "_hparams_/session_start_info" in acc.PluginTagToContent("hparams")
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()

    again = _finish(_start(tmp_path))
    assert "is finished (1 trials)" in again and "PRUNED" in again
    assert len(_trials(tmp_path)) == 1


def test_sweep_file_errors_name_the_key(tmp_path):
    fit = tmp_path / "fit.yaml"
    fit.write_text("model: {}\n")
    cases = {
        "sampler: grid\nspace: {model.lora_r: {low: 1, high: 4}}": "a grid needs a list",
        "sampler: tpe\nspace: {model.lora_r: [4, 8]}": "n_trials",
        "sampler: grid\nspace: {model.lora_r: [4]}\ntied: {model.lora_alpha: {of: model.nope}}": "tied.model.lora_alpha",
        "sampler: grid\nspace: {model.lora_r: [4]}\nwhat: 1": "unknown key",
        "sampler: grid\nspace: {model.lora_r: [4]}\npruner: NoSuchPruner": "pruner",
        "sampler: grid\nspace: {model.lora_r: [4]}\nobjective: {metric: loss}": "objective",
    }
    for body, expected in cases.items():
        path = tmp_path / "s.yaml"
        path.write_text(f"config: {fit}\n{body}\n")
        with pytest.raises(SweepError, match=expected):
            load_spec(str(path))


@pytest.mark.parametrize("name", ["sweep-demo.yaml", "sweep-seed-table1.yaml"])
def test_shipped_sweeps_make_valid_fit_configs(name, monkeypatch, tmp_path, capsys):
    """Each shipped sweep's first and last trial: the fit config + fixed + trial values parse."""
    from mathverify.cli import cli_main
    from mathverify.sweep.spec import cli_value, nested

    monkeypatch.chdir(ROOT)
    spec = load_spec(str(ROOT / "configs" / name))
    fixed = tmp_path / "fixed.yaml"
    fixed.write_text(yaml.safe_dump(nested(spec.fixed)))
    for point in (spec.grid_points()[0], spec.grid_points()[-1]):
        values = {**point, **spec.tied_values(point)}
        args = ["fit", *[a for c in spec.configs for a in ("--config", c)], "--config", str(fixed),
                *[f"--{k}={cli_value(v)}" for k, v in values.items()], "--print_config"]
        with pytest.raises(SystemExit) as stop:
            cli_main(args)
        assert stop.value.code in (0, None)
        printed = yaml.safe_load(capsys.readouterr().out)
        assert printed["model"]["lora_r"] == point["model.lora_r"]
        assert printed["model"]["lora_alpha"] == values["model.lora_alpha"]
        assert printed["model"]["optimizer"]["init_args"]["lr"] == point["model.optimizer.init_args.lr"]


def test_seed_table1_and_demo_sweeps_load(monkeypatch):
    monkeypatch.chdir(ROOT)  # the sweep files name their fit config relative to the repository
    spec = load_spec(str(ROOT / "configs" / "sweep-seed-table1.yaml"))
    table = [(p["model.lora_r"], p["model.lora_alpha"], p["model.optimizer.init_args.lr"]) for p in spec.grid_points()]
    assert table == [(8, 16, 2e-4), (8, 32, 2e-4), (8, 64, 3e-4), (8, 128, 3e-4), (16, 32, 4e-4), (16, 64, 4e-4),
                     (16, 128, 4e-4), (32, 64, 4e-4), (32, 128, 4e-4), (64, 128, 4e-4)]  # the seed's Table 1
    demo = load_spec(str(ROOT / "configs" / "sweep-demo.yaml"))
    assert demo.configs == ["configs/demo.yaml"] and len(demo.grid_points()) * 1 >= 1

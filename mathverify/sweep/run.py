"""``mathverify sweep``: a hyper-parameter search with Optuna, every trial an ordinary ``fit`` run.

Usage::

    mathverify sweep --sweep configs/sweep-demo.yaml [--config FIT.yaml] [--dir sweeps/NAME]
                     [--storage URL] [--report]

Each trial runs ``python -m mathverify fit --config ... <trial values> --logs_dir <sweep folder>
--run_name trial_NNN`` plus ``callbacks.sweep_pruning.SweepPruning``, which reports the objective at
each round end and stops the run when Optuna's pruner says so. The study lives in a storage: by
default SQLite in the sweep folder; with ``--storage postgresql://...`` (or mysql) the same command
started on several machines, or once per GPU with ``CUDA_VISIBLE_DEVICES``, joins one sweep. Workers
take trials from the study one at a time; a grid is queued once (by whichever worker creates the
study) and each point is popped by exactly one worker. A worker beats a heartbeat while its trial
runs; a trial whose worker died is failed by another worker and re-queued (Optuna's
RetryHeartbeatStaleTrialCallback). Starting the command again resumes a killed sweep; a finished
one prints its table. ``--report`` writes the table, CSV, plots and best config of a running sweep.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Optional

import yaml

from mathverify.sweep.spec import SweepError, SweepSpec, cli_value, load_spec, nested

POLL_S = 5.0  # how often an idle worker looks for re-queued or remaining trials
PRUNING = "callbacks.sweep_pruning.SweepPruning"


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="mathverify sweep", description=__doc__.split("\n\n")[0])
    parser.add_argument("--sweep", required=True, help="sweep file (YAML): objective, sampler, pruner, space")
    parser.add_argument("--config", action="append", help="fit config (repeatable); default: the sweep file's config")
    parser.add_argument("--dir", help="sweep folder (trial runs, study.db, results); default sweeps/<name>")
    parser.add_argument("--storage", help="study storage URL shared by all workers; default sqlite in the sweep folder")
    parser.add_argument("--report", action="store_true", help="only write and print the results of the sweep so far")
    args = parser.parse_args(argv)
    try:
        spec = load_spec(args.sweep, args.config, args.storage)
        folder = Path(args.dir or Path("sweeps") / spec.name).resolve()
        folder.mkdir(parents=True, exist_ok=True)
        url = spec.storage or f"sqlite:///{folder / 'study.db'}"
        study, storage = open_study(spec, folder, url)
    except SweepError as err:
        print(f"mathverify: error: {err}", file=sys.stderr)
        return 1
    from mathverify.sweep.report import report

    if not args.report:
        if finished(study, spec):
            print(f"mathverify sweep: {spec.name} is finished ({len(study.trials)} trials); its results:")
        else:
            try:
                Worker(spec, folder, url, study, storage).run()
            except KeyboardInterrupt:
                print(f"mathverify sweep: stopped; the same command resumes {spec.name}", file=sys.stderr)
                return 130
    report(study, spec, folder)
    return 0


@contextlib.contextmanager
def sqlite_lock(folder: Path, url: str):
    """One process at a time in SQLite's critical sections (study creation, popping a trial).

    SQLite ignores SELECT ... FOR UPDATE, so two workers could both pop one waiting trial; server
    databases lock the row themselves and need no file lock.
    """
    if not url.startswith("sqlite"):
        yield
        return
    from filelock import FileLock

    with FileLock(folder / ".lock"):
        yield


def open_study(spec: SweepSpec, folder: Path, url: str):
    """Create the study (and queue its grid) or join it; refuse a changed sweep file."""
    import optuna

    from callbacks.sweep_pruning import make_pruner, open_storage

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    hb = spec.heartbeat
    with sqlite_lock(folder, url):
        try:
            storage = optuna.storages.get_storage(open_storage(url, hb["interval"], hb["grace"], hb["retries"]))
        except Exception as err:  # a bad URL, an unreachable server, a missing driver
            raise SweepError(f"storage {url}: {str(err).splitlines()[0][:200]}") from None
        pruner = make_pruner(spec.pruner)
        sampler = make_sampler(spec)
        try:
            study = optuna.create_study(study_name=spec.name, storage=storage, direction=spec.direction,
                                        sampler=sampler, pruner=pruner)
        except optuna.exceptions.DuplicatedStudyError:
            study = optuna.load_study(study_name=spec.name, storage=storage, sampler=sampler, pruner=pruner)
        else:
            study.set_user_attr("digest", spec.digest())
            study.set_user_attr("metric", spec.metric)
            if spec.grid:
                for point in spec.grid_points():
                    study.enqueue_trial(point)
                study.set_user_attr("grid_size", len(spec.grid_points()))
    deadline = time.monotonic() + 300
    while spec.grid and "grid_size" not in study.user_attrs:  # another worker is still queueing it
        if time.monotonic() > deadline:
            raise SweepError(f"{spec.path}: study {spec.name} exists but its grid was never queued")
        time.sleep(1)
    if study.user_attrs.get("digest") != spec.digest():
        raise SweepError(f"{spec.path}: study {spec.name} in {url} was started with other search values or "
                         f"objective; give the sweep another name (or --dir/--storage)")
    return study, storage


def make_sampler(spec: SweepSpec):
    import optuna

    args = {k: v for k, v in spec.sampler.items() if k != "name"}
    name = {"grid": "RandomSampler", "random": "RandomSampler", "tpe": "TPESampler"}[spec.sampler["name"]]
    if spec.grid:
        args = {}  # every grid trial is queued with its values: the sampler is never asked
    try:
        return getattr(optuna.samplers, name)(**args)
    except TypeError as err:
        raise SweepError(f"{spec.path}: sampler: {err}") from None


def budget_used(trials) -> int:
    """Trials that count against n_trials: all but failed ones that were re-queued."""
    from optuna.trial import TrialState

    retried = {n for t in trials for n in t.system_attrs.get("retry_history", [])}
    return sum(1 for t in trials if t.state != TrialState.FAIL or t.number not in retried)


def finished(study, spec: SweepSpec) -> bool:
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    if any(t.state in (TrialState.WAITING, TrialState.RUNNING) for t in trials):
        return False
    return spec.grid and bool(trials) or (not spec.grid and budget_used(trials) >= spec.n_trials)


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Linux: the trial's fit gets SIGKILL when its worker dies, so a dead worker leaves no orphan."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


class Worker:
    """Takes trials from the study until none is left, runs each as a ``fit`` subprocess."""

    def __init__(self, spec: SweepSpec, folder: Path, url: str, study, storage) -> None:
        self.spec, self.folder, self.url, self.study, self.storage = spec, folder, url, study, storage
        fixed = folder / "fixed.yaml"
        if spec.fixed:
            tmp = folder / f".fixed.{os.getpid()}.yaml"
            tmp.write_text(yaml.safe_dump(nested(spec.fixed), sort_keys=False))
            os.replace(tmp, fixed)
        self.configs = [*spec.configs, *([str(fixed)] if spec.fixed else [])]

    def run(self) -> None:
        import optuna
        from optuna.trial import TrialState

        previous = signal.signal(signal.SIGTERM, _interrupt)
        try:
            while True:
                optuna.storages.fail_stale_trials(self.study)  # dead workers' trials: failed, re-queued
                trial = self.next_trial()
                if trial is not None:
                    self.run_trial(trial)
                    continue
                if not self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING, TrialState.WAITING)):
                    return
                time.sleep(POLL_S)  # others' trials still run; theirs may come back if their worker dies
        finally:
            signal.signal(signal.SIGTERM, previous)

    def next_trial(self):
        """A waiting trial (a grid point or a retry) popped atomically, else a new one if the budget allows."""
        import optuna
        from optuna.trial import TrialState

        with sqlite_lock(self.folder, self.url):
            study_id = self.storage.get_study_id_from_name(self.spec.name)
            for waiting in self.study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
                trial_id = self.storage.get_trial_id_from_study_id_trial_number(study_id, waiting.number)
                try:
                    if self.storage.set_trial_state_values(trial_id, state=TrialState.RUNNING):
                        self.storage.record_heartbeat(trial_id)
                        return optuna.Trial(self.study, trial_id)
                except optuna.exceptions.UpdateFinishedTrialError:
                    continue
            if self.spec.grid or budget_used(self.study.get_trials(deepcopy=False)) >= self.spec.n_trials:
                return None
            trial = self.study.ask()
            self.storage.record_heartbeat(trial._trial_id)
            return trial

    def suggest(self, trial) -> dict:
        values = {}
        for key, dim in self.spec.choices().items():
            if isinstance(dim, list):
                values[key] = trial.suggest_categorical(key, dim)
            elif isinstance(dim["low"], int) and isinstance(dim["high"], int):
                values[key] = trial.suggest_int(key, dim["low"], dim["high"], step=dim.get("step", 1),
                                                log=bool(dim.get("log")))
            else:
                values[key] = trial.suggest_float(key, float(dim["low"]), float(dim["high"]),
                                                  step=dim.get("step"), log=bool(dim.get("log")))
        return values

    def command(self, trial, values: dict) -> list[str]:
        run = f"trial_{trial.number:03d}"
        cmd = [sys.executable, "-m", "mathverify", "fit"]
        for config in self.configs:
            cmd += ["--config", config]
        cmd += [f"--{key}={cli_value(value)}" for key, value in values.items()]
        cmd += ["--run_name", run, "--logs_dir", str(self.folder), f"--trainer.callbacks+={PRUNING}",
                f"--trainer.callbacks.storage={self.url}", f"--trainer.callbacks.study_name={self.spec.name}",
                f"--trainer.callbacks.trial_id={trial._trial_id}", f"--trainer.callbacks.monitor={self.spec.metric}",
                f"--trainer.callbacks.pruner={json.dumps(self.spec.pruner)}"]
        return cmd

    def run_trial(self, trial) -> None:
        from optuna.trial import TrialState

        from callbacks.sweep_pruning import METRICS_KEY, PRUNED_KEY

        values = self.suggest(trial)
        tied = self.spec.tied_values(values)
        run = f"trial_{trial.number:03d}"
        for key, value in (("run", run), ("tied", tied), (METRICS_KEY, {}), ("host", os.uname().nodename)):
            trial.set_user_attr(key, value)
        (self.folder / run).mkdir(parents=True, exist_ok=True)
        log_path = self.folder / run / "fit.log"
        shown = ", ".join(f"{k}={v}" for k, v in {**values, **tied}.items())
        print(f"mathverify sweep: trial {trial.number} ({shown}) started; log {log_path}", flush=True)
        started = time.monotonic()
        stop = threading.Event()
        beat = threading.Thread(target=self._beat, args=(trial._trial_id, stop), daemon=True)
        beat.start()
        with open(log_path, "ab") as log:
            proc = subprocess.Popen(self.command(trial, {**values, **tied}), stdout=log, stderr=subprocess.STDOUT,
                                    preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None)
            try:
                code = proc.wait()
            except KeyboardInterrupt:  # Ctrl-C or SIGTERM: stop the fit, queue the trial again, quit
                proc.terminate()
                proc.wait()
                stop.set()
                self._requeue(trial)
                raise
            finally:
                stop.set()
                beat.join()
        seconds = time.monotonic() - started
        trial.set_user_attr("seconds", round(seconds, 1))
        frozen = self.storage.get_trial(trial._trial_id)
        metric = frozen.user_attrs.get(METRICS_KEY, {}).get(self.spec.metric)
        if code == 0 and frozen.system_attrs.get(PRUNED_KEY):
            self.study.tell(trial, state=TrialState.PRUNED)
            outcome = f"PRUNED after round {frozen.user_attrs[METRICS_KEY].get('round')}"
        elif code == 0 and metric is not None:
            self.study.tell(trial, metric)
            outcome = f"COMPLETE {self.spec.metric}={metric:.4f}"
        else:
            self.study.tell(trial, state=TrialState.FAIL)
            reason = f"exit code {code}" if code else f"{self.spec.metric} was never logged"
            tail = log_path.read_text(errors="replace").strip().splitlines()[-5:]
            outcome = f"FAIL ({reason}); end of {log_path}:\n    " + "\n    ".join(tail)
        print(f"mathverify sweep: trial {trial.number} {outcome} in {seconds:.0f} s", flush=True)

    def _beat(self, trial_id: int, stop: threading.Event) -> None:
        while not stop.wait(self.spec.heartbeat["interval"]):
            with contextlib.suppress(Exception):  # a busy database: the next beat will do
                self.storage.record_heartbeat(trial_id)

    def _requeue(self, trial) -> None:
        import optuna
        from optuna.trial import TrialState

        with contextlib.suppress(Exception):
            self.storage.set_trial_state_values(trial._trial_id, state=TrialState.FAIL)
            retry = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=self.spec.heartbeat["retries"])
            retry(self.study, self.storage.get_trial(trial._trial_id))
            print(f"mathverify sweep: interrupted; trial {trial.number} queued again for the next start",
                  file=sys.stderr)


def _interrupt(signum, frame):
    raise KeyboardInterrupt


if __name__ == "__main__":
    sys.exit(main())

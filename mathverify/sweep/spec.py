"""The sweep file of ``mathverify sweep``: what to search, how, and each trial's ``fit`` options.

Example (keys of ``space``, ``tied``, ``points`` and ``fixed`` are ``fit`` option names)::

    name: demo-sweep                     # study name; folder sweeps/<name>
    config: configs/demo.yaml            # the fit config (or --config; a list: several --config)
    objective: {metric: val/loss, mode: min}   # or {metric: val/acc, mode: max}
    sampler: {name: tpe, seed: 0}        # grid | random | tpe (+ the Optuna sampler's own init args)
    n_trials: 12                         # random/tpe; grid runs every point once
    pruner: {name: MedianPruner, n_startup_trials: 2}   # a class of optuna.pruners; omit: none
    space:
      model.lora_r: [8, 16, 32]                          # categorical (a grid axis)
      model.optimizer.init_args.lr: {low: 1.0e-4, high: 1.0e-3, log: true}
    tied:
      model.lora_alpha: {of: model.lora_r, times: 2}     # alpha = 2 x rank, not searched
    fixed:                               # the same for every trial (written as one more --config)
      data.val_size: 300
    heartbeat: {interval: 10, grace: 60, retries: 2}     # dead workers' trials are re-run

A grid is the product of the ``space`` lists, or an explicit list of ``points`` (a table of runs).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import yaml

SAMPLERS = {"grid": None, "random": "RandomSampler", "tpe": "TPESampler"}
KEYS = {"name", "config", "objective", "sampler", "n_trials", "pruner", "space", "tied", "points", "fixed",
        "heartbeat", "storage"}
NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


class SweepError(ValueError):
    """A sweep file that cannot be run (one line: file and key)."""


@dataclass
class SweepSpec:
    path: str
    name: str
    configs: list[str]
    metric: str
    mode: str
    sampler: dict
    n_trials: Optional[int]
    pruner: Optional[dict]
    space: dict[str, Any] = field(default_factory=dict)
    tied: dict[str, dict] = field(default_factory=dict)
    points: Optional[list[dict]] = None
    fixed: dict[str, Any] = field(default_factory=dict)
    heartbeat: dict = field(default_factory=lambda: {"interval": 10, "grace": 60, "retries": 2})
    storage: Optional[str] = None

    @property
    def grid(self) -> bool:
        return self.sampler["name"] == "grid"

    @property
    def direction(self) -> str:
        return "minimize" if self.mode == "min" else "maximize"

    def grid_points(self) -> list[dict]:
        if self.points is not None:
            return [dict(p) for p in self.points]
        keys = list(self.space)
        return [dict(zip(keys, combo)) for combo in itertools.product(*(self.space[k] for k in keys))]

    def choices(self) -> dict[str, Any]:
        """Each searched option's distribution as data: a list (categorical) or a range dict."""
        if self.points is None:
            return dict(self.space)
        out: dict[str, list] = {}
        for point in self.points:
            for key, value in point.items():
                if value not in out.setdefault(key, []):
                    out[key].append(value)
        return {k: sorted(v) if all(isinstance(x, (int, float)) for x in v) else v for k, v in out.items()}

    def digest(self) -> str:
        """What must not change while a study runs: the searched values and the objective."""
        key = {"space": self.choices(), "points": self.points, "tied": self.tied, "metric": self.metric,
               "mode": self.mode, "sampler": self.sampler["name"]}
        return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:16]

    def tied_values(self, params: dict) -> dict:
        out = {}
        for key, rule in self.tied.items():
            value = params[rule["of"]] * rule["times"]
            out[key] = int(value) if isinstance(params[rule["of"]], int) and float(value).is_integer() else value
        return out


def _number(value: Any) -> Any:
    """YAML 1.1 reads ``1e-4`` as a string; numbers written that way become floats."""
    if isinstance(value, str) and NUMBER.match(value.strip()):
        return float(value) if re.search(r"[.eE]", value) else int(value)
    return value


def _dimension(where: str, value: Any) -> Any:
    if isinstance(value, list):
        if not value:
            raise SweepError(f"{where}: empty list of values")
        return [_number(v) for v in value]
    if isinstance(value, dict):
        unknown = set(value) - {"low", "high", "log", "step"}
        if unknown or not {"low", "high"} <= set(value):
            raise SweepError(f"{where}: a range needs low and high (and optionally log, step), got {sorted(value)}")
        out = {k: _number(v) for k, v in value.items()}
        if not all(isinstance(out[k], (int, float)) for k in ("low", "high")) or out["low"] >= out["high"]:
            raise SweepError(f"{where}: low and high must be numbers with low < high, got {value}")
        if out.get("log") and out["low"] <= 0:
            raise SweepError(f"{where}: a log range needs low > 0")
        return out
    raise SweepError(f"{where}: give a list of values or {{low, high, log}}, got {value!r}")


def load_spec(path: str, configs: Optional[list[str]] = None, storage: Optional[str] = None) -> SweepSpec:
    """Read and check a sweep file; ``configs``/``storage`` from the command line win over the file's."""
    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SweepError(f"{path}: no such sweep file") from None
    except yaml.YAMLError as err:
        raise SweepError(f"{path}: not valid YAML ({str(err).splitlines()[0]})") from None
    if not isinstance(raw, dict):
        raise SweepError(f"{path}: expected a mapping of sweep settings")
    unknown = set(raw) - KEYS
    if unknown:
        raise SweepError(f"{path}: unknown key(s) {sorted(unknown)}; known: {sorted(KEYS)}")

    config = configs or raw.get("config")
    config = [config] if isinstance(config, str) else list(config or [])
    if not config:
        raise SweepError(f"{path}: no fit config: give config: in the file or --config")
    for c in config:
        if not Path(c).is_file():
            raise SweepError(f"{path}: config: fit config {c} does not exist")

    objective = raw.get("objective") or {"metric": "val/loss", "mode": "min"}
    if not isinstance(objective, dict) or not str(objective.get("metric", "")).startswith("val/"):
        raise SweepError(f"{path}: objective: give {{metric: val/<name>, mode: min|max}}, got {objective!r}")
    mode = objective.get("mode", "min" if objective["metric"] == "val/loss" else "max")
    if mode not in ("min", "max"):
        raise SweepError(f"{path}: objective.mode must be min or max, got {mode!r}")

    sampler = raw.get("sampler", "tpe")
    sampler = {"name": sampler} if isinstance(sampler, str) else dict(sampler or {})
    if sampler.get("name") not in SAMPLERS:
        raise SweepError(f"{path}: sampler.name must be one of {sorted(SAMPLERS)}, got {sampler.get('name')!r}")

    space = {k: _dimension(f"{path}: space.{k}", v) for k, v in (raw.get("space") or {}).items()}
    points = raw.get("points")
    if points is not None:
        if sampler["name"] != "grid" or space:
            raise SweepError(f"{path}: points: an explicit list of runs needs sampler grid and no space")
        if not isinstance(points, list) or not points or not all(isinstance(p, dict) and p for p in points):
            raise SweepError(f"{path}: points: give a non-empty list of mappings option: value")
        points = [{k: _number(v) for k, v in p.items()} for p in points]
        if any(set(p) != set(points[0]) for p in points):
            raise SweepError(f"{path}: points: every point must set the same options as the first")
    elif not space:
        raise SweepError(f"{path}: nothing to search: give space: (or points: with sampler grid)")
    if sampler["name"] == "grid" and any(not isinstance(v, list) for v in space.values()):
        raise SweepError(f"{path}: space: a grid needs a list of values for every option")

    searched = set(points[0]) if points else set(space)
    tied = {}
    for key, rule in (raw.get("tied") or {}).items():
        if not isinstance(rule, dict) or rule.get("of") not in searched:
            raise SweepError(f"{path}: tied.{key}: give {{of: <a searched option>, times: <number>}}, got {rule!r}")
        tied[key] = {"of": rule["of"], "times": _number(rule.get("times", 1))}

    n_trials = raw.get("n_trials")
    if sampler["name"] == "grid":
        n_trials = None
    elif not isinstance(n_trials, int) or n_trials < 1:
        raise SweepError(f"{path}: n_trials: a positive number of trials is needed for sampler {sampler['name']}")

    pruner = raw.get("pruner")
    pruner = {"name": pruner} if isinstance(pruner, str) else (dict(pruner) if pruner else None)
    if pruner is not None and pruner.get("name") in (None, "none", "NopPruner"):
        pruner = None
    if pruner is not None:
        from callbacks.sweep_pruning import make_pruner

        try:
            make_pruner(pruner)
        except (ValueError, TypeError) as err:
            raise SweepError(f"{path}: pruner: {err}") from None

    heartbeat = {"interval": 10, "grace": 60, "retries": 2, **(raw.get("heartbeat") or {})}
    if heartbeat["grace"] <= heartbeat["interval"]:
        raise SweepError(f"{path}: heartbeat: grace must exceed interval, got {heartbeat}")
    fixed = raw.get("fixed") or {}
    if not isinstance(fixed, dict):
        raise SweepError(f"{path}: fixed: give a mapping option: value")
    name = str(raw.get("name") or Path(path).stem)
    if not re.fullmatch(r"[\w.-]+", name):
        raise SweepError(f"{path}: name: letters, digits, '.', '_' and '-' only, got {name!r}")
    return SweepSpec(path=path, name=name, configs=config, metric=objective["metric"], mode=mode, sampler=sampler,
                     n_trials=n_trials, pruner=pruner, space=space, tied=tied, points=points, fixed=fixed,
                     heartbeat=heartbeat, storage=storage or raw.get("storage"))


def nested(flat: dict[str, Any]) -> dict:
    """``{"data.val_size": 3}`` -> ``{"data": {"val_size": 3}}`` (a config file for ``fixed``)."""
    out: dict = {}
    for key, value in flat.items():
        node = out
        *parents, last = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    return out


def cli_value(value: Any) -> str:
    """A value as a ``fit`` command-line argument (jsonargparse parses it as YAML)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float, str)):
        return str(value)
    return json.dumps(value)

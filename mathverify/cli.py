"""The ``mathverify`` command: LightningCLI with run folders and checkpoint short forms.

Every run lives in ``lightning_logs/<run_name>/version_<n>/`` (TensorBoard events, config,
``checkpoints/``, ``submission.csv``). ``--ckpt_path`` takes a file or a short form: ``last`` /
``best`` (newest version of ``--run_name``), or ``RUN:last`` / ``RUN:best`` where RUN is a run
name or ``name/version_<n>``. ``validate``/``test``/``predict`` read model and prompt settings
back from the checkpoint, so only the data file needs giving.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Optional

import torch
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI, SaveConfigCallback

from mathverify.data.datamodule import VerifyDataModule
from mathverify.data.labels import LabelError
from mathverify.data.prompt import PromptError
from mathverify.data.sources import DataError
from mathverify.errors import SettingsError
from mathverify.memory_advice import OutOfMemory, loading_advice
from mathverify.model.backbone import BackboneError
from mathverify.model.module import VerifierModule
from mathverify.quiet import quiet_startup


class CheckpointError(ValueError):
    """A checkpoint file that cannot be loaded safely."""


class CheckpointRefused(CheckpointError):
    """A checkpoint that ``weights_only`` loading refuses (it holds more than tensors): not corrupt."""


USER_ERRORS = (DataError, PromptError, BackboneError, CheckpointError, LabelError, SettingsError, OutOfMemory)
OOM = getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)  # torch < 2.5: only the CUDA name
LINKED = ("backbone", "prompt_template", "positive_label", "negative_label", "max_length", "trust_remote_code",
          "evidence")
SHORT_FORM = re.compile(r"^(?:(?P<run>[^:]+):)?(?P<which>last|best)$")


class RunConfigSaver(SaveConfigCallback):
    """Saves ``config.yaml`` for fit (overwritten on resume) and ``config-<stage>.yaml`` otherwise."""

    def setup(self, trainer, pl_module, stage) -> None:
        stage = getattr(stage, "value", stage)  # Lightning passes a TrainerFn enum
        if stage != "fit":
            self.config_filename = f"config-{stage}.yaml"
        super().setup(trainer, pl_module, stage)


class MathVerifyCLI(LightningCLI):
    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_argument("--run_name", type=str, default="mathverify",
                            help="run folder under --logs_dir; checkpoints, events and submission go there")
        parser.add_argument("--logs_dir", type=str, default="lightning_logs", help="root folder of all runs")
        parser.add_argument("--submission", type=Optional[str], default=None,
                            help="predict: submission CSV (ID,is_correct); default <run folder>/submission.csv")
        parser.add_argument("--probabilities", type=Optional[str], default=None,
                            help="predict: also write ID,p_true to this CSV")
        parser.add_argument("--threshold", type=Optional[float], default=None,
                            help="predict: decision threshold on P(True); default: the one tuned and saved in the checkpoint")
        parser.add_argument("--best_answers", type=Optional[str], default=None,
                            help="predict: also write, per question, the answer with the highest P(True) (best-of-N)")
        parser.add_argument("--overwrite", type=bool, default=False,
                            help="predict: replace an existing submission/probabilities file")
        for key in LINKED:
            parser.link_arguments(f"model.{key}", f"data.{key}")

    def _swap_defaults(self) -> None:
        from lightning.pytorch.callbacks import ModelSummary, RichModelSummary, RichProgressBar, TQDMProgressBar

        from callbacks.progress import LineProgress
        from callbacks.summary import ParameterSummary

        trainer = self.trainer
        if getattr(self, "_swap_progress", False):
            trainer.callbacks = _swap(trainer.callbacks, (RichProgressBar, TQDMProgressBar), LineProgress())
        if getattr(self, "_swap_summary", False):
            trainer.callbacks = _swap(trainer.callbacks, (ModelSummary, RichModelSummary), ParameterSummary())

    def _run_subcommand(self, subcommand: str) -> None:
        try:
            super()._run_subcommand(subcommand)
        except OOM as err:  # the advice matters more than the allocator's report
            from mathverify.memory_advice import advice, settings_from_run

            raise OutOfMemory(advice(settings_from_run(self.trainer, self.model, self.datamodule))) from err
        if subcommand in ("validate", "test") and self.trainer.is_global_zero:
            line = beside_the_rules(self.trainer.callback_metrics, "val" if subcommand == "validate" else "test")
            if line:
                print(line)

    # ----- checkpoint short forms and run folders -------------------------------------------
    def _parse_ckpt_path(self) -> None:
        sub = self.config.get("subcommand")
        if sub:
            section = self.config[sub]
            section.ckpt_path = resolve_ckpt_path(section.get("ckpt_path"), section.logs_dir, section.run_name, sub)
        super()._parse_ckpt_path()

    def before_instantiate_classes(self) -> None:
        sub = self.config.get("subcommand")
        if not sub:
            return
        quiet_startup(sub)
        section = self.config[sub]
        name, version = run_folder(section.logs_dir, section.run_name, section.get("ckpt_path"), sub)
        self.run_dir = Path(section.logs_dir) / name / version
        if section.trainer.get("logger") in (None, True):
            if sub == "predict":  # logs no scalar: no empty events file in the training run's folder
                section.trainer.logger = False
                section.trainer.default_root_dir = str(self.run_dir)  # config-predict.yaml goes there
            else:
                section.trainer.logger = {
                    "class_path": "lightning.pytorch.loggers.TensorBoardLogger",
                    "init_args": {"save_dir": section.logs_dir, "name": name, "version": version,
                                  "default_hp_metric": False},
                }
        configured = section.trainer.get("callbacks") or []
        # Lightning's default bar and summary are swapped after instantiation (not saved in config.yaml):
        # to lines when stdout is a file or pipe (a live bar there shows nothing until the end), and
        # to a summary without the FLOPs column (it counts nothing without an example input: 0).
        self._swap_progress = not sys.stdout.isatty() and not _has(configured, "Progress")
        self._swap_summary = not _has(configured, "Summary")

    def after_instantiate_classes(self) -> None:
        from callbacks.failfast import EndAllRanksOnError

        self.trainer.callbacks.append(EndAllRanksOnError())
        self._swap_defaults()
        ckpt = self.config[self.subcommand].get("ckpt_path") if self.subcommand == "fit" else None
        if ckpt:  # a resume: the data module takes its start-up state from the checkpoint, not the files
            self.datamodule.take_startup_state(_load_checkpoint(ckpt).get("VerifyDataModule", {}))
        if self.subcommand in ("validate", "test"):
            from callbacks.eval_step import LogAtCheckpointStep
            from callbacks.metrics import VerificationMetrics
            from callbacks.selection import SelectionMetrics

            self.trainer.callbacks.append(LogAtCheckpointStep())
            kinds = (VerificationMetrics, SelectionMetrics)
            if not any(isinstance(c, kinds) for c in self.trainer.callbacks):  # no --config listing them:
                self.trainer.callbacks += [kind() for kind in kinds]  # accuracy beside the rules all the same
        if self.subcommand != "predict":
            return
        from callbacks.submission import SubmissionWriter

        section = self.config["predict"]
        output = section.submission or str(self.run_dir / "submission.csv")
        self.trainer.callbacks.append(
            SubmissionWriter(output=output, probabilities=section.probabilities, threshold=section.threshold,
                             overwrite=section.overwrite, best_answers=section.best_answers)
        )


def beside_the_rules(metrics: dict, prefix: str) -> Optional[str]:
    """One line: the model's accuracy beside the no-model rules on the same rows (None without them)."""
    value = {name: float(metrics[f"{prefix}/{name}"]) for name in ("acc", "majority_acc", "agreement_acc", "auroc")
             if f"{prefix}/{name}" in metrics}
    if "acc" not in value or "majority_acc" not in value:
        return None
    rules = f"majority class {value['majority_acc']:.4f}"
    if "agreement_acc" in value:
        rules += f", agreement rule {value['agreement_acc']:.4f}"
    auroc = f", AUROC {value['auroc']:.4f}" if "auroc" in value else ""
    return f"{prefix}: accuracy {value['acc']:.4f}{auroc}; no model: {rules}"


def _swap(callbacks: list, kinds: tuple, replacement) -> list:
    return [replacement if type(c) in kinds else c for c in callbacks]


def _has(callbacks: list, kind: str) -> bool:
    """Whether a callback whose class name contains ``kind`` is configured."""
    return any(kind in str(c.get("class_path", "")).rsplit(".", 1)[-1] for c in callbacks if hasattr(c, "get"))


def _versions(logs_dir: str, run_name: str) -> list[int]:
    root = Path(logs_dir) / run_name
    found = [re.fullmatch(r"version_(\d+)", p.name) for p in root.glob("version_*")] if root.is_dir() else []
    return sorted(int(m.group(1)) for m in found if m)


def resolve_ckpt_path(value: Optional[str], logs_dir: str, run_name: str, subcommand: str) -> Optional[str]:
    """Turn ``last``/``best``/``RUN:last``/``RUN:best`` into an intact checkpoint file path.

    Raises CheckpointError (one line, every file tried and why it was not used) rather than
    quietly starting over; only ``fit --ckpt_path last`` with no checkpoint at all starts a new run.
    """
    if not value:
        return value
    match = SHORT_FORM.match(str(value))
    if match is None or Path(value).is_file():
        if not Path(value).is_file():
            raise CheckpointError(f"checkpoint {value} does not exist")
        return check_checkpoint(value)
    run = match.group("run") or run_name
    name, _, version = run.partition("/")
    versions = [version] if version else [f"version_{v}" for v in reversed(_versions(logs_dir, name))]
    for candidate in versions:
        folder = Path(logs_dir) / name / candidate / "checkpoints"
        found = newest_intact(folder)
        if found is not None:
            return found if match.group("which") == "last" else best_checkpoint(Path(found))
    if subcommand == "fit" and match.group("which") == "last":
        print(f"mathverify: no checkpoint in {Path(logs_dir) / name} yet; starting a new run", file=sys.stderr)
        return None
    raise CheckpointError(f"no checkpoint found for {value!r} under {Path(logs_dir) / name}")


def _load_checkpoint(path) -> dict:
    """Load with ``weights_only=True``: tensors and plain types only, so a checkpoint cannot run code."""
    import pickle

    import torch

    try:
        # mmap: checking a file (and reading its small metadata) does not read every tensor, so
        # resolving a short form costs little before Lightning loads the checkpoint for real.
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except pickle.UnpicklingError as err:
        first = str(err).strip().splitlines()[0][:160]
        raise CheckpointRefused(f"{path}: refused: it holds more than tensors and plain types ({first})") from None
    except (RuntimeError, EOFError, OSError, ValueError) as err:
        first = str(err).strip().splitlines()[0][:160] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"{path}: unreadable checkpoint (truncated or corrupt: {first})") from None


def check_checkpoint(path: str) -> str:
    _load_checkpoint(path)
    return path


def newest_intact(folder: Path) -> Optional[str]:
    """``last.ckpt`` if it loads, else the newest other checkpoint that does (with a warning).

    None when the folder holds no checkpoint. A truncated file is skipped with a warning (a save
    cut short); a refused one (it would run code) stops the search: falling back past it would
    hide a file someone must look at. When files exist but none loads, the error names each.
    """
    if not folder.is_dir():
        return None
    others = sorted((p for p in folder.glob("*.ckpt") if p.name != "last.ckpt"),
                    key=lambda p: p.stat().st_mtime, reverse=True)
    candidates = ([folder / "last.ckpt"] if (folder / "last.ckpt").is_file() else []) + others
    failures = []
    for candidate in candidates:
        try:
            _load_checkpoint(candidate)
        except CheckpointRefused as err:
            raise CheckpointRefused(f"{err}; not falling back to an older checkpoint: inspect or remove it, "
                                    "or give one with --ckpt_path FILE") from None
        except CheckpointError as err:
            failures.append(str(err))
            continue
        for failure in failures:
            print(f"mathverify: warning: {failure}; using {candidate.name} instead", file=sys.stderr)
        return str(candidate)
    if failures:
        raise CheckpointError(f"{len(failures)} checkpoint(s) in {folder}, none loads: " + "; ".join(failures))
    return None


def best_checkpoint(last: Path) -> str:
    """The best checkpoint recorded by ModelCheckpoint in ``last.ckpt`` (or last itself)."""
    state = _load_checkpoint(last)
    for key, value in state.get("callbacks", {}).items():
        if isinstance(value, dict) and value.get("best_model_path"):  # ModelCheckpoint and subclasses
            best = Path(value["best_model_path"])
            candidate = best if best.is_file() else last.parent / best.name
            if candidate.is_file():
                return check_checkpoint(str(candidate))
    return str(last)


def run_folder(logs_dir: str, run_name: str, ckpt_path: Optional[str], subcommand: str) -> tuple[str, str]:
    """(run name, version folder): the checkpoint's own run when it lives in one, else a new version.

    ``fit`` resumes in its checkpoint's folder only when the run names agree (so TensorBoard keeps
    one curve); the other commands always log next to the checkpoint they evaluate.
    """
    if ckpt_path:
        parent = Path(ckpt_path).resolve().parent
        if parent.name == "checkpoints" and re.fullmatch(r"version_\d+", parent.parent.name):
            name = parent.parent.parent.name
            if name == run_name or subcommand != "fit":
                return name, parent.parent.name
    versions = _versions(logs_dir, run_name)
    return run_name, f"version_{versions[-1] + 1 if versions else 0}"


COMMANDS = {"check-data": "mathverify.data.check", "export": "mathverify.export", "sweep": "mathverify.sweep.run",
            "score": "mathverify.score"}  # plain argparse commands


def cli_main(args=None) -> None:
    """Entry point of ``mathverify`` and ``python -m mathverify``; ``args`` lets tests call it.

    ``check-data`` and ``export`` need no trainer or config file and are plain argparse commands.
    From the command line, input and settings errors print one line (no traceback) and exit 1.
    """
    argv = sys.argv[1:] if args is None else args
    if isinstance(argv, (list, tuple)) and argv and argv[0] in COMMANDS:
        import importlib

        code = importlib.import_module(COMMANDS[argv[0]]).main(list(argv[1:]))
        if code:
            raise SystemExit(code)
        return
    if args is not None:
        return _run(args)
    try:
        _run(None)
    except OutOfMemory as err:
        raise SystemExit(f"mathverify: {err}") from None
    except USER_ERRORS as err:
        raise SystemExit(f"mathverify: error: {err}") from None
    except OOM:  # before the run's settings were known
        raise SystemExit(f"mathverify: {loading_advice(None)}") from None


# clipping: TRL's and HF Trainer's default; max_epochs -1: steps (the rounds) bound a run, not epochs
TRAINER_DEFAULTS = {"log_every_n_steps": 10, "gradient_clip_val": 1.0, "max_epochs": -1}


HELP = {  # the main parser's --help: what it is, and the commands beside Lightning's four
    "prog": "mathverify",
    "description": "Fine-tune a (quantized) Llama with LoRA to judge whether a math answer is correct.",
    "epilog": ("more commands (each with its own --help): mathverify score (P(True) per row from a checkpoint or "
               "export, no Trainer), mathverify export (a checkpoint to a folder for Verifier.load), mathverify "
               "check-data (check a data file, one line per bad row), mathverify sweep (an Optuna search of fit "
               "runs)"),
}


def _run(args, run: bool = True) -> MathVerifyCLI:
    """The CLI; ``run=False`` only parses and instantiates (trainer, model, data, callbacks)."""
    return MathVerifyCLI(
        VerifierModule,
        VerifyDataModule,
        parser_kwargs=dict(HELP),
        save_config_callback=RunConfigSaver,
        save_config_kwargs={"overwrite": True},
        seed_everything_default=0,
        trainer_defaults=dict(TRAINER_DEFAULTS),
        args=args,
        run=run,
    )


if __name__ == "__main__":
    cli_main()

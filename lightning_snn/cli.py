"""The command line: ``python train.py {fit,validate,test} -c configs/<experiment>.yaml``.

LightningCLI over :class:`~lightning_snn.module.ConversionModule` and any DataModule with
the CIFAR-style interface (``num_classes``, ``test_set``, ``calibration_set``: the CIFAR
modules of :mod:`lightning_snn.data`, :class:`lightning_snn.imagenet.ImageNetDataModule`),
with the conversion callback always present as the ``snn:`` section (its settings are
evaluation-only, so ``test --ckpt_path`` never replaces them with the checkpoint's), the
number of classes linked from the data to the model once, W&B offline by default, and the
config saved into each run's own directory.

This module composes the library with the application layer (``lightning_snn.callbacks``);
nothing else in ``lightning_snn`` imports the callbacks.

Runs, resuming and signals:

* ``--run_name NAME`` gives a run a stable directory, ``<default_root_dir>/NAME`` (default
  ``runs/NAME``), holding its checkpoints (``checkpoints/last.ckpt`` after every epoch) and
  Lightning's SLURM checkpoints (``hpc_ckpt_<n>.ckpt``). The same command plus ``--ckpt_path
  last`` resumes it from the newest of those; with nothing there yet it starts from scratch,
  so a batch script can always pass it. Without a run name each run gets a new directory and
  ``--ckpt_path last`` is refused (it would silently restart).
* SIGTERM stops training (or the SNN evaluation) at the next batch, as Lightning's loops do, and
  the process exits with status 143 (128 + SIGTERM), never 0; Ctrl-C (SIGINT) exits with 130.
* A plain state dict given as ``--ckpt_path`` is refused before any work, pointing to
  ``--model.init_from``; so is a damaged file, or one that holds more than weights (loading it
  would run code from the file: ``--weights_only false`` for a file you trust), and a
  ``--model.*`` on the command line that the checkpoint's own settings would silently replace
  (:mod:`lightning_snn.checkpoints`).
"""

from __future__ import annotations

import inspect
import re
import sys
from collections.abc import Mapping
from pathlib import Path

import pytorch_lightning as pl
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.cli import LightningCLI, SaveConfigCallback
from pytorch_lightning.utilities import rank_zero_info, rank_zero_warn
from pytorch_lightning.utilities.exceptions import SIGTERMException

from lightning_snn.callbacks.run_files import run_dir
from lightning_snn.callbacks.snn_conversion import SNNConversion
from lightning_snn.callbacks.wandb_logging import finish_open_wandb_run, finish_wandb, upload_config
from lightning_snn.checkpoints import check_model_overrides, given_keys, load_checkpoint, saved_model_hparams
from lightning_snn.heap import keep_freed_memory
from lightning_snn.module import ConversionModule

#: Exit status of a run stopped by SIGTERM: 128 + 15, what a shell reports for a killed process.
SIGTERM_EXIT_STATUS = 143
#: Exit status of a run stopped by SIGINT (Ctrl-C): 128 + 2.
SIGINT_EXIT_STATUS = 130
DEFAULT_ROOT_DIR = "runs"
RUN_NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
#: ``--ckpt_path`` values that Lightning resolves itself (not a file).
SPECIAL_CKPT_PATHS = ("best", "last", "hpc")

TRAINER_DEFAULTS = {
    "default_root_dir": DEFAULT_ROOT_DIR,
    "logger": {
        "class_path": "pytorch_lightning.loggers.WandbLogger",
        "init_args": {"project": "lightning-snn", "offline": True, "save_dir": DEFAULT_ROOT_DIR},
    },
}


class RunDirSaveConfig(SaveConfigCallback):
    """Save ``config.yaml`` into the run's own directory (W&B run dir or log dir), and the
    config into W&B: Lightning's default writes one shared file and refuses a second run."""

    def save_config(self, trainer, pl_module, stage: str) -> None:
        path = run_dir(trainer) / self.config_filename
        self.parser.save(self.config, str(path), skip_none=False, overwrite=True, multifile=False)
        upload_config(trainer.loggers, self.config.as_dict())


class SNNLightningCLI(LightningCLI):
    def add_arguments_to_parser(self, parser) -> None:
        parser.add_lightning_class_args(SNNConversion, "snn")
        parser.link_arguments("data.num_classes", "model.num_classes", apply_on="instantiate")
        # a text DataModule's vocabulary (built from its training split) sizes the model's embedding
        parser.link_arguments("data", "model.vocab_size", compute_fn=data_vocab_size, apply_on="instantiate")
        parser.add_argument(
            "--run_name",
            type=str | None,
            default=None,
            help="A stable name for this run: its checkpoints go to <trainer.default_root_dir>/<run_name>, so "
            "the same command with --ckpt_path last resumes it (after a kill, a crash or a SLURM requeue).",
        )

    # ---- a checkpoint's model settings ------------------------------------------------------
    def parse_arguments(self, parser, args) -> None:
        self._given_args = list(sys.argv[1:] if args is None else args if isinstance(args, (list, tuple)) else [])
        super().parse_arguments(parser, args)

    def _parse_ckpt_path(self) -> None:
        """LightningCLI lays the checkpoint's saved model settings over the config; as Lightning's,
        but loaded safely (``--weights_only``), and refusing a ``--model.*`` the checkpoint would
        replace silently (:func:`~lightning_snn.checkpoints.check_model_overrides`)."""
        subcommand = self.config.get("subcommand")
        config = self.config[subcommand] if subcommand else None
        ckpt_path = config.get("ckpt_path") if config else None
        if not ckpt_path or ckpt_path in SPECIAL_CKPT_PATHS or not Path(ckpt_path).expanduser().is_file():
            return  # "last" is resolved later; a missing file is refused in before_<subcommand>
        saved = saved_model_hparams(check_lightning_checkpoint(ckpt_path, config.get("weights_only") is not False))
        if not saved:
            return
        asked = config.get("model")
        asked = asked.as_dict() if hasattr(asked, "as_dict") else dict(asked or {})
        defaults = {k: p.default for k, p in inspect.signature(self.model_class).parameters.items()}
        replaced = check_model_overrides(asked, saved, given_keys(self._given_args), defaults, ckpt_path)
        if replaced:
            rank_zero_warn(f"--ckpt_path {ckpt_path}: the model is built with the checkpoint's {'; '.join(replaced)}.")
        self.config = self.parser.parse_object({subcommand: {"model": saved}}, self.config)

    # ---- run directories and resuming ------------------------------------------------------
    def _setting(self, key: str):
        config = self.config.get(self.subcommand, self.config) if self.subcommand else self.config
        return config.get(key)

    def instantiate_trainer(self, **kwargs) -> pl.Trainer:
        run_name = self._setting("run_name")
        if run_name is not None:
            if not RUN_NAME_PATTERN.fullmatch(run_name):
                raise ValueError(
                    f"run_name {run_name!r} must be letters, digits, '.', '_' or '-' (it names a folder), "
                    "e.g. --run_name vgg16_ts or --run_name $SLURM_JOB_ID."
                )
            root = (self._setting("trainer") or {}).get("default_root_dir") or DEFAULT_ROOT_DIR
            kwargs["default_root_dir"] = str(Path(root) / run_name)
        trainer = super().instantiate_trainer(**kwargs)
        for callback in trainer.checkpoint_callbacks:
            if isinstance(callback, ModelCheckpoint):
                if callback.save_last is None:
                    callback.save_last = True  # a last.ckpt after every epoch: what --ckpt_path last resumes
                if run_name is not None and callback.dirpath is None:
                    callback.dirpath = str(Path(trainer.default_root_dir).resolve() / "checkpoints")
        return trainer

    def _check_ckpt_path(self) -> None:
        """Resolve ``--ckpt_path last`` for named runs; refuse what would fail or mislead later."""
        kwargs = self.config_init[self.subcommand]
        ckpt_path = kwargs.get("ckpt_path")
        if ckpt_path is None or ckpt_path in ("best", "hpc"):
            return
        if ckpt_path != "last":
            check_lightning_checkpoint(ckpt_path, weights_only=kwargs.get("weights_only") is not False)
            return
        run_name = self._setting("run_name")
        if run_name is None:
            if any(getattr(cb, "dirpath", None) for cb in self.trainer.checkpoint_callbacks):
                return  # a checkpoint folder set in the config: Lightning finds its last.ckpt
            raise ValueError(
                "--ckpt_path last resumes a named run, but no --run_name is given: every run without one gets a "
                "new directory, so there is nothing to resume and training would silently restart. Start runs "
                "with --run_name NAME and resume with the same command plus --ckpt_path last, or pass the killed "
                "run's checkpoint file (.../checkpoints/last.ckpt) as --ckpt_path."
            )
        found = latest_checkpoint(Path(self.trainer.default_root_dir))
        if found is None:
            rank_zero_info(f"run {run_name!r}: no checkpoint in {self.trainer.default_root_dir} yet, starting afresh")
        else:
            rank_zero_info(f"run {run_name!r}: resuming from {found}")
        kwargs["ckpt_path"] = None if found is None else str(found)

    def before_fit(self) -> None:
        self._check_ckpt_path()

    def before_validate(self) -> None:
        self._check_ckpt_path()

    def before_test(self) -> None:
        self._check_ckpt_path()

    # ---- SIGTERM: stop at the next batch and exit non-zero ---------------------------------
    def _stop_on_sigterm(self, run, **kwargs) -> None:
        try:
            run(**kwargs)
        except SIGTERMException:
            resume = (
                "resume: the same command with --ckpt_path last"
                if self._setting("run_name")
                else "resume: name runs with --run_name NAME to resume them with --ckpt_path last"
            )
            last = getattr(self.trainer.checkpoint_callback, "last_model_path", "") or "none yet"
            rank_zero_warn(
                f"stopped by SIGTERM at epoch {self.trainer.current_epoch}, step {self.trainer.global_step} "
                f"(exit status {SIGTERM_EXIT_STATUS}); last checkpoint: {last}; {resume}."
            )
            finish_wandb(self.trainer, exit_code=SIGTERM_EXIT_STATUS)
            sys.exit(SIGTERM_EXIT_STATUS)
        except (KeyboardInterrupt, SystemExit) as exc:  # after SIGTERMException, a SystemExit
            # Ctrl-C: Lightning's handler shuts down and calls sys.exit(1) inside its `except
            # KeyboardInterrupt`; exit 130 (128 + SIGINT) as a shell does, so `&&` and schedulers can tell
            if isinstance(exc, SystemExit) and not isinstance(exc.__context__, KeyboardInterrupt):
                raise
            rank_zero_warn(f"stopped by SIGINT (Ctrl-C) (exit status {SIGINT_EXIT_STATUS}).")
            finish_wandb(self.trainer, exit_code=SIGINT_EXIT_STATUS)
            sys.exit(SIGINT_EXIT_STATUS)

    def fit(self, **kwargs) -> None:
        self._stop_on_sigterm(self.trainer.fit, **kwargs)

    def validate(self, **kwargs) -> None:
        self._stop_on_sigterm(self.trainer.validate, **kwargs)

    def test(self, **kwargs) -> None:
        self._stop_on_sigterm(self.trainer.test, **kwargs)


def data_vocab_size(datamodule) -> int | None:
    """The vocabulary size of a text DataModule, None for image data."""
    return getattr(datamodule, "vocab_size", None)


def latest_checkpoint(run_root: Path) -> Path | None:
    """The newest resumable checkpoint of a named run: ``checkpoints/last*.ckpt`` (end of an
    epoch) or ``hpc_ckpt_<n>.ckpt`` (written by Lightning on SLURM's requeue signal)."""
    candidates = [*run_root.glob("checkpoints/last*.ckpt"), *run_root.glob("hpc_ckpt_*.ckpt")]
    return max(candidates, key=lambda p: p.stat().st_mtime, default=None)


def check_lightning_checkpoint(path: str | Path, weights_only: bool = True) -> dict:
    """Refuse, before any work, a ``--ckpt_path`` that is not a Lightning checkpoint, is damaged, or
    holds more than weights (loading that runs code from the file; ``weights_only=False``, i.e.
    ``--weights_only false``, accepts it). Returns the loaded checkpoint."""
    obj = load_checkpoint(path, "--ckpt_path", weights_only, opt_in="--weights_only false")
    path = Path(path).expanduser()
    if isinstance(obj, Mapping) and "pytorch-lightning_version" in obj:
        return obj
    what = "a plain state dict (weights only)" if isinstance(obj, Mapping) else f"a pickled {type(obj).__name__}"
    raise ValueError(
        f"--ckpt_path {str(path)!r} is {what}, not a checkpoint written by train.py: --ckpt_path resumes a run "
        f"or tests a Lightning .ckpt. To start training from these weights use --model.init_from {path} "
        "(add --model.init_skip_head false to keep its output layer); to convert them as they are: fit "
        f"--model.init_from {path} --model.init_skip_head false --model.relu_warmup_epochs 0 --trainer.max_epochs 0 "
        "(--model.activation relu if they were trained with plain ReLU)."
    )


def main(args=None, run: bool = True) -> SNNLightningCLI:
    """Parse ``args`` (default: ``sys.argv``) and run the subcommand; finish the W&B run after."""
    keep_freed_memory()  # no page faults for the same large tensors every chunk (lightning_snn/heap.py)
    try:
        cli = SNNLightningCLI(
            ConversionModule,
            pl.LightningDataModule,  # any subclass, e.g. lightning_snn.data.CIFAR10DataModule
            subclass_mode_data=True,
            save_config_callback=RunDirSaveConfig,
            save_config_kwargs={"save_to_log_dir": False},
            trainer_defaults=TRAINER_DEFAULTS,
            seed_everything_default=0,
            args=args,
            run=run,
        )
    except BaseException:
        # a run that failed (a setting refused in setup, Ctrl-C) must not leave its W&B run open:
        # the next run in this process would write into it
        finish_open_wandb_run(exit_code=1)
        raise
    if run:
        finish_wandb(cli.trainer)
    return cli

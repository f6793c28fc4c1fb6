"""The command line: ``python train.py {fit,validate,test} -c configs/<experiment>.yaml``.

LightningCLI over :class:`~lightning_snn.module.ConversionModule` and any DataModule with
the CIFAR-style interface (``num_classes``, ``test_set``, ``calibration_set``: the CIFAR
modules of :mod:`lightning_snn.data`, :class:`lightning_snn.imagenet.ImageNetDataModule`),
with the conversion callback always present as the ``snn:`` section (its settings are
evaluation-only, so ``test --ckpt_path`` never replaces them with the checkpoint's), the
number of classes linked from the data to the model once, W&B offline by default, and the
config saved into each run's own directory.
"""

from __future__ import annotations

import pytorch_lightning as pl
from pytorch_lightning.cli import LightningCLI, SaveConfigCallback
from pytorch_lightning.loggers import WandbLogger

from lightning_snn.callbacks.snn_conversion import SNNConversion, run_dir
from lightning_snn.module import ConversionModule

TRAINER_DEFAULTS = {
    "logger": {
        "class_path": "pytorch_lightning.loggers.WandbLogger",
        "init_args": {"project": "lightning-snn", "offline": True, "save_dir": "runs"},
    },
}


class RunDirSaveConfig(SaveConfigCallback):
    """Save ``config.yaml`` into the run's own directory (W&B run dir or log dir), and the
    config into W&B: Lightning's default writes one shared file and refuses a second run."""

    def save_config(self, trainer, pl_module, stage: str) -> None:
        path = run_dir(trainer) / self.config_filename
        path.parent.mkdir(parents=True, exist_ok=True)
        self.parser.save(self.config, str(path), skip_none=False, overwrite=True, multifile=False)
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                logger.experiment.config.update(self.config.as_dict(), allow_val_change=True)


class SNNLightningCLI(LightningCLI):
    def add_arguments_to_parser(self, parser) -> None:
        parser.add_lightning_class_args(SNNConversion, "snn")
        parser.link_arguments("data.num_classes", "model.num_classes", apply_on="instantiate")


def main(args=None, run: bool = True) -> SNNLightningCLI:
    """Parse ``args`` (default: ``sys.argv``) and run the subcommand; finish the W&B run after."""
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
    if run:
        finish_wandb(cli.trainer)
    return cli


def finish_wandb(trainer) -> None:
    """Close the W&B run so its files are complete and a next run in the process is a new one."""
    if trainer.is_global_zero and any(isinstance(lg, WandbLogger) for lg in trainer.loggers):
        import wandb

        if wandb.run is not None:
            wandb.finish()

"""Everything W&B-specific of a run: what is logged beyond scalars, the config upload, the run's end.

Every logger gets the scalars (``logger.log_metrics``, in the callback); ``log_report`` and
``log_dashboard`` add W&B's tables, line plots and the dashboard picture for each
:class:`WandbLogger` among the trainer's loggers, and do nothing for any other logger. The callback
and the CLI call these functions unconditionally, so neither holds logger-specific code (as
Lightning's own callbacks): ``upload_config`` stores the run's whole config in W&B,
``finish_wandb`` / ``finish_open_wandb_run`` close the W&B run at the end of a run (also a stopped
or failed one), so its files are complete and the next run in the same process is a new run.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from pytorch_lightning.loggers import Logger, WandbLogger

from lightning_snn.evaluation import ConversionReport
from lightning_snn.report import wandb_payload

__all__ = ["finish_open_wandb_run", "finish_wandb", "log_dashboard", "log_report", "upload_config"]


def _wandb_loggers(loggers: Iterable[Logger]) -> list[WandbLogger]:
    return [logger for logger in loggers if isinstance(logger, WandbLogger)]


def log_report(loggers: Iterable[Logger], report: ConversionReport) -> None:
    """The accuracy-per-T table and its line plot; with the diagnostics, accuracy vs energy, per-layer
    error vs T and firing rate per layer (:func:`lightning_snn.report.wandb_payload`)."""
    targets = _wandb_loggers(loggers)
    if not targets:
        return
    import wandb

    r = report
    rows = [[t, r.snn_acc[t], r.ann_acc, r.conversion_loss[t]] for t in r.timesteps]
    for logger in targets:
        table = wandb.Table(data=rows, columns=["T", "snn_acc", "ann_acc", "conversion_loss"])
        logger.experiment.log(
            {
                "snn/results": table,
                "snn/acc_vs_T": wandb.plot.line(table, "T", "snn_acc", title=f"SNN accuracy vs T ({r.shift} shift)"),
            }
        )
        if r.diagnostics is not None:
            logger.experiment.log(wandb_payload(r.to_json()))


def log_dashboard(loggers: Iterable[Logger], png: Path) -> None:
    """The dashboard picture (``snn_report.png``, written already) as ``snn/report``."""
    targets = _wandb_loggers(loggers)
    if not targets:
        return
    import wandb

    for logger in targets:
        logger.experiment.log({"snn/report": wandb.Image(str(png))})


def upload_config(loggers: Iterable[Logger], config: Mapping[str, Any]) -> None:
    """The run's whole config (``config.yaml``'s content) into each W&B run's config."""
    for logger in _wandb_loggers(loggers):
        logger.experiment.config.update(dict(config), allow_val_change=True)


def finish_wandb(trainer, exit_code: int = 0) -> None:
    """Close the W&B run so its files are complete and a next run in the process is a new one."""
    if trainer.is_global_zero and _wandb_loggers(trainer.loggers):
        finish_open_wandb_run(exit_code)


def finish_open_wandb_run(exit_code: int) -> None:
    """Finish the W&B run this process has open, if any (wandb imported and a run started)."""
    wandb = sys.modules.get("wandb")
    if wandb is not None and getattr(wandb, "run", None) is not None:
        wandb.finish(exit_code=exit_code)

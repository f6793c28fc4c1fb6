"""What the conversion callback logs beyond scalars, for the loggers that can show it (W&B).

Every logger gets the scalars (``logger.log_metrics``, in the callback); these two functions add
W&B's tables, line plots and the dashboard picture for each :class:`WandbLogger` among the trainer's
loggers, and do nothing for any other logger. The callback calls them unconditionally, so it holds
no logger-specific code (as Lightning's own callbacks).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from pytorch_lightning.loggers import Logger, WandbLogger

from lightning_snn.evaluation import ConversionReport
from lightning_snn.report import wandb_payload

__all__ = ["log_dashboard", "log_report"]


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

"""The callback's W&B-only logging (lightning_snn.callbacks.wandb_logging): tables, plots and the
dashboard go to each W&B logger, and nothing is asked of any other logger."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from lightning_snn.callbacks.wandb_logging import log_dashboard, log_report, upload_config
from pytorch_lightning.loggers import CSVLogger, WandbLogger

wandb = pytest.importorskip("wandb")


def wandb_logger(logged: list) -> WandbLogger:
    """A WandbLogger whose run is a stand-in that keeps what is logged (no W&B run is started)."""
    logger = WandbLogger.__new__(WandbLogger)
    logger._experiment = SimpleNamespace(log=logged.append)
    return logger


class NoExperiment(CSVLogger):
    @property
    def experiment(self):
        raise AssertionError("a logger other than W&B was asked for its experiment")


def test_tables_plots_and_the_dashboard_reach_wandb_loggers_only(tmp_path):
    report = SimpleNamespace(
        timesteps=[4, 16],
        snn_acc={4: 50.0, 16: 75.0},
        ann_acc=80.0,
        conversion_loss={4: 30.0, 16: 5.0},
        shift="membrane",
        diagnostics=None,
    )
    first, second = [], []
    loggers = [NoExperiment(tmp_path), wandb_logger(first), wandb_logger(second)]
    log_report(loggers, report)
    for logged in (first, second):
        (entry,) = logged
        assert set(entry) == {"snn/results", "snn/acc_vs_T"}
        assert entry["snn/results"].data == [[4, 50.0, 80.0, 30.0], [16, 75.0, 80.0, 5.0]]
    png = tmp_path / "snn_report.png"
    from PIL import Image

    Image.new("RGB", (4, 4)).save(png)
    log_dashboard(loggers, png)
    assert [set(e) for e in first[1:]] == [{"snn/report"}] and isinstance(first[1]["snn/report"], wandb.Image)
    log_report([NoExperiment(tmp_path)], report)  # no W&B logger: nothing to do, W&B not needed
    log_dashboard([], png)


def test_the_run_config_reaches_wandb_loggers_only(tmp_path):
    updates = []
    logger = wandb_logger([])
    logger._experiment.config = SimpleNamespace(update=lambda params, **kw: updates.append((params, kw)))
    config = {"model": {"arch": "vgg16"}, "snn": {"timesteps": [4, 16]}}
    upload_config([NoExperiment(tmp_path), logger], config)
    assert updates == [(config, {"allow_val_change": True})]

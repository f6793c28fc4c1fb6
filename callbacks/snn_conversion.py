"""The conversion callback: calibrate -> convert -> evaluate across T -> log.

Runs at the end of ``fit`` and at the end of ``test`` (a checkpoint given with
``--ckpt_path``). Under DDP each rank calibrates on its share of the calibration subset and
evaluates its share of the test images; thresholds are all-reduced with MAX and accuracies
are torchmetrics (summed over ranks), so the numbers equal a single process's.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import WandbLogger
from pytorch_lightning.utilities import rank_zero_info
from torch.utils.data import DataLoader, Dataset, Subset

from lightning_snn.conversion import OUTPUT_KEY, READOUTS, SHIFT_MODES, calibrate_thresholds
from lightning_snn.metrics import AccuracyOverTime
from lightning_snn.simulation import SpikingEvaluator, resolve_time_chunk, validate_timesteps


def run_dir(trainer: pl.Trainer) -> Path:
    """The directory of this run: the W&B run's folder if logging to W&B, else the log dir."""
    logger = trainer.logger
    if isinstance(logger, WandbLogger):
        return Path(logger.experiment.dir)
    return Path(trainer.log_dir or trainer.default_root_dir)


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    """Write JSON to a temp file in the same folder, then rename: never a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=2)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def shard(dataset: Dataset, rank: int, world_size: int) -> Dataset:
    """Rank ``rank``'s share (every ``world_size``-th item), without padding duplicates."""
    if world_size == 1:
        return dataset
    return Subset(dataset, list(range(rank, len(dataset), world_size)))


class SNNConversion(pl.Callback):
    """Convert the trained ANN to an SNN and report accuracy at every simulation length.

    Args:
        timesteps: simulation lengths T at which to report SNN accuracy.
        shift: ``"membrane"`` (V_th/2 initial membrane: one simulation gives every T),
            ``"bias"`` (the paper's V_th/(2T) bias, one simulation per T) or ``"none"``.
        readout: ``"analog"`` (sum of the last layer's output) or ``"spiking"`` (IF output
            layer with threshold = max logit, as in the paper).
        calibration_samples: training images (fixed, seeded, un-augmented subset) for the
            thresholds; None = the whole training set, as the paper does.
        calibration_seed: seed of that subset.
        max_test_samples: evaluate on the first N test images only; None = all.
        batch_size: evaluation batch size (default: the DataModule's ``eval_batch_size``).
        time_chunk: time steps folded into one forward pass; ``"auto"`` picks per device.
        results_file: file name of the results, written to the run directory.
        on_fit: run at the end of fit.
        on_test: run at the end of test.
    """

    def __init__(
        self,
        timesteps: list[int] = [16, 32, 64, 128, 256, 512],  # noqa: B006 (jsonargparse shows it)
        shift: str = "membrane",
        readout: str = "analog",
        calibration_samples: int | None = None,
        calibration_seed: int = 0,
        max_test_samples: int | None = None,
        batch_size: int | None = None,
        time_chunk: int | str = "auto",
        results_file: str = "snn_results.json",
        on_fit: bool = True,
        on_test: bool = True,
    ) -> None:
        self.timesteps = validate_timesteps(timesteps)
        if shift not in SHIFT_MODES:
            raise ValueError(f"unknown shift mode {shift!r}; choose one of {list(SHIFT_MODES)}.")
        if readout not in READOUTS:
            raise ValueError(f"unknown readout {readout!r}; choose one of {list(READOUTS)}.")
        if calibration_samples is not None and calibration_samples <= 0:
            raise ValueError(f"calibration_samples must be > 0 or None (all), got {calibration_samples}.")
        if max_test_samples is not None and max_test_samples <= 0:
            raise ValueError(f"max_test_samples must be > 0 or None (all), got {max_test_samples}.")
        resolve_time_chunk(time_chunk, torch.device("cpu"))  # validates
        self.shift, self.readout = shift, readout
        self.calibration_samples, self.calibration_seed = calibration_samples, calibration_seed
        self.max_test_samples, self.batch_size = max_test_samples, batch_size
        self.time_chunk, self.results_file = time_chunk, results_file
        self.on_fit, self.on_test = on_fit, on_test
        self.results: dict[str, Any] | None = None

    # ---- hooks ---------------------------------------------------------------------------
    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.on_fit:
            self.evaluate(trainer, pl_module, stage="fit")

    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.on_test:
            self.evaluate(trainer, pl_module, stage="test")

    # ---- the work ------------------------------------------------------------------------
    def _loader(self, dataset: Dataset, trainer: pl.Trainer, datamodule) -> DataLoader:
        batch_size = self.batch_size or getattr(datamodule, "eval_batch_size", 256)
        part = shard(dataset, trainer.global_rank, trainer.world_size)
        return DataLoader(part, batch_size=batch_size, shuffle=False, num_workers=getattr(datamodule, "num_workers", 0))

    def evaluate(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> dict[str, Any]:
        datamodule = trainer.datamodule
        if datamodule is None or not hasattr(datamodule, "calibration_set"):
            raise TypeError(
                "SNNConversion needs a DataModule with calibration_set() and test_set "
                "(e.g. lightning_snn.data.CIFAR10DataModule)."
            )
        if not hasattr(datamodule, "test_set"):
            datamodule.setup("test")
        model = pl_module.model if hasattr(pl_module, "model") else pl_module
        device = pl_module.device
        was_training = model.training
        model.eval()
        try:
            t0 = time.perf_counter()
            calib = datamodule.calibration_set(self.calibration_samples, self.calibration_seed)
            thresholds = calibrate_thresholds(model, self._loader(calib, trainer, datamodule), device)
            t_calib = time.perf_counter() - t0

            t0 = time.perf_counter()
            evaluator = SpikingEvaluator(model, thresholds, self.timesteps, self.shift, self.readout, self.time_chunk)
            t_convert = time.perf_counter() - t0

            test_set = datamodule.test_set
            if self.max_test_samples is not None and self.max_test_samples < len(test_set):
                test_set = Subset(test_set, range(self.max_test_samples))
            ann_acc = AccuracyOverTime(1).to(device)  # exact counts, like the SNN's
            snn_acc = AccuracyOverTime(len(self.timesteps)).to(device)
            loader = self._loader(test_set, trainer, datamodule)
            t0 = time.perf_counter()
            show = trainer.is_global_zero and trainer.progress_bar_callback is not None
            from tqdm.auto import tqdm

            for x, y in tqdm(loader, desc=f"SNN eval (T<={self.timesteps[-1]})", disable=not show, leave=False):
                x, y = x.to(device), y.to(device)
                with torch.no_grad():
                    ann_acc.update(model(x).unsqueeze(0), y)
                snn_acc.update(evaluator(x), y)
            ann = float(ann_acc.compute().reshape(-1)[0])  # torchmetrics squeezes one-element results
            snn = snn_acc.compute().reshape(-1).tolist()
            t_sim = time.perf_counter() - t0
        finally:
            model.train(was_training)

        results = {
            "stage": stage,
            "epoch": trainer.current_epoch,
            "global_step": trainer.global_step,
            "shift": self.shift,
            "readout": self.readout,
            "time_chunk": self.time_chunk,
            "num_test_images": len(test_set),
            "calibration_images": len(calib),
            "calibration_seed": self.calibration_seed,
            "ann_acc": round(100.0 * ann, 6),
            "snn_acc": {str(t): round(100.0 * a, 6) for t, a in zip(self.timesteps, snn, strict=True)},
            "conversion_loss": {str(t): round(100.0 * (ann - a), 6) for t, a in zip(self.timesteps, snn, strict=True)},
            "thresholds": {k: v for k, v in thresholds.items() if k != OUTPUT_KEY},
            "output_threshold": thresholds.get(OUTPUT_KEY),
            "seconds": {"calibration": t_calib, "conversion": t_convert, "simulation": t_sim},
            "world_size": trainer.world_size,
        }
        self.results = results
        if trainer.is_global_zero:
            self._report(trainer, results)
        return results

    def _report(self, trainer: pl.Trainer, r: dict[str, Any]) -> None:
        lines = [
            f"SNN conversion ({r['stage']}, shift={r['shift']}, readout={r['readout']}, "
            f"{r['num_test_images']} test images, {r['calibration_images']} calibration images)",
            f"  ANN accuracy: {r['ann_acc']:.2f}%",
            "      T   SNN acc   conversion loss",
        ]
        for t in self.timesteps:
            lines.append(f"  {t:5d}   {r['snn_acc'][str(t)]:6.2f}%   {r['conversion_loss'][str(t)]:+6.2f} pts")
        s = r["seconds"]
        lines.append(f"  time: calibration {s['calibration']:.1f}s, simulation {s['simulation']:.1f}s")
        path = run_dir(trainer) / self.results_file
        write_json_atomic(path, r)
        lines.append(f"  results: {path}")
        rank_zero_info("\n".join(lines))

        metrics = {"snn/ann_acc": r["ann_acc"]}
        for t in self.timesteps:
            metrics[f"snn/acc_T{t}"] = r["snn_acc"][str(t)]
            metrics[f"snn/conversion_loss_T{t}"] = r["conversion_loss"][str(t)]
        for name, v in r["thresholds"].items():
            metrics[f"snn/threshold/{name}"] = v
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=trainer.global_step)
            if isinstance(logger, WandbLogger):
                self._log_wandb(logger, r)

    def _log_wandb(self, logger: WandbLogger, r: dict[str, Any]) -> None:
        import wandb

        rows = [[t, r["snn_acc"][str(t)], r["ann_acc"], r["conversion_loss"][str(t)]] for t in self.timesteps]
        table = wandb.Table(data=rows, columns=["T", "snn_acc", "ann_acc", "conversion_loss"])
        logger.experiment.log(
            {
                "snn/results": table,
                "snn/acc_vs_T": wandb.plot.line(table, "T", "snn_acc", title=f"SNN accuracy vs T ({r['shift']} shift)"),
            }
        )

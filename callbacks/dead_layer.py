"""Stop a training whose network can no longer be converted: a layer that never fires."""

from __future__ import annotations

from collections.abc import Sequence

import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities import rank_zero_info

from lightning_snn.calibration import calibrate_thresholds


class StopWhenDead(pl.Callback):
    """Ends the training after the first epoch that leaves a layer silent on every calibration
    image (max activation 0). A layer that never fires passes no gradient to itself or to any layer
    below it, so the epochs left cannot revive it, and the network could not be converted anyway
    (max calibration gives it a threshold of 0, which conversion refuses by name).

    A cheap probe of the first calibration batch runs after every epoch; the whole calibration set
    only where it finds a silent layer (a layer silent on the first batch may fire on another).

    Args:
        calibration_batches: input batches (tensors), e.g. the ones the thresholds will come from.
        record: where to write ``{"stopped_dead": {"epoch": e, "layers": [...]}}`` when it stops
            (e.g. a study's entry for this network); also kept in :attr:`stopped`.
    """

    def __init__(self, calibration_batches: Sequence[torch.Tensor], record: dict | None = None) -> None:
        if len(calibration_batches) == 0:
            raise ValueError("StopWhenDead needs at least one calibration batch to probe the layers with.")
        self.calibration_batches, self.record = list(calibration_batches), record
        self.stopped: dict | None = None

    @staticmethod
    def silent_layers(model: torch.nn.Module, batches: Sequence[torch.Tensor]) -> list[str]:
        """The activation sites of ``model`` whose maximum over ``batches`` is 0 (or less)."""
        thresholds = calibrate_thresholds(model, batches, device=next(model.parameters()).device, method="max")
        return [k for k, v in thresholds.items() if float(v) <= 0.0]

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        model = getattr(pl_module, "model", pl_module)  # a ConversionModule's network, or the module itself
        if not self.silent_layers(model, self.calibration_batches[:1]):
            return
        dead = self.silent_layers(model, self.calibration_batches)
        if dead:
            self.stopped = {"epoch": trainer.current_epoch, "layers": dead}
            if self.record is not None:
                self.record["stopped_dead"] = self.stopped
            rank_zero_info(f"epoch {trainer.current_epoch}: {', '.join(dead)} never fired: training stopped")
            trainer.should_stop = True

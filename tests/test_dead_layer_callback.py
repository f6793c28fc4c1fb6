"""StopWhenDead (lightning_snn.callbacks): a training whose layer never fires again is stopped after
the epoch that killed it, with the layer named; a healthy one runs to the end."""

from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch
from lightning_snn.callbacks import StopWhenDead
from torch.utils.data import DataLoader, TensorDataset

from lightning_snn.module import ConversionModule


def _fit(module: ConversionModule, callback: StopWhenDead, x: torch.Tensor, y: torch.Tensor) -> pl.Trainer:
    pl.seed_everything(0)
    trainer = pl.Trainer(max_epochs=3, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, limit_val_batches=0, callbacks=[callback])  # fmt: skip
    trainer.fit(module, DataLoader(TensorDataset(x, y), batch_size=32))
    return trainer


def test_stop_when_dead_ends_a_training_whose_layer_never_fires(cifar_batches):
    (x, y), _ = cifar_batches
    x, y, calib = x[:64], y[:64], list(x[:64].split(32))
    kwargs = dict(arch="vgg11", width=0.0625, model_kwargs={"conv_dropout": 0.0, "fc_dropout": 0.0})

    healthy, entry = ConversionModule(**kwargs), {}
    callback = StopWhenDead(calib, entry)
    assert _fit(healthy, callback, x, y).current_epoch == 3
    assert "stopped_dead" not in entry and callback.stopped is None

    dead, entry = ConversionModule(**kwargs), {}
    convs = [m for m in dead.model.modules() if isinstance(m, torch.nn.Conv2d)]
    with torch.no_grad():  # the fourth conv's output is -1 everywhere: its ReLU never fires, no gradient revives it
        convs[3].weight.zero_()
        convs[3].bias.fill_(-1.0)
    callback = StopWhenDead(calib, entry)
    assert _fit(dead, callback, x, y).current_epoch == 1  # stopped after epoch 0
    assert entry["stopped_dead"] == callback.stopped and callback.stopped["epoch"] == 0
    # the silent sites by their names in the model (the activation after the fourth conv among them)
    assert callback.stopped["layers"] and callback.stopped["layers"] == StopWhenDead.silent_layers(dead.model, calib)


def test_stop_when_dead_needs_a_batch_to_probe_with():
    with pytest.raises(ValueError, match="at least one calibration batch"):
        StopWhenDead([])

"""Threshold ReLU: values, gradients, and the warm-up switch by epoch (also after resume)."""

from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

from lightning_snn.activations import ThresholdReLU, make_activation, set_threshold_enabled
from lightning_snn.module import ConversionModule


def test_values_clipped_and_plain():
    x = torch.tensor([-1.0, 0.0, 0.3, 1.0, 1.7, 5.0])
    act = ThresholdReLU(y_th=1.5)
    assert act(x).tolist() == pytest.approx([0.0, 0.0, 0.3, 1.0, 1.5, 1.5])
    act.set_threshold_enabled(False)
    assert act(x).tolist() == pytest.approx([0.0, 0.0, 0.3, 1.0, 1.7, 5.0])


def test_gradient_only_inside_zero_to_y_th():
    x = torch.tensor([-0.5, 0.2, 0.9, 1.2, 3.0], requires_grad=True)
    ThresholdReLU(y_th=1.0)(x).sum().backward()
    assert x.grad.tolist() == [0.0, 1.0, 1.0, 0.0, 0.0]
    x.grad = None
    ThresholdReLU(y_th=1.0, enabled=False)(x).sum().backward()
    assert x.grad.tolist() == [0.0, 1.0, 1.0, 1.0, 1.0]


def test_shifted_relu_moves_the_turning_point():
    act = ThresholdReLU(y_th=1.0, shift=0.25)
    assert act(torch.tensor([0.2, 0.5, 2.0])).tolist() == pytest.approx([0.0, 0.25, 1.0])


def test_switch_state_is_saved_in_the_state_dict():
    act = ThresholdReLU(1.0, enabled=True)
    fresh = ThresholdReLU(1.0, enabled=False)
    fresh.load_state_dict(act.state_dict())
    assert bool(fresh.threshold_enabled)
    assert fresh(torch.tensor([3.0])).item() == 1.0  # the forward follows the loaded switch


@pytest.mark.parametrize("bad", [0.0, -1.0])
def test_non_positive_y_th_is_refused(bad):
    with pytest.raises(ValueError, match="y_th"):
        ThresholdReLU(bad)
    with pytest.raises(ValueError, match="y_th"):
        ConversionModule(arch="vgg11", width=0.0625, y_th=bad)


def test_unknown_activation_is_refused():
    with pytest.raises(ValueError, match="unknown activation"):
        make_activation("gelu")
    with pytest.raises(ValueError, match="unknown activation"):
        ConversionModule(arch="vgg11", width=0.0625, activation="gelu")


class _RecordThreshold(pl.Callback):
    def __init__(self):
        self.seen = {}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        acts = [m for m in pl_module.modules() if isinstance(m, ThresholdReLU)]
        self.seen[trainer.current_epoch] = {bool(a.threshold_enabled) for a in acts}


def _fit(tmp_path, max_epochs, ckpt_path=None, activation="threshold_relu"):
    torch.manual_seed(0)
    data = TensorDataset(torch.randn(16, 3, 32, 32), torch.randint(0, 10, (16,)))
    module = ConversionModule(arch="vgg11", width=0.0625, relu_warmup_epochs=2, activation=activation)
    rec = _RecordThreshold()
    trainer = pl.Trainer(
        max_epochs=max_epochs,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
        callbacks=[rec],
        accelerator="cpu",
    )
    trainer.fit(module, DataLoader(data, batch_size=8), ckpt_path=ckpt_path)
    return trainer, rec


def test_warmup_switch_by_epoch_and_after_resume(tmp_path):
    trainer, rec = _fit(tmp_path, max_epochs=2)
    assert rec.seen == {0: {False}, 1: {False}}
    ckpt = tmp_path / "epoch2.ckpt"
    trainer.save_checkpoint(ckpt)
    _, resumed = _fit(tmp_path, max_epochs=4, ckpt_path=str(ckpt))
    assert resumed.seen == {2: {True}, 3: {True}}


def test_plain_relu_variant_never_clips(tmp_path):
    _, rec = _fit(tmp_path, max_epochs=3, activation="relu")
    assert rec.seen == {0: {False}, 1: {False}, 2: {False}}


def test_set_threshold_enabled_counts_modules():
    from lightning_snn.models import create_model

    model = create_model("vgg11", width=0.0625)
    assert set_threshold_enabled(model, True) == 10  # 8 convs + 2 hidden FC layers


def test_nan_loss_stops_training_with_a_clear_error(tmp_path):
    module = ConversionModule(arch="vgg11", width=0.0625)
    with torch.no_grad():
        module.model.classifier[-1].weight.fill_(float("nan"))
    batch = (torch.randn(4, 3, 32, 32), torch.randint(0, 10, (4,)))
    with pytest.raises(FloatingPointError, match="lower the learning rate"):
        module.training_step(batch, 0)


def test_checkpoint_of_another_architecture_is_refused(tmp_path):
    small = ConversionModule(arch="vgg11", width=0.0625)
    trainer = pl.Trainer(logger=False, enable_progress_bar=False, max_epochs=0, default_root_dir=tmp_path)
    trainer.strategy.connect(small)
    ckpt = tmp_path / "vgg11.ckpt"
    trainer.save_checkpoint(ckpt)
    with pytest.raises(ValueError, match="another architecture|arch="):
        ConversionModule.load_from_checkpoint(ckpt, arch="vgg16")
    with pytest.raises(ValueError, match="width"):
        ConversionModule.load_from_checkpoint(ckpt, width=0.125)

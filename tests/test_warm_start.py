"""Warm start (CIFAR-100 from CIFAR-10): every tensor but the output layer's, or a clear refusal."""

from __future__ import annotations

import re

import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

from lightning_snn.models import create_model
from lightning_snn.module import ConversionModule
from lightning_snn.warm_start import head_name, load_except_head


def tiny(name: str = "vgg11", num_classes: int = 10, width: float = 1 / 16, seed: int = 0, **kwargs):
    torch.manual_seed(seed)
    return create_model(name, num_classes=num_classes, width=width, **kwargs)


def assert_loaded_all_but_head(target, source, target_before, head: str):
    new, src, old = target.state_dict(), source.state_dict(), target_before
    for key in new:
        if key.startswith(head + "."):
            assert torch.equal(new[key], old[key]), f"the output layer {key} was overwritten"
        else:
            assert torch.equal(new[key], src[key]), f"{key} was not loaded"


@pytest.mark.parametrize("name", ["vgg11", "cifarnet", "resnet20"])
def test_plain_state_dict_loads_all_but_the_head(name, tmp_path):
    source = tiny(name, num_classes=10, seed=0)
    path = tmp_path / "cifar10.pt"
    torch.save(source.state_dict(), path)
    target = tiny(name, num_classes=100, seed=1)
    before = {k: v.clone() for k, v in target.state_dict().items()}
    head = head_name(target)
    assert head == {"vgg11": "classifier.7", "cifarnet": "classifier.5", "resnet20": "classifier.1"}[name]
    loaded = load_except_head(target, path)
    assert set(loaded) == {k for k in before if not k.startswith(head + ".")}
    assert_loaded_all_but_head(target, source, before, head)
    first = next(iter(before))
    assert not torch.equal(before[first], source.state_dict()[first])  # seeds differ: the check above is not vacuous


def test_lightning_checkpoint_warm_starts_a_fit(tmp_path):
    """A real Lightning .ckpt (keys prefixed ``model.``) warm-starts ConversionModule at fit."""
    source = ConversionModule(arch="vgg11", num_classes=10, width=1 / 16, relu_warmup_epochs=0)
    data = TensorDataset(torch.randn(8, 3, 32, 32), torch.randint(0, 10, (8,)))
    trainer = pl.Trainer(max_steps=1, logger=False, enable_checkpointing=False, enable_progress_bar=False)
    trainer.fit(source, DataLoader(data, batch_size=8))
    ckpt = tmp_path / "cifar10.ckpt"
    trainer.save_checkpoint(ckpt)
    assert all(k.startswith("model.") for k in torch.load(ckpt, weights_only=False)["state_dict"])

    torch.manual_seed(1)
    target = ConversionModule(arch="vgg11", num_classes=100, width=1 / 16, init_from=str(ckpt))
    before = {k: v.clone() for k, v in target.model.state_dict().items()}
    assert target.hparams.init_from == str(ckpt)  # saved with the run's hyperparameters
    target.setup("test")  # evaluation never needs the warm-start file
    assert all(torch.equal(v, target.model.state_dict()[k]) for k, v in before.items())

    data100 = TensorDataset(torch.randn(8, 3, 32, 32), torch.randint(0, 100, (8,)))
    seen = {}

    class Snapshot(pl.Callback):
        def on_fit_start(self, trainer, pl_module):
            seen.update({k: v.clone() for k, v in pl_module.model.state_dict().items()})

    trainer = pl.Trainer(
        max_steps=1, logger=False, enable_checkpointing=False, enable_progress_bar=False, callbacks=[Snapshot()]
    )
    trainer.fit(target, DataLoader(data100, batch_size=8))
    for key, value in seen.items():
        if key.endswith("threshold_enabled"):  # the warm-up switch follows this run, not the source's
            assert not value, key
        elif key.startswith("classifier.7."):
            assert torch.equal(value, before[key])  # a fresh 100-class head
            assert value.shape[0] == 100
        else:
            assert torch.equal(value, source.model.state_dict()[key]), key
    assert target.warm_started_from == str(ckpt)
    assert target.warm_start() == []  # once only


@pytest.mark.parametrize(
    ("other", "match"),
    [
        (dict(name="cifarnet"), "missing keys: .*unexpected keys"),
        (dict(width=1 / 8), "mismatched shapes: .*checkpoint \\(8, 3, 3, 3\\) vs model \\(4, 3, 3, 3\\)"),
        (dict(name="vgg13"), "unexpected keys: features"),
    ],
)
def test_another_architecture_is_refused_with_a_clear_error(other, match, tmp_path):
    path = tmp_path / "other.pt"
    torch.save(tiny(**other).state_dict(), path)
    target = tiny(num_classes=100, seed=1)
    before = {k: v.clone() for k, v in target.state_dict().items()}
    with pytest.raises(ValueError, match="another architecture") as err:
        load_except_head(target, path)
    assert "same arch and width" in str(err.value)
    assert re.search(match, str(err.value)), str(err.value)
    assert all(torch.equal(v, target.state_dict()[k]) for k, v in before.items())  # nothing half-loaded


def test_skip_head_false_loads_the_head_when_it_fits(tmp_path):
    source, path = tiny(seed=0), tmp_path / "same.pt"
    torch.save(source.state_dict(), path)
    target = tiny(seed=1)
    load_except_head(target, path, skip_head=False)
    assert all(torch.equal(v, source.state_dict()[k]) for k, v in target.state_dict().items())
    with pytest.raises(ValueError, match="mismatched shapes: classifier.7.bias"):
        load_except_head(tiny(num_classes=100), path, skip_head=False)


def test_missing_or_foreign_files_say_what_to_do(tmp_path):
    with pytest.raises(FileNotFoundError, match="init_from"):
        load_except_head(tiny(), tmp_path / "SET_ME.ckpt")
    module = ConversionModule(arch="vgg11", width=1 / 16, init_from=str(tmp_path / "SET_ME.ckpt"))
    with pytest.raises(FileNotFoundError, match="init_from"):
        module.setup("fit")
    torch.save({"epoch": 3}, tmp_path / "foreign.pt")
    with pytest.raises(ValueError, match="neither a Lightning checkpoint nor a state dict"):
        load_except_head(tiny(), tmp_path / "foreign.pt")

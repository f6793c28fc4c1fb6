"""Any model from YAML: torchvision classifiers and the user's own classes, by import path."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from lightning_snn.activations import ThresholdReLU
from lightning_snn.graph import activation_sites, prepare
from lightning_snn.module import ConversionModule
from tests.conftest import REPO
from tests.test_cli import results_files, tiny_args


def test_every_relu_call_site_of_a_torchvision_model_becomes_a_threshold_relu():
    pytest.importorskip("torchvision")
    module = ConversionModule(arch="torchvision.models.resnet18", num_classes=10, relu_warmup_epochs=0)
    acts = [m for m in module.model.modules() if isinstance(m, ThresholdReLU)]
    assert len(acts) == 17  # the stem's relu + two call sites of each BasicBlock's one self.relu
    assert not any(type(m) is nn.ReLU for m in module.model.modules())
    # the converter sees the same 17 sites, and the clip is what the model computes
    assert len(activation_sites(prepare(module.model))) == 17
    module.update_threshold(1)
    assert all(m._enabled for m in acts)


def test_a_user_class_keeps_its_weights_and_plain_relu_stays_plain():
    from tests.user_models import SmallResNet

    torch.manual_seed(0)
    relu = ConversionModule(arch="tests.user_models.SmallResNet", activation="relu", num_classes=7)
    assert isinstance(relu.model, SmallResNet) and relu.model.fc2.out_features == 7
    torch.manual_seed(0)
    thr = ConversionModule(arch="tests.user_models.SmallResNet", num_classes=7, relu_warmup_epochs=5)
    assert sum(isinstance(m, ThresholdReLU) for m in thr.model.modules()) == 5  # 3 reused + F.relu + torch.relu
    thr.model.load_state_dict(relu.model.state_dict(), strict=False)
    x = torch.randn(4, 3, 32, 32)
    relu.eval(), thr.eval()
    with torch.no_grad():  # in the warm-up the threshold ReLU is a ReLU: the same function
        assert torch.allclose(relu(x), thr(x), atol=1e-6)


@pytest.mark.parametrize(
    ("arch", "kwargs", "match"),
    [
        ("torchvision.models.nonexistent", {}, "has no class or function"),
        ("no_such_package.Net", {}, "cannot import module"),
        ("torchvision.models.resnet18", {"widht": 2}, "could not build"),
    ],
)
def test_bad_import_paths_and_arguments_are_refused(arch, kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        ConversionModule(arch=arch, model_kwargs=kwargs)


def test_width_is_refused_for_an_external_model():
    with pytest.raises(ValueError, match="width"):
        ConversionModule(arch="torchvision.models.resnet18", width=0.5)


@pytest.mark.parametrize(
    ("arch", "timesteps", "images"),
    [("torchvision.models.resnet18", "[2,8]", 16), ("tests.user_models.SmallResNet", "[8,64]", 96)],
)
def test_fit_and_convert_an_external_model_from_the_cli(cifar10_dir, tmp_path, arch, timesteps, images):
    from lightning_snn.cli import main

    args = ["fit", "-c", str(REPO / "configs" / "quickstart.yaml"), *tiny_args(cifar10_dir, tmp_path, timesteps)]
    args += [
        f"--model.arch={arch}",
        "--model.width=1.0",
        "--model.model_kwargs=null",  # the quickstart's VGG options do not apply
        "--model.relu_warmup_epochs=0",
        "--trainer.max_epochs=1",
        "--trainer.limit_train_batches=2",
        f"--snn.max_test_samples={images}",
        "--snn.calibration_samples=64",
        "--trainer.limit_val_batches=0",
        "--trainer.num_sanity_val_steps=0",
    ]
    torch.manual_seed(0)
    cli = main(args)
    assert cli.model.hparams.arch == arch
    (results,) = results_files(tmp_path)
    r = json.loads(results.read_text())
    assert set(r["snn_acc"]) == set(map(str, json.loads(timesteps)))
    assert set(r["thresholds"]) == set(activation_sites(prepare(cli.model.model)))

"""Conversion: the ANN is untouched; at large T the SNN reproduces the ANN; calibration is exact."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lightning_snn.activations import ThresholdReLU, set_threshold_enabled
from lightning_snn.conversion import OUTPUT_KEY, calibrate_thresholds, convert, neurons
from lightning_snn.models import create_model
from lightning_snn.simulation import simulate


def test_ann_parameters_and_modules_unchanged(trained_vgg, cifar_batches):
    before = {k: v.clone() for k, v in trained_vgg.state_dict().items()}
    modules_before = [type(m) for m in trained_vgg.modules()]
    thresholds = calibrate_thresholds(trained_vgg, [cifar_batches[0][0][:256]])
    snn = convert(trained_vgg, thresholds, shift="bias", timesteps=16, readout="spiking")
    simulate(snn, cifar_batches[1][0][:8], [16])
    after = trained_vgg.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert [type(m) for m in trained_vgg.modules()] == modules_before
    assert not trained_vgg.training


def test_every_activation_becomes_an_if_neuron_with_its_threshold(trained_vgg, cifar_batches):
    thresholds = calibrate_thresholds(trained_vgg, [cifar_batches[0][0][:256]])
    snn = convert(trained_vgg, thresholds, shift="membrane")
    assert not any(isinstance(m, ThresholdReLU) for m in snn.modules())
    layer_thresholds = [v for k, v in thresholds.items() if k != OUTPUT_KEY]
    assert [n.v_threshold.item() for n in neurons(snn)] == pytest.approx(layer_thresholds)
    assert all(n.v_init.item() == pytest.approx(n.v_threshold.item() / 2) for n in neurons(snn))


def test_large_T_snn_reproduces_the_ann(trained_vgg, cifar_batches):
    (train_x, _), (test_x, test_y) = cifar_batches
    thresholds = calibrate_thresholds(trained_vgg, [train_x[i : i + 512] for i in range(0, 4096, 512)])
    x = test_x[:256]
    with torch.no_grad():
        ann = trained_vgg(x)
    snn = convert(trained_vgg, thresholds, shift="membrane")
    out = simulate(snn, x, [32, 128, 512])
    errors = [(o - ann).abs().mean().item() for o in out]
    assert errors[0] > errors[1] > errors[2], errors  # the rate code converges as T grows
    agreement = (out[-1].argmax(1) == ann.argmax(1)).float().mean().item()
    assert agreement >= 0.99, agreement
    assert (ann.argmax(1) == test_y[:256]).float().mean() > 0.25  # the net did learn something


def test_spiking_readout_predicts_like_the_ann_at_large_T(trained_vgg, cifar_batches):
    (train_x, _), (test_x, _) = cifar_batches
    thresholds = calibrate_thresholds(trained_vgg, [train_x[:1024]])
    snn = convert(trained_vgg, thresholds, shift="membrane", readout="spiking")
    x = test_x[:128]
    with torch.no_grad():
        ann = trained_vgg(x)
    out = simulate(snn, x, [512])[0]
    assert (out.argmax(1) == ann.argmax(1)).float().mean() >= 0.9


def test_thresholds_equal_the_true_maxima():
    torch.manual_seed(0)
    model = create_model("vgg11", width=0.0625).eval()
    set_threshold_enabled(model, False)  # unclipped, so maxima differ per layer
    x = torch.randn(64, 3, 32, 32)
    thresholds = calibrate_thresholds(model, [x[:20], x[20:50], x[50:]])
    # true maxima: run the layers by hand on the whole set at once
    expected, h = [], x
    with torch.no_grad():
        for layer in list(model.features) + list(model.classifier):
            h = layer(h)
            if isinstance(layer, ThresholdReLU):
                expected.append(h.max().item())
    assert [v for k, v in thresholds.items() if k != OUTPUT_KEY] == pytest.approx(expected, rel=1e-6)
    assert thresholds[OUTPUT_KEY] == pytest.approx(h.max().item(), rel=1e-6)


def test_calibration_runs_in_eval_mode_and_restores_train_mode():
    torch.manual_seed(0)
    model = create_model("vgg11", width=0.0625, conv_dropout=0.5, fc_dropout=0.5).train()
    x = torch.randn(16, 3, 32, 32)
    a = calibrate_thresholds(model, [x])
    b = calibrate_thresholds(model, [x])
    assert a == b  # no dropout noise
    assert model.training


def test_bias_mode_needs_T_and_unknown_modes_are_refused(trained_vgg):
    th = {n: 1.0 for n, m in trained_vgg.named_modules() if isinstance(m, ThresholdReLU)}
    with pytest.raises(ValueError, match="timesteps"):
        convert(trained_vgg, th, shift="bias")
    with pytest.raises(ValueError, match="shift"):
        convert(trained_vgg, th, shift="half")
    with pytest.raises(ValueError, match="readout"):
        convert(trained_vgg, th, readout="votes")


def test_thresholds_of_another_architecture_are_refused(trained_vgg):
    other = create_model("vgg16", width=0.0625)
    th = calibrate_thresholds(other, [torch.randn(4, 3, 32, 32)])
    with pytest.raises(ValueError, match="another architecture"):
        convert(trained_vgg, th)


def test_plain_nn_relu_models_convert_too():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 16), nn.ReLU(), nn.Linear(16, 3)).eval()
    x = torch.rand(32, 12)
    snn = convert(model, calibrate_thresholds(model, [x]), shift="membrane")
    with torch.no_grad():
        ann = model(x)
    assert torch.allclose(simulate(snn, x, [4096])[0], ann, atol=5e-3)

"""The converted SNN as a type: convert() says what it built (body, readout, shift, T, thresholds)."""

import pytest
import torch
import torch.fx as fx
from torch import nn

from lightning_snn.conversion import OUTPUT_KEY, calibrate_thresholds, convert
from lightning_snn.neurons import IFNeuron
from lightning_snn.simulation import SpikingEvaluator, simulate
from lightning_snn.snn import ConvertedSNN


def small():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 5)).eval()
    x = torch.rand(8, 3, 6, 6)
    return model, x, calibrate_thresholds(model, [x])


def test_convert_returns_a_converted_snn_that_carries_what_it_is():
    model, x, th = small()
    snn = convert(model, th, shift="membrane", timesteps=24)  # T is ignored: the membrane shift holds at every T
    assert isinstance(snn, ConvertedSNN) and isinstance(snn.body, fx.GraphModule)
    assert (snn.shift, snn.timesteps, snn.readout, snn.neuron) == ("membrane", None, "analog", "if")
    assert snn.thresholds == {"1": th["1"]} and snn.readout_neuron is None
    assert list(snn.sites()) == ["1"] and isinstance(snn.sites()["1"], IFNeuron)
    assert snn.valid_at(3) and snn.valid_at(512)

    bias = convert(model, th, shift="bias", timesteps=16, readout="spiking")
    assert (bias.shift, bias.timesteps, bias.readout) == ("bias", 16, "spiking")
    assert bias.thresholds == {"1": th["1"], OUTPUT_KEY: th[OUTPUT_KEY]}
    assert bias.valid_at(16) and not bias.valid_at(32)
    assert "readout" not in bias.sites() and bias.readout_neuron.name == OUTPUT_KEY
    out = simulate(bias, x, [16])[0]  # the readout neuron runs after the body: spikes of amplitude max logit
    assert torch.all((out * 16 / th[OUTPUT_KEY] - (out * 16 / th[OUTPUT_KEY]).round()).abs() < 1e-4)


def test_a_shift_mode_and_its_T_must_agree():
    model, _, th = small()
    body = convert(model, th).body
    with pytest.raises(ValueError, match="bias-shift SNN is built for one T"):
        ConvertedSNN(body, shift="bias")
    with pytest.raises(ValueError, match="bias-shift SNN is built for one T"):
        ConvertedSNN(body, shift="membrane", timesteps=8)


def test_the_evaluator_keeps_each_snn_with_its_own_T_no_magic_key():
    model, x, th = small()
    one = SpikingEvaluator(model, th, [4, 8], shift="membrane")
    assert len(one.snns) == 1 and one.snn_at(4) is one.snn_at(8) is one.snns[0]
    per_t = SpikingEvaluator(model, th, [4, 8], shift="bias")
    assert [s.timesteps for s in per_t.snns] == [4, 8] and per_t.snn_at(8).timesteps == 8
    with pytest.raises(ValueError, match="no SNN for T = 16"):
        per_t.snn_at(16)
    expected = torch.stack([simulate(per_t.snn_at(t), x, [t])[0] for t in (4, 8)])
    assert torch.equal(per_t(x), expected)

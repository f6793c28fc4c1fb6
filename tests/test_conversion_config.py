"""ConversionConfig: the settings of a conversion, checked once; the model prepared once per conversion."""

from __future__ import annotations

import dataclasses
import sys

import pytest
import torch
from torch import nn

import lightning_snn.graph as graph
import lightning_snn.simulation as simulation
from lightning_snn.calibration import calibrate_thresholds
from lightning_snn.conversion import convert
from lightning_snn.conversion_config import ConversionConfig
from lightning_snn.diagnostics import DiagnosticsProbe
from lightning_snn.evaluation import evaluate_conversion, validate_conversion_settings
from lightning_snn.graph import ConversionError
from lightning_snn.simulation import SpikingEvaluator, simulate


def small_cnn(seed: int = 0) -> nn.Module:
    """conv -> BN -> ReLU -> conv -> ReLU -> max-pool -> linear: batch norm to fold, a gated
    spiking max-pool, two sites; running statistics set so that the folding is not an identity."""
    torch.manual_seed(seed)
    model = nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.Conv2d(4, 4, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),  # after the second site: it pools spikes (the first site's input is analog)
        nn.Flatten(),
        nn.Linear(4 * 4 * 4, 3),
    )
    with torch.no_grad():
        model[1].running_mean.uniform_(-0.2, 0.2)
        model[1].running_var.uniform_(0.5, 2.0)
    return model.eval()


def batches(n: int = 3, batch: int = 4, seed: int = 1) -> list[tuple[torch.Tensor, torch.Tensor]]:
    gen = torch.Generator().manual_seed(seed)
    return [(torch.rand(batch, 2, 8, 8, generator=gen), torch.randint(0, 3, (batch,), generator=gen)) for _ in range(n)]


def count_calls(monkeypatch, name: str, original) -> list[int]:
    """Wrap ``original`` with a counter in every lightning_snn module that imported it as ``name``."""
    calls = [0]

    def counted(*args, **kwargs):
        calls[0] += 1
        return original(*args, **kwargs)

    modules = [m for n, m in list(sys.modules.items()) if n.startswith("lightning_snn") and m is not None]
    patched = [m for m in modules if getattr(m, name, None) is original]
    assert graph in patched or simulation in patched  # the counter sits where the function lives, at least
    for module in patched:
        monkeypatch.setattr(module, name, counted)
    return calls


# ---- checked once, at the start ------------------------------------------------------------------
def test_config_is_checked_when_built_with_the_messages_of_the_checks():
    with pytest.raises(ValueError, match="whole numbers of steps"):
        ConversionConfig([16, 2.5])
    with pytest.raises(ValueError, match="unknown shift mode"):
        ConversionConfig([16], shift="half")
    with pytest.raises(ValueError, match="unknown readout"):
        ConversionConfig([16], readout="rate")
    with pytest.raises(ValueError, match="unknown calibration method"):
        ConversionConfig([16], calibration="mean")
    with pytest.raises(ValueError, match="correction_timesteps"):
        ConversionConfig([16], correction="light")
    with pytest.raises(ValueError, match="unknown neuron"):
        ConversionConfig([16], neuron="lif")
    with pytest.raises(ValueError, match="time_chunk must be a positive int"):
        ConversionConfig([16], time_chunk=0)
    with pytest.raises(TypeError, match="diagnostics must be true or false"):
        ConversionConfig([16], diagnostics="yes")
    with pytest.raises(ValueError, match="batch_size"):
        ConversionConfig([16], batch_size=0)
    with pytest.raises(ValueError, match="reaches beyond the simulation"):
        ConversionConfig([16, 32], average_over=[20, 40])


def test_config_is_frozen_and_normalised_once():
    c = ConversionConfig([32, 8, 8, 16], shift="constant", time_chunk="4", average_over=[10, 12])
    assert c.timesteps == (8, 16, 32)
    assert c.time_chunk == 4
    assert c.average_over == (10, 12)
    assert c.read_timesteps == (8, 10, 11, 12, 16, 32)
    assert c.constant_shift == 1 / 1600  # the paper's A.2 unless set
    assert c.neuron_type.kind == "if"
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.shift = "bias"
    assert validate_conversion_settings([32, 8], "membrane", "analog", "auto") == [8, 32]


def test_check_model_refuses_what_cannot_be_converted_and_negative_spikes_into_a_max_pool():
    with pytest.raises(ConversionError, match="negative"):
        ConversionConfig([4], neuron="signed").check_model(small_cnn())
    with pytest.raises(ConversionError):
        ConversionConfig([4]).check_model(nn.Sequential(nn.Linear(4, 4), nn.Hardswish()))


# ---- prepare once per conversion; validate_timesteps once per evaluation -------------------------
@pytest.mark.parametrize(
    "settings",
    [
        dict(shift="membrane", diagnostics=True),  # the callback's default run
        dict(shift="bias", diagnostics=True),  # one SNN per T
        dict(shift="membrane", correction="light", correction_timesteps=4, calibration="percentile"),
        dict(shift="constant", average_over=[2, 4]),
    ],
    ids=["default", "bias", "correction", "average"],
)
def test_one_prepare_and_one_timesteps_check_per_evaluation(monkeypatch, settings):
    prepares = count_calls(monkeypatch, "prepare", graph.prepare)
    checks = count_calls(monkeypatch, "validate_timesteps", simulation.validate_timesteps)
    test = batches(3)
    report = evaluate_conversion(small_cnn(), [x for x, _ in test], test, [2, 4, 8], **settings)
    assert prepares[0] == 1  # before: 3 (default run), 5 here in bias mode (8 with 6 T)
    assert checks[0] == 1  # before: once more in every batch's simulation, and in the probe and correction
    assert report.num_test_images == 12


def test_spiking_evaluator_prepares_once_for_every_t_of_the_bias_shift(monkeypatch):
    model, (x, _) = small_cnn(), batches(1)[0]
    thresholds = calibrate_thresholds(model, [x])
    prepares = count_calls(monkeypatch, "prepare", graph.prepare)
    evaluator = SpikingEvaluator(model, thresholds, [2, 4, 8, 16], shift="bias")
    assert prepares[0] == 1
    assert [snn.timesteps for snn in evaluator.snns] == [2, 4, 8, 16]
    # the SNNs share no module: each is its own copy of the one prepared graph
    ids = [{id(p) for p in snn.parameters()} for snn in evaluator.snns]
    assert all(a.isdisjoint(b) for i, a in enumerate(ids) for b in ids[i + 1 :])


def test_copies_of_the_prepared_graph_give_convert_s_snns_exactly():
    """The evaluator converts copies of one prepared graph; convert() prepares the model anew for
    every SNN: the same graph and weights, so the same outputs bit for bit, at every T."""
    model, test = small_cnn(), batches(2)
    thresholds = calibrate_thresholds(model, [x for x, _ in test])
    for shift in ("bias", "membrane"):
        evaluator = SpikingEvaluator(model, thresholds, [3, 8], shift=shift, time_chunk=2)
        for x, _ in test:
            out = evaluator(x)
            for i, t in enumerate([3, 8]):
                snn = convert(model, thresholds, shift, t if shift == "bias" else None)
                assert torch.equal(out[i], simulate(snn, x, [t], time_chunk=2)[0])


def test_diagnostics_from_a_config_equal_the_public_probe():
    model, test = small_cnn(), batches(2)
    thresholds = calibrate_thresholds(model, [x for x, _ in test])
    config = ConversionConfig([2, 4], diagnostics=True)
    evaluator = SpikingEvaluator.from_config(config.check_model(model), thresholds, config, "cpu")
    probe = DiagnosticsProbe.from_config(evaluator.snns, config.check_model(model), config)
    public = DiagnosticsProbe(evaluator.snns, model, [4, 2])
    x = test[0][0]
    (out_a, diag_a), (out_b, diag_b) = probe(x), public(x)
    assert torch.equal(out_a, out_b)
    assert diag_a.to_json() == diag_b.to_json()


@pytest.mark.parametrize("shift", ["membrane", "bias"])
def test_the_callback_prepares_once_to_check_before_training_and_once_per_conversion(tmp_path, monkeypatch, shift):
    from lightning_snn.callbacks.snn_conversion import SNNConversion

    from tests.test_callback import fake_trainer, tiny_module

    callback = SNNConversion(timesteps=[2, 4, 8, 16], shift=shift)  # diagnostics on: the default
    trainer, module = fake_trainer(tmp_path), tiny_module()
    prepares = count_calls(monkeypatch, "prepare", graph.prepare)
    checks = count_calls(monkeypatch, "validate_timesteps", simulation.validate_timesteps)
    callback.setup(trainer, module, stage="fit")
    assert prepares[0] == 1  # the model checked before training (the trained weights are prepared later)
    callback.evaluate(trainer, module, stage="fit")
    assert prepares[0] == 2  # before: 1 + 3 (calibration, convert, probe); bias with these 4 T: 1 + 6
    assert checks[0] == 0  # checked once, when the callback was built
    assert callback.results["snn_acc"].keys() == {"2", "4", "8", "16"}

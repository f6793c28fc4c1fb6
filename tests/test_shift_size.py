"""The shift's size (``shift_scale``, the constant shift) and the accuracy averaged over a range of T.

Against theory: scale 0 is no shift and scale 1 the paper's shift, bit for bit; the constant shift
``f V_th`` per step is the bias shift ``V_th / (2T)`` of ``T = 1 / (2 f)``, and since it does not
depend on T one simulation gives the curve that per-T simulations give; the average over a range
is the mean and standard deviation of the per-T accuracies. Bad settings fail before any work.
"""

from __future__ import annotations

import math
import statistics

import pytest
import torch
from lightning_snn.callbacks.snn_conversion import SNNConversion

from lightning_snn.activations import set_threshold_enabled
from lightning_snn.conversion import calibrate_thresholds, convert, neurons
from lightning_snn.diagnostics import DiagnosticsProbe, quantisation_factor
from lightning_snn.evaluation import evaluate_conversion, validate_conversion_settings
from lightning_snn.models import create_model
from lightning_snn.shift import PAPER_CONSTANT_SHIFT
from lightning_snn.simulation import simulate


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    model = create_model("vgg11", width=0.0625, num_classes=4).eval()
    set_threshold_enabled(model, True)
    x = torch.rand(8, 3, 32, 32)
    return model, x, calibrate_thresholds(model, [x])


def run(model, thresholds, x, ts, **kwargs) -> torch.Tensor:
    return simulate(convert(model, thresholds, **kwargs), x, ts, time_chunk=1)


@pytest.mark.parametrize("shift", ["membrane", "bias"])
def test_scale_0_is_no_shift_and_scale_1_the_papers_shift_bit_for_bit(net, shift):
    model, x, thresholds = net
    t = 12
    none = run(model, thresholds, x, [t], shift="none")
    paper = run(model, thresholds, x, [t], shift=shift, timesteps=t)
    assert torch.equal(run(model, thresholds, x, [t], shift=shift, timesteps=t, shift_scale=0.0), none)
    assert torch.equal(run(model, thresholds, x, [t], shift=shift, timesteps=t, shift_scale=1.0), paper)
    assert not torch.equal(paper, none)  # the shift does something here: the two checks can fail


def test_the_scale_multiplies_the_membrane_and_bias_shift(net):
    model, _, thresholds = net
    for scale in (0.25, 0.5, 1.5, 2.0):  # dyadic: the products are exact
        for n in neurons(convert(model, thresholds, "membrane", shift_scale=scale)):
            assert torch.equal(n.v_init, n.v_threshold / 2 * scale) and not n.bias_current.any()
        for n in neurons(convert(model, thresholds, "bias", 8, shift_scale=scale)):
            assert torch.equal(n.bias_current, n.v_threshold / 16 * scale) and not n.v_init.any()


def test_a_constant_shift_is_the_bias_shift_of_one_T_and_its_curve_is_one_simulation(net):
    model, x, thresholds = net
    # f V_th per step = V_th / (2T) at T = 1 / (2f): the same SNN (f = 1/32 is exact in binary)
    assert torch.equal(
        run(model, thresholds, x, [16], shift="constant", shift_fraction=1 / 32),
        run(model, thresholds, x, [16], shift="bias", timesteps=16),
    )
    # T-independent: one simulation to T_max equals a run to each T
    snn = convert(model, thresholds, "constant")  # default: the paper's V_th / 1600
    # (computed in float64, stored in float32: equal up to float32 rounding)
    assert all(torch.allclose(n.bias_current, n.v_threshold * PAPER_CONSTANT_SHIFT, rtol=1e-6) for n in neurons(snn))
    ts, x = [3, 10, 25], x[:4]
    curve = simulate(snn, x, ts, time_chunk=1)
    for i, t in enumerate(ts):
        assert torch.equal(curve[i], simulate(snn, x, [t], time_chunk=1)[0]), t
    assert torch.allclose(simulate(snn, x, ts, time_chunk=7), curve, atol=1e-5)  # chunking: float sums only


def test_the_average_over_a_range_is_the_mean_and_std_of_the_per_T_accuracies(net):
    model, x, thresholds = net
    with torch.no_grad():
        y = model(x).argmax(1)
    y[::2] = (y[::2] + 1) % 4  # half the labels wrong for the ANN: accuracies away from 0 and 100
    test, calib = [(x[:5], y[:5]), (x[5:], y[5:])], [x]
    kw = {"shift": "constant", "shift_fraction": 1 / 64, "time_chunk": 4}
    report = evaluate_conversion(model, calib, test, [4, 9, 20], average_over=[6, 20], **kw)
    every = evaluate_conversion(model, calib, test, list(range(6, 21)), **kw)
    plain = evaluate_conversion(model, calib, test, [4, 9, 20], **kw)
    assert report.snn_correct == plain.snn_correct  # the report's own T are untouched
    assert report.average.snn_correct == every.snn_correct
    accs = [every.snn_acc[t] for t in range(6, 21)]
    assert len(set(accs)) > 1  # a spread to measure
    assert report.average.mean == pytest.approx(statistics.fmean(accs), abs=1e-12)
    assert report.average.std == pytest.approx(statistics.pstdev(accs), abs=1e-12)
    data = report.to_json()["average_over"]
    assert (data["first"], data["last"], data["n_timesteps"]) == (6, 20, 15)
    assert data["mean_acc"] == pytest.approx(statistics.fmean(accs), abs=1e-6)
    assert data["mean_conversion_loss"] == pytest.approx(report.ann_acc - statistics.fmean(accs), abs=1e-6)
    assert "T = 6..20" in report.table()
    # with the diagnostics: the same numbers, diagnostics at the report's T only
    diag = evaluate_conversion(model, calib, test, [4, 9, 20], average_over=[6, 20], diagnostics=True, **kw)
    assert diag.average.snn_correct == report.average.snn_correct and diag.snn_correct == report.snn_correct
    assert diag.diagnostics.timesteps == [4, 9, 20]


def test_the_error_model_follows_the_shifts_size(net):
    model, x, thresholds = net
    assert [quantisation_factor(o) for o in (0.0, 0.25, 0.5, 1.0, 1.5)] == [0.5, 0.3125, 0.25, 0.5, 1.0]
    ts = [4, 16, 40]
    for snn, offsets in (
        (convert(model, thresholds, "none"), [0.0] * 3),
        (convert(model, thresholds, "membrane"), [0.5] * 3),
        (convert(model, thresholds, "membrane", shift_scale=0.5), [0.25] * 3),
        (convert(model, thresholds, "constant", shift_fraction=1 / 64), [t / 64 for t in ts]),
    ):
        probe = DiagnosticsProbe(snn, model, ts)
        expected = torch.tensor([[quantisation_factor(o) for o in offsets]] * len(probe.layers), dtype=torch.float64)
        assert torch.allclose(probe.quant_factor, expected), offsets
    bias = {t: convert(model, thresholds, "bias", t, shift_scale=1.5) for t in ts}  # o = 3/4 at every T
    assert torch.allclose(
        DiagnosticsProbe(bias, model, ts).quant_factor, torch.full((10, 3), 0.3125, dtype=torch.float64)
    )


BAD = [
    ({"shift": "membrane", "shift_scale": -0.5}, ValueError, ">= 0"),
    ({"shift": "membrane", "shift_scale": math.nan}, ValueError, ">= 0"),
    ({"shift": "bias", "shift_scale": True}, TypeError, "number"),
    ({"shift": "none", "shift_scale": 0.5}, ValueError, "none to scale"),
    ({"shift": "constant", "shift_scale": 2.0}, ValueError, "shift_fraction"),
    ({"shift": "membrane", "shift_fraction": 0.001}, ValueError, "shift: constant"),
    ({"shift": "constant", "shift_fraction": 1.0}, ValueError, r"\[0, 1\)"),
    ({"shift": "constant", "shift_fraction": -1e-3}, ValueError, r"\[0, 1\)"),
    ({"shift": "upward"}, ValueError, "unknown shift"),
    ({"shift": "none", "average_over": [400, 600]}, ValueError, "add 600 to timesteps"),
    ({"shift": "bias", "average_over": [400, 512]}, ValueError, "one SNN per T"),
    ({"shift": "none", "average_over": [500, 400]}, ValueError, "first <= last"),
    ({"shift": "none", "average_over": [0, 4]}, ValueError, "first <= last"),
    ({"shift": "none", "average_over": [400]}, TypeError, r"\[first T, last T\]"),
    ({"shift": "none", "average_over": [400.5, 500]}, TypeError, "whole numbers"),
]


@pytest.mark.parametrize(("settings", "error", "match"), BAD)
def test_bad_settings_are_refused_before_any_work(settings, error, match):
    settings = dict(settings)
    shift = settings.pop("shift")
    with pytest.raises(error, match=match):
        validate_conversion_settings([16, 512], shift, "analog", "auto", **settings)
    with pytest.raises(error, match=match):  # the callback refuses them in __init__, before the Trainer exists
        SNNConversion(timesteps=[16, 512], shift=shift, **settings)


def test_good_settings_pass():
    assert validate_conversion_settings([16, 600], "constant", "analog", 1, average_over=[400, 600]) == [16, 600]
    SNNConversion(timesteps=[600], shift="membrane", shift_scale=0.0, average_over=[400, 600])
    SNNConversion(timesteps=[16], shift="constant", shift_fraction=0.0)

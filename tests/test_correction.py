"""The light bias correction (SNN Calibration, Li et al. 2021) and short T down to 1."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lightning_snn.activations import ThresholdReLU
from lightning_snn.conversion import calibrate_thresholds, convert
from lightning_snn.correction import channel_errors, correct_bias, snn_channel_means, spiking_sites
from lightning_snn.reference import simulate_reference
from lightning_snn.simulation import simulate


def vgg_like(seed: int = 0) -> nn.Module:
    """A small threshold-ReLU CNN; at T <= 8 its SNN's rates are well off the ANN's."""
    torch.manual_seed(seed)
    layers = [
        nn.Conv2d(3, 12, 3, padding=1),
        ThresholdReLU(1.0),
        nn.Conv2d(12, 12, 3, padding=1),
        ThresholdReLU(1.0),
        nn.AvgPool2d(2),
        nn.Conv2d(12, 16, 3, padding=1),
        ThresholdReLU(1.0),
        nn.AvgPool2d(2),
        nn.Flatten(),
        nn.Linear(16 * 2 * 2, 24),
        ThresholdReLU(1.0),
        nn.Linear(24, 4),
    ]
    model = nn.Sequential(*layers)
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(m.weight)
            nn.init.uniform_(m.bias, -0.05, 0.15)
    return model.eval()


def images(n: int, seed: int) -> torch.Tensor:
    return torch.rand(n, 3, 8, 8, generator=torch.Generator().manual_seed(seed)) * 2 - 0.5


def mean_abs_error(errors: dict[str, torch.Tensor], i: int = 0) -> dict[str, float]:
    return {n: e[i].abs().mean().item() for n, e in errors.items()}


@pytest.mark.parametrize("target", [1, 4])
def test_correction_reduces_the_mean_channel_error_at_the_target_T_on_held_out_images(target):
    model = vgg_like()
    calib, held_out = list(images(192, 1).split(64)), list(images(192, 2).split(64))
    snn = convert(model, calibrate_thresholds(model, calib), shift="membrane")
    before = mean_abs_error(channel_errors(model, snn, held_out, [target]))
    correct_bias(model, snn, calib, target)
    after = mean_abs_error(channel_errors(model, snn, held_out, [target]))
    assert sum(after.values()) < 0.8 * sum(before.values()), (before, after)
    for name in before:  # every layer, not just on average
        assert after[name] < before[name], (name, before, after)


def test_the_added_current_is_the_measured_error_and_more_rounds_cancel_more():
    """The first layer's input is a constant current, so a bias ``d`` moves every neuron that is
    neither silent nor saturated by about ``T d / V_th`` spikes: one round adds exactly the
    measured mean error and leaves the part the silent neurons do not follow; each further
    round removes part of the rest (on the calibration images themselves)."""
    model = vgg_like()
    calib = list(images(96, 1).split(48))
    thresholds = calibrate_thresholds(model, calib)
    snn = convert(model, thresholds, shift="membrane")
    before = channel_errors(model, snn, calib, [4])["1"][0]
    added = correct_bias(model, snn, calib, 4)
    torch.testing.assert_close(added["1"], before.float())
    remaining = [before.abs().mean().item()]
    for rounds in (1, 3):
        snn = convert(model, thresholds, shift="membrane")
        correct_bias(model, snn, calib, 4, iterations=rounds)
        remaining.append(channel_errors(model, snn, calib, [4])["1"][0].abs().mean().item())
    assert remaining[1] < 0.8 * remaining[0] and remaining[2] < 0.7 * remaining[1], remaining


def test_the_correction_adds_to_the_existing_current_and_keeps_the_curve_one_pass():
    model = vgg_like()
    with torch.no_grad():
        model[1].shift = 0.1  # the source ANN's own shift is a bias current of -0.1
    calib = list(images(64, 1).split(32))
    snn = convert(model, calibrate_thresholds(model, calib), shift="membrane")
    old = {n: m.bias_current.clone() for n, m in spiking_sites(snn).items()}
    added = correct_bias(model, snn, calib, 2)
    for name, neuron in spiking_sites(snn).items():
        torch.testing.assert_close(neuron.bias_current, old[name] + added[name])
    x = images(16, 3)
    curve = simulate(snn, x, [1, 2, 8])  # one pass; each T must equal its own run
    for i, t in enumerate([1, 2, 8]):
        torch.testing.assert_close(curve[i], simulate(snn, x, [t])[0])


def test_rates_at_every_T_come_from_one_simulation():
    model = vgg_like()
    snn = convert(model, calibrate_thresholds(model, [images(32, 1)]), shift="membrane")
    x = images(8, 4)
    curve = snn_channel_means(snn, [x], [1, 3, 8])
    for i, t in enumerate([1, 3, 8]):
        alone = snn_channel_means(snn, [x], [t])
        for name in curve:
            torch.testing.assert_close(curve[name][i], alone[name][0])


@pytest.mark.parametrize("time_chunk", [1, 3, "auto"])
def test_T_equal_1_works_in_the_one_pass_curve(time_chunk):
    """T = 1 is one step: the same as the per-step reference, and as a run to T = 1 alone."""
    model = vgg_like()
    snn = convert(model, calibrate_thresholds(model, [images(32, 1)]), shift="membrane")
    x = images(8, 5)
    curve = simulate(snn, x, [1, 2, 4, 8, 16, 32, 64], time_chunk=time_chunk)
    assert curve.shape[0] == 7
    torch.testing.assert_close(curve[0], simulate_reference(snn, x, 1), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(curve[2], simulate_reference(snn, x, 4), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(curve[0], simulate(snn, x, [1], time_chunk=time_chunk)[0])


def test_bad_inputs_are_refused():
    model = vgg_like()
    calib = [images(8, 1)]
    snn = convert(model, calibrate_thresholds(model, calib))
    with pytest.raises(ValueError, match="generator or iterator"):
        correct_bias(model, snn, iter(calib), 4)
    with pytest.raises(ValueError):
        correct_bias(model, snn, calib, 0)
    with pytest.raises(ValueError, match="iterations"):
        correct_bias(model, snn, calib, 4, iterations=0)
    other = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 36, 2))
    with pytest.raises(ValueError, match="sites"):
        correct_bias(other, snn, calib, 4)


# ---- through evaluate_conversion and the callback's settings ---------------------------------
def test_evaluate_conversion_with_percentile_calibration_and_light_correction():
    from lightning_snn.evaluation import evaluate_conversion

    model = vgg_like()
    calib = list(images(96, 1).split(32))
    x = images(64, 2)
    with torch.no_grad():
        y = model(x).argmax(1)
    test = list(zip(x.split(32), y.split(32)))
    plain = evaluate_conversion(model, calib, test, [1, 4, 16], calibration="percentile", percentile=99.9)
    fixed = evaluate_conversion(
        model, calib, test, [1, 4, 16], calibration="percentile", percentile=99.9, correction="light",
        correction_timesteps=4,
    )  # fmt: skip
    assert fixed.calibration_images == plain.calibration_images == 96  # one pass's images, not all passes'
    assert fixed.thresholds == plain.thresholds
    data = fixed.to_json()
    assert (data["calibration"], data["percentile"], data["correction"], data["correction_timesteps"]) == (
        "percentile",
        99.9,
        "light",
        4,
    )
    assert fixed.seconds["correction"] > 0 and "correction" in plain.seconds


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"correction": "heavy"}, "unknown correction"),
        ({"correction": "light"}, "correction_timesteps"),
        ({"correction": "light", "correction_timesteps": 0}, "correction_timesteps"),
        ({"correction": "light", "correction_timesteps": 4, "shift": "bias"}, "membrane"),
        ({"calibration": "mean"}, "calibration method"),
        ({"calibration": "percentile", "percentile": 0}, "percentile"),
    ],
)
def test_callback_refuses_bad_calibration_and_correction_settings(kwargs, match):
    from lightning_snn.callbacks.snn_conversion import SNNConversion

    with pytest.raises(ValueError, match=match):
        SNNConversion(timesteps=[1, 4], **kwargs)


def test_callback_accepts_the_low_latency_settings():
    from lightning_snn.callbacks.snn_conversion import SNNConversion

    cb = SNNConversion(timesteps=[1, 2, 4], calibration="lambda", correction="light", correction_timesteps=4)
    assert (cb.calibration, cb.correction, cb.correction_timesteps) == ("lambda", "light", 4)


def test_one_shot_calibration_iterators_are_refused_when_read_twice():
    from lightning_snn.evaluation import evaluate_conversion

    model = vgg_like()
    test = [(images(8, 2), torch.zeros(8, dtype=torch.long))]
    with pytest.raises(ValueError, match="more than once"):
        evaluate_conversion(model, iter([images(8, 1)]), test, [4], correction="light", correction_timesteps=4)

"""evaluate_conversion: the one evaluation that the callback, the benchmarks and API users call."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lightning_snn.activations import ThresholdReLU
from lightning_snn.evaluation import (
    ConversionReport,
    evaluate_conversion,
    threshold_clip_state,
    validate_time_chunk,
)

#: The keys snn_results.json had before the evaluation moved here (the tests and users read them).
RESULT_KEYS = {
    "shift",
    "readout",
    "time_chunk",
    "num_test_images",
    "calibration_images",
    "ann_acc",
    "snn_acc",
    "conversion_loss",
    "thresholds",
    "output_threshold",
    "seconds",
}


def binary_hidden_net(d: int = 16, classes: int = 5, seed: int = 0) -> nn.Module:
    """identity -> threshold ReLU (clip 1) -> linear. On inputs in {0, 1} every hidden activation
    is 0 or the threshold, which an IF neuron with the V_th/2 membrane shift reproduces exactly at
    every T (0: v stays V_th/2 and never fires; V_th: it fires at every step)."""
    torch.manual_seed(seed)
    first = nn.Linear(d, d)
    with torch.no_grad():
        first.weight.copy_(torch.eye(d))
        first.bias.zero_()
    return nn.Sequential(first, ThresholdReLU(1.0), nn.Linear(d, classes))


def binary_batches(n: int, d: int = 16, classes: int = 5, batch: int = 16, seed: int = 1):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 2, (n, d), generator=gen).float()
    y = torch.randint(0, classes, (n,), generator=gen)
    return list(zip(x.split(batch), y.split(batch)))


def test_exact_hidden_rates_give_the_anns_accuracy_at_every_T():
    model = binary_hidden_net()
    test = binary_batches(96)
    with torch.no_grad():  # make half the labels the ANN's own predictions: accuracy well inside (0, 100)
        test = [(x, torch.where(torch.arange(len(y)) % 2 == 0, model(x).argmax(1), y)) for x, y in test]
    ann_correct = sum(int((model(x).argmax(1) == y).sum()) for x, y in test)
    report = evaluate_conversion(model, [x for x, _ in test], test, [1, 3, 8], shift="membrane")
    assert report.ann_correct == ann_correct
    assert 0 < report.ann_acc < 100
    assert report.ann_acc == pytest.approx(100.0 * ann_correct / 96)
    assert report.snn_correct == {1: ann_correct, 3: ann_correct, 8: ann_correct}
    assert all(loss == 0 for loss in report.conversion_loss.values())
    assert set(report.thresholds.values()) == {1.0}  # max activation of a {0, 1} layer with some ones


def test_counts_settings_and_json():
    model = binary_hidden_net()
    calibration = [x for x, _ in binary_batches(40, seed=2)]
    report = evaluate_conversion(model, calibration, binary_batches(50), [8, 2, 8], shift="none", time_chunk=3)
    assert isinstance(report, ConversionReport)
    assert report.timesteps == [2, 8]
    assert report.num_test_images == 50 and report.calibration_images == 40
    for t in report.timesteps:
        assert report.conversion_loss[t] == pytest.approx(report.ann_acc - report.snn_acc[t])
        assert report.snn_acc[t] == pytest.approx(100.0 * report.snn_correct[t] / 50)
    data = report.to_json()
    assert RESULT_KEYS <= set(data)
    assert set(data["snn_acc"]) == {"2", "8"} and data["time_chunk"] == 3 and data["shift"] == "none"
    assert "2" in report.table() and f"{report.ann_acc:.2f}%" in report.table()


def test_the_model_is_left_as_it_was():
    model = binary_hidden_net().train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    evaluate_conversion(model, [torch.ones(4, 16)], binary_batches(8), [4])
    assert model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_clip_state_is_reported():
    model = binary_hidden_net()
    assert threshold_clip_state(model) is True
    model[1].set_threshold_enabled(False)
    assert threshold_clip_state(model) is False
    report = evaluate_conversion(model, [torch.ones(4, 16)], binary_batches(8), [4])
    assert report.threshold_clip_on is False and report.to_json()["threshold_clip_on"] is False
    assert threshold_clip_state(nn.Sequential(nn.Linear(2, 2), nn.ReLU())) is None


@pytest.mark.parametrize(
    "value, error",
    [("abc", ValueError), ("", ValueError), (0, ValueError), (-3, ValueError), (1.5, TypeError), (True, TypeError)],
)
def test_bad_time_chunk_is_refused_with_what_is_allowed(value, error):
    with pytest.raises(error, match="positive int or 'auto'"):
        validate_time_chunk(value)


def test_time_chunk_accepts_auto_ints_and_digit_strings():
    assert validate_time_chunk("auto") == "auto"
    assert validate_time_chunk(4) == 4
    assert validate_time_chunk("8") == 8


def test_bad_settings_fail_before_any_work():
    model = binary_hidden_net()

    def never():
        raise AssertionError("batches were read before the settings were checked")
        yield

    with pytest.raises(ValueError, match="shift"):
        evaluate_conversion(model, never(), never(), [4], shift="half")
    with pytest.raises(ValueError, match="positive int or 'auto'"):
        evaluate_conversion(model, never(), never(), [4], time_chunk="abc")


def test_empty_test_set_is_an_error():
    with pytest.raises(ValueError, match="test set is empty"):
        evaluate_conversion(binary_hidden_net(), [torch.ones(4, 16)], [], [4])

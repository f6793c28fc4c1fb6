"""Layer statistics (lightning_snn.layer_statistics): one module adds a diagnostic, and its numbers
are the IF neuron's exact spike counts reduced as the statistic says."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from lightning_snn.conversion import convert
from lightning_snn.conversion_config import ConversionConfig
from lightning_snn.diagnostics import DiagnosticsProbe
from lightning_snn.evaluation import evaluate_config
from lightning_snn.layer_statistics import STATISTICS, LayerStatistic, register_statistic

#: constant input currents in units of V_th = 1, dyadic and off every rounding boundary at T = 4, 16
CURRENTS = [-0.5, 0.0, 0.1875, 0.40625, 0.8125, 0.953125, 1.0, 1.5]
TS = [4, 16]


def identity_net(n: int) -> nn.Module:
    """Linear (identity weights) -> ReLU -> Linear: the ReLU site's activation is the input."""
    first, last = nn.Linear(n, n, bias=False), nn.Linear(n, 3)
    with torch.no_grad():
        first.weight.copy_(torch.eye(n))
    return nn.Sequential(first, nn.ReLU(), last).eval()


def if_counts(current: float, t: int) -> int:
    """The IF neuron by its definition: V_th 1, the membrane shift v_0 = 1/2, soft reset."""
    v, count = 0.5, 0
    for _ in range(t):
        v += current
        if v >= 1.0:
            v -= 1.0
            count += 1
    return count


@register_statistic("test_half_busy")
class HalfBusy(LayerStatistic):
    """Defined outside the package: spikes per image of the neurons that fired at least every other step."""

    def read(self, counts, t, neuron):
        return counts[counts >= t / 2].sum()

    def finish(self, total, images, neurons, t):
        return total / images


class Unregistered(LayerStatistic):
    """Named by import path only: the mean count per image and neuron (the default finish)."""

    def read(self, counts, t, neuron):
        return counts.sum()


def probe_results(statistics, batches=1):
    net = identity_net(len(CURRENTS))
    x = torch.tensor(CURRENTS).repeat(4, 1)  # 4 images, the same currents
    probe = DiagnosticsProbe(convert(net, {"1": 1.0}), net, TS, statistics=statistics)
    total = probe.empty()
    for part in x.split(len(x) // batches):
        total.merge(probe(part)[1])
    return total.to_json()["statistics"]


def test_silent_and_saturated_are_the_fractions_of_the_exact_counts():
    stats = probe_results(["silent", "saturated"])
    for t in TS:
        counts = [if_counts(c, t) for c in CURRENTS]
        assert stats["silent"][str(t)]["1"] == sum(c == 0 for c in counts) / len(counts)
        assert stats["saturated"][str(t)]["1"] == sum(c == t for c in counts) / len(counts)
    assert 0 < stats["saturated"]["16"]["1"] < stats["saturated"]["4"]["1"]  # 0.953125 saturates at 4, not 16


def test_a_statistic_from_outside_the_package_by_name_and_by_import_path():
    assert STATISTICS["test_half_busy"] is HalfBusy
    path = f"{__name__}.Unregistered"
    stats = probe_results(["test_half_busy", path], batches=2)  # and summed over two batches
    for t in TS:
        counts = [if_counts(c, t) for c in CURRENTS]
        assert stats["test_half_busy"][str(t)]["1"] == sum(c for c in counts if c >= t / 2)
        assert stats[path][str(t)]["1"] == pytest.approx(sum(counts) / len(counts), rel=1e-12)


def test_settings_are_refused_by_name_before_any_work():
    with pytest.raises(ValueError, match="unknown layer statistic 'busy'.*saturated.*silent"):
        ConversionConfig([4], diagnostics=True, statistics=["busy"])
    with pytest.raises(ValueError, match="snn.diagnostics: true"):
        ConversionConfig([4], statistics=["silent"])
    with pytest.raises(ValueError, match="twice"):
        ConversionConfig([4], diagnostics=True, statistics=["silent", "silent"])
    with pytest.raises(TypeError, match="not a subclass of lightning_snn.layer_statistics.LayerStatistic"):
        ConversionConfig([4], diagnostics=True, statistics=["math.sqrt"])
    with pytest.raises(ValueError, match="already registered"):
        register_statistic("silent")(HalfBusy)


def test_the_results_carry_them_and_nothing_else_changes():
    currents = [c for c in CURRENTS if c <= 1.0]  # the calibrated V_th (the largest activation) is then 1
    net = identity_net(len(currents))
    batches = [(torch.tensor(currents).repeat(4, 1), torch.zeros(4, dtype=torch.long))]
    plain = evaluate_config(net, batches, batches, ConversionConfig(TS, diagnostics=True)).to_json()
    extra = evaluate_config(
        net, batches, batches, ConversionConfig(TS, diagnostics=True, statistics=("silent",))
    ).to_json()
    assert "statistics" not in plain
    assert extra["thresholds"]["1"] == 1.0
    silent = sum(if_counts(c, 4) == 0 for c in currents) / len(currents)
    assert extra.pop("statistics")["silent"]["4"]["1"] == pytest.approx(silent, rel=1e-5)  # JSON: 6 digits
    assert math.isclose(extra["snn_acc"]["4"], plain["snn_acc"]["4"])
    assert extra["firing_rates"] == plain["firing_rates"] and extra["layer_errors"] == plain["layer_errors"]

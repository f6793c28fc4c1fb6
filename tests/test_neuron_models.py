"""A neuron model added from outside the package: one class, registered, converted, simulated,
counted by the diagnostics, and refused by name where it has no meaning (NIR, the reference, the
diagnostics' theory overlay unless it gives its quantisation error per step).

The model here is an IF neuron that resets to zero (instead of subtracting the threshold): on a
constant current ``I`` in ``(0, V_th]`` it fires once every ``k = ceil(V_th / I)`` steps, so its
count after ``t`` steps is ``floor(t / k)`` exactly (dyadic currents: every sum is exact)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from lightning_snn.conversion import calibrate_thresholds, check_neuron, convert
from lightning_snn.diagnostics import simulate_with_diagnostics
from lightning_snn.evaluation import evaluate_conversion
from lightning_snn.neurons import NEURONS, IFNeuron, SignedIFNeuron, register_neuron
from lightning_snn.reference import simulate_reference
from lightning_snn.report import write_dashboard
from lightning_snn.simulation import simulate

VTH = 1.0


class ResetToZero(IFNeuron):
    """IF neuron with reset to zero: the whole membrane is lost at a spike."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.count: torch.Tensor | None = None  # spikes so far (its own count: no charge conservation)

    def free_state(self) -> None:
        super().free_state()
        self.count = None

    def _steps(self, per_step: torch.Tensor, out: torch.Tensor, vth: torch.Tensor) -> None:
        v = self.v
        if self.count is None:
            self.count = torch.zeros_like(v)
        for t in range(per_step.shape[0]):
            v.add_(per_step[t])
            fired = v >= vth
            out[t] = fired.to(v.dtype) * vth
            v.masked_fill_(fired, 0.0)
            self.count.add_(fired.to(v.dtype))

    def spike_counts(self, mean_current: torch.Tensor, t: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.count.to(mean_current.dtype).clone(), mean_current.new_zeros(())


@pytest.fixture
def registered():
    register_neuron("reset_to_zero")(ResetToZero)
    yield "reset_to_zero"
    NEURONS.pop("reset_to_zero", None)


def test_a_registered_neuron_counts_its_own_spikes(registered):
    currents = torch.tensor([1, 2, 3, 5, 8], dtype=torch.float64).view(-1, 1) / 8 * VTH  # 1/8 ... 1 of V_th
    neuron = ResetToZero(VTH).double()
    timesteps = [1, 4, 7, 16, 33]
    mean_out = simulate(nn.Sequential(nn.Identity(), neuron), currents, timesteps, time_chunk=5)[..., 0]
    for i, t in enumerate(timesteps):
        k = torch.tensor([math.ceil(8 / n) for n in (1, 2, 3, 5, 8)], dtype=torch.float64)
        assert torch.equal(mean_out[i] * t / VTH, torch.floor(t / k)), t
    # soft reset keeps the remainder, so it fires more often at a current that does not divide V_th
    soft = simulate(nn.Sequential(nn.Identity(), IFNeuron(VTH).double()), currents, [16], time_chunk=5)[0, :, 0]
    assert soft[2] * 16 > mean_out[3, 2] * 16  # 3/8: soft reset 6 spikes in 16 steps, reset to zero 5


def test_convert_builds_the_registered_neuron_and_diagnostics_read_its_counts(registered, tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 5)).eval()
    x = torch.randn(6, 3, 6, 6)
    thresholds = calibrate_thresholds(model, [x])
    snn = convert(model, thresholds, shift="membrane", neuron=registered)
    neurons = [m for m in snn.modules() if isinstance(m, IFNeuron)]
    assert neurons and all(type(m) is ResetToZero for m in neurons)
    assert snn.neuron == registered
    with pytest.warns(UserWarning, match=r"layer\(s\) \['1'\]: neuron 'reset_to_zero' gives no quantisation error"):
        outputs, diag = simulate_with_diagnostics(snn, model, x, [4, 12], time_chunk=3)
    # the same SNN without the probe (whose hooks change only the float order of the sums)
    assert torch.allclose(outputs, simulate(snn, x, [4, 12], time_chunk=5), rtol=1e-5, atol=1e-6)
    # the diagnostics' rate at T = 12 comes from the neuron's own count: the engine's spikes in 12 steps
    simulate(snn, x, [12], record_spikes=True)
    (neuron,) = neurons
    rate = diag.firing_rates()[12]["layers"]["1"]
    assert rate == pytest.approx(float(neuron.spike_count.sum()) / (neuron.spike_count.numel() * 12), rel=1e-12)
    # no error model of its own: the overlay leaves the layer out (null), everything measured is reported
    errors = diag.to_json()["layer_errors"]
    assert all(errors[t]["1"]["predicted_mae"] is None and errors[t]["1"]["mae"] > 0 for t in ("4", "12"))
    assert "(n/a)" in diag.table()
    with pytest.warns(UserWarning, match="neuron 'reset_to_zero'"):  # the dashboard draws without the layer's overlay
        report = evaluate_conversion(
            model, [x], [(x, torch.zeros(6, dtype=torch.long))], [4, 12], neuron=registered, diagnostics=True
        )
    assert write_dashboard(report.to_json(), tmp_path / "snn_report.png").is_file()
    with pytest.raises(TypeError, match="reference simulator steps the IF and signed IF neurons only"):
        simulate_reference(snn, x, 4)


class ResetToZeroWithModel(ResetToZero):
    """The same neuron, with an error model of its own (a made-up one: the overlay only relays it)."""

    def quantisation_error(self, t: int) -> float:
        return 0.5 if t < 10 else 1.0


class BrokenModel(ResetToZero):
    """An error model that is no number of steps: refused, not drawn."""

    def quantisation_error(self, t: int) -> float:
        return float("nan")


def test_the_theory_overlay_asks_the_neuron_for_its_quantisation_error():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 5)).eval()
    x = torch.randn(6, 3, 6, 6)
    thresholds = calibrate_thresholds(model, [x])
    predicted = {}
    for neuron in ("if", "signed", f"{__name__}.ResetToZeroWithModel"):
        _, diag = simulate_with_diagnostics(convert(model, thresholds, "membrane", neuron=neuron), model, x, [4, 12])
        predicted[neuron] = [diag.layer_errors()[t]["1"]["predicted_mae"] for t in (4, 12)]
    # the IF neuron's model at the paper's shift is 1/4 step; the same ANN activations and V_th behind
    # all three, so the neuron's factor alone scales the prediction (by powers of two: exactly)
    assert predicted["signed"] == predicted["if"]
    assert predicted[f"{__name__}.ResetToZeroWithModel"] == [2 * predicted["if"][0], 4 * predicted["if"][1]]


def test_the_quantisation_error_per_step_of_each_model():
    for v_init, bias, t, factor in ((0.0, 0.0, 8, 0.5), (0.5, 0.0, 8, 0.25), (0.0, 1 / 16, 8, 0.25)):
        for cls in (IFNeuron, SignedIFNeuron):  # the signed neuron's count is the same floor of the charge
            assert cls(VTH, v_init=v_init, bias_current=bias).quantisation_error(t) == factor, (cls, v_init, bias)
    assert ResetToZero(VTH).quantisation_error(8) is None  # its own recurrence, no model given: none
    model = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2)).eval()
    x = torch.randn(8, 4)
    snn = convert(model, calibrate_thresholds(model, [x]), neuron=f"{__name__}.BrokenModel")
    with pytest.raises(ValueError, match=r"BrokenModel.quantisation_error\(4\) returned nan"):
        simulate_with_diagnostics(snn, model, x, [4])


def test_a_neuron_by_import_path_and_its_refusals():
    path = f"{__name__}.ResetToZero"
    check_neuron(path)  # importable: accepted as snn.neuron without registering
    model = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2)).eval()
    snn = convert(model, calibrate_thresholds(model, [torch.randn(8, 4)]), neuron=path)
    assert any(type(m) is ResetToZero for m in snn.modules())
    with pytest.raises(ValueError, match="unknown neuron 'lif'; choose one of"):
        check_neuron("lif")
    with pytest.raises(ValueError, match="cannot be imported"):
        check_neuron("no_such_package.Neuron")
    with pytest.raises(TypeError, match="not a subclass of lightning_snn.neurons.IFNeuron"):
        check_neuron("torch.nn.ReLU")


def test_registry_refusals():
    with pytest.raises(ValueError, match="already"):
        register_neuron("if")(ResetToZero)
    with pytest.raises(TypeError, match="subclass of IFNeuron"):
        register_neuron("relu")(nn.ReLU)
    with pytest.raises(TypeError, match="own spike_counts"):

        class Forgetful(IFNeuron):  # a recurrence of its own, counted as if it conserved charge: refused
            def _steps(self, per_step, out, vth):
                raise AssertionError("never run")


def test_nir_export_refuses_another_neuron_model(registered):
    pytest.importorskip("nir")
    from lightning_snn.export import ExportError, check_export_settings, check_nir_exportable

    model = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2)).eval()
    snn = convert(model, calibrate_thresholds(model, [torch.randn(8, 4)]), neuron=registered)
    with pytest.raises(ExportError, match="'reset_to_zero' neuron"):
        check_nir_exportable(snn)
    with pytest.raises(ExportError, match="not 'reset_to_zero'"):
        check_export_settings("nir", 16, neuron=registered)

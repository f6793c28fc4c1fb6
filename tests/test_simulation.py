"""The simulation engine: per-step reference == chunked fast path; chunking changes nothing."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lightning_snn.activations import set_threshold_enabled
from lightning_snn.conversion import calibrate_thresholds, convert
from lightning_snn.models import create_model
from lightning_snn.neurons import IFNeuron, SignedIFNeuron
from lightning_snn.reference import simulate_reference
from lightning_snn.simulation import SpikingEvaluator, simulate, validate_timesteps


@pytest.fixture(scope="module")
def small_snn():
    torch.manual_seed(0)
    model = create_model("vgg11", width=0.0625).double().eval()
    set_threshold_enabled(model, True)
    x = torch.randn(8, 3, 32, 32, dtype=torch.float64)
    thresholds = calibrate_thresholds(model, [torch.randn(32, 3, 32, 32, dtype=torch.float64)])
    return model, thresholds, x


@pytest.mark.parametrize("shift", ["none", "membrane", "bias"])
def test_fast_path_equals_per_step_reference(small_snn, shift):
    model, thresholds, x = small_snn
    snn = convert(model, thresholds, shift=shift, timesteps=24)
    ref = simulate_reference(snn, x, 24)
    for chunk in (1, 5, 24):
        fast = simulate(snn, x, [24], time_chunk=chunk)[0]
        assert torch.allclose(fast, ref, atol=1e-9), chunk


def test_chunking_does_not_change_results(small_snn):
    model, thresholds, x = small_snn
    snn = convert(model, thresholds, shift="membrane")
    ts = [1, 3, 8, 16, 40]
    base = simulate(snn, x, ts, time_chunk=1)
    for chunk in (2, 3, 7, 16, 64, "auto"):
        assert torch.allclose(simulate(snn, x, ts, time_chunk=chunk), base, atol=1e-9), chunk


def test_one_run_to_T_max_equals_separate_runs_in_membrane_mode(small_snn):
    model, thresholds, x = small_snn
    snn = convert(model, thresholds, shift="membrane")
    curve = simulate(snn, x, [4, 16, 32], time_chunk=8)
    for i, t in enumerate([4, 16, 32]):
        assert torch.allclose(curve[i], simulate(snn, x, [t], time_chunk=8)[0], atol=1e-9)


def test_bias_mode_evaluator_simulates_each_T_with_its_own_shift(small_snn):
    model, thresholds, x = small_snn
    ev = SpikingEvaluator(model, thresholds, [8, 32], shift="bias", time_chunk=4)
    out = ev(x)
    for i, t in enumerate([8, 32]):
        expected = simulate(convert(model, thresholds, "bias", t), x, [t], time_chunk=4)[0]
        assert torch.allclose(out[i], expected, atol=1e-9)


def test_record_spikes_counts_match_outputs():
    n = IFNeuron(1.0, v_init=0.5)
    net = nn.Sequential(nn.Identity(), n)
    z = torch.tensor([[0.25], [0.5], [1.0]])
    simulate(net, z, [8], time_chunk=3, record_spikes=True)
    assert n.spike_count.view(-1).tolist() == [2.0, 4.0, 8.0]  # round(8 z) (membrane mode)


@pytest.mark.parametrize("bad", [[], [0, 16], [-4], [2.7], [True]])
def test_bad_timesteps_are_refused(bad):
    with pytest.raises(ValueError, match="T"):
        validate_timesteps(bad)


def test_bad_time_chunk_is_refused(small_snn):
    model, thresholds, x = small_snn
    with pytest.raises(ValueError, match="time_chunk"):
        simulate(convert(model, thresholds), x, [4], time_chunk=0)


def test_time_chunk_values():
    from lightning_snn.simulation import resolve_time_chunk

    assert resolve_time_chunk("auto", torch.device("cpu"), 256) == 1  # sizes unknown: the first chunk is one step
    assert resolve_time_chunk(5, torch.device("cpu"), 16) == 5
    assert resolve_time_chunk("auto", torch.device("cpu"), 8, bytes_per_sample=2**18) == 4  # 8 MiB / (8 x 256 KiB)
    for bad in (0, -2, 2.5, True, "x"):
        with pytest.raises(ValueError, match="time_chunk"):
            resolve_time_chunk(bad, torch.device("cpu"), 8)


@pytest.mark.parametrize("shift", ["none", "membrane", "bias"])
def test_signed_neurons_fast_path_equals_per_step_reference(small_snn, shift):
    model, thresholds, x = small_snn
    snn = convert(model, thresholds, shift=shift, timesteps=24, neuron="signed")
    assert all(type(m) is SignedIFNeuron for m in snn.modules() if isinstance(m, IFNeuron))
    ref = simulate_reference(snn, x, 24)
    for chunk in (1, 5, 24):
        fast = simulate(snn, x, [24], time_chunk=chunk)[0]
        assert torch.allclose(fast, ref, atol=1e-9), chunk
    # negative spikes did happen here (else the plain IF SNN would give the same), so they were exercised
    plain = convert(model, thresholds, shift=shift, timesteps=24)
    assert not torch.allclose(simulate(plain, x, [24])[0], ref, atol=1e-6)


def test_signed_neurons_one_run_to_T_max_equals_separate_runs(small_snn):
    model, thresholds, x = small_snn
    snn = convert(model, thresholds, shift="membrane", neuron="signed")
    ts = [1, 4, 8, 30]
    together = simulate(snn, x, ts, time_chunk=3)
    for i, t in enumerate(ts):
        assert torch.allclose(together[i], simulate(snn, x, [t], time_chunk=1)[0], atol=1e-9), t


def test_unknown_neuron_is_refused(small_snn):
    model, thresholds, _ = small_snn
    with pytest.raises(ValueError, match="unknown neuron 'lif'"):
        convert(model, thresholds, neuron="lif")

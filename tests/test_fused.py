"""The fused IF update: bit for bit the eager update's spikes, membranes and counts; a build that
fails falls back to the eager update with one warning that says why."""

from __future__ import annotations

import importlib.util
import itertools
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
from torch import nn

from lightning_snn import cbuild, fused
from lightning_snn.activations import set_threshold_enabled
from lightning_snn.conversion import calibrate_thresholds, convert
from lightning_snn.models import create_model
from lightning_snn.neurons import IFNeuron, SignedIFNeuron
from lightning_snn.simulation import simulate

REPO = Path(__file__).resolve().parents[1]


def run_chunks(neuron: IFNeuron, currents: list[torch.Tensor], steps: int, batch: int, mode: str, record: bool = True):
    """Every output and the final state of ``neuron`` fed ``currents`` chunk after chunk (the spike
    count only when ``record``: the kernel has a loop without any counter for that case)."""
    neuron.reset()
    neuron.batch_size, neuron.record_spikes = batch, record
    with fused.fused_mode(mode):
        outs = []
        for current in currents:
            neuron.steps = steps
            outs.append(neuron(current))
    signed_state = [neuron.net_count, neuron.negative_count] if neuron.emits_negative else []
    state = [neuron.v, *([neuron.spike_count] if record else []), *signed_state]
    assert record or neuron.spike_count is None
    return outs, [s.clone() for s in state]


def assert_same(a, b, what: str) -> None:
    for x, y in zip(a[0] + a[1], b[0] + b[1]):
        assert torch.equal(x, y), what


def random_neuron(signed: bool, per_channel: bool, bias: bool, channels: int = 5) -> IFNeuron:
    def value(scalar: float, vector: torch.Tensor) -> float | torch.Tensor:
        return vector if per_channel else scalar

    return (SignedIFNeuron if signed else IFNeuron)(
        value(0.7, torch.rand(channels) + 0.3),
        v_init=value(0.35, torch.rand(channels) * 0.5),
        bias_current=value(0.05, torch.randn(channels) * 0.1) if bias else 0.0,
    )


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("signed", [False, True], ids=["if", "signed"])
def test_fused_update_is_bit_identical_to_eager(dtype, signed):
    torch.manual_seed(1)
    batch = 3
    grid = itertools.product([False, True], [False, True], [False, True], [1, 4], [True, False])
    for per_channel, bias, constant, steps, record in grid:
        what = f"per_channel={per_channel} bias={bias} constant={constant} steps={steps} record={record}"
        neuron = random_neuron(signed, per_channel, bias)
        rows = batch if constant else steps * batch  # the first layer's current is the same at every step
        currents = [torch.randn(rows, 5, 6, 7, dtype=dtype) * 0.6 for _ in range(3)]
        assert_same(
            run_chunks(neuron, currents, steps, batch, "on", record),
            run_chunks(neuron, currents, steps, batch, "off", record),
            what,
        )
    # a fully connected layer's neurons ([B, C]), and a chunk longer than a kernel block's features
    neuron = random_neuron(signed, True, True, channels=700)
    currents = [torch.randn(2 * 4, 700, dtype=dtype) for _ in range(3)]
    assert_same(run_chunks(neuron, currents, 2, 4, "on"), run_chunks(neuron, currents, 2, 4, "off"), "linear")


def test_the_state_never_aliases_the_neurons_buffers():
    """A one-sample, one-feature state must be a copy: the kernel writes it in place."""
    for per_channel in (False, True):
        neuron = IFNeuron(torch.ones(1) if per_channel else 1.0, v_init=torch.full((1,), 0.25) if per_channel else 0.25)
        first = run_chunks(neuron, [torch.tensor([[0.6]])], 2, 1, "on")
        assert neuron.v_init.tolist() == (
            [0.25] if per_channel else 0.25
        ) and neuron.v_threshold.flatten().tolist() == [1.0]
        assert_same(run_chunks(neuron, [torch.tensor([[0.6]])], 2, 1, "on"), first, "second run")


def test_spike_counts_are_whole_numbers_for_any_threshold():
    neuron = IFNeuron(0.3, v_init=0.15)  # 0.3 is not a binary fraction: summing amplitudes then dividing was not exact
    currents = [torch.rand(6 * 2, 4, dtype=torch.float64) * 0.6 for _ in range(4)]
    for mode in ("on", "off"):
        _, (v, count) = run_chunks(neuron, currents, 6, 2, mode)
        assert torch.equal(count, count.round()) and count.max() > 3, mode


@pytest.fixture(scope="module")
def small():
    torch.manual_seed(0)
    model = create_model("vgg11", width=0.0625).double().eval()
    set_threshold_enabled(model, True)
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    thresholds = calibrate_thresholds(model, [torch.randn(16, 3, 32, 32, dtype=torch.float64)])
    return model, thresholds, x


@pytest.mark.parametrize("neuron", ["if", "signed"])
@pytest.mark.parametrize("shift", ["none", "membrane", "bias"])
def test_fused_network_equals_eager(small, shift, neuron):
    """The whole SNN (tests/test_simulation.py compares the default, fused, engine with the reference)."""
    model, thresholds, x = small
    snn = convert(model, thresholds, shift=shift, timesteps=12, neuron=neuron)
    for chunk, record in itertools.product((1, 5), (True, False)):
        runs = {}
        for mode in ("on", "off"):
            with fused.fused_mode(mode):
                out = simulate(snn, x, [12], chunk, record_spikes=record)
            counts = [m.spike_count for m in snn.modules() if isinstance(m, IFNeuron)] if record else []
            runs[mode] = [out, *counts]
        assert all(torch.equal(a, b) for a, b in zip(runs["on"], runs["off"])), (chunk, record)


@pytest.fixture
def broken_compiler(monkeypatch, tmp_path):
    """No usable C compiler (``$CC`` fails) and an empty kernel cache: the build must fail."""
    monkeypatch.setenv("CC", "/bin/false")
    monkeypatch.setenv("LIGHTNING_SNN_CACHE", str(tmp_path))
    monkeypatch.setattr(cbuild.tempfile, "gettempdir", lambda: str(tmp_path))
    fused.reset_state_for_tests()
    yield
    fused.reset_state_for_tests()  # the next test builds (or loads) the real kernel again


def test_a_failed_build_falls_back_to_eager_with_one_warning(broken_compiler):
    net = nn.Sequential(nn.Identity(), IFNeuron(1.0, v_init=0.5))
    z = torch.tensor([[0.25], [0.5], [1.0]])
    with fused.fused_mode("auto"):
        with pytest.warns(RuntimeWarning, match="fused IF update is not used.*did not build"):
            first = simulate(net, z, [8], 3)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # the second run does not warn again
            second = simulate(net, z, [8], 3)
    assert torch.equal(first, second)
    assert first[0].view(-1).tolist() == [0.25, 0.5, 1.0]  # round(8 z) / 8 spikes, amplitude 1
    with fused.fused_mode("on"), pytest.raises(RuntimeError, match="fused mode 'on'"):
        simulate(net, z, [8], 3)
    assert fused.unavailable_reason("cpu") is not None


def test_unsupported_dtype_runs_eager(recwarn):
    neuron = IFNeuron(1.0, v_init=0.5)
    neuron.batch_size = 2
    with fused.fused_mode("auto"):
        out = neuron(torch.full((2, 3), 0.75, dtype=torch.bfloat16))
    assert out.dtype == torch.bfloat16 and out.float().sum() == 6.0  # 0.5 + 0.75 >= 1: every neuron fires
    assert any("bfloat16" in str(w.message) for w in recwarn)


def test_bad_mode_is_refused():
    with pytest.raises(ValueError, match="fused mode"):
        fused.set_fused_mode("fast")


@pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="Triton is not installed")
def test_cuda_kernel_is_bit_identical_in_tritons_interpreter(tmp_path):
    """The Triton kernel (the CUDA path) run on the CPU by Triton's interpreter, against eager."""
    script = tmp_path / "triton_check.py"
    script.write_text(
        "import torch, sys\n"
        "sys.path.insert(0, sys.argv[1])\n"
        "from tests.test_fused import random_neuron, run_chunks, assert_same\n"
        "from lightning_snn import fused\n"
        "assert fused.cuda_kernels() is not None, fused._cuda_error\n"
        "fused._LAUNCHERS['cpu'] = lambda *a: fused._launch_triton(*a, block=64)\n"
        "torch.manual_seed(2)\n"
        "for signed, bias, constant in [(False, True, False), (False, False, True), (True, True, False)]:\n"
        "    for dtype in (torch.float32, torch.float64):\n"
        "        n = random_neuron(signed, True, bias)\n"
        "        cur = [torch.randn((2 if constant else 6), 5, 3, 4, dtype=dtype) * 0.6 for _ in range(3)]\n"
        "        assert_same(run_chunks(n, cur, 3, 2, 'on'), run_chunks(n, cur, 3, 2, 'off'), (signed, bias, dtype))\n"
        "print('triton kernel == eager')\n"
    )
    env = {**os.environ, "TRITON_INTERPRET": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, str(script), str(REPO)], env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert "triton kernel == eager" in proc.stdout

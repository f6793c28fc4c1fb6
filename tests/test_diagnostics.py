"""Diagnostics: spikes, synaptic operations, energy and per-layer error, against hand counts and theory.

The small nets here make spikes known in advance: an identity layer on binary inputs followed by a
threshold ReLU clipped at 1 gives activations of exactly 0 or V_th = 1, and an IF neuron with the
V_th/2 membrane shift then fires at every step (activation 1) or never (activation 0). The synapses
each spike drives are counted here by brute-force loops over the layer's definition, independent of
the autograd-based fan-out maps under test.
"""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lightning_snn.activations import ThresholdReLU, set_threshold_enabled
from lightning_snn.conversion import OUTPUT_KEY, calibrate_thresholds, convert
from lightning_snn.diagnostics import (
    INPUT_KEY,
    DiagnosticsProbe,
    EnergyModel,
    simulate_with_diagnostics,
    synapse_map,
)
from lightning_snn.models import create_model
from lightning_snn.simulation import SpikingEvaluator, simulate

TS = [1, 5, 12]


def identity_conv(channels: int) -> nn.Conv2d:
    conv = nn.Conv2d(channels, channels, 1, bias=False)
    with torch.no_grad():
        conv.weight.copy_(torch.eye(channels).view(channels, channels, 1, 1))
    return conv


def binary_images(n: int, channels: int, size: int, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, 2, (n, channels, size, size), generator=gen).float()


def conv_fanout(conv: nn.Conv2d, shape: tuple[int, int, int]) -> torch.Tensor:
    """Synapses per input element of ``conv``, by looping over every output and kernel tap."""
    c_in, h, w = shape
    weight = conv.weight.detach()
    c_out, per_group, kh, kw = weight.shape
    (sh, sw), (ph, pw), (dh, dw) = conv.stride, conv.padding, conv.dilation
    h_out = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    w_out = (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    outputs_per_group = c_out // conv.groups
    fan = torch.zeros(shape, dtype=torch.float64)
    for oc in range(c_out):
        for local in range(per_group):
            ic = (oc // outputs_per_group) * per_group + local
            for a in range(kh):
                for b in range(kw):
                    if weight[oc, local, a, b] == 0:
                        continue
                    for oi in range(h_out):
                        for oj in range(w_out):
                            i, j = oi * sh - ph + a * dh, oj * sw - pw + b * dw
                            if 0 <= i < h and 0 <= j < w:
                                fan[ic, i, j] += 1
    return fan


def sops_per_image(x_active: torch.Tensor, fan: torch.Tensor, t: int) -> float:
    """Neurons that fire at every step (``x_active`` = 1) each drive ``fan`` synapses per spike."""
    return float(t * (x_active.double() * fan).sum() / x_active.shape[0])


def run(net: nn.Module, thresholds: dict, x: torch.Tensor, ts=TS, time_chunk=1, **kwargs):
    snn = convert(net, thresholds, shift="membrane", **kwargs)
    out, diag = simulate_with_diagnostics(snn, net, x, ts, time_chunk=time_chunk)
    assert torch.equal(out, simulate(snn, x, ts, time_chunk=time_chunk))  # the same simulation's outputs
    return snn, diag


# ---- synaptic operations, exact -------------------------------------------------------------------
def test_conv_with_stride_padding_groups_counts_fewer_synapses_at_the_borders():
    torch.manual_seed(0)
    head = nn.Conv2d(2, 4, 3, stride=2, padding=1, groups=2)
    with torch.no_grad():
        head.weight[1, 0, 1, 1] = 0.0  # a zero weight is no synapse
    net = nn.Sequential(identity_conv(2), ThresholdReLU(1.0), head)
    x = binary_images(3, 2, 5)
    snn, diag = run(net, {"1": 1.0}, x)

    expected = conv_fanout(head, (2, 5, 5))
    fanout = synapse_map(snn, x).fanout["1"]
    assert torch.equal(fanout, expected)
    assert fanout[0, 0, 0] < fanout[0, 1, 1] and fanout[0, 0, 1] < fanout[0, 1, 1]  # borders drive fewer
    sops, rates = diag.synaptic_ops(), diag.firing_rates()
    for t in TS:
        assert sops[t]["layers"]["1"] == pytest.approx(sops_per_image(x, expected, t), rel=1e-12)
        assert sops[t]["per_image"] == sops[t]["layers"]["1"]
        assert rates[t]["layers"]["1"] == pytest.approx(float(x.mean()))  # fires every step where x = 1
        assert rates[t]["network"] == rates[t]["layers"]["1"]
    # MACs count non-zero weights only: the identity 1x1 conv has one synapse per input element
    assert sops[1]["input_macs"] == 2 * 5 * 5
    assert sops[1]["ann_macs"] == 2 * 5 * 5 + float(expected.sum())


def test_linear_layer_counts_the_nonzero_weights_of_each_input():
    torch.manual_seed(1)
    d = 12
    first, head = nn.Linear(d, d), nn.Linear(d, 4)
    with torch.no_grad():
        first.weight.copy_(torch.eye(d))
        first.bias.zero_()
        head.weight[head.weight.abs() < 0.1] = 0.0
    net = nn.Sequential(first, ThresholdReLU(1.0), head)
    x = binary_images(6, 1, d).view(6 * d, d)[:6]
    _, diag = run(net, {"1": 1.0}, x)
    fan = head.weight.ne(0).sum(0).double()
    assert fan.min() < 4  # the test is about the zeros
    for t in TS:
        assert diag.synaptic_ops()[t]["layers"]["1"] == pytest.approx(sops_per_image(x, fan, t), rel=1e-12)


@pytest.mark.parametrize("pool", ["avg", "max", "max_on_input"])
def test_pooling_before_a_conv(pool):
    torch.manual_seed(2)
    head = nn.Conv2d(3, 2, 3, padding=1)
    pooling = nn.AvgPool2d(2) if pool == "avg" else nn.MaxPool2d(2)
    x = binary_images(4, 3, 5, seed=3)  # 5 x 5: the last row and column are in no 2 x 2 window
    pooled_fan = conv_fanout(head, (3, 2, 2))
    passed = F.max_pool2d(x, 2)
    if pool == "max_on_input":
        # the max-pool follows the first IF layer, whose current is the analog input: the converter
        # moves it before the neuron (exact), so layer 1 is the pooled 2 x 2 map and nothing is gated
        net = nn.Sequential(identity_conv(3), ThresholdReLU(1.0), pooling, head)
        snn, diag = run(net, {"1": 1.0}, x)
        assert torch.equal(synapse_map(snn, x).fanout["1"], pooled_fan)
        layer, expected, rate = "1", [sops_per_image(passed, pooled_fan, t) for t in TS], float(passed.mean())
    else:
        # a second identity layer makes the pooled layer ("3") receive spikes; it fires as x does
        net = nn.Sequential(identity_conv(3), ThresholdReLU(1.0), identity_conv(3), ThresholdReLU(1.0), pooling, head)
        snn, diag = run(net, {"1": 1.0, "3": 1.0}, x)
        layer, rate = "3", float(x.mean())  # the pool fires nothing of its own
        if pool == "avg":
            # each spike drives the synapses of its pooled position (pooling folded into the weights)
            fan = torch.zeros(3, 5, 5, dtype=torch.float64)
            fan[:, :4, :4] = pooled_fan.repeat_interleave(2, 1).repeat_interleave(2, 2)
            assert torch.equal(synapse_map(snn, x).fanout["3"], fan)
            expected = [sops_per_image(x, fan, t) for t in TS]
        else:
            # the gate passes one spike per window and step when any input of the window fires
            assert torch.equal(synapse_map(snn, x).fanout["4"], pooled_fan)
            expected = [sops_per_image(passed, pooled_fan, t) for t in TS]
    for t, value in zip(TS, expected, strict=True):
        assert diag.synaptic_ops()[t]["layers"][layer] == pytest.approx(value, rel=1e-12)
        assert diag.firing_rates()[t]["layers"][layer] == pytest.approx(rate)


class Residual(nn.Module):
    """a -> conv -> b; c = IF(b + a) (an identity shortcut) -> linear."""

    def __init__(self) -> None:
        super().__init__()
        self.inp = identity_conv(2)
        self.a, self.b, self.c = ThresholdReLU(1.0), ThresholdReLU(1.0), ThresholdReLU(1.0)
        self.conv = nn.Conv2d(2, 2, 3, padding=1)
        self.fc = nn.Linear(2 * 4 * 4, 3)

    def forward(self, x):
        a = self.a(self.inp(x))
        b = self.b(self.conv(a))
        return self.fc(self.c(b + a).flatten(1))


def test_residual_identity_shortcut_is_one_synapse_per_spike():
    torch.manual_seed(3)
    net = Residual().eval()
    x = binary_images(5, 2, 4, seed=4)
    thresholds = calibrate_thresholds(net, [x], include_output=False)
    assert thresholds["a"] == 1.0
    snn, diag = run(net, thresholds, x, ts=[3, 20])
    fanout = synapse_map(snn, x).fanout
    assert torch.equal(fanout["a"], conv_fanout(net.conv, (2, 4, 4)) + 1)  # conv synapses + the shortcut
    assert torch.equal(fanout["b"], torch.ones(2, 4, 4, dtype=torch.float64))
    assert torch.equal(fanout["c"], torch.full((2, 4, 4), 3.0, dtype=torch.float64))
    sops, rates, neurons = diag.synaptic_ops(), diag.firing_rates(), diag.neurons
    for t in (3, 20):
        assert sops[t]["layers"]["a"] == pytest.approx(sops_per_image(x, fanout["a"], t), rel=1e-12)
        for layer, per_spike in (("b", 1), ("c", 3)):  # uniform fan-out: SOPs = spikes x fan-out
            spikes = rates[t]["layers"][layer] * neurons[layer] * t
            assert sops[t]["layers"][layer] == pytest.approx(per_spike * spikes, rel=1e-9)
        assert rates[t]["layers"]["b"] > 0 and rates[t]["layers"]["c"] > 0


class Functional(nn.Module):
    """F.relu, F.avg_pool2d, scaling, a constant offset and a global mean: all through the graph."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4, 5)

    def forward(self, x):
        h = F.relu(self.conv(x))
        y = 0.5 * F.avg_pool2d(h, 2) - 1.0
        return self.fc(y.mean((2, 3)))


def test_functional_operations_and_global_mean():
    torch.manual_seed(4)
    net = Functional().eval()
    with torch.no_grad():
        net.fc.weight[:2, 1] = 0.0
    x = torch.randn(2, 3, 5, 5)
    snn = convert(net, calibrate_thresholds(net, [x]))
    fanout = synapse_map(snn, x)
    (site,) = [k for k in fanout.fanout if k != INPUT_KEY]
    per_channel = net.fc.weight.ne(0).sum(0).double()  # every pooled position of channel c feeds fc[:, c]
    expected = torch.zeros(4, 5, 5, dtype=torch.float64)
    expected[:, :4, :4] = per_channel.view(4, 1, 1)
    assert torch.equal(fanout.fanout[site], expected)
    assert fanout.input_macs == float(conv_fanout(net.conv, (3, 5, 5)).sum())
    assert fanout.ann_macs == fanout.input_macs + 4 * 5 - 2  # the fc layer on 4 pooled channels


# ---- spike counts: exact, from the same simulation --------------------------------------------------
@pytest.fixture(scope="module")
def vgg():
    torch.manual_seed(0)
    model = create_model("vgg11", width=0.0625).eval()
    set_threshold_enabled(model, True)
    x = torch.randn(12, 3, 32, 32)
    return model, x, calibrate_thresholds(model, [x])


@pytest.mark.parametrize("neuron", ["if", "signed"])
@pytest.mark.parametrize("time_chunk", [1, 5])
def test_counts_at_every_T_equal_the_engines_own_spike_counts(vgg, time_chunk, neuron):
    """Signed neurons: every spike counts, negative ones too (the diagnostics add twice the negative
    spikes to the net count read from the membrane; the engine sums |spikes|)."""
    model, x, thresholds = vgg
    snn, x = convert(model, thresholds, neuron=neuron), x[:6]
    ts = [7, 30, 40]
    out, diag = simulate_with_diagnostics(snn, model, x, ts, time_chunk=time_chunk)
    assert torch.allclose(out, simulate(snn, x, ts, time_chunk=time_chunk), atol=1e-6)
    rates = diag.firing_rates()
    for t in ts:
        simulate(snn, x, [t], time_chunk=time_chunk, record_spikes=True)
        for layer in diag.layers:
            counted = float(snn.body.get_submodule(layer).spike_count.sum())
            assert rates[t]["layers"][layer] * diag.neurons[layer] * t * x.shape[0] == pytest.approx(counted, rel=1e-9)


def test_error_falls_with_T_towards_the_clipped_activation_and_matches_the_quantisation_model(vgg):
    model, x, thresholds = vgg  # thresholds from these very images: nothing above V_th to clip
    ts = [4, 16, 64, 256]
    _, diag = simulate_with_diagnostics(convert(model, thresholds), model, x, ts, time_chunk=8)
    errors = diag.layer_errors()
    for layer in diag.layers:
        maes = [errors[t][layer]["mae"] for t in ts]
        assert all(later < earlier for earlier, later in zip(maes, maes[1:])), (layer, maes)
        assert errors[256][layer]["relative"] < 0.03, layer
        assert errors[4][layer]["relative"] > 10 * errors[256][layer]["relative"], layer
        assert errors[4][layer]["clip_mae"] == 0.0
    # the first layer's input is constant: its error is the rounding error of step V_th/T alone
    first = diag.layers[0]
    for t in ts[:3]:
        assert errors[t][first]["mae"] == pytest.approx(errors[t][first]["predicted_mae"], rel=0.15), t
    # without a shift the IF neuron floors: twice the error
    _, floor = simulate_with_diagnostics(convert(model, thresholds, shift="none"), model, x, [16], time_chunk=8)
    e = floor.layer_errors()[16][first]
    assert e["predicted_mae"] == pytest.approx(2 * errors[16][first]["predicted_mae"])
    assert e["mae"] == pytest.approx(e["predicted_mae"], rel=0.15)


def test_clip_error_is_reported_apart():
    model = nn.Sequential(identity_conv(1), ThresholdReLU(1.0), nn.Conv2d(1, 1, 1)).eval()
    set_threshold_enabled(model, False)  # plain ReLU: activations above V_th are possible
    x = torch.rand(4, 1, 3, 3) * 2
    _, diag = simulate_with_diagnostics(convert(model, {"1": 1.0}), model, x, [64])
    e = diag.layer_errors()[64]["1"]
    assert e["clip_mae"] == pytest.approx(float((x - 1).clamp(min=0).mean()), rel=1e-6)
    assert e["mae"] < 0.01  # against min(a, V_th), the part a rate code can reach


# ---- energy, accumulation, modes ---------------------------------------------------------------------
def test_energy_follows_its_formula(vgg):
    model, x, thresholds = vgg
    snn = convert(model, thresholds)
    for energy in (EnergyModel(), EnergyModel(ac_pj=1.5, mac_pj=2.0, input_macs_per_step=False)):
        _, diag = simulate_with_diagnostics(snn, model, x[:4], [8, 32], energy=energy)
        for t, e in diag.energy_per_image().items():
            sops = diag.synaptic_ops()[t]
            input_macs = sops["input_macs"] * (t if energy.input_macs_per_step else 1)
            assert e["snn_uj"] == pytest.approx(1e-6 * (energy.ac_pj * sops["per_image"] + energy.mac_pj * input_macs))
            assert e["ann_uj"] == pytest.approx(1e-6 * energy.mac_pj * sops["ann_macs"])
            assert e["snn_over_ann"] == pytest.approx(e["snn_uj"] / e["ann_uj"])
    assert EnergyModel().ac_pj == 0.9 and EnergyModel().mac_pj == 4.6
    for bad in (-1.0, math.nan, "1"):
        with pytest.raises(ValueError, match="picojoules"):
            EnergyModel(ac_pj=bad)


def leaves(tree, prefix=""):
    if isinstance(tree, dict):
        return {k: v for key, sub in tree.items() for k, v in leaves(sub, f"{prefix}/{key}").items()}
    return {prefix: tree}


def test_batches_accumulate_to_the_whole(vgg):
    model, x, thresholds = vgg
    probe = DiagnosticsProbe(convert(model, thresholds), model, [8, 16])
    _, whole = probe(x)
    total = probe.empty()
    for part in x.split(5):
        total.merge(probe(part)[1])
    assert total.num_images == whole.num_images == 12
    merged, one = leaves(total.to_json()), leaves(whole.to_json())
    assert merged.keys() == one.keys()
    for key, value in one.items():  # equal up to the float rounding of convs at other batch sizes
        assert merged[key] == (pytest.approx(value, rel=1e-4, abs=1e-9) if isinstance(value, float) else value), key


def test_bias_mode_reads_each_T_from_its_own_snn(vgg):
    model, x, thresholds = vgg
    x = x[:6]
    evaluator = SpikingEvaluator(model, thresholds, [4, 16], shift="bias", time_chunk=4)
    out, diag = DiagnosticsProbe(evaluator.snns, model, [4, 16], time_chunk=4)(x)
    assert torch.equal(out, evaluator(x))
    rates = diag.firing_rates()
    for t in (4, 16):
        snn = evaluator.snn_at(t)
        simulate(snn, x, [t], time_chunk=4, record_spikes=True)
        counted = sum(float(snn.body.get_submodule(n).spike_count.sum()) for n in diag.layers)
        neurons = sum(diag.neurons.values())
        assert rates[t]["network"] * neurons * t * x.shape[0] == pytest.approx(counted, rel=1e-9)


def test_spiking_readout_neuron_is_a_layer_with_no_synapses(vgg):
    model, x, thresholds = vgg
    snn = convert(model, thresholds, readout="spiking")
    _, diag = simulate_with_diagnostics(snn, model, x, [16])
    assert diag.layers[-1] == OUTPUT_KEY and diag.neurons[OUTPUT_KEY] == 10
    assert diag.synaptic_ops()[16]["layers"][OUTPUT_KEY] == 0
    assert diag.firing_rates()[16]["layers"][OUTPUT_KEY] > 0
    assert OUTPUT_KEY not in diag.layer_errors()[16]  # no ANN activation to compare with


# ---- where it goes: the results, the dashboard, the command line ----------------------------------
def test_evaluate_conversion_reports_the_four_keys_and_the_same_accuracy(vgg):
    from lightning_snn.evaluation import evaluate_conversion

    model, x, _ = vgg
    y = torch.arange(x.shape[0]) % 10
    test = list(zip(x.split(5), y.split(5)))
    plain = evaluate_conversion(model, [x], test, [4, 16], time_chunk=3)
    report = evaluate_conversion(model, [x], test, [4, 16], time_chunk=3, diagnostics=True)
    assert report.snn_correct == plain.snn_correct and plain.diagnostics is None
    data = report.to_json()
    for key in ("firing_rates", "synaptic_ops", "energy", "layer_errors"):
        assert set(data[key]) == {"4", "16"}, key
    assert set(data["layer_errors"]["16"]) == set(report.thresholds)
    assert report.diagnostics.num_images == 12
    assert "largest layer error" in report.table()


def test_inference_mode_gives_the_same_synaptic_ops(vgg):
    """Lightning's test / validate loops run under torch.inference_mode, which silently disables
    autograd; the fan-outs are gradients, so they must not come out as zeros there."""
    from lightning_snn.evaluation import evaluate_conversion

    model, x, _ = vgg
    test = [(x[:6], torch.arange(6) % 10)]
    outside = evaluate_conversion(model, [x], test, [4, 16], time_chunk=4, diagnostics=True).to_json()
    with torch.inference_mode():
        inside = evaluate_conversion(model, [x], test, [4, 16], time_chunk=4, diagnostics=True).to_json()
    for t in ("4", "16"):
        assert outside["synaptic_ops"][t]["per_image"] > 0 and outside["synaptic_ops"][t]["input_macs"] > 0
        assert inside["synaptic_ops"][t] == outside["synaptic_ops"][t]
        assert inside["energy"][t] == outside["energy"][t]


def test_dashboard_from_a_results_file(vgg, tmp_path):
    from lightning_snn.evaluation import evaluate_conversion
    from lightning_snn.report import main, write_dashboard

    model, x, _ = vgg
    report = evaluate_conversion(model, [x], [(x, torch.zeros(12, dtype=torch.long))], [4, 16], diagnostics=True)
    results = tmp_path / "snn_results.json"
    results.write_text(json.dumps(report.to_json()))
    png = main([str(results)])
    assert png == tmp_path / "snn_report.png" and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="diagnostics"):
        write_dashboard({"snn_acc": {}, "ann_acc": 0.0}, tmp_path / "x.png")
    # exact rates (errors all 0, nothing to log-scale) and a layer that never fires draw too
    net = nn.Sequential(identity_conv(2), ThresholdReLU(1.0), nn.Flatten(), nn.Linear(18, 3)).eval()
    x = binary_images(4, 2, 3)
    exact = evaluate_conversion(net, [x], [(x, torch.zeros(4, dtype=torch.long))], [2, 8], diagnostics=True)
    assert all(e["mae"] == 0 for e in exact.to_json()["layer_errors"]["8"].values())
    assert write_dashboard(exact.to_json(), tmp_path / "exact.png").is_file()
    silent = evaluate_conversion(net, [x], [(0 * x, torch.zeros(4, dtype=torch.long))], [2], diagnostics=True)
    assert silent.diagnostics.firing_rates()[2]["network"] == 0
    assert write_dashboard(silent.to_json(), tmp_path / "silent.png").is_file()


def test_cli_run_writes_the_four_keys_for_every_T_and_the_dashboard(cifar10_dir, tmp_path):
    from tests.test_cli import REPO, results_files, run_cli, tiny_args

    args = tiny_args(cifar10_dir, tmp_path, timesteps="[4,16]")
    tiny = ["--trainer.max_epochs=1", "--trainer.limit_train_batches=2", "--trainer.limit_val_batches=0.0"]
    proc = run_cli(
        ["fit", "-c", str(REPO / "configs" / "quickstart.yaml"), *args, *tiny, "--snn.energy_ac_pj=1.0"], cwd=tmp_path
    )
    (path,) = results_files(tmp_path)
    results = json.loads(path.read_text())
    for key in ("firing_rates", "synaptic_ops", "energy", "layer_errors"):
        assert set(results[key]) == {"4", "16"}, key
    assert set(results["layer_errors"]["4"]) == set(results["thresholds"])
    assert all(results["synaptic_ops"][t]["per_image"] > 0 for t in ("4", "16"))
    assert results["energy_model"]["ac_pj"] == 1.0
    assert (path.parent / "snn_report.png").is_file()
    assert "largest layer error" in proc.stdout + proc.stderr


def _ddp_rank(rank: int, world: int, init: str, x: torch.Tensor, out: str) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    try:
        torch.manual_seed(5)
        net = Residual().eval()
        probe = DiagnosticsProbe(convert(net, {"a": 1.0, "b": 1.0, "c": 1.0}), net, [3, 9])
        total = probe.empty()
        if rank == 0:  # rank 1 has no images at all: it still joins the reduction
            for part in x.split(3):
                total.merge(probe(part)[1])
        total.all_reduce()
        if rank == 1:
            torch.save(total.to_json(), out)
    finally:
        dist.destroy_process_group()


def test_all_reduce_over_ranks_equals_one_process(tmp_path):
    import torch.multiprocessing as mp

    x = binary_images(6, 2, 4, seed=6)
    out = tmp_path / "rank1.pt"
    mp.spawn(_ddp_rank, args=(2, f"file://{tmp_path / 'init'}", x, str(out)), nprocs=2, join=True)
    torch.manual_seed(5)
    net = Residual().eval()
    _, whole = DiagnosticsProbe(convert(net, {"a": 1.0, "b": 1.0, "c": 1.0}), net, [3, 9])(x)
    reduced, one = leaves(torch.load(out)), leaves(whole.to_json())
    assert reduced.keys() == one.keys()
    for key, value in one.items():
        assert reduced[key] == (pytest.approx(value, rel=1e-5, abs=1e-12) if isinstance(value, float) else value), key


@pytest.mark.parametrize(("shift", "scale"), [("none", 1.0), ("membrane", 1.0), ("membrane", 0.5), ("bias", 1.5)])
def test_dashboard_legend_states_the_error_the_neurons_predict(shift, scale):
    """The overlay's legend (report._predicted_step) names the factor the neurons' own
    quantisation_error gives for the run's shift: 1/4 at the paper's, 1/2 without, between for a scale."""
    from lightning_snn.neurons import IFNeuron
    from lightning_snn.report import _predicted_step

    offset = 0.0 if shift == "none" else scale / 2  # the membrane shift's v_0 (the bias shift: T x V_th/(2T))
    neuron = IFNeuron(v_threshold=torch.tensor(2.0), v_init=torch.tensor(2.0 * offset))
    factor = neuron.quantisation_error(16)
    words = _predicted_step({"shift": shift, "shift_scale": scale})
    expected = {0.5: "V_th/(2T)", 0.25: "V_th/(4T)"}.get(factor, f"{factor:.3g}·V_th/T")
    assert words.startswith(expected), (words, factor)

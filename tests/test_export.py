"""NIR export: the file says the SNN exactly, our importer brings it back, refusals name the node.

Needs only the ``nir`` package (``pip install -e ".[nir]"``); skipped without it. The checks in
sinabs and snnTorch are in tests/test_export_simulators.py (slow, skipped without them).
"""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lightning_snn.conversion import OUTPUT_KEY, calibrate_thresholds, convert
from lightning_snn.export import (
    ExportError,
    check_export_settings,
    check_model_exportable,
    export_nir,
    from_nir,
    import_nir,
    to_nir,
)
from lightning_snn.simulation import simulate

nir = pytest.importorskip("nir")


def vgg_like() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.AvgPool2d(2),
        nn.Conv2d(8, 8, 3, padding=1, bias=False),
        nn.ReLU(),
        nn.Flatten(),
        nn.Dropout(0.5),
        nn.Linear(8 * 4 * 4, 10),
    ).eval()


class Residual(nn.Module):
    """Identity shortcut into the activation after the add, a subtraction and a scaling by a
    constant: the amplitudes reach the sum without a weighted layer (NIR Scale nodes)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.stem = nn.Conv2d(3, 6, 3, padding=1)
        self.conv1 = nn.Conv2d(6, 6, 3, padding=1)
        self.conv2 = nn.Conv2d(6, 6, 3, padding=1)
        self.head = nn.Linear(6, 4)

    def forward(self, x):
        a = F.relu(self.stem(x))
        b = F.relu(self.conv1(a))
        c = F.relu(self.conv2(b) + a - 0.5 * b)
        return self.head(F.adaptive_avg_pool2d(c, 1).flatten(1))


def images(n=12, size=8, seed=0):
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def nir_reference(graph, x: torch.Tensor, steps: int) -> torch.Tensor:
    """A reading of the file independent of our importer: its nodes with their documented
    semantics (IF: dt = 1, fire at >=, one spike per step, subtract the threshold, v[0] = 0, unit
    spikes), run step by step; the output summed over the steps, divided by ``steps``."""
    order = [n for n, node in graph.nodes.items() if isinstance(node, nir.Input)]
    while len(order) < len(graph.nodes):  # every node after its sources (nir.read sorts nodes by name)
        order += [n for n in graph.nodes if n not in order and all(s in order for s, d in graph.edges if d == n)]
    values, state, total = {}, {}, 0.0
    for _ in range(steps):
        for name in order:
            node = graph.nodes[name]
            inputs = [values[s] for s, d in graph.edges if d == name]
            z = x if isinstance(node, nir.Input) else sum(inputs[1:], inputs[0])
            t = lambda a: torch.as_tensor(np.asarray(a, dtype=np.float32))  # noqa: E731
            if isinstance(node, nir.Conv2d):
                z = F.conv2d(z, t(node.weight), t(node.bias), tuple(node.stride), tuple(node.padding))
            elif isinstance(node, nir.Affine):
                z = z @ t(node.weight).T + t(node.bias)
            elif isinstance(node, nir.AvgPool2d):
                z = F.avg_pool2d(z, tuple(node.kernel_size), tuple(node.stride))
            elif isinstance(node, nir.SumPool2d):
                z = F.avg_pool2d(z, tuple(node.kernel_size), tuple(node.stride), divisor_override=1)
            elif isinstance(node, nir.Flatten):
                z = z.flatten(1)
            elif isinstance(node, nir.Scale):
                z = z * t(node.scale)
            elif isinstance(node, nir.IF):
                meta = node.metadata["lightning_snn"]
                assert (meta["reset"], meta["fires_at"], int(meta["max_spikes_per_step"])) == ("subtract", ">=", 1)
                v = state.get(name, torch.zeros_like(z)) + z
                spikes = (v >= t(node.v_threshold)).float()
                state[name] = v - spikes * t(node.v_threshold)
                z = spikes
            elif isinstance(node, (nir.I, nir.Output, nir.Input)):
                pass
            else:
                raise AssertionError(f"unexpected node {type(node).__name__}")
            values[name] = z
        total = total + next(values[n] for n, node in graph.nodes.items() if isinstance(node, nir.Output))
    return total / steps


def dyadic_thresholds(model, x):
    """Calibrated thresholds rounded up to powers of two: every spike amplitude folded into a weight
    is then an exact product, so export and import are exact in float32 (no rounding anywhere)."""
    return {k: 2.0 ** math_ceil_log2(v) for k, v in calibrate_thresholds(model, [x]).items()}


def math_ceil_log2(v: float) -> int:
    return int(np.ceil(np.log2(v)))


@pytest.mark.parametrize("pooling", ["avg", "sum", "conv"])
def test_round_trip_is_exact_and_the_file_means_the_bias_shift_snn(pooling, tmp_path):
    model, x = vgg_like(), images()
    th = dyadic_thresholds(model, x)
    snn = convert(model, th, shift="membrane")
    path = export_nir(snn, tmp_path / "snn.nir", (3, 8, 8), 16, pooling=pooling)
    back = import_nir(path)
    assert (back.shift, back.timesteps, back.readout) == ("membrane", None, "analog")
    ts = [1, 5, 16, 40]  # restored: the membrane shift again, valid at every T
    assert torch.equal(simulate(back, x, ts), simulate(snn, x, ts))

    exported = import_nir(path, restore=False)  # the network the file describes: the bias shift at T = 16
    assert (exported.shift, exported.timesteps) == ("bias", 16)
    bias = convert(model, th, shift="bias", timesteps=16)
    mine = simulate(exported, x, [16])[0]
    torch.testing.assert_close(mine, simulate(bias, x, [16])[0], rtol=0, atol=1e-5)
    torch.testing.assert_close(nir_reference(nir.read(str(path)), x, 16), mine, rtol=0, atol=1e-5)


def test_calibrated_thresholds_round_trip_with_identical_predictions(tmp_path):
    model, x = vgg_like(), images(32)
    snn = convert(model, calibrate_thresholds(model, [x]), shift="membrane", readout="spiking")
    back = import_nir(export_nir(snn, tmp_path / "s.nir", (3, 8, 8), 32))
    assert back.readout == "spiking" and back.thresholds[OUTPUT_KEY] == pytest.approx(snn.thresholds[OUTPUT_KEY])
    ours, theirs = simulate(snn, x, [8, 32]), simulate(back, x, [8, 32])
    assert torch.equal(ours.argmax(-1), theirs.argmax(-1))
    torch.testing.assert_close(theirs, ours, rtol=0, atol=1e-4)  # weights x V_th rounded once in float32


def test_residual_sums_scales_and_per_channel_thresholds(tmp_path):
    model, x = Residual().eval(), images()
    th = calibrate_thresholds(model, [x], method="channel")
    th = {k: (2.0 ** torch.ceil(torch.log2(v)) if isinstance(v, torch.Tensor) else v) for k, v in th.items()}
    snn = convert(model, th, shift="membrane")
    graph = to_nir(snn, (3, 8, 8), 8)
    kinds = [type(n).__name__ for n in graph.nodes.values()]
    assert kinds.count("IF") == 3 and "Scale" in kinds and kinds[-2:] == ["I", "Output"]
    into_last_if = [s for s, d in graph.edges if d.endswith("_relu_2")]
    assert len(into_last_if) >= 2  # the residual sum: several edges into one node
    nir.write(str(tmp_path / "r.nir"), graph)
    back = import_nir(tmp_path / "r.nir")
    assert torch.equal(simulate(back, x, [3, 8]), simulate(snn, x, [3, 8]))
    torch.testing.assert_close(
        nir_reference(graph, x, 8),
        simulate(import_nir(tmp_path / "r.nir", restore=False), x, [8])[0],
        atol=1e-5,
        rtol=0,
    )


def test_a_neuron_fed_only_by_spikes_gets_its_shift_from_a_bias_node(tmp_path):
    class SumOfSpikes(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(2)
            self.a, self.b, self.head = nn.Conv2d(3, 4, 3), nn.Conv2d(3, 4, 3), nn.Linear(4 * 6 * 6, 3)

        def forward(self, x):
            return self.head(F.relu(F.relu(self.a(x)) + F.relu(self.b(x))).flatten(1))

    model, x = SumOfSpikes().eval(), images()
    snn = convert(model, dyadic_thresholds(model, x), shift="membrane")
    graph = to_nir(snn, (3, 8, 8), 8)
    (bias_node,) = [k for k in graph.nodes if k.endswith("_bias")]
    assert isinstance(graph.nodes[bias_node], nir.Conv2d) and np.any(graph.nodes[bias_node].bias != 0)
    nir.write(str(tmp_path / "s.nir"), graph)
    assert torch.equal(simulate(import_nir(tmp_path / "s.nir"), x, [2, 8]), simulate(snn, x, [2, 8]))
    exported = simulate(import_nir(tmp_path / "s.nir", restore=False), x, [8])[0]
    torch.testing.assert_close(nir_reference(graph, x, 8), exported, rtol=0, atol=1e-5)


def test_if_nodes_carry_their_semantics_and_the_shift_at_T(tmp_path):
    model, x = vgg_like(), images()
    th = calibrate_thresholds(model, [x])
    path = export_nir(convert(model, th, shift="membrane"), tmp_path / "s.nir", (3, 8, 8), 64)
    graph = nir.read(str(path))
    assert graph.metadata["lightning_snn"]["timesteps"] == 64
    neurons = {k: n for k, n in graph.nodes.items() if isinstance(n, nir.IF)}
    assert len(neurons) == 2
    for name, node in neurons.items():
        meta = node.metadata["lightning_snn"]
        assert meta["reset"] == "subtract" and meta["fires_at"] == ">=" and meta["initial_potential"] == 0
        vth = th[meta["site"]]
        assert np.allclose(node.v_threshold, vth) and np.allclose(meta["source_v_init"], vth / 2)
        carrier = graph.nodes[meta["bias_shift_in"]]  # V_th / (2T) added to the bias feeding the neuron
        assert np.allclose(carrier.bias - meta["source_bias_of_carrier"], vth / 128, atol=1e-6)
        assert [d for s, d in graph.edges if s == meta["bias_shift_in"]] == [name]


def test_the_files_node_order_is_an_execution_order(tmp_path):
    """nir.read returns the nodes sorted by name (HDF5); readers that walk them in that order
    (nirtorch 2.0.2's nir_to_torch, snnTorch's importer) must meet every node after its inputs."""
    model, x = Residual().eval(), images()
    snn = convert(model, calibrate_thresholds(model, [x]), shift="membrane")
    path = export_nir(snn, tmp_path / "r.nir", (3, 8, 8), 8)
    graph = nir.read(str(path))
    seen: set[str] = set()
    for name in sorted(graph.nodes):
        assert all(s in seen for s, d in graph.edges if d == name), name
        seen.add(name)


def test_a_bias_shift_snn_exports_at_its_own_T_only(tmp_path):
    model, x = vgg_like(), images()
    th = calibrate_thresholds(model, [x])
    snn = convert(model, th, shift="bias", timesteps=32)
    with pytest.raises(ExportError, match="built for T = 32"):
        to_nir(snn, (3, 8, 8), 64)
    back = import_nir(export_nir(snn, tmp_path / "b.nir", (3, 8, 8), 32))
    assert (back.shift, back.timesteps) == ("bias", 32)
    assert torch.equal(simulate(back, x, [32]).argmax(-1), simulate(snn, x, [32]).argmax(-1))


@pytest.mark.parametrize(
    "model, match",
    [
        (
            nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(36, 2)),
            "'2'.*max-pool",
        ),
        (nn.Sequential(nn.MaxPool2d(2), nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4, 2)), "'0'.*max"),
        (
            nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.ZeroPad2d(1), nn.Flatten(), nn.Linear(144, 2)),
            "'2'.*ZeroPad",
        ),
    ],
)
def test_what_nir_cannot_hold_is_refused_by_name(model, match):
    with pytest.raises(ExportError, match=match):
        check_model_exportable(model)


def test_concatenation_signed_neurons_and_bad_reshapes_are_refused():
    class Cat(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = nn.Conv2d(3, 2, 1), nn.Conv2d(3, 2, 1)

        def forward(self, x):
            return torch.cat([F.relu(self.a(x)), F.relu(self.b(x))], 1).flatten(1)

    x = images(4, 4)
    with pytest.raises(ExportError, match="'cat'.*no NIR node"):
        to_nir(convert(Cat(), calibrate_thresholds(Cat(), [x])), (3, 4, 4), 8)
    model = vgg_like()
    signed = convert(model, calibrate_thresholds(model, [images()]), neuron="signed")
    with pytest.raises(ExportError, match="'2'.*negative spikes"):
        to_nir(signed, (3, 8, 8), 8)

    class Rows(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 2, 1)

        def forward(self, x):
            return F.relu(self.conv(x)).view(x.shape[0], 2, -1)

    with pytest.raises(ExportError, match="reshapes .* Flatten"):
        to_nir(convert(Rows(), calibrate_thresholds(Rows(), [x])), (3, 4, 4), 8)


def test_a_file_not_written_here_is_refused_by_the_importer():
    graph = nir.NIRGraph.from_list(nir.Affine(weight=np.ones((2, 3), np.float32), bias=np.zeros(2, np.float32)))
    with pytest.raises(ExportError, match="not written by lightning_snn.export"):
        from_nir(graph)


def test_export_settings_are_checked_before_any_work():
    check_export_settings(None, None)
    check_export_settings("nir", 64, {"pooling": "sum", "integrator": False})
    for args, kwargs, match in [
        (("onnx", 64), {}, "unknown export format"),
        (("nir", None), {}, "export_timesteps"),
        (("nir", 0), {}, "export_timesteps"),
        (("nir", 64, {"leak": 1}), {}, "unknown snn.export_options"),
        (("nir", 64, {"pooling": "max"}), {}, "pooling"),
        ((None, 64), {}, "snn.export is not"),
        (("nir", 64), {"shift": "bias", "simulated": [16, 32]}, "one of them"),
    ]:
        with pytest.raises(ValueError, match=match):
            check_export_settings(*args, **kwargs)
    with pytest.raises(ExportError, match="signed"):
        check_export_settings("nir", 64, neuron="signed")


def test_without_the_nir_package_the_error_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "nir", None)  # import nir now raises ImportError
    model = vgg_like()
    snn = convert(model, calibrate_thresholds(model, [images()]))
    with pytest.raises(ImportError, match=r'pip install -e "\.\[nir\]"'):
        to_nir(snn, (3, 8, 8), 8)
    with pytest.raises(ImportError, match=r"\.\[nir\]"):
        check_export_settings("nir", 64)


# ---- from the conversion callback: snn.export writes snn.nir beside the results --------------------
def test_the_callback_writes_snn_nir_beside_the_results(tmp_path):
    from lightning_snn.callbacks.snn_conversion import SNNConversion

    from tests.test_callback import fake_trainer, tiny_module

    trainer = fake_trainer(tmp_path)
    callback = SNNConversion(timesteps=[4, 8], export="nir", export_timesteps=8, export_options={"pooling": "sum"})
    callback.evaluate(trainer, tiny_module(), stage="test")
    (results,) = list(tmp_path.rglob("snn_results.json"))
    path = results.with_name("snn.nir")
    graph = nir.read(str(path))
    assert graph.metadata["lightning_snn"]["timesteps"] == 8
    back = import_nir(path)
    x = torch.ones(8, 16)
    (snn,) = callback.report.snns
    assert torch.equal(simulate(back, x, [4, 8]), simulate(snn, x, [4, 8]))


def test_the_callback_refuses_an_unexportable_model_before_training(tmp_path):
    from lightning_snn.callbacks.snn_conversion import SNNConversion

    from tests.test_callback import fake_trainer, tiny_module

    module = tiny_module()
    module.model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 4, 3), nn.ReLU(), nn.MaxPool2d(2))
    with pytest.raises(ExportError, match="max-pool"):
        SNNConversion(export="nir", export_timesteps=64).setup(fake_trainer(tmp_path), module, stage="fit")
    with pytest.raises(ValueError, match="export_timesteps"):
        SNNConversion(export="nir")
    with pytest.raises(ValueError, match="one of them"):
        SNNConversion(timesteps=[16, 32], shift="bias", export="nir", export_timesteps=64)


def test_a_failed_export_keeps_the_results_and_leaves_no_empty_file(tmp_path, monkeypatch):
    import lightning_snn.callbacks.snn_conversion as callback_module
    from lightning_snn.callbacks.snn_conversion import SNNConversion

    from tests.test_callback import fake_trainer, tiny_module

    def refuse(*args, **kwargs):
        raise ExportError("cannot export to NIR: planted")

    monkeypatch.setattr(callback_module, "export_nir", refuse)
    trainer = fake_trainer(tmp_path)
    with pytest.raises(ExportError, match="results were written, but the NIR export failed: cannot export"):
        SNNConversion(timesteps=[4], export="nir", export_timesteps=4).evaluate(trainer, tiny_module(), stage="test")
    (results,) = list(tmp_path.rglob("snn_results.json"))
    assert results.stat().st_size > 0 and not list(tmp_path.rglob("*.nir"))

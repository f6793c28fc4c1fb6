"""The layers that see only the constant input run once per batch, with bit-identical results."""

from __future__ import annotations

import torch

from lightning_snn.activations import set_threshold_enabled
from lightning_snn.constant_input import _split
from lightning_snn.conversion import calibrate_thresholds, convert
from lightning_snn.models import create_model
from lightning_snn.simulation import simulate


def small_snn(readout: str = "analog"):
    torch.manual_seed(0)
    model = create_model("vgg11", width=0.0625).eval()
    set_threshold_enabled(model, True)
    thresholds = calibrate_thresholds(model, [torch.randn(16, 3, 32, 32)])
    return convert(model, thresholds, "membrane", None, readout), torch.randn(4, 3, 32, 32)


def test_first_layer_runs_once_per_batch_and_nothing_changes():
    for readout in ("analog", "spiking"):
        snn, x = small_snn(readout)
        body = getattr(snn, "body", snn)
        calls = []
        first = body.get_submodule("features.0")
        handle = first.register_forward_hook(lambda *_, calls=calls: calls.append(1))
        split = simulate(snn, x, [4, 9], time_chunk=1)
        handle.remove()
        assert len(calls) == 1, readout  # not once per chunk (9 chunks)
        # a hook on the whole model keeps the plain per-chunk forward (the hook must see every chunk)
        seen = []
        whole = snn.register_forward_hook(lambda *_, seen=seen: seen.append(1))
        plain = simulate(snn, x, [4, 9], time_chunk=1)
        whole.remove()
        assert len(seen) == 9
        assert torch.equal(split, plain), readout  # float32, bit for bit


def test_split_keeps_only_the_constant_layers_in_the_prefix():
    snn, _ = small_snn()
    prefix, rest = _split(snn.body)
    assert [n.target for n in prefix.graph.nodes if n.op == "call_module"] == ["features.0"]
    assert "features.0" not in [n.target for n in rest.graph.nodes if n.op == "call_module"]

"""Event-driven layers: the dense layer's result (bit for bit where every sum is exact), the same
spikes as the dense path in an SNN, and only below the crossover density."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lightning_snn import sparse
from lightning_snn.activations import set_threshold_enabled
from lightning_snn.conversion import calibrate_thresholds, convert
from lightning_snn.models import create_model
from lightning_snn.neurons import IFNeuron
from lightning_snn.simulation import simulate


def dyadic(shape, gen, scale=8) -> torch.Tensor:
    """Small multiples of 1/scale: every product and sum below is exact in float32."""
    return torch.randint(-scale, scale + 1, shape, generator=gen).float() / scale


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_event_layers_equal_dense_layers_where_sums_are_exact(dtype):
    gen = torch.Generator().manual_seed(0)
    x = (torch.rand(3, 5, 9, 7, generator=gen) < 0.15) * torch.randint(1, 4, (3, 5, 9, 7), generator=gen)
    x = x.to(dtype)
    w, b = dyadic((6, 5, 3, 3), gen).to(dtype), dyadic((6,), gen).to(dtype)
    for stride, padding in [((1, 1), (1, 1)), ((2, 2), (1, 1)), ((1, 2), (0, 1)), ((2, 1), (2, 0))]:
        dense = F.conv2d(x, w, b, stride, padding)
        event = sparse.event_conv2d(x, w.permute(1, 2, 3, 0).contiguous(), b, stride, padding)
        assert torch.equal(event, dense), (stride, padding)
    assert torch.equal(
        sparse.event_conv2d(x, w.permute(1, 2, 3, 0).contiguous(), None, (1, 1), (1, 1)), F.conv2d(x, w, None, 1, 1)
    )
    xl = x.view(3, -1)
    wl, bl = dyadic((4, xl.shape[1]), gen).to(dtype), dyadic((4,), gen).to(dtype)
    assert torch.equal(sparse.event_linear(xl, wl.t().contiguous(), bl), F.linear(xl, wl, bl))
    assert torch.equal(
        sparse.event_linear(torch.zeros_like(xl), wl.t().contiguous(), None), torch.zeros(3, 4, dtype=dtype)
    )


def test_layers_switch_only_below_the_crossover_and_back():
    gen = torch.Generator().manual_seed(1)
    net = nn.Sequential(nn.Conv2d(4, 3, 3, padding=1), nn.Flatten(), nn.Linear(3 * 25, 2))
    keys = list(net.state_dict())
    assert sparse.make_event_driven(net, {"conv2d": 0.5, "linear": 0.0}) == 2
    assert isinstance(net[0], nn.Conv2d) and type(net[0]) is sparse.EventConv2d and list(net.state_dict()) == keys
    sparse_input = (torch.rand(2, 4, 5, 5, generator=gen) < 0.2).float()
    with torch.no_grad():
        out = net(sparse_input)  # conv: density ~0.2 < 0.5: event-driven; linear: crossover 0: dense
        dense = F.linear(
            F.conv2d(sparse_input, net[0].weight, net[0].bias, padding=1).flatten(1), net[2].weight, net[2].bias
        )
        assert torch.allclose(out, dense, atol=1e-6)
        net(torch.ones(2, 4, 5, 5))  # density 1: dense
    assert (net[0].event_calls, net[0].dense_calls, net[2].event_calls, net[2].dense_calls) == (1, 1, 0, 2)
    sparse.make_dense(net)
    assert type(net[0]) is nn.Conv2d and type(net[2]) is nn.Linear
    with pytest.raises(ValueError, match="crossover keys"):
        sparse.make_event_driven(net, {"conv": 0.1})


@pytest.fixture(scope="module")
def small():
    torch.manual_seed(0)
    model = create_model("vgg11", width=0.0625).double().eval()
    set_threshold_enabled(model, True)
    x = torch.randn(3, 3, 32, 32, dtype=torch.float64)
    thresholds = calibrate_thresholds(model, [torch.randn(16, 3, 32, 32, dtype=torch.float64)])
    return model, thresholds, x


@pytest.mark.parametrize("neuron", ["if", "signed"])
@pytest.mark.parametrize("shift", ["none", "membrane", "bias"])
def test_event_driven_snn_fires_the_dense_snns_spikes(small, shift, neuron):
    """Every layer after the first event-driven (crossover 1): the same spike counts (float64)."""
    model, thresholds, x = small
    snn = convert(model, thresholds, shift=shift, timesteps=12, neuron=neuron)
    runs = []
    for event in (False, True):
        if event:
            sparse.make_event_driven(snn, {"conv2d": 1.0, "linear": 1.0})
        out = simulate(snn, x, [12], 4, record_spikes=True)
        runs.append((out, [m.spike_count.clone() for m in snn.modules() if isinstance(m, IFNeuron)]))
    (dense, dense_counts), (event, event_counts) = runs
    assert all(torch.equal(a, b) for a, b in zip(dense_counts, event_counts))
    assert torch.allclose(event, dense, atol=1e-9)
    shares = sparse.event_share(snn)
    assert shares["features.0"] == 0.0  # the analog image has no zeros: the first layer stays dense
    assert sum(s > 0 for s in shares.values()) >= len(shares) - 1


def test_sparse_mode_makes_the_evaluators_snns_event_driven(small):
    from lightning_snn.simulation import SpikingEvaluator

    model, thresholds, x = small
    with sparse.sparse_mode("auto"):
        ev = SpikingEvaluator(model, thresholds, [8], shift="bias")
    assert all(isinstance(m, sparse.EventConv2d) for m in ev.snn_at(8).modules() if isinstance(m, nn.Conv2d))
    dense = SpikingEvaluator(model, thresholds, [8], shift="bias")  # the default mode: off
    assert not any(isinstance(m, sparse.EventConv2d) for m in dense.snn_at(8).modules())
    assert torch.allclose(ev(x), dense(x), atol=1e-9)
    with pytest.raises(ValueError, match="sparse mode"):
        sparse.set_sparse_mode("on")

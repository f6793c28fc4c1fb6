"""The graph converter: every activation call site, batch norm, max pooling, and refusals by name."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lightning_snn.conversion import calibrate_thresholds, check_convertible, convert, neurons
from lightning_snn.graph import ConversionError, activation_sites, fold_batch_norm, max_pool_sites, prepare
from lightning_snn.neurons import SpikingMaxPool2d
from lightning_snn.reference import simulate_reference
from lightning_snn.simulation import simulate


class ReusedReLUResNet(nn.Module):
    """BN + residual CNN that calls ONE nn.ReLU object at three sites (as torchvision's BasicBlock)."""

    def __init__(self, c: int = 8, classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, c, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c)
        self.relu = nn.ReLU(inplace=True)
        self.pool = nn.AdaptiveAvgPool2d(4)
        self.fc = nn.Linear(c * 4 * 4, classes)

    def forward(self, x):
        h = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(h)))
        out = self.relu(out + h)
        return self.fc(torch.flatten(self.pool(out), 1))


class FunctionalNet(nn.Module):
    """Every functional ReLU form the converter accepts, and a max pool after an activation."""

    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(3, 6, 3, padding=1)
        self.c2 = nn.Conv2d(6, 6, 3, padding=1)
        self.c3 = nn.Conv2d(6, 6, 3, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.avg = nn.AdaptiveAvgPool2d(4)
        self.fc1 = nn.Linear(6 * 4 * 4, 16)
        self.fc2 = nn.Linear(16, 5)

    def forward(self, x):
        h = F.relu(self.c1(x))
        h = torch.relu(self.c2(h))
        h = self.pool(self.c3(h).clamp(min=0))
        h = self.avg(h).flatten(1)
        h = self.fc1(h).relu()
        return self.fc2(torch.clamp(h, 0, 2.0) * 0.5)


def _randomise_bn(model: nn.Module) -> nn.Module:
    gen = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            c = m.num_features
            m.running_mean.copy_(torch.randn(c, generator=gen) * 0.2)
            m.running_var.copy_(torch.rand(c, generator=gen) + 0.5)
            m.weight.data.copy_(torch.rand(c, generator=gen) + 0.5)
            m.bias.data.copy_(torch.randn(c, generator=gen) * 0.1)
    return model.eval()


def _agreement(ann: nn.Module, x: torch.Tensor, T: int) -> tuple[float, float]:
    """(fraction of equal predictions, relative output error) of the SNN at T vs its ANN."""
    snn = convert(ann, calibrate_thresholds(ann, [x]), shift="membrane")
    with torch.no_grad():
        y = ann(x)
    out = simulate(snn, x, [T])[0]
    agree = (out.argmax(1) == y.argmax(1)).double().mean().item()
    return agree, ((out - y).norm() / y.norm()).item()


def test_a_reused_relu_module_becomes_one_neuron_per_call_site():
    torch.manual_seed(0)
    model = _randomise_bn(ReusedReLUResNet())
    sites = activation_sites(prepare(model))
    assert list(sites) == ["relu", "relu__call1", "relu__call2"]
    assert len({id(m) for m in sites.values()}) == 3
    x = torch.randn(4, 3, 32, 32)
    snn = convert(model, calibrate_thresholds(model, [x]))
    ns = neurons(snn)
    assert len(ns) == 3 and len({id(n) for n in ns}) == 3
    simulate(snn, x, [5])  # each neuron kept its own membrane, of its own site's shape
    thresholds = calibrate_thresholds(model, [x])
    assert [n.v_threshold.item() for n in ns] == pytest.approx([thresholds[k] for k in sites], rel=1e-6)


def test_reused_relu_and_bn_residual_net_converges_to_its_ann():
    torch.manual_seed(0)
    model = _randomise_bn(ReusedReLUResNet())
    x = torch.randn(32, 3, 16, 16)
    agree, err = _agreement(model, x, 512)
    assert agree >= 0.95 and err < 0.05, (agree, err)


def test_functional_relus_are_converted_and_converge():
    torch.manual_seed(0)
    model = FunctionalNet().eval()
    sites = activation_sites(prepare(model))
    assert len(sites) == 5  # F.relu, torch.relu, clamp(min=0), Tensor.relu, clamp(0, 2)
    x = torch.randn(32, 3, 16, 16)
    agree, err = _agreement(model, x, 512)
    assert agree >= 0.95 and err < 0.05, (agree, err)


def test_batch_norm_folding_is_exact():
    torch.manual_seed(0)
    conv, bn = nn.Conv2d(3, 5, 3, groups=1), nn.BatchNorm2d(5)
    _randomise_bn(nn.Sequential(conv, bn))
    x = torch.randn(4, 3, 9, 9)
    with torch.no_grad():
        assert torch.allclose(fold_batch_norm(conv, bn)(x), bn(conv(x)), rtol=1e-5, atol=1e-6)
    lin, bn1 = nn.Linear(6, 4, bias=False), nn.BatchNorm1d(4)
    _randomise_bn(nn.Sequential(lin, bn1))
    z = torch.randn(8, 6)
    with torch.no_grad():
        assert torch.allclose(fold_batch_norm(lin, bn1)(z), bn1(lin(z)), rtol=1e-5, atol=1e-6)


def test_prepared_graph_equals_the_ann_and_has_no_batch_norm_left_after_convs():
    torch.manual_seed(0)
    model = _randomise_bn(ReusedReLUResNet())
    gm = prepare(model)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in gm.modules())
    x = torch.randn(8, 3, 32, 32)
    with torch.no_grad():
        ref, out = model(x), gm(x)
    assert ((out - ref).norm() / ref.norm()).item() < 1e-5


def test_batch_norm_that_follows_no_conv_stays_as_an_affine_layer():
    torch.manual_seed(0)
    model = _randomise_bn(
        nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.BatchNorm2d(4), nn.Conv2d(4, 4, 3), nn.ReLU())
    )
    gm = prepare(model)
    assert sum(isinstance(m, nn.BatchNorm2d) for m in gm.modules()) == 1
    x = torch.randn(16, 3, 12, 12)
    snn = convert(model, calibrate_thresholds(model, [x]))
    with torch.no_grad():
        y = model(x)
    assert ((simulate(snn, x, [512])[0] - y).norm() / y.norm()).item() < 0.05


def test_the_ann_is_never_modified():
    torch.manual_seed(0)
    model = _randomise_bn(ReusedReLUResNet()).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(8, 3, 32, 32)
    convert(model, calibrate_thresholds(model, [x]))
    assert model.training
    after = model.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    assert model.relu is not None and isinstance(model.relu, nn.ReLU)


def test_fast_engine_equals_the_reference_on_a_graph_with_every_kind_of_site():
    torch.manual_seed(0)
    model = FunctionalNet().double().eval()
    x = torch.randn(6, 3, 32, 32, dtype=torch.float64)
    snn = convert(model, calibrate_thresholds(model, [x]), shift="membrane")
    ref = simulate_reference(snn, x, 20)
    for chunk in (1, 3, 20):
        assert torch.allclose(simulate(snn, x, [20], time_chunk=chunk)[0], ref, atol=1e-9), chunk


def test_spiking_max_pool_passes_the_spikes_of_the_most_active_input():
    pool = SpikingMaxPool2d(2)
    pool.steps, pool.batch_size = 4, 1
    # one window, four inputs; input 1 fires at t=0,1; input 2 fires at t=1,2,3
    s = torch.zeros(4, 1, 1, 2, 2)
    s[0, 0, 0, 0, 1] = 1
    s[1, 0, 0, 0, 1] = 1
    s[1, 0, 0, 1, 0] = 1
    s[2, 0, 0, 1, 0] = 1
    s[3, 0, 0, 1, 0] = 1
    out = pool(s.flatten(0, 1)).view(4)
    # t0: winner input 1 (count 1) fires -> 1; t1: both count 2/1 -> input 1 fires -> 1;
    # t2: counts 2/2, tie -> first (input 1), which is silent -> 0; t3: input 2 leads (3 > 2) -> 1
    assert out.tolist() == [1.0, 1.0, 0.0, 1.0]


def test_spiking_max_pool_rate_converges_to_the_max_rate():
    torch.manual_seed(0)
    z = torch.rand(16, 3, 8, 8)
    # the second IF layer receives the first one's spikes (amplitude 1) and fires them again, so
    # the max-pool gates spikes (on the analog input it would be moved before the neuron, exact)
    model = nn.Sequential(nn.Identity(), nn.ReLU(), nn.Identity(), nn.ReLU(), nn.MaxPool2d(2)).eval()
    snn = convert(model, {"1": 1.0, "3": 1.0}, shift="membrane")
    assert isinstance(snn.body.get_submodule("4"), SpikingMaxPool2d)
    errs = [(simulate(snn, z, [t])[0] - F.max_pool2d(z, 2)).abs().mean().item() for t in (8, 64, 512)]
    assert errs[2] < errs[0] and errs[2] < 0.01, errs


@pytest.mark.parametrize(
    ("model", "name"),
    [
        (nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 4, 3), nn.GELU()), "'3' (GELU)"),
        (nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.LeakyReLU()), "LeakyReLU"),
        (nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Sigmoid()), "Sigmoid"),
        (nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Softmax(dim=1)), "Softmax"),
        (nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.GroupNorm(2, 4)), "GroupNorm"),
        (nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.LayerNorm(4)), "LayerNorm"),
        (
            nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 4, 3), nn.MaxPool2d(2), nn.ReLU()),
            "not fed directly by an activation",
        ),
        (nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveMaxPool2d(1)), "AdaptiveMaxPool2d"),
    ],
)
def test_modules_off_the_allow_list_are_refused_by_name(model, name):
    with pytest.raises(ConversionError, match=name.replace("(", r"\(").replace(")", r"\)")):
        check_convertible(model)


class Square(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x):
        y = torch.relu(self.fc(x))
        return y * y


class FunctionalOp(nn.Module):
    def __init__(self, op) -> None:
        super().__init__()
        self.fc, self.op = nn.Linear(4, 4), op

    def forward(self, x):
        return self.op(torch.relu(self.fc(x)))


class Untraceable(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x):
        h = torch.relu(self.fc(x))
        if h.sum() > 0:  # data-dependent control flow
            return h
        return -h


@pytest.mark.parametrize(
    ("model", "match"),
    [
        (Square(), "'mul'.*two time-varying"),
        (FunctionalOp(F.gelu), "'gelu'"),
        (FunctionalOp(torch.sigmoid), "'sigmoid'"),
        (FunctionalOp(lambda h: h.clamp(min=-1.0)), "clamps with min=-1.0"),
        (FunctionalOp(lambda h: torch.clamp_min(h, 0.5)), "clamps with min=0.5"),
        (FunctionalOp(lambda h: F.max_pool1d(h.unsqueeze(1), 2)), "'max_pool1d'"),
        (FunctionalOp(lambda h: h.mean()), "dimension 0"),
        (FunctionalOp(lambda h: torch.cat([h, h], 0)), "dimension 0"),
        (FunctionalOp(lambda h: h.softmax(1)), "Tensor.softmax"),
        (Untraceable(), "cannot be traced with torch.fx"),
        (nn.Sequential(nn.Flatten(), nn.Linear(3, 2)), "no ReLU-like activation"),
    ],
)
def test_functions_off_the_allow_list_and_untraceable_models_are_refused(model, match):
    with pytest.raises(ConversionError, match=match):
        convert(model, {})


def test_refusal_comes_before_any_work():
    """calibrate_thresholds refuses too: nothing runs on a model the converter would get wrong."""
    calls = []
    model = FunctionalOp(F.gelu)
    model.fc.register_forward_hook(lambda *a: calls.append(1))
    with pytest.raises(ConversionError):
        calibrate_thresholds(model, [torch.randn(2, 4)])
    assert calls == []


def test_a_dead_or_nan_layer_is_named():
    model = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2))
    with pytest.raises(ValueError, match="layer '1' never activated"):
        convert(model, {"1": 0.0})
    with pytest.raises(ValueError, match="layer '1' is \\[?nan"):
        convert(model, {"1": float("nan")})


def test_simulate_refuses_an_unconverted_model():
    with pytest.raises(TypeError, match="convert"):
        simulate(nn.Sequential(nn.Linear(4, 2)), torch.randn(2, 4), [4])


def test_torchvision_resnet18_converts_as_shipped():
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    model = _randomise_bn(torchvision.models.resnet18(num_classes=10))
    gm = prepare(model)
    sites = activation_sites(gm)
    # stem relu + 2 per BasicBlock x 8 blocks: the block's self.relu is called twice
    assert len(sites) == 17 and "layer1.0.relu__call1" in sites
    assert not any(isinstance(m, nn.BatchNorm2d) for m in gm.modules())
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        assert ((gm(x) - model(x)).norm() / model(x).norm()).item() < 1e-4
    snn = convert(model, calibrate_thresholds(model, [x]))
    # the stem's max-pool follows conv -> BN -> ReLU on the analog input: moved before the IF layer, exact
    assert not any(isinstance(m, SpikingMaxPool2d) for m in snn.modules())
    assert isinstance(snn.body.get_submodule("maxpool"), nn.MaxPool2d)
    assert simulate(snn, x, [4]).shape == (1, 4, 10)


def test_max_pool_on_the_analog_input_path_moves_before_the_neuron_and_is_exact():
    """conv -> ReLU -> max-pool on the input: the pool runs on the IF layer's constant current,
    so every T gives exactly the IF count of the pooled current, clip(floor(T z / V_th + 1/2), 0, T)."""
    torch.manual_seed(3)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Dropout(0.1), nn.MaxPool2d(2)).eval()
    gm = prepare(model)
    x = torch.randn(5, 3, 8, 8)
    with torch.no_grad():
        assert torch.allclose(gm(x), model(x), atol=1e-6)  # max-pool and ReLU commute in the ANN
        z = F.max_pool2d(model[0](x), 2)
    assert max_pool_sites(gm) == {}
    vth = 0.7
    snn = convert(model, {"1": vth}, shift="membrane")
    assert not any(isinstance(m, SpikingMaxPool2d) for m in snn.modules())
    ts = [1, 2, 3, 8, 33]
    out = simulate(snn, x, ts)
    for i, t in enumerate(ts):
        count = torch.clamp(torch.floor(t * z / vth + 0.5), 0, t)
        assert torch.allclose(out[i], count * vth / t, atol=1e-5), t


def test_max_pool_after_a_spiking_layer_stays_gated():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 4, 3), nn.ReLU(), nn.MaxPool2d(2)).eval()
    gm = prepare(model)
    assert list(max_pool_sites(gm)) == ["4"]
    snn = convert(model, {"1": 1.0, "3": 1.0})
    assert isinstance(snn.body.get_submodule("4"), SpikingMaxPool2d)


def test_signed_neurons_cannot_feed_a_gated_max_pool_and_are_refused_by_name():
    from lightning_snn.conversion import check_neuron

    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 4, 3), nn.ReLU(), nn.MaxPool2d(2)).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ConversionError, match=r"max-pool\(s\) \['4'\].*neuron='if'"):
        convert(model, {"1": 1.0, "3": 1.0}, neuron="signed")
    with pytest.raises(ConversionError, match=r"\['4'\]"):
        check_neuron("signed", model)  # what the callback runs before training
    check_neuron("if", model)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    # an exact (analog-path) max-pool is no obstacle
    analog = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)).eval()
    check_neuron("signed", analog)
    convert(analog, {"1": 1.0}, neuron="signed")

"""The registered source ANNs: the paper's shapes, trainable end to end, convertible as they are."""

from __future__ import annotations

import inspect
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lightning_snn.activations import QCFS, ThresholdReLU, make_activation, set_threshold_enabled
from lightning_snn.conversion import activation_layers, check_convertible
from lightning_snn.models import MODELS, TEXT_MODELS, create_model
from lightning_snn.models.registry import accepted_kwargs
from lightning_snn.models.resnet import BasicBlock
from lightning_snn.models.rnn import TextClassifier
from lightning_snn.module import ConversionModule

IMAGE_MODELS = sorted(set(MODELS) - set(TEXT_MODELS))  # the text models: tests/test_recurrent_conversion.py
PAPER_MODELS = {"cifarnet", "vgg16", "vgg16_1x1", "vgg16_imagenet", "resnet20"}
#: activation modules per model: convs + hidden FCs (ResNet: 3 stem + 2 per block x 8 blocks)
ACTIVATION_COUNT = {"cifarnet": 7, "vgg11": 10, "vgg13": 12, "vgg16": 15, "vgg16_1x1": 15, "vgg16_imagenet": 15}
ACTIVATION_COUNT["resnet20"] = 3 + 2 * 8


def input_size(name: str) -> int:
    return 224 if name.endswith("imagenet") else 32


def on_meta(name: str, **kwargs) -> nn.Module:
    """A full-width model without allocating or initialising its weights (structure tests)."""
    with torch.device("meta"):
        return create_model(name, **kwargs)


def convs(model: nn.Module) -> list[nn.Conv2d]:
    return [m for m in model.modules() if isinstance(m, nn.Conv2d)]


def linears(model: nn.Module) -> list[nn.Linear]:
    return [m for m in model.modules() if isinstance(m, nn.Linear)]


def test_the_paper_models_are_registered():
    assert PAPER_MODELS <= set(MODELS)


@pytest.mark.parametrize("name", IMAGE_MODELS)
def test_forward_backward_and_convertible(name):
    torch.manual_seed(0)
    model = create_model(name, num_classes=7, width=1 / 16, act_layer=make_activation("threshold_relu", y_th=1.5))
    x = torch.randn(3, 3, input_size(name), input_size(name))
    out = model(x)
    assert out.shape == (3, 7)
    F.cross_entropy(out, torch.tensor([0, 3, 6])).backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None, f"{pname} gets no gradient"
        assert p.grad.abs().sum() > 0, f"{pname} gets a zero gradient"
    check_convertible(model)  # activations are modules, no max pooling, no functional relu
    acts = activation_layers(model)
    assert len(acts) == ACTIVATION_COUNT[name]
    assert all(isinstance(a, ThresholdReLU) and a.y_th == 1.5 for a in acts.values())


@pytest.mark.parametrize("name", IMAGE_MODELS)
@pytest.mark.parametrize("activation", ["relu", "threshold_relu"])
def test_every_model_takes_the_activation_options(name, activation):
    model = on_meta(name, width=1 / 16, act_layer=make_activation(activation, y_th=2.0, shift=0.25))
    acts = list(activation_layers(model).values())
    assert acts and all(a.shift == 0.25 and a.y_th == 2.0 for a in acts)
    # no activation outside the convertible modules (e.g. an nn.ReLU built elsewhere)
    assert not any(isinstance(m, (nn.ReLU, nn.MaxPool2d, nn.BatchNorm2d)) for m in model.modules())


@pytest.mark.parametrize("name", IMAGE_MODELS)
def test_width_scales_every_layer(name):
    full, eighth = on_meta(name, width=1.0), on_meta(name, width=0.125)
    for a, b in zip(convs(full), convs(eighth), strict=True):
        assert b.out_channels == max(1, round(a.out_channels / 8))
    for a, b in zip(linears(full)[:-1], linears(eighth)[:-1], strict=True):
        assert b.out_features == round(a.out_features / 8)
    assert linears(full)[-1].out_features == linears(eighth)[-1].out_features


def test_cifarnet_is_the_papers():
    m = on_meta("cifarnet")
    assert [c.out_channels for c in convs(m)] == [128, 256, 512, 1024, 512]
    assert all(c.kernel_size == (3, 3) and c.padding == (1, 1) for c in convs(m))
    assert [(lin.in_features, lin.out_features) for lin in linears(m)] == [(512 * 8 * 8, 1024), (1024, 512), (512, 10)]
    assert sum(isinstance(x, nn.AvgPool2d) for x in m.modules()) == 2
    assert not any(isinstance(x, nn.Dropout) for x in m.modules())  # dropout is optional, default off
    with_dropout = on_meta("cifarnet", conv_dropout=0.2, fc_dropout=0.5)
    assert sorted(d.p for d in with_dropout.modules() if isinstance(d, nn.Dropout)) == [0.2, 0.2, 0.5, 0.5]


def _layer_table(model: nn.Module, size: int = 32) -> list[tuple]:
    """Every layer of a VGG in order: (kind, in, out, kernel, parameters, output shape)."""
    rows, x = [], torch.zeros(1, 3, size, size)
    for m in [*model.features, *model.classifier]:
        x = m(x)
        if isinstance(m, nn.Conv2d):
            rows.append(("conv", m.in_channels, m.out_channels, m.kernel_size[0], m.weight.numel() + m.bias.numel()))
        elif isinstance(m, nn.Linear):
            rows.append(("fc", m.in_features, m.out_features, None, m.weight.numel() + m.bias.numel()))
        elif isinstance(m, nn.AvgPool2d):
            rows.append(("pool", None, None, m.kernel_size, 0))
        else:
            continue
        rows[-1] += (tuple(x.shape[1:]),)
    return rows


def _paper_vgg16_table(one_by_one: bool) -> list[tuple]:
    """The paper's CIFAR VGG-16 (Rathi et al. 2019, the authors' models/VGG16.py), written out by hand:
    13 convs in five blocks, a 2x2 average pool after blocks 1-4 and none after block 5, so the first
    FC sees 512 x 2 x 2 = 2048 features; ``one_by_one``: 1x1 kernels at the third conv of blocks 3-5."""
    rows, size, c_in = [], 32, 3
    for block, (c_out, n) in enumerate([(64, 2), (128, 2), (256, 3), (512, 3), (512, 3)]):
        for i in range(n):
            k = 1 if one_by_one and i == 2 else 3
            rows.append(("conv", c_in, c_out, k, c_in * c_out * k * k + c_out, (c_out, size, size)))
            c_in = c_out
        if block < 4:
            size //= 2
            rows.append(("pool", None, None, 2, 0, (c_out, size, size)))
    for f_in, f_out in [(512 * 2 * 2, 4096), (4096, 4096), (4096, 10)]:
        rows.append(("fc", f_in, f_out, None, f_in * f_out + f_out, (f_out,)))
    return rows


@pytest.mark.parametrize(
    ("name", "one_by_one", "total"), [("vgg16", False, 39_929_674), ("vgg16_1x1", True, 35_211_082)]
)
def test_vgg16_is_the_papers_network_layer_by_layer(name, one_by_one, total):
    model = create_model(name, num_classes=10).eval()  # width 1, no batch norm
    assert _layer_table(model) == _paper_vgg16_table(one_by_one)
    assert sum(p.numel() for p in model.parameters()) == total
    assert sum(r[4] for r in _paper_vgg16_table(one_by_one)) == total  # the hand-written table adds up too
    assert sum(isinstance(x, nn.AvgPool2d) for x in model.modules()) == 4
    # dropout 0.2 between convs of a block, 0.5 between the FC layers (the paper's A.1)
    assert sorted(d.p for d in model.modules() if isinstance(d, nn.Dropout)) == [0.2] * 8 + [0.5] * 2


def test_vgg16_variants():
    paper, authors = on_meta("vgg16"), on_meta("vgg16_1x1")
    assert [c.kernel_size[0] for c in convs(paper)] == [3] * 13
    assert [c.kernel_size[0] for c in convs(authors)] == [3] * 4 + [3, 3, 1] * 3
    assert [c.kernel_size[0] for c in convs(on_meta("vgg16", one_by_one_last=True))] == [3] * 4 + [3, 3, 1] * 3
    # widths scale the first FC with the channels: 512 w x 2 x 2 features
    assert linears(on_meta("vgg16", width=0.125))[0].in_features == 64 * 2 * 2
    # vgg11 / vgg13 keep a pool after every block
    assert [sum(isinstance(x, nn.AvgPool2d) for x in on_meta(n).modules()) for n in ("vgg11", "vgg13")] == [5, 5]

    imagenet = on_meta("vgg16_imagenet")
    assert [c.out_channels for c in convs(imagenet)] == [64, 64, 128, 128] + [256] * 3 + [512] * 6
    assert sum(isinstance(x, nn.AvgPool2d) for x in imagenet.modules()) == 5
    assert [(lin.in_features, lin.out_features) for lin in linears(imagenet)] == [
        (512 * 7 * 7, 4096),
        (4096, 4096),
        (4096, 1000),
    ]
    assert [d.p for d in imagenet.modules() if isinstance(d, nn.Dropout)] == [0.5, 0.5]  # FC only


def test_resnet20_is_sengupta_style():
    m = on_meta("resnet20")
    stem = [c for c in m.stem if isinstance(c, nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size[0]) for c in stem] == [(3, 64, 3), (64, 64, 3), (64, 64, 3)]
    assert isinstance(m.stem[-1], nn.AvgPool2d)
    assert sum(isinstance(x, ThresholdReLU) for x in m.stem) == 3
    blocks = [b for stage in m.layers for b in stage]
    assert len(blocks) == 8 and all(isinstance(b, BasicBlock) for b in blocks)
    first_convs = [b.residual[0] for b in blocks]
    assert [c.out_channels for c in first_convs] == [64, 64, 128, 128, 256, 256, 512, 512]
    assert [c.stride[0] for c in first_convs] == [1, 1, 2, 1, 2, 1, 2, 1]
    assert all(isinstance(b.act_out, ThresholdReLU) for b in blocks)  # the activation after the add
    # default: identity where the shape is unchanged, a strided 1x1 conv where it changes
    kinds = [type(b.shortcut).__name__ for b in blocks]
    assert kinds == ["Identity", "Identity", "Conv2d", "Identity", "Conv2d", "Identity", "Conv2d", "Identity"]
    assert all(b.shortcut.kernel_size == (1, 1) for b in blocks if isinstance(b.shortcut, nn.Conv2d))
    assert [b.shortcut.stride[0] for b in blocks if isinstance(b.shortcut, nn.Conv2d)] == [2, 2, 2]
    assert all(
        isinstance(b.shortcut, nn.Conv2d) for stage in on_meta("resnet20", shortcut="conv").layers for b in stage
    )
    assert [(lin.in_features, lin.out_features) for lin in linears(m)] == [(512 * 2 * 2, 10)]
    assert not any(isinstance(x, nn.BatchNorm2d) for x in m.modules())
    with pytest.raises(ValueError, match="shortcut"):
        create_model("resnet20", width=1 / 16, shortcut="projection")


def test_conv_init_is_sengupta():
    """Conv weights ~ N(0, sqrt(2 / (k^2 n))), n = output channels; zero biases."""
    torch.manual_seed(0)
    m = create_model("resnet20")
    for conv in (m.stem[0], m.layers[3][0].residual[0], m.layers[3][0].shortcut):
        k, n = conv.kernel_size[0], conv.out_channels
        assert conv.weight.std().item() == pytest.approx(math.sqrt(2.0 / (k * k * n)), rel=0.1)
        assert abs(conv.weight.mean().item()) < 0.1 * conv.weight.std().item()
        assert torch.all(conv.bias == 0)


def _keys(prefix: str, weighted: list[int], activations: list[int]) -> list[str]:
    """State-dict keys of a ``Sequential``: conv/linear layers at ``weighted``, activations at ``activations``."""
    keys = {i: [f"{prefix}.{i}.weight", f"{prefix}.{i}.bias"] for i in weighted}
    keys.update({i: [f"{prefix}.{i}.threshold_enabled"] for i in activations})
    return [k for i in sorted(keys) for k in keys[i]]


def _resnet20_keys() -> list[str]:
    stem = _keys("stem", [0, 3, 6], [1, 4, 7])  # conv act dropout conv act dropout conv act pool
    blocks = []
    for stage in range(4):
        for b in range(2):
            p = f"layers.{stage}.{b}"
            blocks += _keys(f"{p}.residual", [0, 3], [1])  # conv act dropout conv
            if stage > 0 and b == 0:  # the strided first block of stages 2-4 projects its shortcut
                blocks += [f"{p}.shortcut.weight", f"{p}.shortcut.bias"]
            blocks.append(f"{p}.act_out.threshold_enabled")
    return stem + blocks + _keys("classifier", [1], [])


#: Where the paper's layers sit, from the architectures (module docstrings): thresholds and
#: checkpoints are keyed by these names, so they must not move when the builders change.
PAPER_LAYOUT = {
    # 128C3 256C3 AP 512C3 AP 1024C3 512C3 | Flatten FC act FC act FC, no dropout by default
    "cifarnet": _keys("features", [0, 2, 5, 8, 10], [1, 3, 6, 9, 11]) + _keys("classifier", [1, 3, 5], [2, 4]),
    # 13 convs, each "conv act" + dropout (before a conv) or pooling (ending a stage) | FC act dropout x2, FC
    "vgg16": _keys("features", list(range(0, 39, 3)), list(range(1, 39, 3))) + _keys("classifier", [1, 4, 7], [2, 5]),
    "resnet20": _resnet20_keys(),
}


@pytest.mark.parametrize("name", sorted(PAPER_LAYOUT))
def test_layer_names_of_the_paper_models_are_stable(name):
    assert list(on_meta(name, width=1 / 16).state_dict()) == PAPER_LAYOUT[name]
    assert list(on_meta(name, width=1 / 16, batch_norm=False).state_dict()) == PAPER_LAYOUT[name]


def test_the_activation_is_injected_as_a_layer_factory():
    built: list[nn.Module] = []

    def act_layer() -> nn.Module:
        built.append(nn.ReLU())
        return built[-1]

    for name in ("cifarnet", "vgg11", "resnet20"):
        built.clear()
        model = create_model(name, width=1 / 16, act_layer=act_layer)
        sites = [m for m in model.modules() if isinstance(m, nn.ReLU)]
        # one fresh module per call site, every one of them from the factory, none of another kind
        assert len(sites) == len(built) == ACTIVATION_COUNT[name]
        assert {id(m) for m in sites} == {id(m) for m in built}
        assert not any(isinstance(m, ThresholdReLU) for m in model.modules())
    # the named settings are not model arguments (a config's, which ConversionModule turns into the one factory)
    for name in MODELS:
        for named in ({"activation": "relu"}, {"y_th": 2.0}, {"activation_shift": 0.25}):
            with pytest.raises(TypeError, match=r"act_layer=make_activation"):
                create_model(name, width=1 / 16, **named)
    with pytest.raises(TypeError, match="callable"):
        create_model("vgg11", width=1 / 16, act_layer="relu")


@pytest.mark.parametrize("name", sorted(MODELS))
def test_a_config_and_python_build_the_same_model(name):
    """ConversionModule is the one place where a config's named activation settings become the
    models' ``act_layer``: the same seed gives the same weights, bit for bit, as the factory in Python."""
    text = name in TEXT_MODELS
    named = {"activation": "relu" if text else "threshold_relu", "y_th": 1.5}
    shift = {} if text else {"activation_shift": 0.25}
    size = {"vocab_size": 30} if text else {}
    torch.manual_seed(0)
    module = ConversionModule(arch=name, num_classes=4, width=1 / 16, model_kwargs=shift, **named, **size)
    torch.manual_seed(0)
    act_layer = make_activation(named["activation"], y_th=1.5, shift=shift.get("activation_shift", 0.0))
    model = create_model(name, num_classes=4, width=1 / 16, act_layer=act_layer, **size)
    ours, theirs = module.model.state_dict(), model.state_dict()
    assert list(ours) == list(theirs)
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)
    assert repr(module.model) == repr(model)


def test_the_text_models_share_one_settings_list():
    """Both text models take TextClassifier's keywords (through ``**settings``), typos refused by name."""
    shared = set(inspect.signature(TextClassifier).parameters)
    for name in TEXT_MODELS:
        assert shared < accepted_kwargs(MODELS[name])
    assert accepted_kwargs(MODELS["spiking_rnn"]) - shared == {"act_layer", "steps_per_word", "surrogate", "alpha"}
    with pytest.raises(TypeError, match=r"no argument\(s\) \['hiden_size'\]"):
        create_model("spiking_rnn", vocab_size=30, hiden_size=8)


def test_make_activation_builds_fresh_modules_and_checks_once():
    factory = make_activation("threshold_relu", y_th=2.0, shift=0.5)
    a, b = factory(), factory()
    assert a is not b and (a.y_th, a.shift, a._enabled) == (2.0, 0.5, False)
    with pytest.raises(ValueError, match="shift"):
        make_activation("relu", shift=-1.0)  # refused when the factory is made, before any model


def _leaves(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if not list(m.children())]


@pytest.mark.parametrize("name", IMAGE_MODELS)
def test_batch_norm_follows_every_conv(name):
    """``batch_norm=True``: conv (no bias) -> BN over its channels -> act; the 1x1 shortcuts too."""
    model = on_meta(name, width=1 / 16, batch_norm=True)
    leaves = _leaves(model)
    conv_idx = [i for i, m in enumerate(leaves) if isinstance(m, nn.Conv2d)]
    assert sum(isinstance(m, nn.BatchNorm2d) for m in leaves) == len(conv_idx)
    for i in conv_idx:
        bn = leaves[i + 1]
        assert isinstance(bn, nn.BatchNorm2d) and bn.num_features == leaves[i].out_channels
        assert leaves[i].bias is None  # BN's shift replaces it
    # the same activations, at the same call sites, as without batch norm
    assert len(activation_layers(model)) == ACTIVATION_COUNT[name]
    assert sum(isinstance(m, nn.BatchNorm2d) for m in on_meta(name, width=1 / 16).modules()) == 0
    if name == "resnet20":
        block = model.layers[1][0]
        assert [type(m) for m in block.shortcut] == [nn.Conv2d, nn.BatchNorm2d]
        # conv BN act dropout conv BN: BN after each conv, before the add
        kinds = [nn.Conv2d, nn.BatchNorm2d, ThresholdReLU, nn.Dropout, nn.Conv2d, nn.BatchNorm2d]
        assert [type(m) for m in block.residual] == kinds


@pytest.mark.parametrize("name", ["cifarnet", "vgg11", "resnet20"])
def test_batch_norm_models_train(name):
    torch.manual_seed(0)
    model = create_model(name, num_classes=5, width=1 / 16, batch_norm=True)
    x = torch.randn(4, 3, 32, 32)
    F.cross_entropy(model(x), torch.tensor([0, 1, 2, 3])).backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, f"{pname} gets no gradient"
    bn = next(m for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    assert bn.num_batches_tracked.item() == 1  # trained in batch mode, running statistics updated
    model.eval()
    assert torch.equal(model(x), model(x))  # eval: the running statistics, deterministic


@pytest.mark.parametrize("name", IMAGE_MODELS)
def test_every_model_trains_with_qcfs(name):
    torch.manual_seed(0)
    act_layer = make_activation("qcfs", y_th=1.5, levels=2, trainable=True)
    model = create_model(name, num_classes=4, width=1 / 16, act_layer=act_layer)
    assert set_threshold_enabled(model, True) == ACTIVATION_COUNT[name]
    assert all(isinstance(a, QCFS) for a in activation_layers(model).values())  # the converter's sites
    acts = [m for m in model.modules() if isinstance(m, QCFS)]
    assert len(acts) == ACTIVATION_COUNT[name] and all(a.levels == 2 and a.trainable for a in acts)
    x = torch.randn(2, 3, input_size(name), input_size(name))
    F.cross_entropy(model(x), torch.tensor([0, 3])).backward()
    assert all(a.lam.grad is not None for a in acts)  # one lambda per layer, each learned
    # by name too, with the default L = 4 and a fixed lambda
    named = on_meta(name, width=1 / 16, act_layer=make_activation("qcfs", y_th=2.0))
    assert all(isinstance(a, QCFS) and a.levels == 4 and not a.trainable for a in activation_layers(named).values())

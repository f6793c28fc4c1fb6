"""Every CIFAR architecture converts with no model-specific code: as T grows the SNN predicts
like the ANN, and each layer's firing rate approaches the ANN's clipped activation."""

from __future__ import annotations

import pytest
import torch

from lightning_snn.activations import make_activation, set_threshold_enabled
from lightning_snn.conversion import calibrate_thresholds, convert, site_activations
from lightning_snn.models import create_model
from lightning_snn.neurons import IFNeuron
from lightning_snn.simulation import simulate

#: (registered name, constructor options) of every CIFAR source ANN, both ResNet shortcut kinds
CIFAR_MODELS = {
    "cifarnet": ("cifarnet", {}),
    "vgg16": ("vgg16", {"conv_dropout": 0.0, "fc_dropout": 0.0}),
    "vgg16_1x1": ("vgg16_1x1", {"conv_dropout": 0.0, "fc_dropout": 0.0}),
    "resnet20": ("resnet20", {"dropout": 0.0}),
    "resnet20_conv_shortcuts": ("resnet20", {"dropout": 0.0, "shortcut": "conv"}),
}
TIMESTEPS = (16, 64, 256)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """These nets are tiny: one thread is as fast, and far faster when the CPU is shared."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def fit(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int, batch: int, lr: float) -> None:
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    for step in range(steps):
        i = (step * batch) % x.shape[0]
        loss = torch.nn.functional.cross_entropy(model(x[i : i + batch]), y[i : i + batch])
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()


@pytest.fixture(scope="module", params=sorted(CIFAR_MODELS))
def converted(request, cifar_batches):
    """A width-1/16 net with threshold ReLU that has memorised 32 real CIFAR-10 images (an
    untrained net has near-tied logits, so comparing argmaxes would test nothing), calibrated on
    them, converted with the membrane shift and simulated on them at every T in TIMESTEPS."""
    name, kwargs = CIFAR_MODELS[request.param]
    torch.manual_seed(0)
    model = create_model(name, width=1 / 16, **kwargs)
    set_threshold_enabled(model, True)
    (x, y), _ = cifar_batches
    x, y = x[:32], y[:32]
    fit(model, x, y, steps=80, batch=32, lr=3e-3)
    thresholds = calibrate_thresholds(model, [x])
    acts, ann = site_activations(model, x)
    snn = convert(model, thresholds, shift="membrane")
    outputs, rate_errors = [], []
    for T in TIMESTEPS:  # separate runs: spike counts are totals over a whole run
        outputs.append(simulate(snn, x, [T], record_spikes=True)[0])
        errors = {}
        for layer, a in acts.items():
            neuron = snn.body.get_submodule(layer)
            assert isinstance(neuron, IFNeuron)
            vth = neuron.v_threshold.item()
            rate = neuron.spike_count / T * vth  # spikes carry amplitude V_th
            errors[layer] = ((rate - a.clamp(max=vth)).abs().mean() / vth).item()
        rate_errors.append(errors)
    return request.param, ann, outputs, rate_errors


def test_snn_output_converges_to_the_ann_and_predicts_like_it(converted):
    name, ann, outputs, _ = converted
    top2 = ann.topk(2, dim=1).values
    assert (top2[:, 0] - top2[:, 1]).median() > 0.1, name  # the argmax comparison means something
    errors = [(o - ann).abs().mean().item() / ann.abs().mean().item() for o in outputs]
    # the rate code converges like 1/T: each 4x longer simulation at least halves the error
    assert errors[1] < errors[0] / 2 and errors[2] < errors[1] / 2, (name, errors)
    assert errors[-1] < 0.1, (name, errors)  # relative to the logits' scale, at T = 256
    agreement = (outputs[-1].argmax(1) == ann.argmax(1)).float().mean().item()
    assert agreement >= 0.99, (name, agreement)


def test_firing_rates_approach_the_ann_activations(converted):
    """rate x V_th of every IF neuron -> the ANN activation it replaces (every layer, residual adds included)."""
    name, _, _, rate_errors = converted
    means = [sum(e.values()) / len(e) for e in rate_errors]  # mean |error| / V_th over layers
    assert means[1] < means[0] / 2 and means[2] < means[1] / 2, (name, means)
    assert means[-1] < 0.01, (name, means)
    worst = max(rate_errors[-1], key=rate_errors[-1].get)
    assert rate_errors[-1][worst] < 0.03, (name, worst, rate_errors[-1][worst])


@pytest.mark.slow
@pytest.mark.parametrize("key", sorted(CIFAR_MODELS))
def test_trained_nets_agree_with_their_snn_on_held_out_images(key, cifar_batches):
    """Trained on 4096 real images for three epochs, tested on 128 unseen ones, T up to 512.

    Such short training leaves some test images with near-tied logits (ResNet-20 at width 1/16:
    1% of them within 0.01), which no finite T decides like the ANN; so: errors shrink like 1/T,
    >= 99% agreement on the images the ANN decides (top-2 margin > 10% of the logit scale),
    >= 95% on all of them.
    """
    name, kwargs = CIFAR_MODELS[key]
    torch.manual_seed(0)
    model = create_model(name, width=1 / 16, **kwargs)
    set_threshold_enabled(model, True)
    (x, y), (test_x, _) = cifar_batches
    fit(model, x, y, steps=3 * 4096 // 64, batch=64, lr=2e-3)
    thresholds = calibrate_thresholds(model, [x[i : i + 512] for i in range(0, 4096, 512)])
    with torch.no_grad():
        ann = model(test_x[:128])
    out = simulate(convert(model, thresholds, shift="membrane"), test_x[:128], [128, 256, 512])
    errors = [(o - ann).abs().mean().item() for o in out]
    assert errors[1] < 0.7 * errors[0] and errors[2] < 0.7 * errors[1], (key, errors)  # ~halves per doubling
    top2 = ann.topk(2, dim=1).values
    decided = (top2[:, 0] - top2[:, 1]) > 0.1 * ann.abs().mean()
    agree = out[-1].argmax(1) == ann.argmax(1)
    assert decided.float().mean() > 0.5, key  # not a vacuous subset
    assert agree[decided].float().mean().item() >= 0.99, (key, agree[decided].float().mean().item())
    assert agree.float().mean().item() >= 0.95, (key, agree.float().mean().item())


@pytest.mark.parametrize("shortcut", ["identity_when_possible", "conv"])
def test_the_neuron_after_the_residual_add_gets_the_shift(shortcut):
    torch.manual_seed(0)
    plain = create_model("resnet20", width=1 / 16, shortcut=shortcut)
    set_threshold_enabled(plain, True)
    thresholds = calibrate_thresholds(plain, [torch.randn(16, 3, 32, 32)])  # no dead layer at init
    # the same weights with a shifted source ReLU (the activation_shift extension)
    model = create_model("resnet20", width=1 / 16, shortcut=shortcut, act_layer=make_activation(shift=0.05))
    model.load_state_dict(plain.state_dict())
    add_neurons = [f"layers.{s}.{b}.act_out" for s in range(4) for b in range(2)]
    membrane = convert(model, thresholds, shift="membrane")
    bias = convert(model, thresholds, shift="bias", timesteps=32)
    for name in add_neurons:
        vth = thresholds[name]
        m, b = membrane.body.get_submodule(name), bias.body.get_submodule(name)
        assert isinstance(m, IFNeuron) and isinstance(b, IFNeuron)
        assert m.v_threshold.item() == pytest.approx(vth) == b.v_threshold.item()
        assert m.v_init.item() == pytest.approx(vth / 2)  # membrane shift: V_th / 2
        assert m.bias_current.item() == pytest.approx(-0.05)  # the source ANN's own shift
        assert b.v_init.item() == 0.0
        assert b.bias_current.item() == pytest.approx(vth / 64 - 0.05)  # bias shift: V_th / (2T)
    # the SNN runs: shortcut and branch currents meet at the add on time-folded tensors
    out = simulate(membrane, torch.randn(4, 3, 32, 32), [4, 16])
    assert out.shape == (2, 4, 10) and torch.isfinite(out).all()

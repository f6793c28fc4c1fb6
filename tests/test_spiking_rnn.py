"""The directly trained baseline: surrogate gradients and the spiking RNN they train."""

from __future__ import annotations

import pytest
import torch

from lightning_snn.activations import make_activation
from lightning_snn.models import create_model
from lightning_snn.recurrent_conversion import RECURRENT_KEY, calibrate_recurrent_thresholds, convert_recurrent
from lightning_snn.recurrent_evaluation import check_recurrent_settings
from lightning_snn.surrogate import check_surrogate, spike

X = torch.tensor([-2.0, -0.25, -1e-3, 0.0, 1e-3, 0.3, 1.5])


@pytest.mark.parametrize(
    ("name", "primitive"),
    [
        # the smooth functions whose derivatives the surrogates are (module docstring)
        ("fast_sigmoid", lambda x, a: x / (1 + a * x.abs())),
        ("arctan", lambda x, a: torch.atan(torch.pi / 2 * a * x) / torch.pi + 0.5),
    ],
)
@pytest.mark.parametrize("alpha", [None, 4.0])
def test_surrogate_is_the_step_forward_and_the_smooth_derivative_backward(name, primitive, alpha):
    x = X.clone().requires_grad_(True)
    out = spike(x, name, alpha)
    assert out.tolist() == (X >= 0).float().tolist()
    out.sum().backward()
    smooth = X.clone().requires_grad_(True)
    primitive(smooth, check_surrogate(name, alpha)).sum().backward()
    torch.testing.assert_close(x.grad, smooth.grad)


def test_unknown_surrogate_or_bad_alpha_is_refused():
    with pytest.raises(ValueError, match="unknown surrogate 'sigmoid'"):
        check_surrogate("sigmoid")
    with pytest.raises(ValueError, match="alpha must be a number > 0"):
        check_surrogate("arctan", 0.0)


def spiking_model(**kwargs):
    torch.manual_seed(0)
    return create_model(
        "spiking_rnn",
        vocab_size=20,
        num_classes=3,
        embed_dim=6,
        hidden_size=8,
        steps_per_word=4,
        embed_dropout=0.0,
        act_layer=make_activation("relu", y_th=0.5),
        **kwargs,
    )


def batch():
    ids = torch.tensor([[3, 4, 5, 6], [7, 8, 0, 0]])
    return ids, torch.tensor([4, 2])


def test_gradients_reach_every_layer_through_the_spikes():
    model = spiking_model(surrogate="arctan")
    with torch.no_grad():
        model.rnn.input.bias.fill_(0.3)  # make the layer fire
    model(batch()).sum().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and bool(p.grad.abs().sum() > 0), name


def test_its_snn_is_the_trained_network_itself():
    model = spiking_model().eval()
    with torch.no_grad():
        model.rnn.input.bias.fill_(0.3)
    thresholds = calibrate_recurrent_thresholds(model, [batch()])
    assert thresholds[RECURRENT_KEY] == 0.5  # its own threshold (y_th), not a calibrated one
    snn = convert_recurrent(model, thresholds, shift="none")
    out = snn(batch(), 4, loops=[2])
    assert torch.equal(out.analog, model(batch()))
    assert int(out.counts.sum()) > 0
    with pytest.raises(ValueError, match="runs as it was trained"):
        check_recurrent_settings(model, shift="membrane")

"""Threshold ReLU and QCFS: values, gradients, the warm-up switch by epoch (also after resume), the IF relation."""

from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

from lightning_snn.activations import QCFS, ThresholdReLU, make_activation, set_threshold_enabled
from lightning_snn.module import ConversionModule
from lightning_snn.neurons import IFNeuron


def test_values_clipped_and_plain():
    x = torch.tensor([-1.0, 0.0, 0.3, 1.0, 1.7, 5.0])
    act = ThresholdReLU(y_th=1.5)
    assert act(x).tolist() == pytest.approx([0.0, 0.0, 0.3, 1.0, 1.5, 1.5])
    act.set_threshold_enabled(False)
    assert act(x).tolist() == pytest.approx([0.0, 0.0, 0.3, 1.0, 1.7, 5.0])


def test_gradient_only_inside_zero_to_y_th():
    x = torch.tensor([-0.5, 0.2, 0.9, 1.2, 3.0], requires_grad=True)
    ThresholdReLU(y_th=1.0)(x).sum().backward()
    assert x.grad.tolist() == [0.0, 1.0, 1.0, 0.0, 0.0]
    x.grad = None
    ThresholdReLU(y_th=1.0, enabled=False)(x).sum().backward()
    assert x.grad.tolist() == [0.0, 1.0, 1.0, 1.0, 1.0]


def test_shifted_relu_moves_the_turning_point():
    act = ThresholdReLU(y_th=1.0, shift=0.25)
    assert act(torch.tensor([0.2, 0.5, 2.0])).tolist() == pytest.approx([0.0, 0.25, 1.0])


def test_switch_state_is_saved_in_the_state_dict():
    act = ThresholdReLU(1.0, enabled=True)
    fresh = ThresholdReLU(1.0, enabled=False)
    fresh.load_state_dict(act.state_dict())
    assert bool(fresh.threshold_enabled)
    assert fresh(torch.tensor([3.0])).item() == 1.0  # the forward follows the loaded switch


@pytest.mark.parametrize("bad", [0.0, -1.0])
def test_non_positive_y_th_is_refused(bad):
    with pytest.raises(ValueError, match="y_th"):
        ThresholdReLU(bad)
    with pytest.raises(ValueError, match="y_th"):
        ConversionModule(arch="vgg11", width=0.0625, y_th=bad)


def test_unknown_activation_is_refused():
    with pytest.raises(ValueError, match="unknown activation"):
        make_activation("gelu")
    with pytest.raises(ValueError, match="unknown activation"):
        ConversionModule(arch="vgg11", width=0.0625, activation="gelu")


class _RecordThreshold(pl.Callback):
    def __init__(self):
        self.seen = {}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        acts = [m for m in pl_module.modules() if isinstance(m, ThresholdReLU)]
        self.seen[trainer.current_epoch] = {bool(a.threshold_enabled) for a in acts}


def _fit(tmp_path, max_epochs, ckpt_path=None, activation="threshold_relu"):
    torch.manual_seed(0)
    data = TensorDataset(torch.randn(16, 3, 32, 32), torch.randint(0, 10, (16,)))
    module = ConversionModule(arch="vgg11", width=0.0625, relu_warmup_epochs=2, activation=activation)
    rec = _RecordThreshold()
    trainer = pl.Trainer(
        max_epochs=max_epochs,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
        callbacks=[rec],
        accelerator="cpu",
    )
    trainer.fit(module, DataLoader(data, batch_size=8), ckpt_path=ckpt_path)
    return trainer, rec


def test_warmup_switch_by_epoch_and_after_resume(tmp_path):
    trainer, rec = _fit(tmp_path, max_epochs=2)
    assert rec.seen == {0: {False}, 1: {False}}
    ckpt = tmp_path / "epoch2.ckpt"
    trainer.save_checkpoint(ckpt)
    _, resumed = _fit(tmp_path, max_epochs=4, ckpt_path=str(ckpt))
    assert resumed.seen == {2: {True}, 3: {True}}


def test_plain_relu_variant_never_clips(tmp_path):
    _, rec = _fit(tmp_path, max_epochs=3, activation="relu")
    assert rec.seen == {0: {False}, 1: {False}, 2: {False}}


def test_set_threshold_enabled_counts_modules():
    from lightning_snn.models import create_model

    model = create_model("vgg11", width=0.0625)
    assert set_threshold_enabled(model, True) == 10  # 8 convs + 2 hidden FC layers


def test_nan_loss_stops_training_with_a_clear_error(tmp_path):
    module = ConversionModule(arch="vgg11", width=0.0625)
    with torch.no_grad():
        module.model.classifier[-1].weight.fill_(float("nan"))
    batch = (torch.randn(4, 3, 32, 32), torch.randint(0, 10, (4,)))
    with pytest.raises(FloatingPointError, match="lower the learning rate"):
        module.training_step(batch, 0)


def test_checkpoint_of_another_architecture_is_refused(tmp_path):
    small = ConversionModule(arch="vgg11", width=0.0625)
    trainer = pl.Trainer(logger=False, enable_progress_bar=False, max_epochs=0, default_root_dir=tmp_path)
    trainer.strategy.connect(small)
    ckpt = tmp_path / "vgg11.ckpt"
    trainer.save_checkpoint(ckpt)
    with pytest.raises(ValueError, match="another architecture|arch="):
        ConversionModule.load_from_checkpoint(ckpt, arch="vgg16")
    with pytest.raises(ValueError, match="width"):
        ConversionModule.load_from_checkpoint(ckpt, width=0.125)


# ---- QCFS (Bu et al., ICLR 2022) ---------------------------------------------------------------
#: lambda = 2, L = 4: levels every 0.5, rounding boundaries at x = 0.5 k - 0.25 (all exact in binary)
QCFS_X = [-1.0, -0.3, -0.25, 0.25, 1.0, 1.7, 1.75, 2.2, 2.25, 5.0]
QCFS_K = [-2, -1, 0, 1, 2, 3, 4, 4, 5, 10]  # floor(x * L / lambda + 1/2)


def test_qcfs_values_and_ties():
    act = QCFS(y_th=2.0, levels=4)
    x = torch.tensor(QCFS_X)
    expected = [2.0 * min(max(k, 0), 4) / 4 for k in QCFS_K]
    assert act(x).tolist() == expected
    assert torch.equal(torch.floor(x * 4 / 2 + 0.5), torch.tensor(QCFS_K, dtype=x.dtype))
    # on a boundary (x L / lambda + 1/2 an integer) the upper level; just below it the lower one
    assert act(torch.tensor([0.25, 0.2499, 1.75, 1.7499])).tolist() == [0.5, 0.0, 2.0, 1.5]
    assert QCFS(y_th=1.0, levels=1)(torch.tensor([0.49, 0.5, 3.0])).tolist() == [0.0, 1.0, 1.0]


def test_qcfs_straight_through_gradients():
    """Bu et al. 2022: the floor's gradient taken as 1, the clip's kept. With s = x L / lambda + 1/2:
    d/dx = 1 where 0 <= s < L (-lambda/(2L) <= x < lambda - lambda/(2L)), else 0; d/dlambda =
    (h - x) / lambda there, 1 above (h = lambda), 0 below (h = 0)."""
    act = QCFS(y_th=2.0, levels=4, trainable=True)
    x = torch.tensor(QCFS_X, requires_grad=True)
    out = act(x)
    inside = [-0.25 <= xi < 1.75 for xi in QCFS_X]  # lambda / (2L) = 0.25
    grad_x = torch.autograd.grad(out.sum(), x, retain_graph=True)[0]
    assert grad_x.tolist() == [float(m) for m in inside]
    grad_lam = [torch.autograd.grad(out[i], act.lam, retain_graph=True)[0].item() for i in range(len(QCFS_X))]
    h = out.tolist()
    expected = [(hi - xi) / 2 if m else float(xi >= 1.75) for xi, hi, m in zip(QCFS_X, h, inside, strict=True)]
    assert grad_lam == pytest.approx(expected, abs=1e-6)
    assert grad_lam == pytest.approx([0, 0, 0.125, 0.125, 0, -0.1, 1, 1, 1, 1], abs=1e-6)
    # the summed gradient of a batch: what the optimiser sees for the layer's one lambda
    act.lam.grad = None
    act(torch.tensor(QCFS_X)).sum().backward()
    assert act.lam.grad.item() == pytest.approx(sum(expected), abs=1e-6)
    assert isinstance(act.lam, torch.nn.Parameter)
    fixed = QCFS(y_th=2.0, levels=4)
    assert not fixed.lam.requires_grad and "lam" in dict(fixed.named_buffers())


def test_qcfs_warmup_switch():
    act = QCFS(y_th=1.0, levels=2, trainable=True, enabled=False)
    x = torch.tensor([-1.0, 0.3, 0.8, 4.0], requires_grad=True)
    out = act(x)
    assert out.tolist() == pytest.approx([0.0, 0.3, 0.8, 4.0])  # plain ReLU during the warm-up
    out.sum().backward()
    assert x.grad.tolist() == [0.0, 1.0, 1.0, 1.0]
    # lambda stays in the graph with a zero gradient, so DDP does not stop on an unused parameter
    assert act.lam.grad is not None and act.lam.grad.item() == 0.0
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), make_activation("qcfs", levels=2)(), make_activation()())
    assert set_threshold_enabled(model, True) == 2 and model[1]._enabled and bool(model[1].threshold_enabled)
    assert model[1](torch.tensor([0.3, 0.2])).tolist() == [0.5, 0.0]


@pytest.mark.parametrize("trainable", [False, True])
def test_qcfs_state_dict_round_trip(trainable):
    act = QCFS(y_th=1.0, levels=4, trainable=trainable, enabled=True)
    with torch.no_grad():
        act.lam.fill_(1.5)  # e.g. learned
    fresh = QCFS(y_th=1.0, levels=4, trainable=trainable, enabled=False)
    fresh.load_state_dict(act.state_dict())
    assert set(act.state_dict()) == {"lam", "threshold_enabled"}
    assert fresh.y_th == 1.5 and fresh._enabled  # the converter reads y_th; forward follows the switch
    x = torch.linspace(-1, 3, 41)
    assert torch.equal(fresh(x), act(x))
    other = QCFS(y_th=1.0, levels=4, trainable=not trainable)  # a parameter and a buffer share the key
    other.load_state_dict(act.state_dict())
    assert other.y_th == 1.5


def _if_spike_counts(z: torch.Tensor, v_threshold: float, steps: int) -> torch.Tensor:
    """Spikes per input of an IF neuron (soft reset, initial membrane V_th / 2) after ``steps`` steps of ``z``."""
    n = IFNeuron(v_threshold, v_init=v_threshold / 2)
    n.steps, n.batch_size = steps, z.shape[0]
    return n(z).view(steps, *z.shape).sum(0) / v_threshold


def test_if_neuron_spike_count_equals_qcfs_at_t_equal_levels():
    """An IF neuron with ``V_th = lambda``, ``v(0) = V_th / 2`` and a constant input ``z`` fires
    ``n_T = clip(floor((T z + V_th / 2) / V_th), 0, T)`` spikes in ``T`` steps.

    Soft reset: ``v(t) = V_th / 2 + t z - V_th n_t``. For ``0 <= z <= V_th``, by induction
    ``v(t) in [0, V_th)``: ``v + z < 2 V_th`` fires at most once per step and leaves ``[0, V_th)``.
    So ``n_T = (V_th / 2 + T z - v(T)) / V_th`` with ``v(T) in [0, V_th)``, i.e. the floor above.
    For ``z > V_th`` it fires every step (``n_T = T``); for ``z < 0`` the membrane only falls
    from ``V_th / 2`` and it never fires (``n_T = 0``): the clip. At ``T = L`` this is
    ``clip(floor(z L / lambda + 1/2), 0, L) = L QCFS(z) / lambda``: the spike count times
    ``V_th / L`` is the QCFS output, exactly. Ties go up on both sides: the neuron fires when
    ``v`` reaches exactly ``V_th`` (``>=``), and QCFS's floor maps an integer to itself.
    """
    lam = 2.0
    grid = torch.arange(-8, 25, dtype=torch.float32).unsqueeze(1) / 8  # z = m / 8: every tie, exact
    rand = torch.empty(200, 1, dtype=torch.float64).uniform_(-1.0, 3.0, generator=torch.Generator().manual_seed(0))
    for z in (grid, rand):
        for steps in (1, 2, 3, 4, 7, 8):
            expected = torch.clamp(torch.floor((steps * z + lam / 2) / lam), 0, steps)
            assert torch.equal(_if_spike_counts(z, lam, steps), expected), steps
        for levels in (1, 2, 4, 8):
            qcfs = QCFS(y_th=lam, levels=levels).to(z.dtype)
            assert torch.equal(_if_spike_counts(z, lam, levels) * lam / levels, qcfs(z)), levels
    ties = torch.tensor([[0.25], [0.75], [1.75]])  # z L / lambda + 1/2 = 1, 2, 4 at L = 4
    assert _if_spike_counts(ties, lam, 4).flatten().tolist() == [1.0, 2.0, 4.0]


def test_qcfs_options_are_checked():
    with pytest.raises(ValueError, match="levels"):
        QCFS(levels=0)
    for bad in (2.5, True, "4"):
        with pytest.raises(TypeError, match="levels"):
            QCFS(levels=bad)
    with pytest.raises(ValueError, match="y_th"):
        QCFS(y_th=0.0)
    with pytest.raises(ValueError, match="activation_shift"):
        make_activation("qcfs", shift=0.1)
    with pytest.raises(ValueError, match="only apply to activation 'qcfs'"):
        make_activation("threshold_relu", levels=8)
    with pytest.raises(ValueError, match="only apply to activation 'qcfs'"):
        ConversionModule(arch="vgg11", width=0.0625, activation="relu", trainable_threshold=True)
    with pytest.raises(ValueError, match="levels must be >= 1"):
        ConversionModule(arch="vgg11", width=0.0625, activation="qcfs", levels=0)


def test_conversion_module_builds_qcfs_and_owns_its_warmup():
    module = ConversionModule(
        arch="resnet20", width=0.0625, activation="qcfs", y_th=1.5, levels=2, trainable_threshold=True
    )
    acts = [m for m in module.modules() if isinstance(m, QCFS)]
    assert len(acts) == 19 and all(a.levels == 2 and a.y_th == 1.5 and a.trainable for a in acts)
    assert not any(isinstance(m, ThresholdReLU) for m in module.modules())
    lams = {id(a.lam) for a in acts}
    assert len(lams) == 19 and lams <= {id(p) for p in module.parameters()}  # one lambda per layer, optimised
    assert not any(a._enabled for a in acts)  # the ReLU warm-up (20 epochs by default)
    module.update_threshold(20)
    assert all(a._enabled for a in acts)
    module = ConversionModule(arch="vgg11", width=0.0625, activation="qcfs", relu_warmup_epochs=0)
    assert all(a._enabled and a.levels == 4 and not a.trainable for a in module.modules() if isinstance(a, QCFS))

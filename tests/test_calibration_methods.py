"""Threshold calibration methods: percentile, per-channel, QCFS lambda, and their DDP reduction."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from lightning_snn.activations import QCFS, ThresholdReLU
from lightning_snn.conversion import OUTPUT_KEY, calibrate_thresholds, convert, site_activations
from lightning_snn.simulation import simulate


class Probe(nn.Module):
    """The first site's activation is relu(x) of the input itself: known values."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.act = nn.ReLU()
        self.head = nn.Linear(n, 2)

    def forward(self, x):
        return self.head(self.act(x))


def small_cnn(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1),
        nn.ReLU(),
        nn.AvgPool2d(2),
        nn.Conv2d(6, 8, 3, padding=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(8 * 4 * 4, 12),
        nn.ReLU(),
        nn.Linear(12, 3),
    ).eval()


def nearest_rank(values: torch.Tensor, k: int) -> float:
    return values.flatten().sort().values[k - 1].item()


@pytest.mark.parametrize("p", [62.5, 75.0, 90.0, 99.0, 99.9, 100.0])
def test_percentile_is_the_nearest_rank_value_of_all_activations(p):
    torch.manual_seed(1)
    x = torch.randn(37, 53) * 3  # 1961 values, about half of them zero after the ReLU
    x[0, :7] = 2.0  # ties
    expected = float(np.percentile(torch.relu(x).numpy().ravel(), p, method="inverted_cdf"))
    got = calibrate_thresholds(Probe(53), list(x.split(10)), method="percentile", percentile=p)["act"]
    assert got == expected
    assert got == nearest_rank(torch.relu(x), math.ceil(p / 100 * x.numel()))


def test_percentile_reads_p_as_a_decimal_and_does_not_depend_on_batching():
    x = torch.arange(1, 10001, dtype=torch.float32).reshape(100, 100)  # values 1..10000
    for split in (100, 7, 1):
        got = calibrate_thresholds(Probe(100), list(x.split(split)), method="percentile", percentile=99.99)
        assert got["act"] == 9999.0  # rank ceil(0.9999 * 10000) = 9999, not 10000 (float rounding)
    assert calibrate_thresholds(Probe(100), [x], method="percentile", percentile=100)["act"] == 10000.0


def test_percentile_of_a_mostly_silent_layer_falls_back_to_its_max():
    x = torch.zeros(100, 10)
    x[3, 4] = 0.7  # 1 value of 1000 is non-zero: the 99th percentile is 0
    got = calibrate_thresholds(Probe(10), [x], method="percentile", percentile=99.0)
    assert got["act"] == pytest.approx(0.7)


def test_percentile_is_below_the_max_on_a_network_and_converts():
    model = small_cnn()
    batches = list(torch.rand(64, 3, 8, 8).split(16))
    mx = calibrate_thresholds(model, batches)
    pc = calibrate_thresholds(model, batches, method="percentile", percentile=99.0)
    assert all(0 < pc[k] < mx[k] for k in mx if k != OUTPUT_KEY)
    assert pc[OUTPUT_KEY] == mx[OUTPUT_KEY]  # the readout's threshold is always the max logit
    convert(model, pc)


def test_channel_thresholds_are_per_channel_maxima():
    model = small_cnn()
    x = torch.rand(40, 3, 8, 8)
    th = calibrate_thresholds(model, list(x.split(16)), method="channel")
    # the activations of the very batches calibrated on: a conv of 40 images at once may round
    # differently in the last bit than of 16 (oneDNN picks kernels by shape), and the maxima are
    # bit-equal only as selections of the same values
    with torch.no_grad():
        a1 = torch.cat([torch.relu(model[0](b)) for b in x.split(16)])
        a2 = torch.cat([torch.relu(model[3](model[2](b))) for b in a1.split(16)])
        a3 = torch.cat([torch.relu(model[6](b.flatten(1))) for b in a2.split(16)])
    for name, act in (("1", a1), ("4", a2), ("7", a3)):
        dims = [d for d in range(act.dim()) if d != 1]
        expected = act.amax(dims)
        dead = expected <= 0
        expected[dead] = act.max()  # a dead channel gets its layer's maximum
        assert th[name].shape == (act.shape[1],)
        torch.testing.assert_close(th[name], expected, rtol=0, atol=0)
        assert th[name].max() == act.max()


def test_a_dead_channel_gets_the_layer_max_and_conversion_works():
    model = small_cnn()
    with torch.no_grad():
        model[0].weight[2].zero_()
        model[0].bias[2] = -1.0  # channel 2 of the first layer never activates
    x = torch.rand(16, 3, 8, 8)
    th = calibrate_thresholds(model, [x], method="channel")
    assert th["1"][2] == th["1"].max() > 0
    snn = convert(model, th)
    assert torch.isfinite(simulate(snn, x, [4])).all()


def test_lambda_method_takes_the_clip_levels():
    torch.manual_seed(0)
    q = QCFS(y_th=0.37, levels=4)
    t = ThresholdReLU(y_th=0.8)
    off = ThresholdReLU(y_th=0.9, enabled=False)  # still in its ReLU warm-up: no clip
    model = nn.Sequential(nn.Linear(6, 8), q, nn.Linear(8, 8), t, nn.Linear(8, 8), off, nn.Linear(8, 2))
    x = torch.randn(64, 6) * 3
    mx = calibrate_thresholds(model, [x])
    th = calibrate_thresholds(model, [x], method="lambda")
    assert th["1"] == pytest.approx(0.37) and th["3"] == pytest.approx(0.8)
    assert th["5"] == mx["5"]


@pytest.mark.parametrize(
    "kwargs, error",
    [
        ({"method": "median"}, ValueError),
        ({"method": "percentile", "percentile": 0}, ValueError),
        ({"method": "percentile", "percentile": 100.5}, ValueError),
        ({"method": "percentile", "percentile": "99"}, TypeError),
    ],
)
def test_bad_settings_are_refused(kwargs, error):
    with pytest.raises(error):
        calibrate_thresholds(small_cnn(), [torch.rand(2, 3, 8, 8)], **kwargs)


def test_percentile_refuses_a_one_shot_iterator():
    batches = iter([torch.rand(4, 3, 8, 8)])
    with pytest.raises(ValueError, match="twice"):
        calibrate_thresholds(small_cnn(), batches, method="percentile")


# ---- DDP: 2 CPU ranks (gloo) give one process's thresholds ---------------------------------
METHODS = [("max", 99.99), ("percentile", 99.0), ("percentile", 99.99), ("channel", 99.99)]


def integer_cnn() -> nn.Module:
    """small_cnn with weights and biases in {-1, 0, 1}: on the integer images of
    :func:`_images` every activation is a multiple of 1/4 below 2**21 (conv sums <= 54, the
    average pool divides by 4, the next conv sums <= 54 * 54, the linear layer 128 of those), so
    every sum is exact in float32 in whatever order a kernel, a thread count or a batch size
    takes it. Only there are a 2-rank and a 1-process threshold bit-equal on every CPU."""
    model = small_cnn()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randint(-1, 2, p.shape, generator=torch.Generator().manual_seed(p.numel())))
    return model


def _images(integer: bool = False) -> torch.Tensor:
    g = torch.Generator().manual_seed(5)
    if integer:
        return torch.randint(0, 3, (48, 3, 8, 8), generator=g).float()
    return torch.rand(48, 3, 8, 8, generator=g)


SPLITS = (30, 48)  # rank 0 holds images [0, split), rank 1 the rest: uneven, and none at all
MODELS = {"float": (small_cnn, False), "integer": (integer_cnn, True)}


def _rank_main(rank: int, world: int, init_file: str, out_file: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        results = {}
        for kind, (build, integer) in MODELS.items():
            for split in SPLITS:
                x = _images(integer)
                share = x[:split] if rank == 0 else x[split:]
                batches = [b for b in share.split(7) if len(b)]
                for m, p in METHODS:
                    results[kind, split, m, p] = calibrate_thresholds(build(), batches, method=m, percentile=p)
        if rank == 0:
            torch.save(results, out_file)
    finally:
        dist.destroy_process_group()


def test_two_ranks_give_one_process_thresholds(tmp_path):
    """For uneven shares and for a rank without images (one spawn: ~10 s): bit-equal where the
    arithmetic is exact (the integer network), and equal to float32 rounding on real-valued
    weights and images, whose activations another batch size or thread count may round in the
    last bit (a CPU with other oneDNN kernels did: 3.7e-9 apart). The selection itself is exact
    in both cases: a percentile or a maximum is one of the values the ranks computed."""
    out = tmp_path / "ddp.pt"
    mp.spawn(_rank_main, args=(2, str(tmp_path / "init"), str(out)), nprocs=2, join=True)
    ddp = torch.load(out)
    for kind, (build, integer) in MODELS.items():
        model = build()
        for m, p in METHODS:
            single = calibrate_thresholds(model, list(_images(integer).split(5)), method=m, percentile=p)
            for split in SPLITS:
                got = ddp[kind, split, m, p]
                assert list(got) == list(single)
                for k in single:
                    a, b = torch.as_tensor(got[k]), torch.as_tensor(single[k])
                    if integer:
                        torch.testing.assert_close(a, b, rtol=0, atol=0)
                        assert (b * 4).eq((b * 4).round()).all()  # the exactness premise: quarters
                    else:
                        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)


def test_a_calibration_method_registered_from_outside():
    """A method is one function in the registry: here the mean of the per-channel maxima (reads the
    first pass's channel statistics), checked against the same numbers computed by hand."""
    from lightning_snn.calibration import CALIBRATIONS, register_calibration
    from lightning_snn.conversion import check_calibration

    @register_calibration("channel_mean", per_channel=True)
    def channel_mean(run):
        return [float(c.mean()) for c in run.stats.channel_maxima]

    try:
        check_calibration("channel_mean")  # what the callback runs before training
        model, x = small_cnn(), torch.randn(16, 3, 8, 8)
        got = calibrate_thresholds(model, [x[:7], x[7:]], method="channel_mean", include_output=False)
        acts, _ = site_activations(model, x)
        assert list(got) == list(acts)
        for name, value in got.items():  # the conv rounds differently per batch size: a tolerance
            expected = acts[name].transpose(0, 1).flatten(1).amax(1).double().mean()
            assert value == pytest.approx(float(expected), rel=1e-5)
        with pytest.raises(ValueError, match="already registered"):
            register_calibration("max")(channel_mean)
    finally:
        CALIBRATIONS.pop("channel_mean", None)
    with pytest.raises(ValueError, match="unknown calibration method 'channel_mean'"):
        check_calibration("channel_mean")

"""Does the graph converter take the networks people train, and convert them exactly? (docs/CONVERTER.md)

Trains each network for one epoch on real CIFAR-10, converts it (max calibration, membrane shift) with IF and
with signed neurons and measures how often the SNN predicts what its own ANN predicts at every T; records
that ``nn.GELU`` and a product of activations are refused by name. ``--probe``: where
torchvision's resnet18 (the same weights) loses agreement, three conversions of it with per-layer errors.

    python benchmarks/converter_agreement.py --data-dir ../shared/data/cifar10 --test-images 500 --batch-size 250
    python benchmarks/converter_agreement.py --data-dir ../shared/data/cifar10 --probe   # ~15 min, 2 cores
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import OrderedDict
from pathlib import Path

import torch
import torch.nn.functional as F
import torchvision
from study import REPO, machine, write_json
from torch import nn

import lightning_snn.graph as graph
from lightning_snn.conversion import calibrate_thresholds, convert
from lightning_snn.data import CIFAR10DataModule
from lightning_snn.diagnostics import simulate_with_diagnostics
from lightning_snn.graph import ConversionError, activation_sites, max_pool_sites, prepare
from lightning_snn.simulation import simulate

TIMESTEPS, PROBE_TIMESTEPS = [16, 32, 64, 128, 256], [16, 64, 256, 1024]
#: --probe's conversions of resnet18: (label, stem max-pool moved before its IF layer, calibration)
PROBE_VARIANTS = [("exact max-pool, max", True, "max"), ("gated max-pool, max", False, "max")]
PROBE_VARIANTS += [("exact max-pool, percentile 99.99", True, "percentile")]


class BNResidualReusedReLU(nn.Module):
    """conv-BN-relu, a residual block of two conv-BN, relu after the add; one nn.ReLU object, three sites."""

    def __init__(self, c: int = 32, num_classes: int = 10) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(3, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)
        self.conv2, self.bn2 = nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)
        self.conv3, self.bn3 = nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)
        self.relu = nn.ReLU(inplace=True)
        self.pool = nn.AdaptiveAvgPool2d(4)
        self.fc = nn.Linear(c * 16, num_classes)

    def forward(self, x):
        h = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(h)))
        out = self.relu(self.bn3(self.conv3(out)) + h)
        return self.fc(torch.flatten(self.pool(out), 1))


class FunctionalReLUNet(nn.Module):
    """A plain CNN written with F.relu and torch.relu (average pooling)."""

    def __init__(self, c: int = 32, num_classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, c, 3, padding=1)
        self.conv2 = nn.Conv2d(c, 2 * c, 3, padding=1)
        self.conv3 = nn.Conv2d(2 * c, 2 * c, 3, padding=1)
        self.fc1 = nn.Linear(2 * c * 16, 128)
        self.fc2 = nn.Linear(128, num_classes)

    def forward(self, x):
        x = F.relu(self.conv1(x))
        x = F.avg_pool2d(torch.relu(self.conv2(x)), 2)
        x = F.adaptive_avg_pool2d(F.relu(self.conv3(x)), 4)
        return self.fc2(torch.relu(self.fc1(torch.flatten(x, 1))))


class WithProduct(nn.Module):
    """A product of two time-varying tensors: refused."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.fc = nn.Conv2d(3, 4, 3), nn.Linear(4, 10)

    def forward(self, x):
        y = torch.relu(self.conv(x))
        return self.fc((y * y).mean((2, 3)))


MODELS = {
    "bn_residual_reused_relu": BNResidualReusedReLU,
    "functional_relu": FunctionalReLUNet,
    "torchvision_resnet18": lambda: torchvision.models.resnet18(num_classes=10),
}


def trained(name: str, args, xtr: torch.Tensor, ytr: torch.Tensor) -> tuple[nn.Module, float]:
    """``MODELS[name]`` after one epoch of Adam (batch 128) over ``(xtr, ytr)`` in a seeded order, in eval
    mode, and the epoch's wall time in seconds."""
    torch.manual_seed(args.seed)
    model = MODELS[name]()
    order = torch.randperm(xtr.shape[0], generator=torch.Generator().manual_seed(args.seed))
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    model.train()
    t0 = time.perf_counter()
    for i in range(0, xtr.shape[0], 128):
        idx = order[i : i + 128]
        loss = F.cross_entropy(model(xtr[idx]), ytr[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval(), time.perf_counter() - t0


def predict_ann(model: nn.Module, x: torch.Tensor, batch: int) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([model(xb).argmax(1) for xb in x.split(batch)])


def percent_equal(pred: torch.Tensor, ref: torch.Tensor, ts: list[int]) -> dict:
    """Per T, the share (%) of images where ``pred`` (one row per T) equals ``ref``."""
    return {t: 100 * (pred[i] == ref).double().mean().item() for i, t in enumerate(ts)}


def measure(name: str, args, train, test) -> dict:
    (xtr, ytr), (xte, yte) = train, test
    model, t_train = trained(name, args, xtr, ytr)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    t0 = time.perf_counter()
    thresholds = calibrate_thresholds(model, xtr[: args.calibration_images].split(250))
    t_calibrate = time.perf_counter() - t0
    ann_pred = predict_ann(model, xte, args.batch_size)
    by_neuron = {}
    for neuron in ("if", "signed"):  # the same thresholds for both neuron models
        try:
            snn = convert(model, thresholds, shift="membrane", neuron=neuron)
        except ConversionError as exc:
            by_neuron[neuron] = {"refused": str(exc).split(". ")[0]}
            continue
        t0, ts = time.perf_counter(), args.timesteps
        with torch.no_grad():
            snn_pred = torch.cat([simulate(snn, xb, ts).argmax(-1) for xb in xte.split(args.batch_size)], 1)
        acc, agreement = percent_equal(snn_pred, yte, ts), percent_equal(snn_pred, ann_pred, ts)
        by_neuron[neuron] = {"snn_acc": acc, "agreement": agreement, "simulate_seconds": time.perf_counter() - t0}
    first = by_neuron["if"]  # the paper's IF neuron
    out = {**structure(model), "ann_acc": 100 * (ann_pred == yte).double().mean().item()}
    out.update(snn_acc=first.get("snn_acc"), agreement=first.get("agreement"), by_neuron=by_neuron)
    out["ann_state_dict_unchanged"] = all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    out["seconds"] = {"train": t_train, "calibrate": t_calibrate, "simulate": first.get("simulate_seconds")}
    return out


def structure(model: nn.Module) -> dict:
    """Activation sites and max-pools of the prepared graph: exact ones (moved before the first IF
    layer, on the analog input path) and gated ones (after a spiking layer)."""
    gm = prepare(model)
    pools, gated = sum(isinstance(m, nn.MaxPool2d) for m in gm.modules()), len(max_pool_sites(gm))
    return {"activation_sites": len(activation_sites(gm)), "max_pools_exact": pools - gated, "max_pools_gated": gated}


def refusals() -> dict:
    """The first sentence of the error that refuses each of two small networks, or NOT REFUSED."""
    gelu = nn.Sequential(
        OrderedDict(conv=nn.Conv2d(3, 4, 3), act=nn.ReLU(), gelu=nn.GELU(), pool=nn.AdaptiveAvgPool2d(1))
    )
    out = {}
    for label, model in (("nn.GELU", gelu), ("product of activations", WithProduct())):
        try:
            convert(model, calibrate_thresholds(model, [torch.randn(2, 3, 8, 8)]))
            out[label] = "NOT REFUSED"
        except ConversionError as exc:
            out[label] = str(exc).split(". ")[0]
    return out


def probe(model: nn.Module, args, xtr: torch.Tensor, xte: torch.Tensor) -> dict:
    """Each of ``PROBE_VARIANTS``: agreement with the ANN at every T and, per IF layer at the last two T,
    the relative error |rate x V_th - a| / mean a and its ratio to the layer's predicted quantisation error."""
    ann, exact, variants = predict_ann(model, xte, args.batch_size), graph._commute_analog_max_pools, {}
    try:
        for label, move_pool, method in PROBE_VARIANTS:
            graph._commute_analog_max_pools = exact if move_pool else (lambda gm: None)
            t0 = time.perf_counter()
            calib = xtr[: args.calibration_images].split(250)
            snn = convert(model, calibrate_thresholds(model, calib, method=method, percentile=99.99), shift="membrane")
            preds, diag = [], None
            with torch.no_grad():
                for b in xte.split(args.batch_size):
                    o, d = simulate_with_diagnostics(snn, model, b, args.timesteps)
                    preds.append(o.argmax(-1))
                    diag = d if diag is None else diag.merge(d)
            pred = torch.cat(preds, 1)
            agree = percent_equal(pred, ann, args.timesteps)
            errors = diag.layer_errors()
            layers = {
                t: {k: [v["relative"], v["mae"] / max(v["predicted_mae"], 1e-12)] for k, v in errors[t].items()}
                for t in args.timesteps[-2:]
            }
            variants[label] = {"agreement": agree, "layers": layers, "seconds": time.perf_counter() - t0}
            print(label, "agreement", {t: round(a, 1) for t, a in agree.items()}, flush=True)
            for t in args.timesteps[-2:]:
                print(f"  T={t}", " ".join(f"{k}:{r:.3f}/{x:.1f}x" for k, (r, x) in layers[t].items()), flush=True)
    finally:
        graph._commute_analog_max_pools = exact
    return variants


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", required=True)
    p.add_argument("--probe", action="store_true", help="resnet18's conversions instead (docs/resnet18_probe.json)")
    p.add_argument("--train-images", type=int, default=10000)
    p.add_argument("--test-images", type=int, default=None, help="default 1000, with --probe 200")
    p.add_argument("--calibration-images", type=int, default=2000)
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--timesteps", type=int, nargs="+", help=f"increasing T (default {TIMESTEPS}, --probe "
                   f"{PROBE_TIMESTEPS})")  # fmt: skip
    p.add_argument("--json", help="default docs/converter_agreement.json, with --probe docs/resnet18_probe.json")
    args = p.parse_args()
    args.test_images = args.test_images or (200 if args.probe else 1000)
    args.timesteps = args.timesteps or (PROBE_TIMESTEPS if args.probe else TIMESTEPS)
    args.json = args.json or str(REPO / "docs" / ("resnet18_probe.json" if args.probe else "converter_agreement.json"))
    # the first training images in the data module's (seeded) order, un-augmented; the first test images
    dm = CIFAR10DataModule(args.data_dir, download=False, num_workers=0)
    dm.setup("fit")
    (xtr, ytr), (xte, yte) = dm.calibration_set()[: args.train_images], dm.test_set[: args.test_images]
    result = {"command": " ".join(["python", "benchmarks/converter_agreement.py", *sys.argv[1:]])}
    if args.probe:
        result["variants"] = probe(trained("torchvision_resnet18", args, xtr, ytr)[0], args, xtr, xte)
    else:
        result.update(train_images=args.train_images, test_images=args.test_images)
        result.update(calibration_images=args.calibration_images, lr=args.lr, machine=machine())
        result.update(models={}, refusals=refusals())
        for name in MODELS:
            result["models"][name] = measure(name, args, (xtr, ytr), (xte, yte))
            print(name, json.dumps(result["models"][name]), flush=True)
    write_json(Path(args.json), result)
    print(f"wrote {args.json}; render the doc with python benchmarks/render.py docs/CONVERTER.md")


if __name__ == "__main__":
    main()

"""Does the graph converter take the networks people train, and convert them exactly?

Trains three networks the paper's converter could not take for one epoch on real CIFAR-10 (a BN +
residual CNN calling ONE ``nn.ReLU`` at three sites; a CNN written with ``F.relu`` / ``torch.relu``;
torchvision's resnet18 as shipped), converts each through the Python API (max calibration, membrane
shift) with each of ``--neurons``, and measures how often the SNN predicts what its own ANN
predicts at every T; checks that ``nn.GELU`` and a product of activations are refused by name and
that the ANN's state dict is unchanged. Writes docs/converter_agreement.json (docs/CONVERTER.md is
rendered from it):

    python benchmarks/converter_agreement.py --data-dir ../shared/data/cifar10 --test-images 500 --batch-size 250
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
import torchvision
from study import REPO, cifar10_tensors, machine, train_one_epoch, write_json
from torch import nn

from lightning_snn.conversion import calibrate_thresholds, convert
from lightning_snn.graph import ConversionError, activation_sites, max_pool_sites, prepare
from lightning_snn.simulation import simulate

TIMESTEPS = [16, 32, 64, 128, 256]


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


class WithGELU(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv, self.act, self.gelu = nn.Conv2d(3, 4, 3), nn.ReLU(), nn.GELU()
        self.fc = nn.Linear(4, 10)

    def forward(self, x):
        return self.fc(self.gelu(self.act(self.conv(x))).mean((2, 3)))


class WithProduct(nn.Module):
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


def measure(name: str, args, train, test) -> dict:
    torch.manual_seed(args.seed)
    model = MODELS[name]()
    (xtr, ytr), (xte, yte) = train, test
    t_train = train_one_epoch(model, xtr, ytr, 128, args.lr, args.seed)
    model.eval()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    t0 = time.perf_counter()
    thresholds = calibrate_thresholds(model, xtr[: args.calibration_images].split(250))
    t_calibrate = time.perf_counter() - t0
    with torch.no_grad():
        ann_pred = torch.cat([model(xb).argmax(1) for xb in xte.split(args.batch_size)])
    by_neuron = {}
    for neuron in args.neurons.split(","):  # the same thresholds for every neuron model
        try:
            snn = convert(model, thresholds, shift="membrane", neuron=neuron)
        except ConversionError as exc:
            by_neuron[neuron] = {"refused": str(exc).split(". ")[0]}
            continue
        t0, ts = time.perf_counter(), args.timesteps
        with torch.no_grad():
            snn_pred = torch.cat([simulate(snn, xb, ts).argmax(-1) for xb in xte.split(args.batch_size)], 1)
        acc = {k: {t: 100 * (snn_pred[i] == ref).double().mean().item() for i, t in enumerate(ts)}
               for k, ref in (("snn_acc", yte), ("agreement", ann_pred))}  # fmt: skip
        by_neuron[neuron] = {**acc, "simulate_seconds": time.perf_counter() - t0}
    first = by_neuron[args.neurons.split(",")[0]]  # the first neuron model's (the paper's IF neuron by default)
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
    out = {}
    for label, model in (("nn.GELU", WithGELU()), ("product of activations", WithProduct())):
        try:
            convert(model, calibrate_thresholds(model, [torch.randn(2, 3, 8, 8)]))
            out[label] = "NOT REFUSED"
        except ConversionError as exc:
            out[label] = str(exc).split(". ")[0]
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", required=True)
    p.add_argument("--train-images", type=int, default=10000)
    p.add_argument("--test-images", type=int, default=1000)
    p.add_argument("--calibration-images", type=int, default=2000)
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--models", default=",".join(MODELS), help=f"comma separated, from {list(MODELS)}")
    p.add_argument("--timesteps", type=int, nargs="+", default=TIMESTEPS, help="increasing T")
    p.add_argument("--neurons", default="if,signed", help="neuron models to convert each network with")
    p.add_argument("--json", default=str(REPO / "docs" / "converter_agreement.json"))
    args = p.parse_args()
    xtr, ytr, xte, yte = cifar10_tensors(args.data_dir, args.train_images, args.test_images)
    result = {"command": " ".join(["python", "benchmarks/converter_agreement.py", *sys.argv[1:]])}
    result.update(train_images=args.train_images, test_images=args.test_images)
    result.update(calibration_images=args.calibration_images, lr=args.lr, machine=machine())
    result.update(models={}, refusals=refusals())
    for name in args.models.split(","):
        result["models"][name] = measure(name, args, (xtr, ytr), (xte, yte))
        print(name, json.dumps(result["models"][name]), flush=True)
    write_json(Path(args.json), result)
    print(f"wrote {args.json}; render the doc with python benchmarks/render.py docs/CONVERTER.md")


if __name__ == "__main__":
    main()

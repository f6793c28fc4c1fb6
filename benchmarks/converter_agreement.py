"""Does the graph converter take the networks people train, and convert them exactly?

Trains three networks the paper's converter could not take, briefly, on real CIFAR-10, then
converts each through the README's Python API (calibrate_thresholds -> convert -> simulate)
with the membrane shift and max calibration, and measures on the first test images how often
the SNN predicts what its own ANN predicts, at every T:

* ``bn_residual_reused_relu``: a BN + residual CNN that calls ONE ``nn.ReLU`` object at three sites;
* ``functional_relu``: a CNN written with ``F.relu`` and ``torch.relu`` (and a max-pool);
* ``torchvision_resnet18``: ``torchvision.models.resnet18(num_classes=10)`` as shipped (BN,
  max-pool stem, each block's ``self.relu`` called twice).

It also checks that a model with ``nn.GELU`` and one with a product of activations are
refused with an error naming them, and that the ANN's state dict is unchanged. Writes
docs/CONVERTER.md and a JSON of every number.

    python benchmarks/converter_agreement.py --data-dir ../shared/data/cifar10 --test-images 500 --batch-size 250
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from lightning_snn.conversion import calibrate_thresholds, convert
from lightning_snn.data import CIFAR10DataModule
from lightning_snn.graph import ConversionError, activation_sites, max_pool_sites, prepare
from lightning_snn.simulation import simulate

REPO = Path(__file__).resolve().parents[1]
TIMESTEPS = [16, 32, 64, 128, 256]
HAND_MARKER = "<!-- written by hand below: kept when the script rewrites the tables above -->"


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


def build(name: str) -> nn.Module:
    if name == "bn_residual_reused_relu":
        return BNResidualReusedReLU()
    if name == "functional_relu":
        return FunctionalReLUNet()
    return torchvision.models.resnet18(num_classes=10)


def train_one_epoch(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int, lr: float, seed: int) -> float:
    gen = torch.Generator().manual_seed(seed)
    order = torch.randperm(x.shape[0], generator=gen)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    t0 = time.perf_counter()
    for i in range(0, x.shape[0], batch):
        idx = order[i : i + batch]
        loss = F.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return time.perf_counter() - t0


def batches(x: torch.Tensor, size: int):
    for i in range(0, x.shape[0], size):
        yield x[i : i + size]


def measure(name: str, args, train, test) -> dict:
    torch.manual_seed(args.seed)
    model = build(name)
    (xtr, ytr), (xte, yte) = train, test
    t_train = train_one_epoch(model, xtr, ytr, 128, args.lr, args.seed)
    model.eval()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    t0 = time.perf_counter()
    thresholds = calibrate_thresholds(model, batches(xtr[: args.calibration_images], 250))
    t_calibrate = time.perf_counter() - t0
    with torch.no_grad():
        ann_pred = torch.cat([model(xb).argmax(1) for xb in batches(xte, args.batch_size)])
    by_neuron = {}
    for neuron in args.neurons.split(","):  # the same thresholds for every neuron model
        try:
            snn = convert(model, thresholds, shift="membrane", neuron=neuron)
        except ConversionError as exc:
            by_neuron[neuron] = {"refused": str(exc).split(". ")[0]}
            continue
        t0 = time.perf_counter()
        with torch.no_grad():
            snn_pred = torch.cat([simulate(snn, xb, TIMESTEPS).argmax(-1) for xb in batches(xte, args.batch_size)], 1)
        by_neuron[neuron] = {
            "snn_acc": {t: 100 * (snn_pred[i] == yte).double().mean().item() for i, t in enumerate(TIMESTEPS)},
            "agreement": {t: 100 * (snn_pred[i] == ann_pred).double().mean().item() for i, t in enumerate(TIMESTEPS)},
            "simulate_seconds": time.perf_counter() - t0,
        }
    unchanged = all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    first = by_neuron[args.neurons.split(",")[0]]
    return {
        **structure(model),
        "ann_acc": 100 * (ann_pred == yte).double().mean().item(),
        "snn_acc": first.get("snn_acc"),  # the first neuron model's (the paper's IF neuron by default)
        "agreement": first.get("agreement"),
        "by_neuron": by_neuron,
        "ann_state_dict_unchanged": unchanged,
        "seconds": {"train": t_train, "calibrate": t_calibrate, "simulate": first.get("simulate_seconds")},
    }


def structure(model: nn.Module) -> dict:
    """Activation sites and max-pools of the prepared graph: exact ones (moved before the first IF
    layer, on the analog input path) and gated ones (after a spiking layer)."""
    gm = prepare(model)
    pools = sum(isinstance(m, nn.MaxPool2d) for m in gm.modules())
    gated = len(max_pool_sites(gm))
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


def write_doc(result: dict, path: Path) -> None:
    lines = [
        "# The graph converter on networks people train",
        "",
        "Generated by `benchmarks/converter_agreement.py` (do not edit by hand):",
        "",
        "```bash",
        result["command"],
        "```",
        "",
        f"Real CIFAR-10: each network trained for one epoch on the first {result['train_images']} training images "
        f"(Adam, lr {result['lr']}, batch 128, plain ReLU as written), calibrated on "
        f"{result['calibration_images']} training images (max), converted with the membrane shift, simulated on the "
        f"first {result['test_images']} test images. Agreement = SNN prediction equals its own ANN's prediction. "
        f"Machine: {result['machine']}.",
        "",
        "| network | activation sites | max-pools exact / gated | ANN acc | "
        + " | ".join(f"agreement T={t}" for t in TIMESTEPS)
        + " | SNN acc T=256 | ANN unchanged |",
        "|---" * (6 + len(TIMESTEPS)) + "|",
    ]
    for name, r in result["models"].items():
        agree = " | ".join(f"{r['agreement'][t]:.1f}%" for t in TIMESTEPS)
        lines.append(
            f"| {name} | {r['activation_sites']} | {r['max_pools_exact']} / {r['max_pools_gated']} | "
            f"{r['ann_acc']:.1f}% | {agree} | "
            f"{r['snn_acc'][256]:.1f}% | {r['ann_state_dict_unchanged']} |"
        )
    signed = {n: r["by_neuron"]["signed"] for n, r in result["models"].items() if "signed" in r.get("by_neuron", {})}
    if signed:
        lines += [
            "",
            'The same networks and thresholds with signed IF neurons (`neuron="signed"`: a neuron that has fired '
            "takes a spike back when its membrane drops below 0, so its count follows its total input):",
            "",
            "| network | " + " | ".join(f"agreement T={t}" for t in TIMESTEPS) + " | SNN acc T=256 |",
            "|---" * (2 + len(TIMESTEPS)) + "|",
        ]
        for name, r in signed.items():
            if "refused" in r:
                lines.append(f"| {name} | refused: {r['refused']} |" + " |" * len(TIMESTEPS))
                continue
            agree = " | ".join(f"{r['agreement'][t]:.1f}%" for t in TIMESTEPS)
            lines.append(f"| {name} | {agree} | {r['snn_acc'][256]:.1f}% |")
    lines += ["", "Refused, with the error's first sentence:", ""]
    lines += [f"- {label}: `{msg}`" for label, msg in result["refusals"].items()]
    lines += [
        "",
        "Time per network (seconds, 2 shared CPU cores): "
        + "; ".join(
            f"{n}: train {r['seconds']['train']:.0f}, simulate {r['seconds']['simulate']:.0f}"
            for n, r in result["models"].items()
        ),
        "",
    ]
    kept = ""  # notes written by hand below the marker survive a regeneration
    if path.exists() and HAND_MARKER in path.read_text():
        kept = path.read_text().split(HAND_MARKER, 1)[1]
    path.write_text("\n".join(lines) + (f"\n{HAND_MARKER}{kept}" if kept else ""))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", required=True)
    p.add_argument("--train-images", type=int, default=10000)
    p.add_argument("--test-images", type=int, default=1000)
    p.add_argument("--calibration-images", type=int, default=2000)
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--models", default="bn_residual_reused_relu,functional_relu,torchvision_resnet18")
    p.add_argument("--neurons", default="if,signed", help="neuron models to convert each network with")
    p.add_argument("--out", default=str(REPO / "docs" / "CONVERTER.md"))
    p.add_argument("--json", default=str(REPO / "docs" / "converter_agreement.json"))
    p.add_argument("--from-json", action="store_true", help="rewrite the doc from --json (structure recounted)")
    args = p.parse_args()
    if args.from_json:
        result = json.loads(Path(args.json).read_text())
        for name, r in result["models"].items():
            r.pop("max_pools", None)  # older files: the count before exact and gated were told apart
            r.update(structure(build(name)))
            for key in ("snn_acc", "agreement"):
                r[key] = {int(t): v for t, v in r[key].items()}
            for b in r.get("by_neuron", {}).values():
                for key in ("snn_acc", "agreement"):
                    if key in b:
                        b[key] = {int(t): v for t, v in b[key].items()}
        Path(args.json).write_text(json.dumps(result, indent=2))
        write_doc(result, Path(args.out))
        return
    dm = CIFAR10DataModule(args.data_dir, download=False, num_workers=0)
    dm.setup("fit")
    calib = dm.calibration_set()  # un-augmented, normalised training images
    n = args.train_images
    xtr = torch.stack([calib[i][0] for i in range(n)])
    ytr = torch.stack([torch.as_tensor(calib[i][1]) for i in range(n)])
    xte = torch.stack([dm.test_set[i][0] for i in range(args.test_images)])
    yte = torch.stack([torch.as_tensor(dm.test_set[i][1]) for i in range(args.test_images)])
    result = {
        "command": " ".join(["python", "benchmarks/converter_agreement.py", *sys.argv[1:]]),
        "train_images": n,
        "test_images": args.test_images,
        "calibration_images": args.calibration_images,
        "lr": args.lr,
        "machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
        f"torch {torch.__version__}",
        "models": {},
        "refusals": refusals(),
    }
    for name in args.models.split(","):
        result["models"][name] = measure(name, args, (xtr, ytr), (xte, yte))
        print(name, json.dumps(result["models"][name]), flush=True)
    Path(args.json).write_text(json.dumps(result, indent=2))
    write_doc(result, Path(args.out))
    print(Path(args.out).read_text())


if __name__ == "__main__":
    main()

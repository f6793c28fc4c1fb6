"""Where torchvision's resnet18 loses agreement with its ANN: the stem's max-pool, the calibration, T.

The network of converter_agreement.py (one epoch on 10,000 CIFAR-10 images, the same seed),
converted with the membrane shift three ways: the stem's max-pool moved before its IF layer (what
the converter does), left after it gating spikes (the converter before; the move switched off),
and percentile-99.99 thresholds. Prints agreement with the ANN at every T and, per IF layer at the
last two T, the relative error |rate x V_th - a| / mean a and its ratio to the layer's predicted
quantisation error; writes them to --json (docs/CONVERTER.md renders the agreement).

    python benchmarks/resnet18_probe.py --data-dir ../shared/data/cifar10 --test-images 200   # ~15 min, 2 cores
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
import torchvision
from study import cifar10_tensors, train_one_epoch, write_json

import lightning_snn.graph as graph
from lightning_snn.conversion import calibrate_thresholds, convert
from lightning_snn.diagnostics import simulate_with_diagnostics

TIMESTEPS = [16, 64, 256, 1024]
VARIANTS = [("exact max-pool, max", True, "max"), ("gated max-pool, max", False, "max")]
VARIANTS += [("exact max-pool, percentile 99.99", True, "percentile")]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", required=True)
    p.add_argument("--test-images", type=int, default=200)
    p.add_argument("--train-images", type=int, default=10000, help="the one epoch's (as converter_agreement.py)")
    p.add_argument("--timesteps", type=int, nargs="+", default=TIMESTEPS, help="increasing T")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default="docs/resnet18_probe.json")
    args = p.parse_args()
    xtr, ytr, xte, _ = cifar10_tensors(args.data_dir, args.train_images, args.test_images)
    torch.manual_seed(args.seed)
    model = torchvision.models.resnet18(num_classes=10)
    train_one_epoch(model, xtr, ytr, 128, 1e-3, args.seed)  # as converter_agreement.py
    model.eval()
    exact = graph._commute_analog_max_pools
    out = {"command": " ".join(["python", "benchmarks/resnet18_probe.py", *sys.argv[1:]]), "variants": {}}
    try:
        for label, move_pool, method in VARIANTS:
            graph._commute_analog_max_pools = exact if move_pool else (lambda gm: None)
            t0 = time.perf_counter()
            thresholds = calibrate_thresholds(model, xtr[:2000].split(250), method=method, percentile=99.99)
            snn = convert(model, thresholds, shift="membrane")
            preds, diag = [], None
            with torch.no_grad():
                ann = torch.cat([model(b).argmax(1) for b in xte.split(100)])
                for b in xte.split(100):
                    o, d = simulate_with_diagnostics(snn, model, b, args.timesteps)
                    preds.append(o.argmax(-1))
                    diag = d if diag is None else diag.merge(d)
            pred = torch.cat(preds, 1)
            agree = {t: 100 * (pred[i] == ann).double().mean().item() for i, t in enumerate(args.timesteps)}
            errors = diag.layer_errors()
            layers = {
                t: {k: [v["relative"], v["mae"] / max(v["predicted_mae"], 1e-12)] for k, v in errors[t].items()}
                for t in args.timesteps[-2:]
            }
            out["variants"][label] = {"agreement": agree, "layers": layers, "seconds": time.perf_counter() - t0}
            print(label, "agreement", {t: round(a, 1) for t, a in agree.items()}, flush=True)
            for t in args.timesteps[-2:]:
                print(f"  T={t}", " ".join(f"{k}:{r:.3f}/{x:.1f}x" for k, (r, x) in layers[t].items()), flush=True)
    finally:
        graph._commute_analog_max_pools = exact
    write_json(Path(args.json), out)


if __name__ == "__main__":
    main()

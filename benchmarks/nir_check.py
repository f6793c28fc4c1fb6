"""Export a trained CIFAR-10 network to NIR and run the file in other simulators, image by image.

From a checkpoint (e.g. the quickstart's, ``python train.py fit -c configs/quickstart.yaml``) the
script calibrates and converts as the conversion callback does (max thresholds on
``--calibration-samples`` seeded training images, the membrane shift, analog readout), then at
``--timesteps`` T:

* **ours**: the SNN simulated here; its NIR file imported back (``import_nir``, which restores the
  membrane shift) must predict the same on every image; the file's own network (``restore=False``:
  the bias shift at T, what the file asks other simulators to run) is simulated here too;
* **sinabs / snnTorch / Norse** (those installed): the file written with the export options the
  importer can read (``nir_targets.EXPORT_OPTIONS``), imported with its own ``from_nir`` /
  ``import_from_nir``, run as imported and with each user-side setting of ``nir_targets.FIXES``
  added, on the same test images; predictions compared with the file's network as we simulate it.

Prints a table and writes (or updates, one key per target) a JSON file.

    python benchmarks/nir_check.py --checkpoint runs/quickstart/checkpoints/last.ckpt \\
        --data-dir ../shared/data/cifar10 --timesteps 64 --test-samples 1000 --targets ours sinabs snntorch
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
import traceback
from importlib.metadata import version
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Subset

sys.path.insert(0, str(Path(__file__).resolve().parent))
import nir_targets  # noqa: E402

from lightning_snn.conversion import calibrate_thresholds, convert  # noqa: E402
from lightning_snn.data import CIFAR10DataModule  # noqa: E402
from lightning_snn.export import export_nir, import_nir  # noqa: E402
from lightning_snn.module import ConversionModule  # noqa: E402
from lightning_snn.simulation import simulate  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--checkpoint", required=True, help="a ConversionModule checkpoint (.ckpt)")
    p.add_argument("--data-dir", default=str(REPO.parent / "shared" / "data" / "cifar10"))
    p.add_argument("--timesteps", type=int, default=64, help="the T the file is exported for and run at")
    p.add_argument("--test-samples", type=int, default=1000)
    p.add_argument("--calibration-samples", type=int, default=5000)
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--targets", nargs="+", default=["ours", "sinabs", "snntorch", "norse"])
    p.add_argument(
        "--fix-sets",
        choices=["each", "all"],
        default="each",
        help="'each': also each fix alone and all but each one; 'all': as imported, what it needs to run, all fixes",
    )
    p.add_argument("--cli-nir", default=None, help="also check a snn.nir written by the CLI (snn.export: nir)")
    p.add_argument("--out", default=str(REPO / "docs" / "export.json"))
    p.add_argument("--threads", type=int, default=None)
    return p.parse_args(argv)


def load(args):
    module = ConversionModule.load_from_checkpoint(args.checkpoint, map_location="cpu")
    model = module.model.eval()
    dm = CIFAR10DataModule(args.data_dir, download=False, num_workers=0)
    dm.setup("fit")
    calib = DataLoader(dm.calibration_set(args.calibration_samples, seed=0), batch_size=args.batch_size)
    test = Subset(dm.test_set, range(min(args.test_samples, len(dm.test_set))))
    batches = list(DataLoader(test, batch_size=args.batch_size))
    x = torch.cat([b[0] for b in batches])
    y = torch.cat([b[1] for b in batches])
    return model, calibrate_thresholds(model, calib), x, y


def predict(snn, x: torch.Tensor, t: int, batch: int) -> torch.Tensor:
    return torch.cat([simulate(snn, part, [t])[0].argmax(-1) for part in x.split(batch)])


def batched(runner, path: str, x: torch.Tensor, t: int, fixes: frozenset[str], batch: int) -> torch.Tensor:
    return torch.cat([runner(path, part, t, fixes) for part in x.split(batch)])


def fix_sets(name: str, mode: str) -> list[tuple[str, ...]]:
    """As imported; with only the fixes it needs to run; ``each``: plus each other fix alone, and all
    fixes but each one (what each difference costs by itself); all fixes."""
    names, required = list(nir_targets.FIXES[name]), nir_targets.REQUIRED[name]
    others = [n for n in names if n not in required]
    sets = [(), tuple(required)]
    if mode == "each":
        sets += [(*required, n) for n in others]
        sets += [tuple(n for n in names if n != left) for left in others]
    sets.append(tuple(names))
    return list(dict.fromkeys(sets))


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    t = args.timesteps
    model, thresholds, x, y = load(args)
    snn = convert(model, thresholds, shift="membrane")
    out_path = Path(args.out)
    results = json.loads(out_path.read_text()) if out_path.exists() else {}
    results["setup"] = {
        "checkpoint": str(args.checkpoint),
        "timesteps": t,
        "test_images": int(x.shape[0]),
        "calibration_images": args.calibration_samples,
        "shift": "membrane (exported as the bias shift at T)",
        "readout": "analog",
        "torch": torch.__version__,
        "python": platform.python_version(),
        "command": "python benchmarks/nir_check.py " + " ".join(sys.argv[1:] if argv is None else argv),
    }
    ann = torch.cat([model(part).argmax(-1) for part in x.split(args.batch_size)])
    ours = predict(snn, x, t, args.batch_size)
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        if "ours" in args.targets:
            rows["ours"] = check_ours(args, model, thresholds, snn, x, y, ours, tmp)
        for name in [n for n in args.targets if n != "ours"]:
            if not nir_targets.available(name):
                rows[name] = {"installed": False}
                print(f"{name}: not installed here, skipped")
                continue
            path = str(
                export_nir(snn, Path(tmp) / f"{name}.nir", tuple(x.shape[1:]), t, **nir_targets.EXPORT_OPTIONS[name])
            )
            exported = predict(import_nir(path, restore=False), x, t, args.batch_size)
            rows[name] = check_target(args, name, path, x, y, exported, ours)
            rows[name]["default_file"] = read_default_file(name, snn, x, t, tmp)
    results.setdefault("targets", {}).update(rows)
    results["ann_acc"] = 100.0 * float((ann == y).float().mean())
    results["ours_acc"] = 100.0 * float((ours == y).float().mean())
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(results, indent=2) + "\n")
    print(f"written: {out_path}")
    return results


def agreement(a: torch.Tensor, b: torch.Tensor) -> float:
    return 100.0 * float((a == b).float().mean())


def check_ours(args, model, thresholds, snn, x, y, ours, tmp) -> dict:
    t = args.timesteps
    row: dict = {"installed": True, "acc": 100.0 * float((ours == y).float().mean())}
    path = export_nir(snn, Path(tmp) / "ours.nir", tuple(x.shape[1:]), t)
    back = import_nir(path)
    back_pred = predict(back, x, t, args.batch_size)
    diff = max(float((simulate(snn, p, [t]) - simulate(back, p, [t])).abs().max()) for p in x[:200].split(100))
    row["round_trip"] = {"agreement": agreement(back_pred, ours), "max_abs_output_diff_200_images": diff}
    exported = predict(import_nir(path, restore=False), x, t, args.batch_size)
    bias = predict(convert(model, thresholds, shift="bias", timesteps=t), x, t, args.batch_size)
    row["file_network"] = {
        "what": "the file as written: the bias shift at T (import_nir(restore=False))",
        "acc": 100.0 * float((exported == y).float().mean()),
        "agreement_with_membrane_snn": agreement(exported, ours),
        "agreement_with_convert_bias_T": agreement(exported, bias),
    }
    if args.cli_nir:
        cli_snn = import_nir(args.cli_nir)
        cli = predict(cli_snn, x, t, args.batch_size)
        rel = max(
            float((torch.as_tensor(v) - torch.as_tensor(thresholds[k])).abs().max() / torch.as_tensor(v).abs().max())
            for k, v in cli_snn.thresholds.items()
        )
        row["cli_file"] = {"path": args.cli_nir, "agreement": agreement(cli, ours), "threshold_max_rel_diff": rel}
    print(
        f"ours: acc {row['acc']:.2f}%, round trip agreement {row['round_trip']['agreement']:.2f}% "
        f"(max |output diff| {diff:.3g}); the file's bias-shift network: acc {row['file_network']['acc']:.2f}%, "
        f"agreement with the membrane SNN {row['file_network']['agreement_with_membrane_snn']:.2f}%"
    )
    return row


def read_default_file(name: str, snn, x: torch.Tensor, t: int, tmp: str) -> str:
    """Whether the simulator reads the file the CLI writes by default (AvgPool2d, the integrator I):
    'ok', or the error it raises (a refusal, not a silent change, is what is checked here)."""
    path = str(export_nir(snn, Path(tmp) / f"{name}_default.nir", tuple(x.shape[1:]), t))
    try:
        nir_targets.RUNNERS[name](path, x[:2], 2, frozenset(nir_targets.FIXES[name]))
    except Exception as exc:
        return f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
    return "ok"


def check_target(args, name, path, x, y, exported, ours) -> dict:
    runner = nir_targets.RUNNERS[name]
    row: dict = {
        "installed": True,
        "versions": {p: version(p) for p in (name, "nir", "nirtorch")},
        "export_options": nir_targets.EXPORT_OPTIONS[name],
        "runs": [],
    }
    for fixes in fix_sets(name, args.fix_sets):
        t0 = time.perf_counter()
        run = {"fixes": list(fixes)}
        try:
            pred = batched(runner, path, x, args.timesteps, frozenset(fixes), args.batch_size)
        except Exception as exc:  # an importer that cannot run the file as imported: recorded, not fatal
            run["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
            traceback.print_exc(limit=1)
        else:
            run.update(
                agreement_with_file_network=agreement(pred, exported),
                agreement_with_membrane_snn=agreement(pred, ours),
                acc=100.0 * float((pred == y).float().mean()),
            )
        run["seconds"] = round(time.perf_counter() - t0, 1)
        row["runs"].append(run)
        shown = run.get("error") or (
            f"agreement {run['agreement_with_file_network']:.2f}% "
            f"(membrane SNN {run['agreement_with_membrane_snn']:.2f}%), acc {run['acc']:.2f}%"
        )
        print(f"{name} {'+'.join(fixes) or 'as imported'}: {shown}")
    return row


if __name__ == "__main__":
    main()

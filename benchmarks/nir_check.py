"""Export a trained CIFAR-10 network to NIR and run the file in other simulators, image by image (docs/EXPORT.md).

Calibrates and converts a checkpoint as the conversion callback does (max thresholds, membrane shift, analog
readout), then at ``--timesteps`` T: **ours**, the round trip (``import_nir``) and the file's own network
(``restore=False``: the bias shift at T); **sinabs / snnTorch / Norse** (those installed), the file written
with the options each can read, imported with its own importer and run as imported and with the user-side
settings of ``nir_targets.FIXES``. Writes (or updates, one key per target) ``--out``.

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

import nir_targets
import torch
from study import REPO, evaluation_images, portable_paths, write_json  # (also puts this checkout first on sys.path)

from lightning_snn.conversion import calibrate_thresholds, convert
from lightning_snn.export import export_nir, import_nir
from lightning_snn.module import ConversionModule
from lightning_snn.simulation import simulate


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--checkpoint", required=True, help="a ConversionModule checkpoint (.ckpt)")
    p.add_argument("--data-dir", default=str(REPO.parent / "shared" / "data" / "cifar10"))
    p.add_argument("--timesteps", type=int, default=64, help="the T the file is exported for and run at")
    p.add_argument("--test-samples", type=int, default=1000)
    p.add_argument("--calibration-samples", type=int, default=5000)
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--targets", nargs="+", default=["ours", "sinabs", "snntorch", "norse"])
    p.add_argument("--fix-sets", choices=["each", "all"], default="each", help="each: also each fix alone and all "
                   "but each one; all: as imported, what it needs to run, all fixes")  # fmt: skip
    p.add_argument("--cli-nir", default=None, help="also check a snn.nir written by the CLI (snn.export: nir)")
    p.add_argument("--out", default=str(REPO / "docs" / "export.json"))
    return p.parse_args(argv)


def predict(snn, x: torch.Tensor, t: int, batch: int) -> torch.Tensor:
    return torch.cat([simulate(snn, part, [t])[0].argmax(-1) for part in x.split(batch)])


def agreement(a: torch.Tensor, b: torch.Tensor) -> float:
    return 100.0 * float((a == b).float().mean())


def fix_sets(name: str, mode: str) -> list[tuple[str, ...]]:
    """As imported; with only the fixes it needs to run; ``each``: plus each other fix alone, and all
    fixes but each one (what each difference costs by itself); all fixes."""
    names, required = list(nir_targets.FIXES[name]), nir_targets.REQUIRED[name]
    others = [n for n in names if n not in required]
    sets = [(), tuple(required)]
    if mode == "each":
        sets += [(*required, n) for n in others] + [tuple(n for n in names if n != left) for left in others]
    return list(dict.fromkeys([*sets, tuple(names)]))


def main(argv=None) -> dict:
    args = parse_args(argv)
    t, bs = args.timesteps, args.batch_size
    model = ConversionModule.load_from_checkpoint(args.checkpoint, map_location="cpu").model.eval()
    calib, test = evaluation_images(args)
    x, y = torch.cat([b[0] for b in test]), torch.cat([b[1] for b in test])
    command = "python benchmarks/nir_check.py " + " ".join(sys.argv[1:] if argv is None else argv)
    out_path = Path(args.out)
    results = json.loads(out_path.read_text()) if out_path.exists() else {}
    setup = {"checkpoint": str(args.checkpoint), "timesteps": t, "test_images": int(x.shape[0])}
    setup.update(calibration_images=args.calibration_samples, shift="membrane (exported as the bias shift at T)")
    setup["readout"] = "analog"
    # a run adds its targets to the file's: rows measured with other settings would be filed under this setup
    stored = {k: results.get("setup", {}).get(k) for k in setup}
    if "setup" in results and stored != portable_paths(setup):
        raise SystemExit(
            f"{out_path} holds targets measured with {stored}, this run's settings are {portable_paths(setup)}: "
            "pass another --out, or the same settings to add targets to it"
        )
    setup.update(torch=torch.__version__, python=platform.python_version(), command=command)
    results["setup"] = {**setup, **results.get("setup", {})}  # the file's first run's versions and command stay
    thresholds = calibrate_thresholds(model, calib)
    snn = convert(model, thresholds, shift="membrane")
    ann, ours = torch.cat([model(part).argmax(-1) for part in x.split(bs)]), predict(snn, x, t, bs)
    rows, shape = {}, tuple(x.shape[1:])
    with tempfile.TemporaryDirectory() as tmp:
        if "ours" in args.targets:
            row = rows["ours"] = {"installed": True, "acc": agreement(ours, y)}
            path = export_nir(snn, Path(tmp) / "ours.nir", shape, t)
            back = import_nir(path)
            diff = max(float((simulate(snn, p, [t]) - simulate(back, p, [t])).abs().max()) for p in x[:200].split(100))
            row["round_trip"] = {"agreement": agreement(predict(back, x, t, bs), ours)}
            row["round_trip"]["max_abs_output_diff_200_images"] = diff
            exported = predict(import_nir(path, restore=False), x, t, bs)
            bias = predict(convert(model, thresholds, shift="bias", timesteps=t), x, t, bs)
            fnet = row["file_network"] = {
                "what": "the file as written: the bias shift at T (import_nir(restore=False))"
            }
            fnet.update(acc=agreement(exported, y), agreement_with_membrane_snn=agreement(exported, ours))
            fnet["agreement_with_convert_bias_T"] = agreement(exported, bias)
            if args.cli_nir:
                cli_snn = import_nir(args.cli_nir)
                th = {k: torch.as_tensor(v) for k, v in cli_snn.thresholds.items()}
                rel = max(
                    float((v - torch.as_tensor(thresholds[k])).abs().max() / v.abs().max()) for k, v in th.items()
                )
                cli = {"path": args.cli_nir, "agreement": agreement(predict(cli_snn, x, t, bs), ours)}
                row["cli_file"] = {**cli, "threshold_max_rel_diff": rel}
            print(f"ours: acc {row['acc']:.2f}%, round trip {row['round_trip']}, the file's network {fnet}")
        for name in [n for n in args.targets if n != "ours"]:
            if not nir_targets.available(name):
                rows[name] = {"installed": False}
                print(f"{name}: not installed here, skipped")
                continue
            path = str(export_nir(snn, Path(tmp) / f"{name}.nir", shape, t, **nir_targets.EXPORT_OPTIONS[name]))
            exported = predict(import_nir(path, restore=False), x, t, bs)
            rows[name] = check_target(args, name, path, x, y, exported, ours)
            # does it read the file the CLI writes by default (AvgPool2d, the integrator I)? 'ok' or its error
            default = str(export_nir(snn, Path(tmp) / f"{name}_default.nir", shape, t))
            try:
                nir_targets.RUNNERS[name](default, x[:2], 2, frozenset(nir_targets.FIXES[name]))
                rows[name]["default_file"] = "ok"
            except Exception as exc:  # a refusal, not a silent change, is what is checked here
                rows[name]["default_file"] = error(exc)
    for row in rows.values():
        row["command"] = command  # which run measured it (the setup's command is the file's first run)
    results.setdefault("targets", {}).update(rows)
    results["ann_acc"], results["ours_acc"] = agreement(ann, y), agreement(ours, y)
    write_json(out_path, results)
    print(f"written: {out_path}")
    return results


def error(exc: Exception) -> str:
    return f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"


def check_target(args, name, path, x, y, exported, ours) -> dict:
    row = {"installed": True, "versions": {p: version(p) for p in (name, "nir", "nirtorch")}}
    row.update(export_options=nir_targets.EXPORT_OPTIONS[name], runs=[])
    for fixes in fix_sets(name, args.fix_sets):
        t0, run = time.perf_counter(), {"fixes": list(fixes)}
        try:
            parts = x.split(args.batch_size)
            pred = torch.cat([nir_targets.RUNNERS[name](path, p, args.timesteps, frozenset(fixes)) for p in parts])
        except Exception as exc:  # an importer that cannot run the file as imported: recorded, not fatal
            run["error"] = error(exc)
            traceback.print_exc(limit=1)
        else:
            run["agreement_with_file_network"] = agreement(pred, exported)
            run.update(agreement_with_membrane_snn=agreement(pred, ours), acc=agreement(pred, y))
        run["seconds"] = round(time.perf_counter() - t0, 1)
        row["runs"].append(run)
        print(f"{name} {'+'.join(fixes) or 'as imported'}: {run}")
    return row


if __name__ == "__main__":
    main()

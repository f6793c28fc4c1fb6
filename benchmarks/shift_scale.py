"""The size of the shift (the paper's Fig. 3B-D) at CPU scale: SNN accuracy against ``snn.shift_scale``.

Sweeps the shift's scale on two trained networks (Lightning checkpoints of train.py: a plain-ReLU and a
threshold-ReLU one), with the bias shift (one SNN per scale and T) and the membrane shift (one simulation
per scale for every T), into docs/shift_scale.json; docs/RESULTS.md's tables and docs/shift_scale.png are
rendered from it by ``python benchmarks/render.py``.

    python benchmarks/shift_scale.py --relu-ckpt runs/vgg16_relu/checkpoints/last.ckpt \\
        --threshold-ckpt runs/vgg16_t/checkpoints/last.ckpt --test-samples 500
    python benchmarks/shift_scale.py --tiny --data-dir ../shared/data/cifar10   # smoke test (trains tiny nets)

Resumable: each (network, shift, scale, test batch) result is saved in --work-dir as it comes, with each
image's outcome, so a difference between two settings is read against its paired noise.
"""

from __future__ import annotations

import argparse
import math
import os
import time
from pathlib import Path

import torch
from sections.shift_scale import MODES, NETWORKS
from study import StudyState, evaluation_images, fit_quietly, portable, sha256, write_json

from lightning_snn.checkpoints import load_checkpoint
from lightning_snn.conversion import calibrate_thresholds
from lightning_snn.evaluation import threshold_clip_state
from lightning_snn.module import ConversionModule
from lightning_snn.simulation import SpikingEvaluator

REPO = Path(__file__).resolve().parents[1]
SCALES = [0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0]
TIMESTEPS = [16, 32, 64, 200]
#: Settings that must not change between the sittings of one sweep.
STATE_KEYS = ("test_samples", "calibration_samples", "batch_size", "scales", "timesteps")


def trained_epochs(path: Path) -> int | None:
    """Epochs trained when the checkpoint was saved: Lightning's processed epochs (a checkpoint saved at an
    epoch's end counts that epoch as processed, not yet as completed)."""
    ckpt = load_checkpoint(path, "the checkpoint")  # torch's restricted loader (docs/TRUST.md)
    try:
        return int(ckpt["loops"]["fit_loop"]["epoch_progress"]["total"]["processed"])
    except (KeyError, TypeError):
        return None


def tiny_networks(args, work: Path) -> dict[str, Path]:
    """Two tiny networks trained for one epoch (the smoke test only)."""
    paths = {}
    for net, activation in (("relu", "relu"), ("threshold", "threshold_relu")):
        path = work / f"tiny_{net}.ckpt"
        if not path.exists():
            module = ConversionModule(arch="vgg16", width=1 / 16, activation=activation, relu_warmup_epochs=0)
            trainer, _ = fit_quietly(module, args, work)
            trainer.save_checkpoint(path)
        paths[net] = path
    return paths


def _bits(correct: torch.Tensor) -> str:
    return "".join("1" if c else "0" for c in correct.tolist())


def sweep(args, net: str, module: ConversionModule, entry: dict, save, calib_x, test_batches) -> None:
    """Every (mode, scale) of one network on every test batch not yet in ``entry``. Scale 0 is no shift
    in both modes (bit for bit, tests/test_shift_size.py): simulated once, stored under both."""
    model = module.model
    if "thresholds" not in entry:
        entry["thresholds"] = {k: float(v) for k, v in calibrate_thresholds(model, calib_x, method="max").items()}
        with torch.no_grad():
            entry["ann"] = [_bits(model(x).argmax(-1) == y) for x, y in test_batches]
        save()
    runs = entry.setdefault("runs", {})
    for mode in args.modes:
        for scale in args.scales:
            key = f"{mode}/{scale:g}"
            done = runs.setdefault(key, {})
            if scale == 0 and len(runs.get(f"{_other(mode)}/0", {})) == len(test_batches):
                done.update(runs[f"{_other(mode)}/0"])  # the same SNN: no shift
            evaluator = None
            for i, (x, y) in enumerate(test_batches):
                if str(i) in done:
                    continue
                evaluator = evaluator or SpikingEvaluator(
                    model, entry["thresholds"], args.timesteps, shift=mode, shift_scale=scale, time_chunk="auto"
                )
                t0 = time.perf_counter()
                with torch.no_grad():
                    correct = evaluator(x).argmax(-1) == y.unsqueeze(0)  # [T, B]
                done[str(i)] = {str(t): _bits(c) for t, c in zip(args.timesteps, correct, strict=True)}
                seconds = entry.setdefault("seconds", {})
                seconds[key] = seconds.get(key, 0.0) + time.perf_counter() - t0
                save()
                print(f"  {net} {key} batch {i}: {time.perf_counter() - t0:.0f}s", flush=True)


def _other(mode: str) -> str:
    return "membrane" if mode == "bias" else "bias"


def outcomes(entry: dict, key: str, t: int, n_batches: int) -> str | None:
    """The concatenated per-image outcomes ('1' = correct) of one setting at T, or None if incomplete."""
    done = entry.get("runs", {}).get(key, {})
    if len(done) < n_batches:
        return None
    return "".join(done[str(i)][str(t)] for i in range(n_batches))


def accuracy(bits: str) -> float:
    return 100.0 * bits.count("1") / len(bits)


def paired_se(a: str, b: str) -> float:
    """Standard error (points) of ``acc(b) - acc(a)`` on the same images: only the images on which the
    two settings disagree carry it (McNemar): ``100 sqrt(n10 + n01 - (n01 - n10)^2 / n) / n``."""
    n = len(a)
    n01 = sum(1 for x, y in zip(a, b, strict=True) if x == "0" and y == "1")
    n10 = sum(1 for x, y in zip(a, b, strict=True) if x == "1" and y == "0")
    return 100.0 * math.sqrt(max(n01 + n10 - (n01 - n10) ** 2 / n, 0.0)) / n


def _scale_1_against_0(entry: dict, mode: str, t: int, n_batches: int) -> float | None:
    """The paired standard error of scale 1 against no shift at T, if both are measured."""
    a, b = outcomes(entry, f"{mode}/0", t, n_batches), outcomes(entry, f"{mode}/1", t, n_batches)
    return None if a is None or b is None else paired_se(a, b)


def write_outputs(args, state: StudyState, out: Path, n_batches: int) -> None:
    """docs/shift_scale.json: the accuracy per (network, mode, scale, T) and the paired standard
    error of scale 1 against 0 at every T."""
    networks, paired = {}, {}
    for net, entry in state.data["networks"].items():
        if "ann" not in entry:
            continue
        acc = {}
        for mode in args.modes:
            for scale in args.scales:
                for t in args.timesteps:
                    bits = outcomes(entry, f"{mode}/{scale:g}", t, n_batches)
                    if bits is not None:
                        acc.setdefault(mode, {}).setdefault(f"{scale:g}", {})[str(t)] = accuracy(bits)
        networks[net] = {"ann_acc": accuracy("".join(entry["ann"])), "snn_acc": acc, "meta": entry.get("meta", {}),
                         "seconds": entry.get("seconds", {})}  # fmt: skip
        se = {
            mode: {str(t): _scale_1_against_0(entry, mode, t, n_batches) for t in args.timesteps} for mode in args.modes
        }
        paired[net] = {mode: {t: v for t, v in d.items() if v is not None} for mode, d in se.items()}
    stem = "shift_scale" + ("_tiny" if args.tiny else "")
    payload = {"args": portable(args), "setup": state.data["recipe"], "networks": networks, "paired_se": paired}
    write_json(out / f"{stem}.json", payload)
    print(f"wrote {out / stem}.json; render docs/RESULTS.md (its tables and plot) with python benchmarks/render.py")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--relu-ckpt", default=None, help="Lightning checkpoint of the plain-ReLU network")
    p.add_argument("--threshold-ckpt", default=None, help="Lightning checkpoint of the threshold-ReLU network")
    p.add_argument("--data-dir", default=str(REPO.parent / "shared" / "data" / "cifar10"))
    p.add_argument("--work-dir", default="runs/shift_scale")
    p.add_argument("--out-dir", default=str(REPO / "docs"))
    p.add_argument("--test-samples", type=int, default=1000)
    p.add_argument("--calibration-samples", type=int, default=5000)
    p.add_argument("--batch-size", type=int, default=250)
    p.add_argument("--scales", type=float, nargs="+", default=SCALES)
    p.add_argument("--timesteps", type=int, nargs="+", default=TIMESTEPS)
    p.add_argument("--modes", nargs="+", choices=sorted(MODES), default=list(MODES))
    p.add_argument("--tiny", action="store_true", help="smoke test: tiny networks, 64 test images, 3 scales")
    args = p.parse_args()
    args.scales, args.timesteps = sorted(set(args.scales)), sorted(set(args.timesteps))
    if any(s < 0 for s in args.scales):
        p.error("--scales must be >= 0")
    work, out = Path(args.work_dir), Path(args.out_dir)
    work.mkdir(parents=True, exist_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    if args.tiny:
        args.test_samples, args.calibration_samples, args.batch_size = 64, 128, 32
        args.scales, args.timesteps = [0.0, 1.0, 2.0], [4, 16]
        args.seed, args.epochs, args.train_samples = 0, 1, 256
        checkpoints = tiny_networks(args, work)
        args.relu_ckpt, args.threshold_ckpt = None, None
    else:
        if not (args.relu_ckpt and args.threshold_ckpt):
            p.error("give --relu-ckpt and --threshold-ckpt (Lightning checkpoints of train.py), or --tiny")
        checkpoints = {"relu": Path(args.relu_ckpt), "threshold": Path(args.threshold_ckpt)}
    setup = {k: getattr(args, k) for k in STATE_KEYS}
    setup["sha256"] = {net: sha256(p) for net, p in checkpoints.items()}
    state = StudyState(work / "shift_scale_state.json", setup)  # a sweep with other settings is refused by name
    calib_x, test_batches = evaluation_images(args)
    for net, ckpt in checkpoints.items():
        module = ConversionModule.load_from_checkpoint(str(ckpt), map_location="cpu").eval()
        hp, clip = module.hparams, threshold_clip_state(module.model)
        if clip is not None and clip != (net == "threshold"):
            raise SystemExit(f"{ckpt}: the {NETWORKS[net]} has threshold ReLUs clipping={clip}; swap the two?")
        entry = state.entry("networks", net)
        entry["meta"] = {
            "arch": hp.arch, "width": hp.width, "activation": hp.activation, "epochs": trained_epochs(ckpt),
            "checkpoint": os.path.relpath(Path(ckpt).resolve(), REPO),
        }  # fmt: skip
        print(f"== {net}: {hp.arch} width {hp.width}", flush=True)
        sweep(args, net, module, entry, state.save, calib_x, test_batches)
        write_outputs(args, state, out, len(test_batches))


if __name__ == "__main__":
    main()

"""Fidelity at CPU scale: the paper's VGG-16 claims on real CIFAR-10, into docs/*.json; docs/RESULTS.md (its tables,
plots, setup and the claims checked) is rendered from them by ``python benchmarks/render.py docs/RESULTS.md``.

    python benchmarks/fidelity.py --data-dir ../shared/data/cifar10            # ReLU vs threshold: results.json
    python benchmarks/fidelity.py --data-dir ../shared/data/cifar10 --tiny     # smoke test (results_tiny.json)
    python benchmarks/fidelity.py --widths 0.125 0.25 0.5 --epochs 8 --warmup 2 --lr 0.01 \
        --test-samples 2000 --optimizer sgd                                    # the width study: width_study.json

The width study is resumable (the same command goes on where a killed run stopped); ``--train-only``
then a rerun without it splits training from simulation (e.g. ``--device cuda`` with only the test
images at hand); a setup check is the same study with one setting changed, ``--study-name
width_check_<what>`` and its own ``--work-dir``. docs/RESULTS.md gives each study's exact command.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import pytorch_lightning as pl
import torch
from sections.fidelity import NETWORK, NETWORK_WORDS, OPTIMIZERS, RECIPE_DEFAULTS, RECIPE_KEYS, TIMESTEPS, network_of
from study import StudyState, evaluation_images, fit_quietly, machine, portable, sha256, train_or_load, write_json

# isort: split
from lightning_snn.callbacks import StopWhenDead  # after study: it puts this checkout first on sys.path

from lightning_snn.conversion import calibrate_thresholds
from lightning_snn.evaluation import evaluate_conversion
from lightning_snn.heap import keep_freed_memory
from lightning_snn.module import ConversionModule
from lightning_snn.simulation import SpikingEvaluator

REPO = Path(__file__).resolve().parents[1]
SHIFTS = ("none", "bias", "membrane")


def make_module(args, activation: str, width: float) -> ConversionModule:
    """The study's VGG-16 source ANN: one recipe for every width and activation."""
    return ConversionModule(
        arch="vgg16",
        width=width,
        activation="threshold_relu" if activation == "threshold" else "relu",
        y_th=1.0,
        relu_warmup_epochs=args.warmup,
        model_kwargs={"conv_dropout": args.conv_dropout, "fc_dropout": args.fc_dropout},
        optimizer=lambda p: make_optimizer(args, p),
        lr_scheduler=lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=args.epochs),
    )


def make_optimizer(args, params) -> torch.optim.Optimizer:
    """Adam (no weight decay), or the paper's SGD (appendix A.1: momentum 0.9, weight decay 5e-4)."""
    if args.optimizer == "adam":
        return torch.optim.Adam(params, lr=args.lr)
    if args.optimizer == "sgd":
        return torch.optim.SGD(params, lr=args.lr, momentum=0.9, weight_decay=5e-4)
    raise ValueError(f"unknown optimizer {args.optimizer!r}; choose one of {sorted(OPTIMIZERS)}")


def relu_vs_threshold(args) -> dict:
    """Both source ANNs trained, then every shift mode on the same thresholds and test images
    (through evaluate_conversion): the results of docs/results.json."""
    work = Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    calib_x, test_batches = evaluation_images(args)
    results = {}
    for src in ("relu", "threshold"):
        print(f"== training the {src} source ANN", flush=True)
        module = make_module(args, src, args.width)
        trainer, seconds = fit_quietly(module, args, work)
        ckpt = work / f"vgg16_w{args.width}_{src}.ckpt"
        trainer.save_checkpoint(ckpt)
        print(f"== converting the {src} source ANN", flush=True)
        r = results[src] = {"snn_acc": {}, "seconds": {}}
        for shift in SHIFTS:
            report = evaluate_conversion(module.model, calib_x, test_batches, TIMESTEPS, shift=shift, time_chunk="auto")
            r["ann_acc"], r["thresholds"] = report.ann_acc, report.to_json()["thresholds"]
            r["snn_acc"][shift], r["seconds"][shift] = report.snn_acc, report.seconds["simulation"]
            print(f"  shift={shift}: " + ", ".join(f"T{t} {a:.2f}" for t, a in report.snn_acc.items()), flush=True)
        r.update(train_seconds=seconds, checkpoint=str(ckpt), sha256=sha256(ckpt))
    return results


# ---------------------------------------------------------------------------------------------
# The width study (issue 11): the threshold-ReLU VGG-16 at several widths, one recipe, converted
# with the threshold alone and with threshold + shift. Resumable: training checkpoints every epoch
# and every (variant, test batch) result is saved as soon as it is known, so a study longer than
# one sitting goes on where it stopped when rerun with the same command.
# ---------------------------------------------------------------------------------------------


def _width_key(width: float) -> str:
    return f"{width:g}"


def load_width_state(args, path: Path) -> StudyState:
    """The study's state file (``data``: recipe, widths, network); refuses to mix sittings run with
    a different recipe, or to go on with a study of the earlier five-pool network."""
    if path.exists() and network_of(stored := json.loads(path.read_text())) != NETWORK:
        raise SystemExit(
            f"{path} holds a width study of {NETWORK_WORDS[network_of(stored)]}; vgg16 is now the paper's network, "
            "whose checkpoints differ: pass another --work-dir to start a new study."
        )
    state = StudyState(path, {k: getattr(args, k) for k in RECIPE_KEYS}, defaults=RECIPE_DEFAULTS)
    state.data.setdefault("widths", {})
    state.data.setdefault("network", NETWORK)
    return state


def _progress(trainer: pl.Trainer, module: pl.LightningModule) -> None:
    m = trainer.callback_metrics
    print(f"  epoch {trainer.current_epoch}: train loss {float(m.get('train/loss', float('nan'))):.3f}, "
          f"train acc {100 * float(m.get('train/acc', float('nan'))):.1f}%", flush=True)  # fmt: skip


def prepare_width(module: ConversionModule, entry: dict, state: StudyState, calib_x, test_batches) -> None:
    """The max thresholds (over the calibration images) and the ANN's counts on every test batch,
    once: stored in ``entry``, so a later sitting can simulate with no training images at hand
    (e.g. on a GPU machine that holds only the test images)."""
    model = module.model.eval()
    if "thresholds" not in entry:
        thresholds = calibrate_thresholds(model, calib_x, method="max")
        entry["thresholds"] = {k: float(v) for k, v in thresholds.items()}
        entry["prepared_on"] = _device_name(next(model.parameters()).device)
    batches = entry.setdefault("batches", {})
    for i, (x, y) in enumerate(test_batches):
        if f"ann/{i}" not in batches:
            with torch.no_grad():
                batches[f"ann/{i}"] = {"n": y.numel(), "correct": int((model(x).argmax(-1) == y).sum())}
    state.save()


def evaluate_width(args, module: ConversionModule, entry: dict, state: StudyState, test_batches) -> None:
    """Every variant on every test batch not yet in ``entry``, on ``args.device``, with the stored
    thresholds (:func:`prepare_width`): batch by batch, each result saved as it comes, which
    ``evaluate_conversion`` (calibrating anew, all batches at once) does not offer. A network that
    cannot be converted (a dead layer: its training collapsed) is a result of the study: its error
    goes into ``entry["error"]`` and the study goes on with the next width."""
    device = torch.device(args.device)
    model = module.model.eval().to(device)
    thresholds, batches = entry["thresholds"], entry["batches"]
    test_batches = [(x.to(device), y.to(device)) for x, y in test_batches]
    where = _device_name(device)
    try:  # the first variant's evaluator, built here: it refuses a dead layer by name
        first = SpikingEvaluator(model, thresholds, args.timesteps, shift="membrane", time_chunk="auto")
    except ValueError as exc:
        entry["error"] = str(exc)
        state.save()
        print(f"  width {entry['width']:g} cannot be converted: {exc}", flush=True)
        return
    entry.pop("error", None)
    for shift, ts in (("membrane", args.timesteps), ("none", args.timesteps), ("bias", args.bias_timesteps)):
        evaluator = first if shift == "membrane" else None
        for i, (x, y) in enumerate(test_batches):
            key = f"{shift}/{i}"
            if key in batches:
                continue
            evaluator = evaluator or SpikingEvaluator(model, thresholds, ts, shift=shift, time_chunk="auto")
            t0 = time.perf_counter()
            with torch.no_grad():
                correct = (evaluator(x).argmax(-1) == y.unsqueeze(0)).sum(-1).tolist()
            batches[key] = {
                "n": y.numel(),
                "correct": dict(zip(map(str, ts), correct, strict=True)),
                "seconds": time.perf_counter() - t0,
                "device": where,
            }
            state.save()
            print(f"  width {entry['width']:g} {shift} batch {i}: {batches[key]['seconds']:.0f}s", flush=True)


def _device_name(device: torch.device) -> str:
    """The processor a simulation ran on, for the doc (a GPU's name; 'cpu, N threads')."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{device.type}, {torch.get_num_threads()} threads"


def width_accuracies(entry: dict, n_batches: int) -> dict:
    """ANN and SNN accuracy (%) of one width from its per-batch counts; a variant with a batch
    still missing is left out (``None``): a partial mean would be read as a result."""
    batches = entry.get("batches", {})
    out = {"ann_acc": None, "snn_acc": {}, "seconds": {}}
    ann = [batches.get(f"ann/{i}") for i in range(n_batches)]
    if all(ann):
        out["ann_acc"] = 100.0 * sum(b["correct"] for b in ann) / sum(b["n"] for b in ann)
    for shift in SHIFTS:
        got = [batches.get(f"{shift}/{i}") for i in range(n_batches)]
        if not all(got):
            out["snn_acc"][shift] = None
            continue
        n = sum(b["n"] for b in got)
        out["snn_acc"][shift] = {int(t): 100.0 * sum(b["correct"][t] for b in got) / n for t in got[0]["correct"]}
        out["seconds"][shift] = sum(b["seconds"] for b in got)
        out.setdefault("sim_devices", {})[shift] = sorted({b.get("device", "cpu") for b in got})
    return out


def width_study(args) -> None:
    work, out = Path(args.work_dir), Path(args.out_dir)
    work.mkdir(parents=True, exist_ok=True)
    state = load_width_state(args, work / "width_study_state.json")
    if args.device.startswith("cuda"):
        # no TF32: its 10-bit mantissa moves membrane potentials across thresholds that fp32 does not
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    # the training images are needed only to train a width or to calibrate its thresholds
    stored = [state.data["widths"].get(_width_key(w), {}) for w in args.widths]
    needs_training_images = not all("thresholds" in e and "sha256" in e for e in stored)
    calib_x, test_batches = evaluation_images(args, calibration=needs_training_images)
    for width in sorted(args.widths):
        entry = state.data["widths"].setdefault(_width_key(width), {"width": width})
        name = f"vgg16_w{_width_key(width)}_threshold"
        callbacks = [pl.callbacks.LambdaCallback(on_train_epoch_end=_progress)]
        if calib_x is not None:  # a layer that dies in training stops it (with no calibration images: trained)
            callbacks.append(StopWhenDead(calib_x, entry))
        module = make_module(args, "threshold", width)
        train_or_load(module, args, state, entry, name, callbacks, resume=f"vgg16_w{_width_key(width)}_epochs")
        prepare_width(module, entry, state, calib_x, test_batches)
        if not args.train_only:
            evaluate_width(args, module, entry, state, test_batches)
        write_width_json(args, state, out, len(test_batches))


def write_width_json(args, state: StudyState, out: Path, n_batches: int) -> None:
    """docs/<study-name>.json: each width's accuracies from its per-batch counts, and what the doc names."""
    kept = (
        "width", "train_seconds", "checkpoint", "sha256", "parameters", "thresholds", "resumed_at_epoch", "error",
        "stopped_dead", "prepared_on",
    )  # fmt: skip
    results = {}
    for k, e in state.data["widths"].items():
        results[k] = {**width_accuracies(e, n_batches), **{f: e.get(f) for f in kept}}
    payload = {"args": portable(args), "recipe": state.data["recipe"], "results": results}
    payload["network"] = NETWORK  # load_width_state refuses to go on with a study of another network
    write_json(out / f"{args.study_name}{'_tiny' if args.tiny else ''}.json", payload)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", default=str(REPO.parent / "shared" / "data" / "cifar10"))
    p.add_argument("--work-dir", default="runs/fidelity")
    p.add_argument("--out-dir", default=str(REPO / "docs"), help="where the JSON goes")
    p.add_argument("--width", type=float, default=0.125)
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--optimizer", choices=sorted(OPTIMIZERS), default=RECIPE_DEFAULTS["optimizer"],
                   help="adam, or the paper's sgd (momentum 0.9, weight decay 5e-4; its lr 0.01); cosine")  # fmt: skip
    p.add_argument("--seed", type=int, default=RECIPE_DEFAULTS["seed"])
    p.add_argument("--conv-dropout", type=float, default=RECIPE_DEFAULTS["conv_dropout"],
                   help="dropout between convs (the paper: 0.2)")  # fmt: skip
    p.add_argument("--fc-dropout", type=float, default=RECIPE_DEFAULTS["fc_dropout"],
                   help="dropout between FC layers (the paper: 0.5)")  # fmt: skip
    p.add_argument("--train-samples", type=int, default=RECIPE_DEFAULTS["train_samples"])
    p.add_argument("--calibration-samples", type=int, default=RECIPE_DEFAULTS["calibration_samples"])
    p.add_argument("--test-samples", type=int, default=1000)
    p.add_argument("--batch-size", type=int, default=RECIPE_DEFAULTS["batch_size"])
    p.add_argument("--widths", type=float, nargs="+", default=None,
                   help="run the width study instead: the threshold-ReLU VGG-16 at these widths")  # fmt: skip
    p.add_argument("--bias-timesteps", type=int, nargs="+", default=RECIPE_DEFAULTS["bias_timesteps"],
                   help="width study: the bias shift's T")  # fmt: skip
    p.add_argument("--timesteps", type=int, nargs="+", default=RECIPE_DEFAULTS["timesteps"],
                   help="width study: the T of the one-pass variants")  # fmt: skip
    p.add_argument("--study-name", default="width_study",
                   help="width study: the stem of its JSON in --out-dir; 'width_check_<what>' marks a setup check "
                   "of one width, which docs/RESULTS.md sets beside the width study's row of that width")  # fmt: skip
    p.add_argument("--train-only", action="store_true",
                   help="width study: train (or load) every width, simulate nothing yet")  # fmt: skip
    p.add_argument("--device", default="cpu",
                   help="width study: where thresholds and simulations run (training: Lightning's choice)")  # fmt: skip
    p.add_argument("--tiny", action="store_true", help="smoke test: 1 epoch on 256 images, 64 test images")
    args = p.parse_args()
    keep_freed_memory()  # as train.py: no page faults per chunk, and the CPU chunk rule's 64 MB target
    if args.tiny:
        args.width, args.epochs, args.warmup = 0.0625, 1, 0
        args.train_samples, args.calibration_samples, args.test_samples, args.batch_size = 256, 128, 64, 64
        if args.widths:
            args.widths, args.batch_size, args.bias_timesteps = [0.03125, 0.0625], 32, [8, 16]
    if args.widths:
        width_study(args)
        print(f"wrote {Path(args.out_dir) / args.study_name}*.json; render the doc with python benchmarks/render.py")
        return
    results = relu_vs_threshold(args)
    path = Path(args.out_dir) / ("results_tiny.json" if args.tiny else "results.json")
    write_json(path, {"args": portable(args), "machine": machine(), "results": results, "network": NETWORK})
    print(f"wrote {path}; render the doc with python benchmarks/render.py docs/RESULTS.md")


if __name__ == "__main__":
    main()

"""Fidelity at CPU scale: does our conversion reproduce the paper's qualitative claims?

Trains the same reduced-width VGG-16 twice on real CIFAR-10 with the same seed and budget
(plain ReLU, and ReLU warm-up then threshold ReLU), converts each with no shift, the
paper's bias shift (one simulation per T) and the membrane shift (one simulation for all
T), and writes docs/RESULTS.md, PNG plots and a JSON of every number. Paper Table 4
(VGG-16, CIFAR-10) is printed beside ours.

    python benchmarks/fidelity.py --data-dir ../shared/data/cifar10            # ~40 min, 2 cores
    python benchmarks/fidelity.py --data-dir ../shared/data/cifar10 --tiny     # smoke test

Checkpoints go to --work-dir (not committed); their sha256 is recorded in the doc.

``--widths`` runs the width study instead (issue 11; the threshold-ReLU VGG-16 at several widths,
one recipe; resumable: the same command goes on where a killed run stopped). The exact command
of each result is written into docs/RESULTS.md. The study's recipe is the paper's SGD:

    python benchmarks/fidelity.py --widths 0.125 0.25 0.5 --epochs 8 --warmup 2 --lr 0.01 \
        --test-samples 2000 --optimizer sgd

``--train-only`` trains every width and stores its thresholds and ANN counts, simulating
nothing; the same command without it then simulates, and needs only the test images where every
width is trained (``--data-dir`` may be a folder with a stub train.npz), so the simulations can
run on a GPU machine (``--device cuda``, TF32 off) that cannot hold the training set. A *setup
check* is the same study with one recipe setting changed, written under its own name and work
dir, e.g. the paper's dropout at width 1/8 and only the summary T:

    python benchmarks/fidelity.py --widths 0.125 --lr 0.01 --optimizer sgd --test-samples 2000 \
        --conv-dropout 0.2 --fc-dropout 0.5 --timesteps 16 32 64 --bias-timesteps 16 32 64 \
        --study-name width_check_dropout --work-dir runs/width_check_dropout

docs/RESULTS.md then sets each ``width_check_*.json`` beside the study's row of the same width.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import time
from pathlib import Path

import pytorch_lightning as pl
import torch
from study import evaluation_images, fit_quietly, portable, sha256

from lightning_snn.conversion import calibrate_thresholds
from lightning_snn.evaluation import evaluate_conversion
from lightning_snn.module import ConversionModule
from lightning_snn.simulation import SpikingEvaluator

REPO = Path(__file__).resolve().parents[1]
TIMESTEPS = [8, 16, 32, 64, 128, 256, 512]
# Paper Table 4, VGG-16 on CIFAR-10: conversion loss (points) at T = 32..512; in brackets the
# loss against the threshold-ReLU ANN. S = ReLU ANN + shift, T = threshold, TS = both.
PAPER_TABLE4 = {
    "S": ["29.71", "3.10", "0.99", "0.60", "0.06"],
    "T": ["0.06 (0.31)", "-0.21 (0.04)", "-0.18 (0.07)", "-0.18 (0.07)", "-0.16 (0.09)"],
    "TS": ["-0.2 (0.05)", "-0.13 (0.12)", "-0.15 (0.10)", "-0.19 (0.06)", "-0.16 (0.09)"],
}
# (source ANN, shift mode) -> label; the paper's names where they exist.
VARIANTS = {
    ("relu", "none"): "ReLU, no shift (threshold balancing)",
    ("relu", "bias"): "S: ReLU + V_th/(2T) bias shift",
    ("relu", "membrane"): "ReLU + membrane shift",
    ("threshold", "none"): "T: threshold ReLU, no shift",
    ("threshold", "bias"): "TS: threshold + V_th/(2T) bias shift",
    ("threshold", "membrane"): "TS-membrane: threshold + V_th/2 membrane",
}


# Which VGG-16 a result was measured on. Until issue 24 the registered vgg16 had a fifth average pool
# (after block 5) and a 512 w -> 4096 w first FC: not the paper's network. A JSON written since records
# "network": "paper"; one without the key was measured on the five-pool network.
NETWORK = "paper"
NETWORK_WORDS = {
    "paper": "the paper's VGG-16 (four average pools, none after block 5; first FC 2048 w -> 4096 w; 39.9 M "
    "parameters at width 1)",
    "five_pool": "the earlier five-pool VGG-16 (a fifth pool after block 5, first FC 512 w -> 4096 w; 33.6 M "
    "parameters at width 1), not the paper's network",
}
#: The last commit whose vgg16 was the five-pool network: check it out to rerun a five-pool result.
FIVE_POOL_COMMIT = "51baa16"


def network_of(payload: dict) -> str:
    """``"paper"`` or ``"five_pool"``: the VGG-16 a results JSON was measured on."""
    return payload.get("network", "five_pool")


def network_note(network: str) -> list[str]:
    """The line that says which VGG-16 a section's numbers come from."""
    if network == NETWORK:
        return [f"Measured on {NETWORK_WORDS[network]}.", ""]
    return [
        f"**Measured on {NETWORK_WORDS[network]}.** Kept as that network's record; the commands here now build the "
        f"paper's network (commit `{FIVE_POOL_COMMIT}` and earlier built the five-pool one).",
        "",
    ]


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


# The optimisers a study may train with: Adam (no weight decay), or the paper's SGD (its appendix A.1:
# momentum 0.9, weight decay 5e-4; the paper's lr is 0.01). Both with a cosine schedule over the epochs.
OPTIMIZERS = {"adam": "Adam (no weight decay)", "sgd": "SGD (momentum 0.9, weight decay 5e-4)"}


def make_optimizer(args, params) -> torch.optim.Optimizer:
    name = getattr(args, "optimizer", "adam")
    if name == "adam":
        return torch.optim.Adam(params, lr=args.lr)
    if name == "sgd":
        return torch.optim.SGD(params, lr=args.lr, momentum=0.9, weight_decay=5e-4)
    raise ValueError(f"unknown optimizer {name!r}; choose one of {sorted(OPTIMIZERS)}")


def train(args, activation: str, work: Path) -> tuple[ConversionModule, Path, float]:
    module = make_module(args, activation, args.width)
    trainer, seconds = fit_quietly(module, args, work)
    ckpt = work / f"vgg16_w{args.width}_{activation}.ckpt"
    trainer.save_checkpoint(ckpt)
    return module, ckpt, seconds


def evaluate(args, module: ConversionModule) -> dict:
    """Every shift mode on the same thresholds and test images, through evaluate_conversion."""
    calib_x, test_batches = evaluation_images(args)
    out = {"snn_acc": {}, "seconds": {}}
    for shift in ("none", "bias", "membrane"):
        report = evaluate_conversion(module.model, calib_x, test_batches, TIMESTEPS, shift=shift, time_chunk="auto")
        out["ann_acc"], out["thresholds"] = report.ann_acc, report.to_json()["thresholds"]
        out["snn_acc"][shift] = report.snn_acc
        out["seconds"][shift] = report.seconds["simulation"]
        print(f"  shift={shift}: " + ", ".join(f"T{t} {a:.2f}" for t, a in report.snn_acc.items()), flush=True)
    return out


def claims(results: dict, n_images: int) -> list[str]:
    """The paper's qualitative claims, checked on our numbers (loss = ANN acc - SNN acc)."""

    def loss(src, shift, t):
        return results[src]["ann_acc"] - results[src]["snn_acc"][shift][t]

    def mean_loss(key, ts):
        return sum(loss(key[0], key[1], t) for t in ts) / len(ts)

    step = 100.0 / n_images
    short = [t for t in TIMESTEPS if t <= 32]
    with_shift = [("threshold", "bias"), ("threshold", "membrane")]
    best_ts = min(with_shift, key=lambda k: mean_loss(k, short))
    others = {k: mean_loss(k, short) for k in VARIANTS if k not in with_shift}
    best_other = min(others, key=others.get)
    c1 = mean_loss(best_ts, short) < others[best_other]
    long_t = [t for t in TIMESTEPS if t >= 256]
    t_long, ts_long = mean_loss(("threshold", "none"), long_t), mean_loss(("threshold", "bias"), long_t)
    c2 = t_long <= ts_long
    relu_512, relu_256 = loss("relu", "none", 512), loss("relu", "none", 256)
    thr_512 = loss("threshold", "none", 512)
    residual = relu_512 > thr_512 + step
    plateau = abs(relu_512 - relu_256) <= 2 * step
    verdict3 = (
        "holds"
        if residual and plateau
        else "partly: a larger residual loss at T=512, but no plateau yet (still falling)"
        if residual
        else "does not hold"
    )
    return [
        f"One test image is {step:.2f} points here: differences of a few tenths are noise.",
        "",
        f"1. Threshold + shift has the smallest loss at short T (T <= 32): **{'holds' if c1 else 'does not hold'}** "
        f"(mean loss, best threshold+shift variant {VARIANTS[best_ts]!r}: {mean_loss(best_ts, short):.2f} pts; "
        f"best variant without both: {VARIANTS[best_other]!r}: {others[best_other]:.2f} pts).",
        f"2. Threshold alone is best at long T (T >= 256): **{'holds' if c2 else 'does not hold'}** "
        f"(mean loss T {t_long:.2f} pts vs TS {ts_long:.2f} pts).",
        f"3. Plain ReLU converges to a plateau with a residual loss: **{verdict3}** "
        f"(ReLU no-shift loss {relu_256:.2f} pts at T=256, {relu_512:.2f} at T=512; threshold ReLU "
        f"{thr_512:.2f} at T=512).",
    ]


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=False)
    for (src, shift), label in VARIANTS.items():
        r = results[src]
        accs = [r["snn_acc"][shift][t] for t in TIMESTEPS]
        style = "-" if src == "threshold" else "--"
        axes[0].plot(TIMESTEPS, accs, style, marker="o", label=label)
        axes[1].plot(TIMESTEPS, [r["ann_acc"] - a for a in accs], style, marker="o", label=label)
    for src, color in (("relu", "gray"), ("threshold", "black")):
        axes[0].axhline(results[src]["ann_acc"], color=color, lw=0.8, ls=":", label=f"ANN ({src})")
    for ax, title in zip(axes, ("SNN accuracy (%)", "conversion loss (points)")):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("simulation length T")
        ax.set_title(title)
        ax.grid(alpha=0.3)
    axes[1].axhline(0, color="black", lw=0.8)
    axes[1].set_ylim(-1.5, 10)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def fidelity_doc_lines(args, results: dict, png_name: str, command: str, network: str = NETWORK) -> list[str]:
    """The ReLU-vs-threshold part of docs/RESULTS.md."""
    lines = [
        "# Fidelity at CPU scale: VGG-16 on real CIFAR-10",
        "",
        "Generated by `benchmarks/fidelity.py`; do not edit by hand, rerun instead:",
        "",
        f"    {command}",
        "",
        *network_note(network),
        "## Setup (and how it differs from the paper)",
        "",
        f"- {NETWORK_WORDS[network]}, no BN, at **width {args.width}** "
        f"(the paper: 1.0), conv dropout {getattr(args, 'conv_dropout', 0.0):g}, "  # older JSONs: the defaults
        f"FC dropout {getattr(args, 'fc_dropout', 0.2):g} (paper: 0.2 / 0.5).",
        f"- **{args.epochs} epochs** of {OPTIMIZERS[getattr(args, 'optimizer', 'adam')]}, lr {args.lr}, cosine, "
        f"batch 128, random crop + flip, seed {args.seed}, "
        f"{args.train_samples or 50000} training images (the paper: 300 epochs of SGD with step decay).",
        f"- Both source ANNs are trained identically; the threshold ANN uses plain ReLU for the first "
        f"{args.warmup} epochs, then `clamp(x, 0, 1)` (the paper: 20 of 300 epochs, y_th = 1).",
        f"- Thresholds: max activation over a fixed, seeded, un-augmented subset of "
        f"{args.calibration_samples} training images.",
        f"- SNN accuracy on the **first {args.test_samples} test images** (fixed subset); the ANN accuracy is on "
        "the same images. Analog readout.",
        f"- Machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
        f"torch {torch.__version__}. Wall times below were taken with other jobs on the machine: "
        "they are not benchmarks (see docs/BENCHMARKS.md for those).",
        "",
        "## Source ANNs",
        "",
        "| source ANN | test acc (same images) | training time | checkpoint sha256 |",
        "|---|---|---|---|",
    ]
    for src in ("relu", "threshold"):
        r = results[src]
        lines.append(f"| {src} | {r['ann_acc']:.2f}% | {r['train_seconds'] / 60:.1f} min | `{r['sha256']}` |")
    lines += ["", "## SNN accuracy (%) by T", "", "| variant | " + " | ".join(f"T={t}" for t in TIMESTEPS) + " |"]
    lines.append("|---|" + "---|" * len(TIMESTEPS))
    for (src, shift), label in VARIANTS.items():
        accs = results[src]["snn_acc"][shift]
        lines.append(f"| {label} | " + " | ".join(f"{accs[t]:.2f}" for t in TIMESTEPS) + " |")
    lines += ["", "## Conversion loss (ANN acc - SNN acc, points) by T", ""]
    lines.append("| variant | " + " | ".join(f"T={t}" for t in TIMESTEPS) + " |")
    lines.append("|---|" + "---|" * len(TIMESTEPS))
    for (src, shift), label in VARIANTS.items():
        r = results[src]
        lines.append(
            f"| {label} | " + " | ".join(f"{r['ann_acc'] - r['snn_acc'][shift][t]:+.2f}" for t in TIMESTEPS) + " |"
        )
    lines += [
        "",
        f"![accuracy and conversion loss vs T]({png_name})",
        "",
        "## The paper's Table 4 (VGG-16, CIFAR-10, full width, 300 epochs): conversion loss, points",
        "",
        "| method | T=32 | T=64 | T=128 | T=256 | T=512 |",
        "|---|---|---|---|---|---|",
    ]
    for k, row in PAPER_TABLE4.items():
        lines.append(f"| {k} | " + " | ".join(row) + " |")
    lines += [
        "",
        "In brackets: the loss against the threshold-ReLU ANN; outside: against the regular-ReLU ANN.",
        "Ours maps onto it as S = 'ReLU + bias shift', T = 'threshold, no shift', TS = 'threshold + bias shift'.",
        "",
        "## The paper's qualitative claims, checked on these numbers",
        "",
        *claims(results, args.test_samples),
        "",
        "Time to evaluate all 7 T on the test subset (both ANNs): "
        + ", ".join(
            f"{shift} {sum(results[s]['seconds'][shift] for s in ('relu', 'threshold')):.0f}s"
            for shift in ("none", "bias", "membrane")
        )
        + " (the bias shift needs one simulation per T; membrane and none need one in all).",
    ]
    return lines


def _int_keys(results: dict) -> dict:
    """JSON turned the T keys into strings."""
    for r in results.values():
        r["snn_acc"] = {shift: {int(t): a for t, a in accs.items()} for shift, accs in r["snn_acc"].items()}
    return results


# ---------------------------------------------------------------------------------------------
# The width study (issue 11): the threshold-ReLU VGG-16 at several widths, one recipe, converted
# with the threshold alone and with threshold + shift. Resumable: training checkpoints every epoch
# and every (variant, test batch) result is saved as soon as it is known, so a study longer than
# one sitting goes on where it stopped when rerun with the same command.
# ---------------------------------------------------------------------------------------------

WIDTH_VARIANTS = {
    "none": "T: threshold alone",
    "bias": "TS: threshold + V_th/(2T) bias shift",
    "membrane": "TS-membrane: threshold + V_th/2 membrane",
}
SUMMARY_T = (16, 32, 64)


def _noise(n_images: int) -> float:
    """The smallest change of a loss (points) the width study reads as real: 1 point, or two test
    images where that is more. Between two networks on the same images the sampling spread of a
    loss difference is about 100 * sqrt(d / n) points when a fraction d of the images changes its
    prediction (0.7 points at d = 0.1, n = 2000); a training's seed adds its own spread, unmeasured."""
    return max(1.0, 2 * 100.0 / n_images)


# Paper Table 4 against the threshold-ReLU ANN (the brackets), full width: T -> loss in points.
PAPER_FULL_WIDTH = {"none": {32: 0.31, 64: 0.04}, "bias": {32: 0.05, 64: 0.12}}
# Its threshold-ReLU ANN: Table 1's VGG-16 SNN (92.29%) plus its loss against that ANN (0.05).
PAPER_ANN_ACC = 92.34
# Settings that must not change between the sittings of one width study.
RECIPE_KEYS = (
    "epochs", "warmup", "lr", "seed", "train_samples", "calibration_samples", "test_samples", "batch_size",
    "bias_timesteps", "conv_dropout", "fc_dropout", "timesteps", "optimizer",
)  # fmt: skip
# Recipe keys added after a study may have started: a stored recipe without them had these values. They
# are also the argparse defaults, and a command printed for the doc names only the keys that differ.
RECIPE_DEFAULTS = {
    "conv_dropout": 0.0, "fc_dropout": 0.2, "timesteps": TIMESTEPS, "bias_timesteps": [8, 16, 32, 64],
    "optimizer": "adam", "seed": 0, "train_samples": None, "calibration_samples": 5000, "batch_size": 250,
}  # fmt: skip


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _width_key(width: float) -> str:
    return f"{width:g}"


def load_width_state(args, path: Path) -> dict:
    """The study's state file; refuses to mix sittings run with a different recipe."""
    recipe = {k: getattr(args, k) for k in RECIPE_KEYS}
    if not path.exists():
        return {"recipe": recipe, "widths": {}, "network": NETWORK}
    state = json.loads(path.read_text())
    if network_of(state) != NETWORK:
        raise SystemExit(
            f"{path} holds a width study of {NETWORK_WORDS[network_of(state)]}; vgg16 is now the paper's network, "
            "whose checkpoints differ: pass another --work-dir to start a new study."
        )
    state["recipe"] = {**RECIPE_DEFAULTS, **state["recipe"]}
    if state["recipe"] != recipe:
        diff = {k: (state["recipe"].get(k), recipe[k]) for k in recipe if state["recipe"].get(k) != recipe[k]}
        raise SystemExit(
            f"{path} holds a width study run with other settings {diff} (stored, asked): rerun with the stored "
            "settings to go on, or pass another --work-dir to start a new study."
        )
    return state


class StopWhenDead(pl.Callback):
    """Ends a width's training after the first epoch that leaves a layer silent on every calibration
    image (max activation 0). A layer that never fires passes no gradient to itself or to any layer
    below it, so the epochs left cannot revive it, and the study could not convert the network
    anyway (``evaluate_width`` refuses it on the same images). A cheap probe of the first
    calibration batch runs after every epoch; the whole calibration set only where it finds a
    silent layer. Records ``entry["stopped_dead"] = {"epoch", "layers"}``."""

    def __init__(self, calib_x: list[torch.Tensor], entry: dict) -> None:
        self.calib_x, self.entry = calib_x, entry

    def _silent(self, model, batches) -> list[str]:
        thresholds = calibrate_thresholds(model, batches, device=next(model.parameters()).device, method="max")
        return [k for k, v in thresholds.items() if float(v) <= 0.0]

    def on_train_epoch_end(self, trainer: pl.Trainer, module: ConversionModule) -> None:
        m = trainer.callback_metrics
        print(f"  epoch {trainer.current_epoch}: train loss {float(m.get('train/loss', float('nan'))):.3f}, "
              f"train acc {100 * float(m.get('train/acc', float('nan'))):.1f}%", flush=True)  # fmt: skip
        if self._silent(module.model, self.calib_x[:1]) and (dead := self._silent(module.model, self.calib_x)):
            self.entry["stopped_dead"] = {"epoch": trainer.current_epoch, "layers": dead}
            print(f"  epoch {trainer.current_epoch}: {', '.join(dead)} never fired: training stopped", flush=True)
            trainer.should_stop = True


def train_width(args, width: float, work: Path, entry: dict, save, calib_x: list[torch.Tensor]) -> ConversionModule:
    """Train (or go on training, or load) the threshold-ReLU VGG-16 of one width; stop early where a
    layer dies (:class:`StopWhenDead`)."""
    module = make_module(args, "threshold", width)
    ckpt = work / f"vgg16_w{_width_key(width)}_threshold.ckpt"
    if ckpt.exists() and "sha256" in entry:
        if sha256(ckpt) != entry["sha256"]:
            raise SystemExit(f"{ckpt} changed since the study recorded it: delete it (and its entry) to retrain.")
        module.load_state_dict(torch.load(ckpt, map_location="cpu", weights_only=False)["state_dict"])
        return module
    resume = work / f"vgg16_w{_width_key(width)}_epochs"
    if (resume / "last.ckpt").exists():
        entry.setdefault("resumed_at_epoch", []).append(
            int(torch.load(resume / "last.ckpt", map_location="cpu", weights_only=False)["epoch"]) + 1
        )
    print(f"== training VGG-16 width {width:g} ({args.epochs} epochs)", flush=True)
    trainer, seconds = fit_quietly(module, args, work, resume_dir=resume, callbacks=[StopWhenDead(calib_x, entry)])
    trainer.save_checkpoint(ckpt, weights_only=True)  # the weights alone: small enough to carry to a GPU
    entry["train_seconds"] = entry.get("train_seconds", 0.0) + seconds
    entry.update(checkpoint=str(ckpt), sha256=sha256(ckpt))
    entry["parameters"] = sum(p.numel() for p in module.model.parameters())
    save()
    return module


def prepare_width(args, module: ConversionModule, entry: dict, save, calib_x, test_batches) -> None:
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
    save()


def evaluate_width(args, module: ConversionModule, entry: dict, save, test_batches) -> None:
    """Every variant on every test batch not yet in ``entry``, on ``args.device``, with the stored
    thresholds (:func:`prepare_width`). A network that cannot be converted (a dead layer: its
    training collapsed) is a result of the study: its error goes into ``entry["error"]`` and the
    study goes on with the next width."""
    device = torch.device(args.device)
    model = module.model.eval().to(device)
    thresholds = entry["thresholds"]
    batches = entry["batches"]
    test_batches = [(x.to(device), y.to(device)) for x, y in test_batches]
    where = _device_name(device)
    try:  # the first variant's evaluator, built here: it refuses a dead layer by name
        first = SpikingEvaluator(model, thresholds, args.timesteps, shift="membrane", time_chunk="auto")
    except ValueError as exc:
        entry["error"] = str(exc)
        save()
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
            save()
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
    for shift in WIDTH_VARIANTS:
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
    out.mkdir(parents=True, exist_ok=True)
    state_path = work / "width_study_state.json"
    state = load_width_state(args, state_path)

    def save() -> None:
        _atomic_write(state_path, json.dumps(state, indent=1))

    if args.device.startswith("cuda"):
        # no TF32: its 10-bit mantissa moves membrane potentials across thresholds that fp32 does not
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    # the training images are needed only to train a width or to calibrate its thresholds
    stored = [state["widths"].get(_width_key(w), {}) for w in args.widths]
    needs_training_images = not all("thresholds" in e and "sha256" in e for e in stored)
    calib_x, test_batches = evaluation_images(args, calibration=needs_training_images)
    for width in sorted(args.widths):
        entry = state["widths"].setdefault(_width_key(width), {"width": width})
        module = train_width(args, width, work, entry, save, calib_x)
        prepare_width(args, module, entry, save, calib_x, test_batches)
        if not args.train_only:
            evaluate_width(args, module, entry, save, test_batches)
        write_width_outputs(args, state, out, len(test_batches))


def write_width_outputs(args, state: dict, out: Path, n_batches: int) -> None:
    stem = args.study_name + ("_tiny" if args.tiny else "")
    kept = (
        "width", "train_seconds", "checkpoint", "sha256", "parameters", "thresholds", "resumed_at_epoch", "error",
        "stopped_dead", "prepared_on",
    )  # fmt: skip
    results = {}
    for k, e in state["widths"].items():
        results[k] = {**width_accuracies(e, n_batches), **{f: e.get(f) for f in kept}}
        if e.get("checkpoint"):
            results[k]["checkpoint"] = portable(argparse.Namespace(c=str(Path(e["checkpoint"]).resolve())))["c"]
    payload = {"args": portable(args), "recipe": state["recipe"], "results": results, "network": network_of(state)}
    _atomic_write(out / f"{stem}.json", json.dumps(payload, indent=2))
    if not args.study_name.startswith("width_check_"):  # a check is one width: its section is a table
        plot_widths(results, out / f"{stem}.png")
    rewrite_results_doc(args, out)


def _loss(r: dict, shift: str, t: int) -> float | None:
    accs = r["snn_acc"].get(shift)
    if r["ann_acc"] is None or accs is None or t not in accs:
        return None
    return r["ann_acc"] - accs[t]


def plot_widths(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = sorted(results.values(), key=lambda r: r["width"])
    fig, axes = plt.subplots(2, len(SUMMARY_T), figsize=(4 * len(SUMMARY_T), 7), sharey="row")
    for j, t in enumerate(SUMMARY_T):
        for shift, label in WIDTH_VARIANTS.items():
            pts = [(r["width"], r["ann_acc"], _loss(r, shift, t)) for r in rows]
            pts = [p for p in pts if p[2] is not None]
            if not pts:
                continue
            line = axes[0, j].plot([p[0] for p in pts], [p[2] for p in pts], marker="o", label=label)[0]
            axes[1, j].plot([p[1] for p in pts], [p[2] for p in pts], marker="o", color=line.get_color())
            if t in PAPER_FULL_WIDTH.get(shift, {}):
                axes[0, j].plot([1.0], [PAPER_FULL_WIDTH[shift][t]], marker="*", ms=14, ls="", color=line.get_color())
        axes[0, j].set_xscale("log", base=2)
        axes[0, j].set_xlabel("width (stars: the paper at width 1, Table 4)")
        axes[1, j].set_xlabel("the source ANN's test accuracy (%)")
        for ax in axes[:, j]:
            ax.set_title(f"conversion loss at T = {t}")
            ax.axhline(0, color="black", lw=0.8)
            ax.grid(alpha=0.3)
    axes[0, 0].set_ylabel("ANN acc - SNN acc (points)")
    axes[1, 0].set_ylabel("ANN acc - SNN acc (points)")
    axes[0, 0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _missing(r: dict) -> str:
    return "not convertible" if r.get("error") else "pending"


def _width_command(payload: dict) -> str:
    """The command that reproduces a width study (or check) JSON: every recipe setting that
    differs from the script's defaults, the study name and work dir of a check."""
    a, recipe = payload["args"], {**RECIPE_DEFAULTS, **payload["recipe"]}
    parts = [
        f"python benchmarks/fidelity.py --widths {' '.join(f'{w:g}' for w in a['widths'])}",
        f"--epochs {recipe['epochs']} --warmup {recipe['warmup']} --lr {recipe['lr']:g} "
        f"--test-samples {recipe['test_samples']}",
    ]
    if recipe["optimizer"] != RECIPE_DEFAULTS["optimizer"]:
        parts.append(f"--optimizer {recipe['optimizer']}")
    parts += [f"--{k.replace('_', '-')} {recipe[k]}" for k in ("seed", "train_samples", "calibration_samples",
              "batch_size") if recipe[k] != RECIPE_DEFAULTS[k]]  # fmt: skip
    parts += [f"--{k.replace('_', '-')} {recipe[k]:g}" for k in ("conv_dropout", "fc_dropout")
              if recipe[k] != RECIPE_DEFAULTS[k]]  # fmt: skip
    for k in ("timesteps", "bias_timesteps"):
        if list(recipe[k]) != RECIPE_DEFAULTS[k]:
            parts.append(f"--{k.replace('_', '-')} {' '.join(map(str, recipe[k]))}")
    if a.get("study_name", "width_study") != "width_study":
        parts.append(f"--study-name {a['study_name']} --work-dir {a['work_dir']}")
    return " ".join(parts)


# What a setup check may change, in the words of its section title.
CHECK_KEYS = (
    "epochs", "warmup", "optimizer", "lr", "seed", "train_samples", "conv_dropout", "fc_dropout", "calibration_samples",
)  # fmt: skip


def check_doc_lines(main: dict, check: dict, json_name: str) -> list[str]:
    """A setup check beside the width study: the same widths trained with one setting changed
    (``width_check_<what>.json``), their conversion loss at the summary T side by side."""
    rm, rc = {**RECIPE_DEFAULTS, **main["recipe"]}, {**RECIPE_DEFAULTS, **check["recipe"]}
    changed = [k for k in CHECK_KEYS if rm[k] != rc[k]]
    what = ", ".join(f"{k} {rm[k]} -> {rc[k]}" for k in changed) or "nothing (same recipe)"
    lines = [
        "",
        f"### Setup check: {what}",
        "",
        f"Generated from `docs/{json_name}`: the width-study recipe with only {what}; same "
        f"{'' if 'seed' in changed else 'seed, '}data, calibration and test images. Rerun with:",
        "",
        f"    {_width_command(check)}",
        "",
        "| width | variant | T | loss, width-study recipe | loss, the check | change |",
        "|---|---|---|---|---|---|",
    ]
    pairs = [(w, main["results"].get(w), r) for w, r in sorted(check["results"].items(), key=lambda x: float(x[0]))]
    notes = []
    for w, rm_, rc_ in pairs:
        if rm_ is None or rm_["ann_acc"] is None or rc_["ann_acc"] is None:
            notes.append(f"Width {w}: the width study or the check has no result yet.")
            continue
        if rc_.get("error"):
            notes.append(f"- Width {w}: the check's network is not convertible (ANN {rc_['ann_acc']:.2f}%): "
                         f"{rc_['error'].split(':')[0]}.")  # fmt: skip
        lines.append(f"| {w} | ANN test accuracy | | {rm_['ann_acc']:.2f}% | {rc_['ann_acc']:.2f}% | "
                     f"{rc_['ann_acc'] - rm_['ann_acc']:+.2f} |")  # fmt: skip
        noise = _noise(rc["test_samples"])
        for shift, label in WIDTH_VARIANTS.items():
            changes = []
            for t in SUMMARY_T:
                a_, b_ = _loss(rm_, shift, t), _loss(rc_, shift, t)
                if a_ is None or b_ is None:
                    continue
                lines.append(f"| {w} | {label} | {t} | {a_:+.2f} | {b_:+.2f} | {b_ - a_:+.2f} |")
                changes.append(b_ - a_)
            if changes:
                verdict = (
                    "lower at every T" if all(c < -noise for c in changes)
                    else "higher at every T" if all(c > noise for c in changes)
                    else f"not consistently changed (mixed, or within {noise:.1f} points)"
                )  # fmt: skip
                notes.append(f"- Width {w}, {label}: the check's loss is **{verdict}** "
                             f"(mean change {sum(changes) / len(changes):+.2f} points).")  # fmt: skip
        if abs(rc_["ann_acc"] - rm_["ann_acc"]) > noise and not rc_.get("error"):
            notes.append(
                f"- Width {w}: the check's ANN is {rc_['ann_acc'] - rm_['ann_acc']:+.2f} points from the study's, so "
                "each loss is measured against another ANN: part of a change may come with the accuracy, not the "
                "setting (the width study's second figure row shows how the loss goes with ANN accuracy)."
            )
        notes.append(
            f"- Width {w}: the check's checkpoint sha256 `{rc_.get('sha256')}`, training "
            f"{(rc_.get('train_seconds') or 0) / 60:.0f} min."
        )
    if changed == ["seed"]:
        spread = (
            "Only the seed changed: this check *is* the seed-to-seed spread of two trainings of one recipe. "
            "A difference between widths of the width study no larger than the changes here is within it."
        )
    else:
        spread = (
            "One training per recipe: a change here also holds the seed-to-seed spread of two trainings, "
            "which this check does not measure; read a change of a point or less as unresolved."
        )
    lines += ["", *notes, "", spread]  # fmt: skip
    return lines


def width_doc_lines(payload: dict, png_name: str, json_name: str = "width_study.json") -> list[str]:
    """The width-study section of docs/RESULTS.md, from its JSON (``json_name`` in docs/)."""
    recipe, results = {**RECIPE_DEFAULTS, **payload["recipe"]}, payload["results"]
    rows = sorted(results.values(), key=lambda r: r["width"])
    bias_ts = recipe["bias_timesteps"]
    cmd = _width_command(payload)
    n = recipe["test_samples"]
    lines = [
        "## Width study: does the conversion loss shrink as VGG-16 grows?"
        + ("" if network_of(payload) == NETWORK else " (the earlier five-pool network)"),
        "",
        f"Generated by `benchmarks/fidelity.py` from `docs/{json_name}`; rerun instead of editing:",
        "",
        f"    {cmd}",
        "",
        *network_note(network_of(payload)),
        "The run is resumable: it checkpoints every epoch and saves every (variant, test batch) result "
        "as soon as it has it, so the same command, run again, goes on where it stopped.",
        "",
        "### Setup",
        "",
        f"- {NETWORK_WORDS[network_of(payload)]}, no BN, **threshold ReLU** (y_th = 1) "
        f"after {recipe['warmup']} epochs of plain ReLU, at each width below; one recipe for all: "
        f"{recipe['epochs']} epochs of {OPTIMIZERS[recipe['optimizer']]}, lr {recipe['lr']:g}, cosine, "
        "batch 128, random crop + flip, "
        f"seed {recipe['seed']}, {recipe['train_samples'] or 50000} training images, "
        f"conv dropout {recipe['conv_dropout']:g}, FC dropout {recipe['fc_dropout']:g}.",
        f"- Max thresholds over {recipe['calibration_samples']} fixed training images; SNN and ANN accuracy on "
        f"the **first {n} test images** (one image = {100 / n:.2f} points); analog readout.",
        *_where_lines(rows),
        f"- Variants: threshold alone (no shift); threshold + the paper's V_th/(2T) bias shift (one simulation "
        f"per T, so only at T = {', '.join(map(str, bias_ts))}: the other T would cost "
        f"{sum(t for t in TIMESTEPS if t not in bias_ts) / max(TIMESTEPS):.2f} one-pass simulations more at "
        "every width); threshold + V_th/2 membrane shift (one simulation for all T).",
        "",
        "### Source ANNs",
        "",
        "| width | parameters | ANN test acc | training time | checkpoint sha256 |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        acc = f"{r['ann_acc']:.2f}%" if r["ann_acc"] is not None else "pending"
        tt = f"{r['train_seconds'] / 60:.0f} min" if r.get("train_seconds") else "pending"
        resumed = r.get("resumed_at_epoch")
        resumed = f" (resumed at epoch {', '.join(map(str, resumed))})" if resumed else ""
        sha = f"`{r['sha256']}`" if r.get("sha256") else "pending"
        params = f"{r['parameters'] / 1e6:.2f} M" if r.get("parameters") else "?"
        lines.append(f"| {r['width']:g} | {params} | {acc} | {tt}{resumed} | {sha} |")
    lines += ["", "### Conversion loss (ANN acc - SNN acc, points)", ""]
    lines.append("| width | variant | " + " | ".join(f"T={t}" for t in TIMESTEPS) + " |")
    lines.append("|---|---|" + "---|" * len(TIMESTEPS))
    for r in rows:
        for shift, label in WIDTH_VARIANTS.items():
            cells = []
            for t in TIMESTEPS:
                loss = _loss(r, shift, t)
                cells.append(
                    f"{loss:+.2f}" if loss is not None else (_missing(r) if r["snn_acc"].get(shift) is None else "-")
                )
            lines.append(f"| {r['width']:g} | {label} | " + " | ".join(cells) + " |")
    lines += ["", "SNN accuracy (%), same runs:", ""]
    lines.append("| width | variant | " + " | ".join(f"T={t}" for t in TIMESTEPS) + " |")
    lines.append("|---|---|" + "---|" * len(TIMESTEPS))
    for r in rows:
        for shift, label in WIDTH_VARIANTS.items():
            accs = r["snn_acc"].get(shift)
            cells = [(f"{accs[t]:.2f}" if t in accs else "-") if accs is not None else _missing(r) for t in TIMESTEPS]
            lines.append(f"| {r['width']:g} | {label} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "### Against width, beside the paper's full-width VGG-16 (Table 4, loss against its threshold-ReLU ANN)",
        "",
        "| width | ANN acc | variant | " + " | ".join(f"T={t}" for t in SUMMARY_T) + " |",
        "|---|---|---|" + "---|" * len(SUMMARY_T),
    ]
    for r in rows:
        for shift, label in WIDTH_VARIANTS.items():
            accs = r["snn_acc"].get(shift)
            cells = [
                f"{x:+.2f}" if (x := _loss(r, shift, t)) is not None else (_missing(r) if accs is None else "-")
                for t in SUMMARY_T
            ]
            acc = f"{r['ann_acc']:.1f}%" if r["ann_acc"] is not None else "pending"
            lines.append(f"| {r['width']:g} | {acc} | {label} | " + " | ".join(cells) + " |")
    for shift, paper in PAPER_FULL_WIDTH.items():
        cells = [f"{paper[t]:+.2f}" if t in paper else "-" for t in SUMMARY_T]
        lines.append(f"| 1 (paper) | {PAPER_ANN_ACC:.1f}% | {WIDTH_VARIANTS[shift]} | " + " | ".join(cells) + " |")
    lines += ["", f"![conversion loss against width and ANN accuracy]({png_name})", "", "### What the trend shows", ""]
    lines += width_trend(rows, n)
    lines += [
        "",
        "### What else differs from the paper's setup (its appendix A.1)",
        "",
        "| | the paper (VGG-16, CIFAR-10) | this study |",
        "|---|---|---|",
        "| width | 1 | " + ", ".join(f"{r['width']:g}" for r in rows) + " |",
        f"| epochs (plain-ReLU warm-up) | 300 (20) | {recipe['epochs']} ({recipe['warmup']}) |",
        "| optimiser | SGD, lr 0.01, momentum 0.9, weight decay 5e-4, x0.1 at 180/240/270 "
        f"| {OPTIMIZERS[recipe['optimizer']]}, lr {recipe['lr']:g}, cosine |",
        f"| dropout (conv / FC) | 0.2 / 0.5 | {recipe['conv_dropout']:g} / {recipe['fc_dropout']:g} |",
        "| conv init | normal, std sqrt(2 / (k^2 n)) | the same |",
        f"| thresholds | max over the training set | max over {recipe['calibration_samples']} training images |",
        f"| test images | 10,000 | the first {n} |",
        "",
        f"The largest difference is the training budget ({recipe['epochs']} vs 300 epochs): the ANNs here are "
        "far from converged, and a network with small margins between its logits loses more to the same "
        "perturbation of its activations. Dropout is the difference most directly tied to the conversion "
        "error: the SNN's error is a perturbation of every layer's activations, and dropout between convs "
        "(0.2 in the paper) trains the network to tolerate one. It is also the cheap one to test (the same "
        "epochs; a longer budget costs its ratio in training time), so the setup check below (where one has "
        "been run) trains the narrowest width with the paper's dropout and nothing else changed."
        + (" Weight decay (none here) is a third candidate." if recipe["optimizer"] == "adam" else ""),
    ]
    return lines


def _where_lines(rows: list[dict]) -> list[str]:
    """Where the numbers were computed: the simulations' processors, and where the thresholds and ANN
    accuracies were (a study may train and calibrate on a CPU and simulate on a GPU)."""
    sims = sorted({d for r in rows for ds in (r.get("sim_devices") or {}).values() for d in ds})
    prep = sorted({r["prepared_on"] for r in rows if r.get("prepared_on")})
    if not sims:
        return []
    text = f"- Simulations ran on {' and '.join(sims)} (float32; on a GPU with TF32 off)"
    text += f"; thresholds and ANN accuracies on {' and '.join(prep)}." if prep else "."
    if any(not d.startswith("cpu") for d in sims):
        text += (
            " The networks were trained by the command above with `--train-only` on the CPU, then simulated by "
            "it with `--device cuda --data-dir <folder>` on the GPU machine, whose folder held the first test "
            "images and a stub train.npz (`python benchmarks/make_cifar_subset.py --src ../shared/data/cifar10 "
            "--out .device_data/width_test --train 16 --test 2000`)."
        )
    return [text]


def trend(losses: list[float], noise: float) -> str:
    """How a loss moves across the widths, in words, from its steps (one per doubling) and its net
    change, each read as a move only beyond ``noise``:

    - ``falls`` / ``grows``: every step, the same way;
    - ``flat``: no step and no net change beyond the noise;
    - ``falls overall`` / ``grows overall``: a net move, with flat steps but none the other way;
    - ``up and down``: steps both ways (one training per width: the training's own spread shows).
    """
    steps = [b - a for a, b in zip(losses, losses[1:])]
    ups, downs = [d > noise for d in steps], [d < -noise for d in steps]
    net = losses[-1] - losses[0]
    if any(ups) and any(downs):
        return "up and down"
    if all(downs):
        return "falls"
    if all(ups):
        return "grows"
    if net < -noise:
        return "falls overall"
    if net > noise:
        return "grows overall"
    return "flat"


TREND_WORDS = {
    "falls": "falls at every doubling of width",
    "grows": "grows at every doubling of width",
    "flat": "does not change beyond noise",
    "falls overall": "lower at the widest width, not lower at every doubling",
    "grows overall": "higher at the widest width, not higher at every doubling",
    "up and down": "up and down: moves both ways between widths by more than the noise",
}


def width_trend(rows: list[dict], n_images: int) -> list[str]:
    """Plain statements a reader can check against the tables: how each variant's loss at the
    summary T moves across the finished widths (:func:`trend`: every step, not just the ends)."""
    done = [r for r in rows if r["ann_acc"] is not None and r["snn_acc"].get("membrane") is not None]
    pending = [f"{r['width']:g}" for r in rows if r not in done and not r.get("error")]
    out = []
    for r in rows:
        if r.get("error"):
            acc = f"{r['ann_acc']:.1f}%" if r["ann_acc"] is not None else "?"
            out.append(
                f"Width {r['width']:g} could not be converted (its ANN: {acc} on the test images): "
                f"`{r['error'].split(': a dead')[0]}`: the training collapsed, not the conversion."
            )
            out.append("")
    if pending:
        out.append(f"Widths still pending: {', '.join(pending)}; the statements below cover the finished ones only.")
        out.append("")
    if len(done) < 2:
        out.append("Fewer than two widths have finished: no trend to state yet.")
        return out
    noise = _noise(n_images)
    lo, hi = done[0], done[-1]
    out.append(
        f"From width {lo['width']:g} to {hi['width']:g} the ANN goes from {lo['ann_acc']:.1f}% "
        f"to {hi['ann_acc']:.1f}%. "
        f"A change counts when it exceeds {noise:.1f} points (the sampling spread of {n_images} test images, "
        "see `_noise` in the script); smaller ones read as no change."
    )
    out.append("")
    for shift, label in WIDTH_VARIANTS.items():
        for t in SUMMARY_T:
            losses = [(r["width"], _loss(r, shift, t)) for r in done]
            losses = [(w, x) for w, x in losses if x is not None]
            if len(losses) < 2:
                continue
            seq = ", ".join(f"{x:+.2f} (w {w:g})" for w, x in losses)
            verdict = TREND_WORDS[trend([x for _, x in losses], noise)]
            out.append(f"- {label}, T = {t}: {seq}: **{verdict}**.")
    out += width_extrapolation(done)
    return out


def width_extrapolation(done: list[dict]) -> list[str]:
    """Where the paper gives a full-width number: the straight line (least squares) through the
    finished widths' losses against log2(width), read at width 1. Three points and a long reach:
    a reading aid, labelled as such, not a result."""
    if len(done) < 3:
        return []
    import numpy as np

    lines = [
        "",
        f"**Extrapolation, not a measurement.** A straight line through the {len(done)} widths' losses "
        "against log2(width) (least squares), read at width 1 (two to three doublings beyond the widest "
        "run), beside the paper's full-width loss:",
        "",
        "| variant | T | slope (points per doubling) | line at width 1 | the paper |",
        "|---|---|---|---|---|",
    ]
    for shift, paper in PAPER_FULL_WIDTH.items():
        for t, p in paper.items():
            pts = [(np.log2(r["width"]), _loss(r, shift, t)) for r in done]
            pts = [(x, y) for x, y in pts if y is not None]
            if len(pts) < 3:
                continue
            slope, intercept = (round(float(v), 2) + 0.0 for v in np.polyfit(*zip(*pts, strict=True), 1))  # no -0.00
            lines.append(f"| {WIDTH_VARIANTS[shift]} | {t} | {slope:+.2f} | {intercept:+.2f} | {p:+.2f} |")
    return lines


def _int_snn_keys(payload: dict) -> dict:
    """A width-study JSON's ``snn_acc`` with int T keys (JSON stores them as strings)."""
    for r in payload["results"].values():
        r["snn_acc"] = {s: ({int(t): v for t, v in a.items()} if a is not None else None)
                        for s, a in r["snn_acc"].items()}  # fmt: skip
    return payload


def _mean_change(main: dict, check: dict, shift: str, w: str) -> float | None:
    """The check's mean change of the loss at the summary T, at width ``w``, where both have one."""
    rm, rc = main["results"].get(w), check["results"][w]
    if rm is None:
        return None
    ch = [(_loss(rc, shift, t), _loss(rm, shift, t)) for t in SUMMARY_T]
    ch = [b - a for b, a in ch if a is not None and b is not None]
    return sum(ch) / len(ch) if ch else None


def width_conclusion(payload: dict, checks: list[tuple[str, dict]]) -> list[str]:
    """The study's answer in a few sentences, each computed from the tables above."""
    rows = sorted(payload["results"].values(), key=lambda r: r["width"])
    done = [r for r in rows if r["ann_acc"] is not None and all(r["snn_acc"].get(s) for s in WIDTH_VARIANTS)]
    out = ["", "### Conclusion", ""]
    not_run = payload.get("not_run")  # widths deliberately left out of this study, and why
    if len(done) < 2 and not_run:
        widths = ", ".join(f"{w:g}" for w in not_run["widths"])
        ran = ", ".join(f"{r['width']:g}" for r in done)
        return out + [
            f"No trend on this network: only width {ran} was run on it; "
            f"widths {widths} were not ({not_run['why']}). Its numbers are read beside the same width of the "
            "earlier five-pool network below, whose study has every width."
        ]
    if len(done) < 2:
        return out + ["Pending: fewer than two widths have every variant finished."]
    noise = _noise(payload["recipe"]["test_samples"])
    lo, hi = done[0], done[-1]
    text = (
        f"From width {lo['width']:g} to {hi['width']:g} (the ANN from {lo['ann_acc']:.1f}% to {hi['ann_acc']:.1f}%; "
        f"a change counts beyond {noise:.1f} points):"
    )
    out += [text, ""]
    kinds = {}  # shift -> {T: trend}
    for shift, label in WIDTH_VARIANTS.items():
        kinds[shift] = {}
        for t in SUMMARY_T:
            losses = [_loss(r, shift, t) for r in done]
            if all(x is not None for x in losses):
                kinds[shift][t] = trend(losses, noise)
        by_kind: dict[str, list[int]] = {}
        for t, k in kinds[shift].items():
            by_kind.setdefault(k, []).append(t)
        out.append(
            f"- {label}: "
            + "; ".join(f"{TREND_WORDS[k].split(':')[0]} at T = {', '.join(map(str, ts))}" for k, ts in by_kind.items())
            + "."
        )  # fmt: skip
    out.append("")
    pairs = [k for s in ("bias", "membrane") for k in kinds[s].values()]
    n_falls = sum(k in ("falls", "falls overall") for k in pairs)
    n_grows = sum(k in ("grows", "grows overall") for k in pairs)
    n_both = pairs.count("up and down")
    text = (
        f"For the paper's method, threshold + shift, over the {len(pairs)} (shift, T) pairs the loss falls with "
        f"width at {n_falls}, grows at {n_grows}, moves both ways at {n_both} and stays within noise at "
        f"{pairs.count('flat')}: "
    )
    if n_falls > len(pairs) / 2 and n_grows == 0 and n_both == 0:
        text += (
            "the trend points the paper's way, and part of the gap to its full-width numbers is the network's scale. "
        )
    elif n_grows > n_falls:
        text += "a wider network does not convert better here. "
    elif n_both:
        text += (
            "no steady trend with width. With one training per width, a loss that moves both ways by more than "
            "the test-image noise suggests that two trainings of one recipe can differ that much at short T (a "
            "seed check below, where there is one, measures that spread at one width). "
        )
    else:
        text += "the paper's way where it moves, not at every T. "
    for shift in ("membrane", "bias"):
        worst = [_loss(r, shift, t) for r in done for t in SUMMARY_T[1:]]
        if worst and all(x is not None for x in worst):
            text += (
                f"{WIDTH_VARIANTS[shift].split(':')[0]} loses at most {max(worst):+.2f} points at "
                f"T = {', '.join(map(str, SUMMARY_T[1:]))} at every width. "
            )
    none_kinds = kinds["none"]
    if none_kinds:
        text += (
            "The threshold alone: "
            + "; ".join(f"{TREND_WORDS[k].split(':')[0]} at T = {t}" for t, k in none_kinds.items())
            + ". "
        )
    gaps = [(s, t, _loss(hi, s, t), p) for s, paper in PAPER_FULL_WIDTH.items() for t, p in paper.items()
            if _loss(hi, s, t) is not None]  # fmt: skip
    above = [g for g in gaps if g[2] > g[3] + noise]
    matched = [g for g in gaps if g[2] <= g[3] + noise]
    if matched and above:
        text += (
            f"At width {hi['width']:g}, the widest run, the paper's full-width loss is matched (within the noise or "
            "below) by "
            + "; ".join(
                f"{WIDTH_VARIANTS[s].split(':')[0]} at T = {t} ({x:+.2f}, the paper {p:+.2f})" for s, t, x, p in matched
            )  # fmt: skip
            + ". "
        )
    if above:
        text += (
            f"The gap is not closed at width {hi['width']:g}, the widest run: "
            + "; ".join(
                f"{WIDTH_VARIANTS[s].split(':')[0]} at T = {t} loses {x:+.2f} points (the paper {p:+.2f})"
                for s, t, x, p in above
            )  # fmt: skip
            + ". "
        )
    elif gaps:
        text += f"At width {hi['width']:g} every loss the paper reports is matched (within two test images or below). "
    text += (
        "Width and ANN accuracy rise together in this study, so it cannot tell their effects apart; "
        "the second row of the figure plots the same losses against the ANN's accuracy."
    )
    out.append(text)
    for name, check in checks:
        rc = {**RECIPE_DEFAULTS, **check["recipe"]}
        rm = {**RECIPE_DEFAULTS, **payload["recipe"]}
        what = ", ".join(f"{k} {rm[k]} -> {rc[k]}" for k in CHECK_KEYS if rm[k] != rc[k])
        for w in sorted(check["results"], key=float):
            out += check_conclusion(payload, check, name, what, w, done, noise)
    return out


def check_conclusion(payload: dict, check: dict, name: str, what: str, w: str, done: list, noise: float) -> list[str]:
    """What a setup check says at one width, in a sentence computed from its table."""
    rc_, rm_ = check["results"][w], payload["results"].get(w)
    if rm_ is None:
        return []
    if rc_.get("error") and not rm_.get("error"):
        acc = f"{rc_['ann_acc']:.2f}%" if rc_["ann_acc"] is not None else "?"
        return ["", f"With the setup check's recipe ({what}, `{name}`), width {w} could not be converted (its ANN "
                    f"{acc}; a layer never fires), while the width study's recipe trains it."]  # fmt: skip
    got = [(WIDTH_VARIANTS[s].split(":")[0], _mean_change(payload, check, s, w)) for s in WIDTH_VARIANTS]
    got = [(label, m) for label, m in got if m is not None]
    if not got or rc_["ann_acc"] is None or rm_["ann_acc"] is None:
        return []
    if what.startswith("seed ") and "," not in what:  # the training's own spread, beside the width study's moves
        changes = [(abs(_loss(rc_, s, t) - _loss(rm_, s, t)), s, t) for s in WIDTH_VARIANTS for t in SUMMARY_T
                   if _loss(rc_, s, t) is not None and _loss(rm_, s, t) is not None]  # fmt: skip
        moves = [(abs(_loss(b, s, t) - _loss(a, s, t)), s, t) for s in ("bias", "membrane") for t in SUMMARY_T
                 for a, b in zip(done, done[1:])
                 if _loss(a, s, t) is not None and _loss(b, s, t) is not None]  # fmt: skip
        if changes and moves:
            c, m = max(changes), max(moves)
            return ["", (
                f"Two trainings of width {w} that differ only in the seed ({what}, `{name}`) reach ANNs "
                f"{abs(rc_['ann_acc'] - rm_['ann_acc']):.2f} points apart, and their losses differ by up to {c[0]:.2f} "
                f"points ({WIDTH_VARIANTS[c[1]].split(':')[0]} at T = {c[2]}). The largest move of a shifted loss "
                f"between neighbouring widths in the study is {m[0]:.2f} points ({WIDTH_VARIANTS[m[1]].split(':')[0]} "
                f"at T = {m[2]}): "
                + (f"of the same order as the spread of two seeds at width {w}, so one training per width cannot "
                   "tell such a move from the training's own spread."
                   if m[0] <= 2 * c[0] else
                   f"more than twice the spread of two seeds at width {w} (one pair of seeds, at one width), so that "
                   f"move is larger than this measure of the training's spread; moves of up to {c[0]:.2f} points are "
                   "within it.")
            )]  # fmt: skip
    d_ann = rc_["ann_acc"] - rm_["ann_acc"]
    text = (
        f"The setup check ({what}, `{name}`) changed the loss at width {w} by "
        + ", ".join(f"{m:+.2f} ({label})" for label, m in got)
        + " points on average over T = " + ", ".join(map(str, SUMMARY_T))
        + f", with its ANN {d_ann:+.2f} points from the study's."
    )  # fmt: skip
    # The width study's own reading of accuracy: does its membrane-shift loss fall as the ANN gets better?
    by_acc = [(r["ann_acc"], _loss(r, "membrane", SUMMARY_T[0])) for r in done]
    loss_falls_with_acc = all(b[1] < a[1] - noise for a, b in zip(by_acc, by_acc[1:], strict=False))
    mem = dict(got).get(WIDTH_VARIANTS["membrane"].split(":")[0])
    if d_ann < -noise and mem is not None and mem < -noise and loss_falls_with_acc:
        text += (
            " Its ANN is less accurate, and in the width study the less accurate ANN lost more, not less: "
            "the lower membrane-shift loss is not the accuracy's doing, which points at the setting itself."
        )
        bias = dict(got).get(WIDTH_VARIANTS["bias"].split(":")[0])
        if bias is not None and bias >= -noise:
            text += (
                f" The bias shift's loss did not fall with it ({bias:+.2f}): the gain is the membrane "
                "shift's, not the method's as a whole."
            )
    return ["", text]


def _on(flag) -> str:
    return "on" if flag else "off"


def gpu_doc_lines(g: dict) -> list[str]:
    """The full-width VGG-16 trained and converted on a GPU (``benchmarks/gpu.sh``, collected by
    ``benchmarks/collect_gpu.py`` into docs/gpu_full_width.json)."""
    m, r, tr, sub = g.get("machine", {}), g.get("recipe", {}), g.get("training", {}), g.get("subset", {})
    n_train = sub.get("train_images", "?")
    conv, diag = g.get("conversion"), g.get("diagnostics")
    lines = [
        "## Full width on a GPU: VGG-16 (width 1) on a CIFAR-10 subset",
        "",
        *network_note(network_of(g)),
        "Generated from `docs/gpu_full_width.json`: the training step of `benchmarks/gpu.sh` on one "
        f"**{m.get('gpu', '?')}** (torch {m.get('torch', '?')}, cuDNN TF32 {_on(m.get('cudnn_allow_tf32'))}, "
        f"matmul TF32 {_on(m.get('matmul_allow_tf32'))}), collected with `python benchmarks/collect_gpu.py <its "
        "output folder>`. The GPU machine has no network and takes 64 MiB of files, so it trains on the first "
        f"{n_train} training images (`benchmarks/prepare_gpu_payload.sh`) and tests on the first "
        f"{sub.get('test_images', '?')} test images, the width study's test images.",
        "",
        f"- Recipe: VGG-16 as above, threshold ReLU after {r.get('model.relu_warmup_epochs', '?')} "
        f"plain-ReLU epochs, SGD lr {r.get('model.optimizer.lr', '?')}, "
        f"momentum {r.get('model.optimizer.momentum', '?')}, "
        f"weight decay {r.get('model.optimizer.weight_decay', '?')}, cosine over {r.get('trainer.max_epochs', '?')} "
        f"epochs (at most {r.get('trainer.max_time', '?')} of training), batch 128, conv dropout 0, FC dropout 0.2; "
        f"thresholds: max over {r.get('snn.calibration_samples', '?')} training images; membrane shift.",
    ]
    if tr:
        lines.append(
            f"- Trained {tr['epochs_done']} epochs: train accuracy {tr['train_acc']:.1f}% (augmented), "
            f"test accuracy {tr['val_acc']:.1f}% on the 2000 test images (the validation curve of the run)."
        )
    if conv is None:
        steps = "; ".join(f"{x['step']}: exit {x['exit']} after {x['seconds']} s" for x in g.get("steps", []))
        note = g.get("note") or "The conversion did not finish in its time limit."
        return lines + ["", f"**No conversion result at full width yet.** {note} Steps: {steps}."]
    ts = sorted(conv["snn_acc"], key=int)
    per_t = (diag or {}).get("per_t", {})
    lines += [
        f"- ANN (threshold ReLU) test accuracy **{conv['ann_acc']:.2f}%** on {conv['num_test_images']} images; "
        f"simulation of all T in one pass: {conv['seconds']['simulation']:.1f} s.",
        "",
        "| T | SNN acc | loss (points) | firing rate | synaptic ops / image | energy SNN / ANN |",
        "|---|---|---|---|---|---|",
    ]
    for t in ts:
        d = per_t.get(t)
        extra = (
            f"{d['firing_rate']:.3f} | {d['sops_per_image'] / 1e6:.1f} M | {d['snn_over_ann']:.2f}"
            if d else "- | - | -"
        )  # fmt: skip
        lines.append(f"| {t} | {conv['snn_acc'][t]:.2f}% | {conv['conversion_loss'][t]:+.2f} | {extra} |")
    if diag:
        em = diag.get("energy_model") or {}
        lines += [
            "",
            "Firing rate, synaptic operations and energy from `test --snn.diagnostics true` on the same checkpoint "
            f"(its accuracy: {diag['ann_acc']:.2f}% ANN, the same test images); energy with {em.get('ac_pj')} pJ per "
            f"accumulate and {em.get('mac_pj')} pJ per MAC ({em.get('source')}).",
        ]
    paper = " and ".join(f"{v:+.2f} (T = {t})" for t, v in PAPER_FULL_WIDTH["bias"].items())
    lines += [
        "",
        f"The paper's full-width VGG-16 (300 epochs on all 50000 images, {PAPER_ANN_ACC}%) loses {paper} points with "
        "threshold + shift. This network is trained for minutes on a subset of the data, so its accuracy is far "
        "below the paper's; read its losses beside the width study's, whose networks are in the same regime.",
    ]
    return lines


#: Other studies' sections of docs/RESULTS.md: benchmarks/<module>.py with ``results_doc_lines(out, tiny)``,
#: imported only when the doc is rebuilt, so that a rerun of this script keeps their sections.
OTHER_SECTIONS = ("shift_scale", "paper_tables")


def rewrite_results_doc(args, out: Path) -> None:
    """docs/RESULTS.md = the ReLU-vs-threshold study (results.json) + the width study on the paper's
    VGG-16 (width_study.json) + the width study on the earlier five-pool network
    (width_study_five_pool.json, with the setup checks run on it) + the other studies'
    sections (:data:`OTHER_SECTIONS`), each part rebuilt from its JSON; any may be missing."""
    tiny = "_tiny" if args.tiny else ""
    parts: list[str] = []
    res = out / f"results{tiny}.json"
    if res.exists():
        saved = json.loads(res.read_text())
        a = argparse.Namespace(**saved["args"])
        results = _int_keys(saved["results"])
        parts += fidelity_doc_lines(a, results, f"results{tiny}_acc_vs_T.png", _command(a), network_of(saved))
    checks = [c for c in sorted(out.glob(f"width_check_*{tiny}.json")) if tiny or not c.stem.endswith("_tiny")]
    checks = [(c.name, _int_snn_keys(json.loads(c.read_text()))) for c in checks]
    studies = {}
    for stem in ("width_study", "width_study_five_pool"):
        ws = out / f"{stem}{tiny}.json"
        if not ws.exists():
            continue
        payload = studies[stem] = _int_snn_keys(json.loads(ws.read_text()))
        own = [(n, c) for n, c in checks if network_of(c) == network_of(payload)]  # a check of the same network
        parts += ["", *width_doc_lines(payload, f"{stem}{tiny}.png", ws.name)]
        for name, check in own:
            parts += check_doc_lines(payload, check, name)
        parts += width_conclusion(payload, own)
    if len(studies) == 2:
        parts += ["", *network_change_lines(studies["width_study"], studies["width_study_five_pool"])]
    gpu = out / "gpu_full_width.json"
    if gpu.exists() and not tiny:
        parts += ["", *gpu_doc_lines(json.loads(gpu.read_text()))]
    for name in OTHER_SECTIONS:
        module = importlib.import_module(name)
        parts += module.results_doc_lines(out, tiny)
    (out / f"RESULTS{tiny}.md").write_text("\n".join(parts) + "\n")


def network_change_lines(paper: dict, five_pool: dict) -> list[str]:
    """What changed when the width study was rerun on the paper's network: the widths both studies
    trained, with the same recipe, side by side (ANN accuracy and the loss at the summary T)."""
    common = sorted(set(paper["results"]) & set(five_pool["results"]), key=float)
    rp, r5 = {**RECIPE_DEFAULTS, **paper["recipe"]}, {**RECIPE_DEFAULTS, **five_pool["recipe"]}
    same = [k for k in RECIPE_KEYS if rp.get(k) != r5.get(k)]
    noise = _noise(rp["test_samples"])
    lines = [
        "## The paper's VGG-16 against the earlier five-pool network (the width study, rerun)",
        "",
        "The same recipe" + (f" except {', '.join(same)}" if same else "") + ", the same images, widths trained by "
        "both studies; 'change' = the paper's network minus the five-pool one. One training per network and width: "
        f"a change within {noise:.1f} points is noise, and a change of a few points at short T is within the "
        "spread of two seeds measured by the seed check on the five-pool network.",
        "",
        "| width | parameters (paper / five-pool) | | five-pool | paper's | change |",
        "|---|---|---|---|---|---|",
    ]
    for w in common:
        a, b = paper["results"][w], five_pool["results"][w]
        if a["ann_acc"] is None or b["ann_acc"] is None:
            lines.append(f"| {w} | | pending | | | |")
            continue
        params = f"{(a.get('parameters') or 0) / 1e6:.2f} M / {(b.get('parameters') or 0) / 1e6:.2f} M"
        lines.append(f"| {w} | {params} | ANN test acc | {b['ann_acc']:.2f}% | {a['ann_acc']:.2f}% | "
                     f"{a['ann_acc'] - b['ann_acc']:+.2f} |")  # fmt: skip
        for shift, label in WIDTH_VARIANTS.items():
            for t in SUMMARY_T:
                x, y = _loss(a, shift, t), _loss(b, shift, t)
                if x is not None and y is not None:
                    lines.append(f"| {w} | | {label}, loss at T = {t} | {y:+.2f} | {x:+.2f} | {x - y:+.2f} |")
    lines.append("")
    for w in common:
        a, b = paper["results"][w], five_pool["results"][w]
        change = {(s, t): _loss(a, s, t) - _loss(b, s, t) for s in WIDTH_VARIANTS for t in SUMMARY_T
                  if _loss(a, s, t) is not None and _loss(b, s, t) is not None}  # fmt: skip
        if a["ann_acc"] is None or b["ann_acc"] is None or not change:
            continue
        shifted = {k: v for k, v in change.items() if k[0] != "none" and k[1] > SUMMARY_T[0]}
        worst = max(shifted, key=lambda k: abs(shifted[k])) if shifted else None
        d_ann = a["ann_acc"] - b["ann_acc"]
        text = f"- Width {w}: the paper's network's ANN is {d_ann:+.2f} points from the five-pool one's"
        if worst is not None:
            text += (
                f"; with a shift, the loss at T = {', '.join(map(str, SUMMARY_T[1:]))} moves by at most "
                f"{abs(shifted[worst]):.2f} points ({WIDTH_VARIANTS[worst[0]].split(':')[0]} at T = {worst[1]}: "
                + ("within the noise" if abs(shifted[worst]) <= noise else "beyond the noise")
                + ")"
            )
        t16 = [f"{WIDTH_VARIANTS[s].split(':')[0]} {change[(s, SUMMARY_T[0])]:+.2f}" for s in WIDTH_VARIANTS
               if (s, SUMMARY_T[0]) in change]  # fmt: skip
        lines.append(text + f"; at T = {SUMMARY_T[0]}: " + ", ".join(t16) + ".")
    lines += [
        "",
        "Training times in the two studies' tables are wall times on a machine shared with other jobs: they do "
        "not compare the networks' costs (the paper's network has 1.9% more multiply-accumulates per image).",
    ]
    return lines


def _command(args) -> str:
    return "python benchmarks/fidelity.py " + " ".join(
        f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if k in ("width", "epochs", "test_samples")
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", default=str(REPO.parent / "shared" / "data" / "cifar10"))
    p.add_argument("--work-dir", default="runs/fidelity")
    p.add_argument("--out-dir", default=str(REPO / "docs"))
    p.add_argument("--width", type=float, default=0.125)
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument(
        "--optimizer",
        choices=sorted(OPTIMIZERS),
        default=RECIPE_DEFAULTS["optimizer"],
        help="adam, or the paper's sgd (momentum 0.9, weight decay 5e-4; its lr is 0.01); cosine schedule",
    )
    p.add_argument("--seed", type=int, default=RECIPE_DEFAULTS["seed"])
    p.add_argument(
        "--conv-dropout",
        type=float,
        default=RECIPE_DEFAULTS["conv_dropout"],
        help="dropout between convs (the paper: 0.2)",
    )
    p.add_argument(
        "--fc-dropout",
        type=float,
        default=RECIPE_DEFAULTS["fc_dropout"],
        help="dropout between FC layers (the paper: 0.5)",
    )
    p.add_argument("--train-samples", type=int, default=RECIPE_DEFAULTS["train_samples"])
    p.add_argument("--calibration-samples", type=int, default=RECIPE_DEFAULTS["calibration_samples"])
    p.add_argument("--test-samples", type=int, default=1000)
    p.add_argument("--batch-size", type=int, default=RECIPE_DEFAULTS["batch_size"])
    p.add_argument(
        "--widths",
        type=float,
        nargs="+",
        default=None,
        help="run the width study instead: the threshold-ReLU VGG-16 at these widths (resumable; see its doc)",
    )
    p.add_argument(
        "--bias-timesteps",
        type=int,
        nargs="+",
        default=RECIPE_DEFAULTS["bias_timesteps"],
        help="width study: the bias shift's T",
    )
    p.add_argument(
        "--timesteps",
        type=int,
        nargs="+",
        default=RECIPE_DEFAULTS["timesteps"],
        help="width study: the T of the one-pass variants",
    )
    p.add_argument(
        "--study-name",
        default="width_study",
        help="width study: the stem of its JSON/PNG in --out-dir; 'width_check_<what>' marks a setup check of "
        "one width, which docs/RESULTS.md sets beside the width study's row of that width",
    )
    p.add_argument(
        "--train-only", action="store_true", help="width study: train (or load) every width, simulate nothing yet"
    )
    p.add_argument(
        "--device",
        default="cpu",
        help="width study: where thresholds and simulations run (training: Lightning's choice)",
    )
    p.add_argument("--tiny", action="store_true", help="smoke test: 1 epoch on 256 images, 64 test images")
    p.add_argument("--from-json", default=None, help="rewrite the doc and plot from a previous run's JSON")
    args = p.parse_args()
    if args.from_json:
        saved = json.loads(Path(args.from_json).read_text())
        for k, v in saved["args"].items():
            if k not in ("from_json", "out_dir", "widths"):
                setattr(args, k, v)
        out = Path(args.out_dir)
        tiny = "_tiny" if args.tiny else ""
        if not saved["args"].get("widths"):  # the ReLU-vs-threshold study: replot it
            plot(_int_keys(saved["results"]), out / f"results{tiny}_acc_vs_T.png")
        else:
            results = _int_snn_keys(saved)["results"]
            plot_widths(results, out / f"{Path(args.from_json).stem}.png")  # beside its JSON, by its name
        rewrite_results_doc(args, out)
        print(f"rewrote {out / ('RESULTS_tiny.md' if args.tiny else 'RESULTS.md')} from {args.from_json}")
        return
    if args.tiny:
        args.width, args.epochs, args.warmup = 0.0625, 1, 0
        args.train_samples, args.calibration_samples, args.test_samples, args.batch_size = 256, 128, 64, 64
        if args.widths:
            args.widths, args.batch_size, args.bias_timesteps = [0.03125, 0.0625], 32, [8, 16]
    if args.widths:
        width_study(args)
        return
    work, out = Path(args.work_dir), Path(args.out_dir)
    work.mkdir(parents=True, exist_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    results = {}
    for src in ("relu", "threshold"):
        print(f"== training the {src} source ANN", flush=True)
        module, ckpt, seconds = train(args, src, work)
        print(f"== converting the {src} source ANN", flush=True)
        r = evaluate(args, module)
        r.update(train_seconds=seconds, checkpoint=str(ckpt), sha256=sha256(ckpt))
        results[src] = r
    stem = "RESULTS" if not args.tiny else "RESULTS_tiny"
    png = out / f"{stem.lower()}_acc_vs_T.png"
    plot(results, png)
    payload = {"args": portable(args), "results": results, "network": NETWORK}
    (out / f"{stem.lower()}.json").write_text(json.dumps(payload, indent=2))
    rewrite_results_doc(args, out)
    print("\n".join(claims(results, args.test_samples)))
    if os.environ.get("WANDB_MODE", "offline") and not args.tiny:
        import wandb

        run = wandb.init(project="lightning-snn", name="fidelity", dir=str(work), mode="offline")
        run.log({"fidelity/acc_vs_T": wandb.Image(str(png))})
        run.finish()
    print(f"wrote {out / (stem + '.md')}, {png}")


if __name__ == "__main__":
    main()

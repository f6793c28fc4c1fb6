"""Fidelity at CPU scale: does our conversion reproduce the paper's qualitative claims?

Trains the same reduced-width VGG-16 twice on real CIFAR-10 with the same seed and budget
(plain ReLU, and ReLU warm-up then threshold ReLU), converts each with no shift, the
paper's bias shift (one simulation per T) and the membrane shift (one simulation for all
T), and writes docs/RESULTS.md, PNG plots and a JSON of every number. Paper Table 4
(VGG-16, CIFAR-10) is printed beside ours.

    python benchmarks/fidelity.py --data-dir ../shared/data/cifar10            # ~40 min, 2 cores
    python benchmarks/fidelity.py --data-dir ../shared/data/cifar10 --tiny     # smoke test

Checkpoints go to --work-dir (not committed); their sha256 is recorded in the doc.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
from pathlib import Path

import torch
from study import evaluation_images, fit_quietly, portable, sha256

from lightning_snn.evaluation import evaluate_conversion
from lightning_snn.module import ConversionModule

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


def train(args, activation: str, work: Path) -> tuple[ConversionModule, Path, float]:
    module = ConversionModule(
        arch="vgg16",
        width=args.width,
        activation="threshold_relu" if activation == "threshold" else "relu",
        y_th=1.0,
        relu_warmup_epochs=args.warmup,
        model_kwargs={"conv_dropout": 0.0, "fc_dropout": 0.2},
        optimizer=lambda p: torch.optim.Adam(p, lr=args.lr),
        lr_scheduler=lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=args.epochs),
    )
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


def write_doc(args, results: dict, doc: Path, png: Path, command: str) -> None:
    lines = [
        "# Fidelity at CPU scale: VGG-16 on real CIFAR-10",
        "",
        "Generated by `benchmarks/fidelity.py`; do not edit by hand, rerun instead:",
        "",
        f"    {command}",
        "",
        "## Setup (and how it differs from the paper)",
        "",
        f"- VGG-16 (the paper's: 13 convs, avg pooling, no BN) at **width {args.width}** "
        f"(the paper: 1.0), conv dropout 0, FC dropout 0.2 (paper: 0.2 / 0.5).",
        f"- **{args.epochs} epochs** of Adam (lr {args.lr}, cosine), batch 128, random crop + flip, seed {args.seed}, "
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
        f"![accuracy and conversion loss vs T]({png.name})",
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
        "",
    ]
    doc.write_text("\n".join(lines))


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
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--train-samples", type=int, default=None)
    p.add_argument("--calibration-samples", type=int, default=5000)
    p.add_argument("--test-samples", type=int, default=1000)
    p.add_argument("--batch-size", type=int, default=250)
    p.add_argument("--tiny", action="store_true", help="smoke test: 1 epoch on 256 images, 64 test images")
    p.add_argument("--from-json", default=None, help="rewrite the doc and plot from a previous run's JSON")
    args = p.parse_args()
    if args.from_json:
        saved = json.loads(Path(args.from_json).read_text())
        for k, v in saved["args"].items():
            if k not in ("from_json", "out_dir"):
                setattr(args, k, v)
        results = saved["results"]
        for r in results.values():  # JSON turned the T keys into strings
            r["snn_acc"] = {shift: {int(t): a for t, a in accs.items()} for shift, accs in r["snn_acc"].items()}
        out = Path(args.out_dir)
        stem = "RESULTS" if not args.tiny else "RESULTS_tiny"
        png = out / f"{stem.lower()}_acc_vs_T.png"
        plot(results, png)
        write_doc(args, results, out / f"{stem}.md", png, _command(args))
        print(f"rewrote {out / (stem + '.md')} from {args.from_json}")
        return
    if args.tiny:
        args.width, args.epochs, args.warmup = 0.0625, 1, 0
        args.train_samples, args.calibration_samples, args.test_samples, args.batch_size = 256, 128, 64, 64
    work, out = Path(args.work_dir), Path(args.out_dir)
    work.mkdir(parents=True, exist_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    command = _command(args)
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
    (out / f"{stem.lower()}.json").write_text(json.dumps({"args": portable(args), "results": results}, indent=2))
    write_doc(args, results, out / f"{stem}.md", png, command)
    print("\n".join(claims(results, args.test_samples)))
    if os.environ.get("WANDB_MODE", "offline") and not args.tiny:
        import wandb

        run = wandb.init(project="lightning-snn", name="fidelity", dir=str(work), mode="offline")
        run.log({"fidelity/acc_vs_T": wandb.Image(str(png))})
        run.finish()
    print(f"wrote {out / (stem + '.md')}, {png}")


if __name__ == "__main__":
    main()

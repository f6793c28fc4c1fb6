"""Low latency at CPU scale (issue 8): the quickstart-class VGG-11 (width 1/4, Adam + cosine) trained on
real CIFAR-10 once per source activation (the paper's threshold ReLU; QCFS with L = 2, 4, 8), each converted
with every variant of :func:`variants`, all with the membrane shift (one simulation gives every T). Writes
docs/low_latency.json; docs/LOW_LATENCY.md (the method) and its plot are rendered from it:

    python benchmarks/low_latency.py --data-dir ../shared/data/cifar10           # ~45 min, 2 cores
    python benchmarks/low_latency.py --data-dir ../shared/data/cifar10 --tiny    # smoke test
    python benchmarks/render.py docs/LOW_LATENCY.md                              # doc + plot

Trained weights and finished variants stay in --work-dir (study.StudyState): the same command goes on where
a killed run stopped, and a rerun with other evaluation settings only converts.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from study import REPO, StudyState, evaluation_images, machine, portable, train_or_load, write_json

from lightning_snn.evaluation import evaluate_conversion
from lightning_snn.graph_sites import record_sites
from lightning_snn.module import ConversionModule

TIMESTEPS = [1, 2, 4, 8, 16, 32, 64]
#: Source ANNs: label and QCFS levels. Without levels: threshold ReLU (clip at 1) after --warmup
#: epochs of plain ReLU; QCFS trains quantized from the first step, lambda trainable from --qcfs-lambda.
SOURCES = {"threshold": ("threshold ReLU (paper)", None), **{f"qcfs{n}": (f"QCFS L={n}", n) for n in (2, 4, 8)}}


def variants(correction_t: int) -> list[dict]:
    """Every conversion variant: key, source, label, calibration, percentile, correction, neuron."""
    c = f"light correction (T={correction_t})"
    rows = [
        ("paper", "threshold", "paper: threshold ReLU, max, membrane shift", "max", None, False),
        ("p99.99", "threshold", "threshold ReLU, percentile 99.99", "percentile", 99.99, False),
        ("p99.9", "threshold", "threshold ReLU, percentile 99.9", "percentile", 99.9, False),
        ("channel", "threshold", "threshold ReLU, channel max", "channel", None, False),
        ("paper+corr", "threshold", f"threshold ReLU, max + {c}", "max", None, True),
        ("channel+corr", "threshold", f"threshold ReLU, channel max + {c}", "channel", None, True),
    ]
    for src in ("qcfs2", "qcfs4", "qcfs8"):
        label = SOURCES[src][0]
        rows.append((src, src, f"{label}, V_th = lambda", "lambda", None, False))
        rows.append((f"{src}+corr", src, f"{label}, V_th = lambda + {c}", "lambda", None, True))
    rows.insert(7, ("qcfs2-max", "qcfs2", "QCFS L=2, V_th = max", "max", None, False))
    keys = ("key", "source", "label", "calibration", "percentile", "correction")
    out = [{**dict(zip(keys, r, strict=True)), "neuron": "if"} for r in rows]
    # signed IF neurons (negative spikes take back early ones): each source with its plain calibration
    for src, cal in (("threshold", "max"), ("qcfs2", "lambda"), ("qcfs4", "lambda"), ("qcfs8", "lambda")):
        base = next(v for v in out if v["source"] == src and v["calibration"] == cal and not v["correction"])
        label = f"{base['label'].removeprefix('paper: ')}, signed neurons"  # the neuron is not the paper's
        out.append({**base, "key": f"{base['key']}+signed", "label": label, "neuron": "signed"})
    return out


def warmup_epochs(args, src: str) -> int:
    return 0 if SOURCES[src][1] else args.warmup


def module_for(args, src: str, batch_norm: bool | None = None) -> ConversionModule:
    levels = SOURCES[src][1]
    return ConversionModule(
        arch="vgg11",
        width=args.width,
        activation="qcfs" if levels else "threshold_relu",
        y_th=args.qcfs_lambda if levels else 1.0,
        relu_warmup_epochs=warmup_epochs(args, src),
        model_kwargs={
            "conv_dropout": 0.0,
            "fc_dropout": 0.2,
            "batch_norm": args.batch_norm if batch_norm is None else batch_norm,
        },
        optimizer=lambda p: torch.optim.Adam(p, lr=args.lr),
        lr_scheduler=lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=args.epochs),
        **({"levels": levels, "trainable_threshold": True} if levels else {}),
    )


@torch.no_grad()
def alive_at_init(args, images: torch.Tensor) -> list[dict]:
    """Why batch norm: per QCFS source, with and without it, the fraction of each layer's outputs
    that are non-zero at initialisation (training mode, one batch of real images)."""
    rows = []
    for batch_norm in (False, True):
        for src in ("qcfs2", "qcfs4", "qcfs8"):
            torch.manual_seed(args.seed)
            model = module_for(args, src, batch_norm).model.train()
            fractions = []
            sites = {name: m for name, m in model.named_modules() if hasattr(m, "levels")}
            with record_sites(sites, lambda _n, out, f=fractions: f.append((out > 0).float().mean().item())):
                model(images)
            rows.append({"source": src, "batch_norm": batch_norm, "nonzero": fractions})
    return rows


#: What the trainings depend on (a state stored with other values is refused by name), and what
#: the conversions depend on besides the weights (changed: the variants are converted again).
TRAIN_SETTINGS = ("width", "epochs", "warmup", "lr", "seed", "batch_norm", "qcfs_lambda", "train_samples")
EVAL_SETTINGS = ("calibration_samples", "test_samples", "correction_t", "batch_size", "data_dir")


def run(args, state: StudyState) -> dict:
    calib, test = evaluation_images(args)
    results = {"sources": {}, "variants": {}, "alive_at_init": alive_at_init(args, calib[0])}
    rows = variants(args.correction_t)
    for src in SOURCES:
        print(f"== source {src}", flush=True)
        entry = state.entry("sources", src)
        module = train_or_load(module_for(args, src), args, state, entry, src)
        module.update_threshold(args.epochs)  # the clip is on after training
        model = module.model.eval()
        depends = {**{k: portable(args)[k] for k in EVAL_SETTINGS}, "sha256": entry["sha256"]}
        done = state.results(entry, depends)
        for v in (r for r in rows if r["source"] == src):
            if v["key"] not in done:
                done[v["key"]] = convert_variant(args, model, calib, test, v)
                state.save()
            else:
                print(f"   {v['key']:14s} stored in the work dir", flush=True)
            results["variants"][v["key"]] = {**v, **done[v["key"]]}
        ann = [r["ann_acc"] for r in done.values() if "ann_acc" in r]
        results["sources"][src] = {
            "label": SOURCES[src][0],
            "epochs": args.epochs,
            "relu_warmup_epochs": warmup_epochs(args, src),
            "settings": {k: getattr(args, k) for k in TRAIN_SETTINGS},
            **{k: entry[k] for k in ("train_seconds", "sha256")},
            "lambdas": [round(m.y_th, 4) for m in model.modules() if hasattr(m, "levels")],
            "ann_acc": ann[0] if ann else None,
        }
    for v in results["variants"].values():
        v.pop("ann_acc", None)  # the source's, above
    return results


def convert_variant(args, model, calib, test, v: dict) -> dict:
    """One variant's numbers through evaluate_conversion, or the error of a network it cannot
    convert (e.g. a dead layer: a result of the study, not a crash)."""
    try:
        report = evaluate_conversion(
            model,
            calib,
            test,
            TIMESTEPS,
            shift="membrane",
            calibration=v["calibration"],
            percentile=v["percentile"] or 99.99,
            correction="light" if v["correction"] else "none",
            correction_timesteps=args.correction_t if v["correction"] else None,
            neuron=v["neuron"],
        )
    except ValueError as exc:
        print(f"   {v['key']:14s} cannot be converted: {exc}", flush=True)
        return {"error": str(exc)}
    print(
        f"   {v['key']:14s} ANN {report.ann_acc:.1f} | " + ", ".join(f"T{t} {a:.1f}" for t, a in report.snn_acc.items())
    )
    return {"ann_acc": report.ann_acc, "snn_acc": report.snn_acc, "seconds": report.seconds}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", default=str(REPO.parent / "shared" / "data" / "cifar10"))
    p.add_argument("--work-dir", default="runs/low_latency")
    p.add_argument("--out-dir", default=str(REPO / "docs"), help="where low_latency.json goes")
    p.add_argument("--width", type=float, default=0.25)
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2, help="plain-ReLU epochs of the threshold-ReLU source")
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-batch-norm", dest="batch_norm", action="store_false")
    p.add_argument("--qcfs-lambda", type=float, default=2.0, help="initial lambda of the QCFS layers")
    p.add_argument("--train-samples", type=int, default=None)
    p.add_argument("--calibration-samples", type=int, default=2000)
    p.add_argument("--test-samples", type=int, default=1000)
    p.add_argument("--correction-t", type=int, default=4)
    p.add_argument("--batch-size", type=int, default=250)
    p.add_argument(
        "--threads", type=int, default=1, help="torch threads: 1 is faster on a shared 2-core machine (no spin-waits)"
    )
    p.add_argument("--tiny", action="store_true", help="smoke test: 1 epoch on 512 images, 64 test images")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    if args.tiny:
        args.width, args.epochs, args.warmup = 0.0625, 1, 0
        args.train_samples, args.calibration_samples, args.test_samples, args.batch_size = 512, 128, 64, 64
        args.work_dir = str(Path(args.work_dir) / "tiny")
    recipe = {k: getattr(args, k) for k in TRAIN_SETTINGS}
    results = run(args, StudyState(Path(args.work_dir) / "low_latency_state.json", recipe))
    out = Path(args.out_dir) / ("low_latency_tiny.json" if args.tiny else "low_latency.json")
    write_json(out, {"args": portable(args), "machine": machine(args.threads), "results": results})
    print(f"wrote {out}; render the doc with python benchmarks/render.py")


if __name__ == "__main__":
    main()

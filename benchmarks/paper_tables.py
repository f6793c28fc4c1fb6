"""The paper's tables from CPU-scale runs of the experiment configs (docs/REPRODUCE.md's "ours" column).

Every CIFAR-10 network (CIFARNet, the paper's VGG-16, ResNet-20) is trained twice by
``train.py fit`` with its own experiment config -- the plain-ReLU twin (``_relu``) and the
threshold-ReLU network (``_t``) -- at one CPU-scale width and epoch budget (:data:`SCALE`), and each
is converted again by ``train.py test --ckpt_path`` with the other configs of its ANN (``_s`` from
the ReLU run; ``_ts`` and ``_ts_constant`` from the threshold run), so the losses against both ANNs
and the T = 400..600 averages come from the same runs. This script collects their
``snn_results.json`` into ``docs/reproduce.json`` (the accuracy numbers only), writes the
"ours" cells of docs/REPRODUCE.md, and the RESULTS.md sections in the paper's layouts (Tables 2
and 4), whose loss table is :func:`lightning_snn.results_tables.losses_table`.

    python benchmarks/paper_tables.py --runs runs/repro/results      # after the runs: collect + docs
    python benchmarks/paper_tables.py                                # docs only, from docs/reproduce.json

The runs themselves (one command each, the CPU-scale overrides in :data:`SCALE`) are listed in
docs/REPRODUCE.md.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from study import REPO  # first: it puts this checkout ahead of any installed lightning_snn on sys.path

from lightning_snn.results import read_results
from lightning_snn.results_tables import losses_table, variant

NETWORKS = {"cifarnet": "CIFARNet", "vgg16": "VGG-16", "resnet20": "ResNet-20"}
#: run name -> the trained network (``fit`` of its ``_relu`` or ``_t`` config) whose last.ckpt it converts
#: with ``train.py test``: every conversion is a test run, the fits train only (``--snn.on_fit false``)
RUNS = {"relu": "relu", "t": "t", "s": "relu", "ts": "t", "ts_constant": "t"}
#: The CPU-scale overrides of every run (on top of configs/base/cifar10.yaml + the experiment config).
SCALE = {
    "width": 0.125,
    "epochs": 8,
    "relu_warmup_epochs": 2,
    "schedule": "cosine over the 8 epochs (the paper: x0.1 at 180/240/270 of 300)",
    "dropout": "conv 0, FC 0.2 (ResNet-20: 0), the width study's (the paper: 0.2 / 0.5)",
    "test_images": 1000,
    "calibration_images": 5000,
    "loader_workers": "1 (the VGG-16 ReLU run: 2 for its first 4 epochs, resumed from their checkpoint with 1)",
}
#: Networks run at a smaller scale than :data:`SCALE` (CPU time), with the settings that differ: their
#: commands use them, and their numbers carry the mark :data:`REDUCED_MARK` instead of :data:`MARK`.
REDUCED = {"cifarnet": {"epochs": 3, "relu_warmup_epochs": 1, "test_images": 200}}


def scale_of(net: str) -> dict:
    """The scale a network was run at: :data:`SCALE` with its :data:`REDUCED` settings."""
    return {**SCALE, **REDUCED.get(net, {})}


def fit_overrides(net: str) -> str:
    """The CPU-scale overrides of a fit of ``net``."""
    s = scale_of(net)
    kwargs = "{dropout: 0.0}" if net == "resnet20" else "{conv_dropout: 0.0, fc_dropout: 0.2}"
    return (
        f"--model.width {s['width']} --trainer.max_epochs {s['epochs']} --model.relu_warmup_epochs "
        f"{s['relu_warmup_epochs']} --model.lr_scheduler \"{{'class_path': "
        f"'torch.optim.lr_scheduler.CosineAnnealingLR', 'init_args': {{'T_max': {s['epochs']}}}}}\" "
        f'--model.model_kwargs "{kwargs}" --trainer.limit_val_batches 8'
    )


def common(net: str) -> str:
    """The data and conversion overrides of every run of ``net``."""
    s = scale_of(net)
    return (
        "--data.init_args.data_dir ../shared/data/cifar10 --data.init_args.download false "
        f"--data.init_args.num_workers 1 --snn.max_test_samples {s['test_images']} "
        f"--snn.calibration_samples {s['calibration_images']}"
    )


#: Kept from each snn_results.json (the rest, e.g. the diagnostics, stays in the run folders).
KEPT = (
    "stage", "epoch", "shift", "shift_scale", "shift_fraction", "readout", "threshold_clip_on", "calibration",
    "num_test_images", "calibration_images", "ann_acc", "snn_acc", "conversion_loss", "seconds",
)  # fmt: skip
# The paper's Table 2 (CIFAR-10, mean +- std over T = 400..600): network -> (ReLU, threshold, threshold + shift).
PAPER_TABLE2 = {
    "cifarnet": ("90.16 ± 0.03", "90.61 ± 0.01", "90.37 ± 0.02"),
    "vgg16": ("91.82 ± 0.09", "92.26 ± 0.01", "92.26 ± 0.01"),
    "resnet20": ("92.14 ± 0.03", "93.58 ± 0.01", "93.59 ± 0.01"),
}


def fit_command(net: str, run: str) -> str:
    """The command that trains the ``_relu`` or ``_t`` network, from the repository root (no conversion)."""
    return (
        f"python train.py fit -c configs/base/cifar10.yaml -c configs/cifar10/{net}_{run}.yaml {common(net)} "
        f"--run_name {net}_{run} {fit_overrides(net)} --snn.on_fit false"
    )


def command(net: str, run: str) -> str:
    """The command of one conversion run (``train.py test`` of its network's checkpoint), from the repository root."""
    cfg = f"-c configs/base/cifar10.yaml -c configs/cifar10/{net}_{run}.yaml"
    return f"python train.py test {cfg} {common(net)} --ckpt_path runs/{net}_{RUNS[run]}/checkpoints/last.ckpt"


def collect(runs: Path) -> dict:
    """docs/reproduce.json's payload from the runs' results (``<net>_<run>.json`` in ``runs``)."""
    out = {"scale": SCALE, "reduced": {}, "runs": {}}
    for net in NETWORKS:
        for run in RUNS:
            path = runs / f"{net}_{run}.json"
            if not path.exists():
                continue
            data = read_results(path)  # its schema version and shape checked
            slim = {k: data.get(k) for k in KEPT}
            if data.get("average_over"):
                slim["average_over"] = {k: v for k, v in data["average_over"].items() if k != "snn_correct"}
            slim["command"] = command(net, run)
            slim["trained_by"] = fit_command(net, RUNS[run])
            if net in REDUCED:
                out["reduced"][net] = REDUCED[net]
            out["runs"][f"{net}_{run}"] = slim
    return out


def _get(payload: dict, net: str, run: str) -> dict | None:
    r = payload["runs"].get(f"{net}_{run}")
    if r is not None:
        r = {**r, "_path": f"{net}_{run}"}
    return r


def _avg(r: dict | None) -> str:
    if r is None or not r.get("average_over"):
        return "—"
    a = r["average_over"]
    return f"{a['mean_acc']:.2f} ± {a['std_acc']:.2f}"


def table2_lines(payload: dict) -> list[str]:
    lines = [
        "| network | ANN (ReLU / threshold) | ReLU | ReLU+threshold | ReLU+threshold+shift (V_th/1600 per step) | "
        "the paper (ReLU / threshold / threshold+shift) |",
        "|---|---|---|---|---|---|",
    ]
    for net, name in NETWORKS.items():
        relu, t, tsc = (_get(payload, net, r) for r in ("relu", "t", "ts_constant"))
        if relu is None and t is None:
            continue
        anns = " / ".join(f"{r['ann_acc']:.2f}" if r else "—" for r in (relu, t))
        lines.append(f"| {name} | {anns} | {_avg(relu)} | {_avg(t)} | {_avg(tsc)} | {' / '.join(PAPER_TABLE2[net])} |")
    return lines


def results_doc_lines(out: Path, tiny: str) -> list[str]:
    """The RESULTS.md sections in the paper's layouts (Tables 2 and 4), from docs/reproduce.json."""
    path = out / f"reproduce{tiny}.json"
    if not path.exists():
        return []
    payload = json.loads(path.read_text())
    s = payload["scale"]
    lines = [
        "",
        "## The paper's Tables 2 and 4 at CPU scale (CIFAR-10)",
        "",
        f"Generated by `benchmarks/paper_tables.py` from `docs/{path.name}`, the `snn_results.json` of the runs "
        "listed in docs/REPRODUCE.md (each experiment config's own command, with the CPU-scale overrides "
        "below; every run's exact commands are in the JSON: `command` converts, `trained_by` trains); rebuild "
        "with `python benchmarks/paper_tables.py --runs <folder of the runs' results>`. "
        f"Setup: width {s['width']}, {s['epochs']} epochs of the paper's SGD (lr 0.01, momentum 0.9, "
        f"weight decay 5e-4), {s['schedule']}, plain ReLU for the first {s['relu_warmup_epochs']} epochs of the "
        f"threshold-ReLU networks, dropout {s['dropout']}; thresholds from {s['calibration_images']} training "
        f"images, SNN and ANN on the first {s['test_images']} test images (one image = "
        f"{100 / s['test_images']:.1f} points); analog readout. The paper: full width, 300 epochs, all 10,000 "
        "test images." + (f" Data-loader workers: {s['loader_workers']}." if s.get("loader_workers") else ""),
    ]
    for net, reduced in payload.get("reduced", {}).items():
        r = {**s, **reduced}
        lines += [
            "",
            f"**{NETWORKS[net]} at a smaller scale** (CPU time): {r['epochs']} epochs ({r['relu_warmup_epochs']} of "
            f"plain ReLU in the threshold network), cosine over them, SNN and ANN on the first {r['test_images']} "
            f"test images (one image = {100 / r['test_images']:.1f} points).",
        ]
    missing = [name for net, name in NETWORKS.items() if not any(k.startswith(f"{net}_") for k in payload["runs"])]
    if missing:
        why = payload.get("not_run_why") or "not run yet"
        lines += ["", f"Not run at this scale, so absent below: {', '.join(missing)} ({why})."]
    lines += [
        "",
        "### Table 2 layout: SNN accuracy (%) averaged over every T = 400..600",
        "",
        "Mean ± standard deviation over the 201 T of the range, all read from one simulation "
        "(`snn.average_over: [400, 600]` in the `_relu`, `_t` and `_ts_constant` configs); the last column "
        "shifts by the paper's constant `V_th/1600` per step (appendix A.2, `snn.shift: constant`). The "
        "standard deviation is over T within one run, as the paper's; repeated runs (the paper's Table 2 "
        "averages repeated tests) are `python -m lightning_snn.results_tables runs <run>/snn_results.json ...`.",
        "",
        *table2_lines(payload),
        "",
        "### Table 4 layout: conversion loss against the ReLU ANN (in brackets: against the run's own ANN)",
        "",
        "Each network's loss table is `python -m lightning_snn.results_tables losses --relu <relu run> <S run> "
        "<T run> <TS run> --timesteps 32 64 128 256 512` over the runs' `snn_results.json` (e.g. "
        "`--relu runs/repro/results/vgg16_relu.json runs/repro/results/vgg16_s.json ...`); here from the "
        "same numbers in the JSON. S converts the ReLU network's checkpoint, so its two ANNs are one.",
    ]
    for net, name in NETWORKS.items():
        relu = _get(payload, net, "relu")
        rows = [r for r in (_get(payload, net, v) for v in ("s", "t", "ts", "ts_constant")) if r is not None]
        if relu is None or not rows:
            continue
        lines += ["", f"**{name}**", "", *losses_table(relu, rows, [32, 64, 128, 256, 512])[2:]]
    return lines


# ---- docs/REPRODUCE.md's "ours" cells ----------------------------------------------------------------------

MARK = "†"
REDUCED_MARK = "‡"


def mark(payload: dict, net: str) -> str:
    """The mark beside a network's numbers: its scale (a reduced one is said in the doc)."""
    return REDUCED_MARK if net in payload.get("reduced", {}) else MARK


def _loss(relu: dict, r: dict, snn: float, sign: str = MARK) -> str:
    outside = relu["ann_acc"] - snn
    if r.get("threshold_clip_on") is True:
        return f"{outside:.2f} ({r['ann_acc'] - snn:.2f}){sign}"
    return f"{outside:.2f}{sign}"


def table1_cells(payload: dict, net: str, row: str, t: str) -> tuple[str, str] | None:
    """(accuracy, loss) of one Table 1 row (``Our Work-k-TS`` at T, ``-T`` over 400-600, ``-S`` at 512)."""
    relu = _get(payload, net, "relu")
    kind = row.rsplit("-", 1)[1]
    r = _get(payload, net, {"TS": "ts", "T": "t", "S": "s"}[kind])
    if relu is None or r is None:
        return None
    sign = mark(payload, net)
    if t == "400-600":
        a = r.get("average_over")
        if not a:
            return None
        return f"{a['mean_acc']:.2f} ± {a['std_acc']:.2f}{sign}", _loss(relu, r, a["mean_acc"], sign)
    snn = r["snn_acc"].get(t)
    return (f"{snn:.2f}{sign}", _loss(relu, r, snn, sign)) if snn is not None else None


SECTION_NET = {
    "CIFAR-10 + CIFARNet": "cifarnet",
    "CIFAR-10 + VGG-16": "vgg16",
    "CIFAR-10 + ResNet-20": "resnet20",
    "Table 4: VGG-16 on CIFAR-10": "vgg16",
    "Table 4: ResNet-20 on CIFAR-10": "resnet20",
}


def fill_reproduce(text: str, payload: dict) -> str:
    """docs/REPRODUCE.md with the CIFAR-10 "ours" cells of Tables 1, 2 and 4 filled from ``payload``.
    Idempotent: a filled cell is rewritten from the numbers, never appended to."""
    out, section = [], None
    for line in text.split("\n"):
        if line.startswith("### "):
            section = line[4:].strip()
        cells = line.split(" | ")
        net = SECTION_NET.get(section)
        if net and line.startswith("| Our Work-") and section.startswith("CIFAR-10 +") and len(cells) == 7:
            got = table1_cells(payload, net, cells[0][2:], cells[1])
            if got:
                cells[5], cells[6] = got[0], got[1] + " |"
        elif net and line.startswith("| Our Work-") and section.startswith("Table 4") and len(cells) == 5:
            relu, r = _get(payload, net, "relu"), _get(payload, net, cells[0].rsplit("-", 1)[1].lower())
            if relu is not None and r is not None and cells[1] in r["snn_acc"]:
                cells[4] = _loss(relu, r, r["snn_acc"][cells[1]], mark(payload, net)) + " |"
        elif section == "Table 2 (CIFAR-10)" and len(cells) == 5 and cells[0][2:] in NETWORKS.values():
            key = next(k for k, v in NETWORKS.items() if v == cells[0][2:])
            run = {"ReLU": "relu", "ReLU+threshold": "t", "ReLU+threshold+shift": "ts_constant"}[cells[1]]
            got = _avg(_get(payload, key, run))
            if got != "—":
                cells[4] = f"{got}{mark(payload, key)} |"
        out.append(" | ".join(cells))
    return "\n".join(out)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", default=None, help="folder of the runs' <net>_<run>.json: collect them first")
    p.add_argument("--out-dir", default=str(REPO / "docs"))
    p.add_argument("--not-run-why", default=None, help="why the networks without runs were not run (into the doc)")
    args = p.parse_args()
    out = Path(args.out_dir)
    path = out / "reproduce.json"
    if args.runs:
        payload = collect(Path(args.runs))
        if args.not_run_why:
            payload["not_run_why"] = args.not_run_why
        path.write_text(json.dumps(payload, indent=2) + "\n")
        print(f"wrote {path}")
    payload = json.loads(path.read_text())
    for key, r in payload["runs"].items():
        print(
            f"{key}: {variant(r)}, ANN {r['ann_acc']:.2f}%, "
            + ", ".join(f"T{t} {a:.2f}" for t, a in r["snn_acc"].items())
        )
    doc = out / "REPRODUCE.md"
    doc.write_text(fill_reproduce(doc.read_text(), payload))
    import fidelity  # docs/RESULTS.md is assembled there, these sections included

    fidelity.rewrite_results_doc(argparse.Namespace(tiny=False), out)
    print(f"rewrote {doc} and {out / 'RESULTS.md'}")


if __name__ == "__main__":
    main()

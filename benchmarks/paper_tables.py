"""The paper's tables from CPU-scale runs of the experiment configs (docs/REPRODUCE.md's "ours" column).

Collects the ``snn_results.json`` of the runs docs/REPRODUCE.md lists (every CIFAR-10 network's ``_relu``
and ``_t`` configs trained by ``train.py fit`` at the CPU scale of :data:`SCALE`, each converted again by
``train.py test`` with the other configs of its ANN) into docs/reproduce.json, from which
``python benchmarks/render.py`` renders REPRODUCE.md's "ours" cells and RESULTS.md's Tables 2 and 4 layouts.

    python benchmarks/paper_tables.py --runs runs/repro/results
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from sections.paper_tables import NETWORKS
from study import REPO  # before lightning_snn: it puts this checkout ahead of any installed one on sys.path

from lightning_snn.results import read_results

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
#: commands use them, and the docs mark their numbers (sections/paper_tables.py: ``REDUCED_MARK``).
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


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", required=True, help="folder of the runs' <net>_<run>.json")
    p.add_argument("--out-dir", default=str(REPO / "docs"))
    args = p.parse_args()
    path = Path(args.out_dir) / "reproduce.json"
    path.write_text(json.dumps(collect(Path(args.runs)), indent=2) + "\n")
    print(f"wrote {path}; render docs/REPRODUCE.md's and docs/RESULTS.md's tables with python benchmarks/render.py")


if __name__ == "__main__":
    main()

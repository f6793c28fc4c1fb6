"""Appendix A.4 on SST-5: train each config through the CLI, per seed, and measure its SNN on dev and test.

Every (config, seed) is one ``python train.py fit -c configs/sst/<config>.yaml`` run (timed: wall
and CPU time of the whole run, training + conversion + the SNN's test evaluation, which writes its
own ``snn_results.json``: RNN and SNN test accuracy at every steps per word K and loop count L).
Then the run's last checkpoint is evaluated again on the **dev** split with the same settings, so
that K and L can be chosen on dev and reported on test. Results are merged into one JSON file keyed
by label and seed, written after every run: run configs and seeds in separate calls (each one a
long job, on a shared machine best one at a time), and ``--summary`` to print the tables and
draw accuracy against K and L::

    python benchmarks/rnn_study.py --config rnn_t --seeds 0 --threads 1     # one run: 2-4 min measured (docs/RNN.md)
    python benchmarks/rnn_study.py --config rnn_t --label rnn_t_tau1 --seeds 0 --set model.model_kwargs.tau=1.0
    python benchmarks/rnn_study.py --summary                                 # tables + docs/rnn_study.png

``--set key=value`` passes ``--key=value`` to the CLI (an ablation; give it its own ``--label``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # this checkout's lightning_snn, not an installed one
DEFAULT_OUT = REPO / "docs" / "rnn_study.json"


def child_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_fit(config: str, seed: int, root: Path, sets: list[str], threads: int | None) -> dict:
    """One ``train.py fit`` in a subprocess; returns its timings, results file and checkpoint."""
    run_name = f"s{seed}"
    cmd = [
        sys.executable,
        str(REPO / "train.py"),
        "fit",
        "-c",
        str(REPO / "configs" / "sst" / f"{config}.yaml"),
        f"--seed_everything={seed}",
        f"--run_name={run_name}",
        f"--trainer.default_root_dir={root}",
        f"--trainer.logger.init_args.save_dir={root}",
        "--trainer.enable_progress_bar=false",
        f"--data.init_args.data_dir={REPO.parent / 'shared' / 'data' / 'sst'}",
        *[f"--{s}" for s in sets],
    ]
    env = dict(os.environ, WANDB_MODE="offline", WANDB_SILENT="true", PYTHONPATH=str(REPO))
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    root.mkdir(parents=True, exist_ok=True)
    started, cpu0 = time.time(), child_cpu_seconds()
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    wall, cpu = time.time() - started, child_cpu_seconds() - cpu0
    (root / "fit.log").write_text(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}); log: {root / 'fit.log'}")
    results = [p for p in root.rglob("snn_results.json") if p.stat().st_mtime >= started]
    if len(results) != 1:
        raise RuntimeError(f"expected one new snn_results.json under {root}, found {results}")
    return {
        "command": " ".join(["python", "train.py", *cmd[2:]]).replace(str(REPO) + "/", ""),
        "wall_s": wall,
        "cpu_s": cpu,
        "results": json.loads(results[0].read_text()),
        "results_path": results[0],
        "checkpoint": root / run_name / "checkpoints" / "last.ckpt",
    }


def dev_grid(checkpoint: Path, results_path: Path, threads: int | None) -> dict:
    """The run's SNN settings evaluated on the dev split, with the run's own data and calibration
    settings (from the ``config.yaml`` the CLI saved beside its results)."""
    import torch
    import yaml
    from torch.utils.data import DataLoader

    from lightning_snn.module import ConversionModule
    from lightning_snn.recurrent_evaluation import evaluate_recurrent_conversion
    from lightning_snn.text_data import SSTDataModule

    if threads:
        torch.set_num_threads(threads)
    config = yaml.safe_load((results_path.parent / "config.yaml").read_text())
    results = json.loads(results_path.read_text())
    snn = config["snn"]
    module = ConversionModule.load_from_checkpoint(checkpoint, map_location="cpu")
    dm = SSTDataModule(**config["data"]["init_args"])
    dm.setup("fit")
    calibration = dm.calibration_set(snn["calibration_samples"], snn["calibration_seed"])
    report = evaluate_recurrent_conversion(
        module.model,
        DataLoader(calibration, batch_size=256),
        DataLoader(dm.val_set, batch_size=256),
        [int(k) for k in results["snn_acc"]],
        shift=results["shift"],
        readout=results["readout"],
        calibration=results["calibration"],
        neuron=results["neuron"],  # the run's own neuron (a --set snn.neuron=signed ablation too)
        output_loops=results["recurrent"]["output_loops"],
    )
    data = report.to_json()
    return {"ann_acc": data["ann_acc"], **{k: data["recurrent"][k] for k in ("analog_acc", "spiking_acc")}}


def load(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {"runs": {}}


def record(
    path: Path, label: str, config: str, seed: int, sets: list[str], fit: dict, dev: dict, threads: int | None
) -> None:
    data = load(path)  # re-read: another call may have added runs meanwhile
    res = fit["results"]
    data["runs"].setdefault(label, {})[str(seed)] = {
        "config": f"configs/sst/{config}.yaml",
        "set": sets,
        "command": fit["command"],
        "run_config": os.path.relpath(fit["results_path"].parent / "config.yaml", REPO),
        "wall_s": round(fit["wall_s"], 1),
        "cpu_s": round(fit["cpu_s"], 1),
        "seconds": res["seconds"],
        "test": {
            "ann_acc": res["ann_acc"],
            "analog_acc": res["recurrent"]["analog_acc"],
            "spiking_acc": res["recurrent"]["spiking_acc"],
            "spiking_ties": res["recurrent"]["spiking_ties"],
        },
        "dev": dev,
        "thresholds": res["thresholds"],
        "output_threshold": res["output_threshold"],
        "threshold_clip_on": res["threshold_clip_on"],
        "firing_rates": {k: v["network"] for k, v in res.get("firing_rates", {}).items()},
        "sops_per_sentence": {k: v["per_image"] for k, v in res.get("synaptic_ops", {}).items()},
        "energy_uj": {k: {"snn": v["snn_uj"], "source": v["ann_uj"]} for k, v in res.get("energy", {}).items()},
        "layer_errors": res.get("layer_errors"),
        "source": res["recurrent"]["source"],
        "tau": res["recurrent"]["tau"],
        "pool": res["recurrent"]["pool"],
        "trained_steps_per_word": res["recurrent"]["trained_steps_per_word"],
        "shift": res["shift"],
        "neuron": res["neuron"],
    }
    data["machine"] = (
        f"{os.cpu_count()} CPU cores, torch threads {threads or os.environ.get('OMP_NUM_THREADS', 'default')}"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n")
    tmp.replace(path)


# ---- the summary ---------------------------------------------------------------------------------------
def mean_std(values: list[float]) -> tuple[float, float]:
    m = sum(values) / len(values)
    s = math.sqrt(sum((v - m) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else float("nan")
    return m, s


def fmt(values: list[float]) -> str:
    m, s = mean_std(values)
    return f"{m:.2f} +- {s:.2f}" if len(values) > 1 else f"{m:.2f}"


def grid(run: dict, split: str, readout: str, k: str, loops: str | None) -> float:
    acc = run[split][f"{readout}_acc"][k]
    return acc[loops] if loops is not None else acc


def summary(data: dict, png: Path | None, k_paper: str = "4", loops_paper: str = "16") -> dict:
    """Mean +- std over seeds of every label: RNN, the SNN at every K (analog, and spiking at every L)."""
    out = {}
    for label, seeds in data["runs"].items():
        runs = list(seeds.values())
        ks = list(runs[0]["test"]["analog_acc"])
        loops = list(next(iter(runs[0]["test"]["spiking_acc"].values())))
        entry = {"seeds": sorted(seeds, key=int), "wall_s": fmt([r["wall_s"] for r in runs])}
        for split in ("dev", "test"):
            entry[split] = {"ann_acc": fmt([r[split]["ann_acc"] for r in runs])}
            for k in ks:
                entry[split][f"K={k} analog"] = fmt([grid(r, split, "analog", k, None) for r in runs])
                for lp in loops:
                    entry[split][f"K={k} L={lp}"] = fmt([grid(r, split, "spiking", k, lp) for r in runs])
        out[label] = entry
        print(f"\n== {label} ({len(runs)} seeds {entry['seeds']}; wall per run {entry['wall_s']} s)")
        for split in ("dev", "test"):
            print(f"  {split}: source {entry[split]['ann_acc']}")
            print("     K   analog         " + "".join(f"L={lp:<14s}" for lp in loops))
            for k in ks:
                row = "".join(f"{entry[split][f'K={k} L={lp}']:16s}" for lp in loops)
                print(f"  {k:>4s}   {entry[split][f'K={k} analog']:15s}{row}")
    out["paper_layout"] = paper_layout(data, k_paper, loops_paper)
    if png is not None:
        draw(data, png)
    return out


def paper_layout(data: dict, k: str, loops: str) -> dict:
    """Appendix A.4's row (RNN, converted SNN, surrogate SNN, ReLU-RNN -> SNN) at K steps per word and
    L loops, mean +- std over seeds, for dev and test."""
    runs = data["runs"]
    columns = {
        "RNN": ("rnn_t", None),
        "converted SNN": ("rnn_t", "spiking"),
        "surrogate SNN": ("spiking_rnn", "spiking"),
        "ReLU-RNN -> SNN": ("rnn_relu", "spiking"),
        "ReLU-RNN": ("rnn_relu", None),
    }
    table = {}
    for split in ("dev", "test"):
        row = {}
        for name, (label, readout) in columns.items():
            if label not in runs:
                continue
            seeds = list(runs[label].values())
            if readout is None:
                row[name] = fmt([r[split]["ann_acc"] for r in seeds])
            else:
                row[name] = fmt([grid(r, split, readout, k, loops) for r in seeds])
                if label != "spiking_rnn":  # the conversion loss, paired per seed
                    losses = [r[split]["ann_acc"] - grid(r, split, readout, k, loops) for r in seeds]
                    row[f"{name} loss"] = fmt(losses)
        table[split] = row
    print(f"\n== the paper's layout at K = {k} steps per word, L = {loops} loops (mean +- std over seeds)")
    for split, row in table.items():
        print(f"  {split}: " + " | ".join(f"{n} {v}" for n, v in row.items()))
    return {"K": int(k), "L": int(loops), **table}


def draw(data: dict, png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = list(data["runs"])
    fig, axes = plt.subplots(1, len(labels), figsize=(5 * len(labels), 4), squeeze=False)
    for ax, label in zip(axes[0], labels, strict=True):
        runs = list(data["runs"][label].values())
        ks = list(runs[0]["test"]["analog_acc"])
        loops = list(next(iter(runs[0]["test"]["spiking_acc"].values())))
        x = [int(k) for k in ks]
        src = mean_std([r["test"]["ann_acc"] for r in runs])[0]
        ax.axhline(src, color="k", ls="--", lw=1, label=f"source {src:.1f}%")
        ys = [mean_std([grid(r, "test", "analog", k, None) for r in runs])[0] for k in ks]
        ax.plot(x, ys, "o-", color="k", label="SNN, analog readout")
        for i, lp in enumerate(loops):
            ys = [mean_std([grid(r, "test", "spiking", k, lp) for r in runs])[0] for k in ks]
            ax.plot(x, ys, ".-", color=plt.cm.viridis(i / max(len(loops) - 1, 1)), label=f"SNN, spiking, L={lp}")
        ax.set(xscale="log", xlabel="SNN steps per word K", ylabel="test accuracy (%)", title=label)
        ax.set_xticks(x, [str(v) for v in x])
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(png, dpi=120)
    print(f"\nwrote {png}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="configs/sst/<config>.yaml")
    parser.add_argument("--label", help="the results' key (default: the config name)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a CLI override")
    parser.add_argument("--threads", type=int, default=None, help="OMP_NUM_THREADS of the runs (default: torch's)")
    parser.add_argument("--root", type=Path, default=REPO / "runs" / "rnn_study")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--summary", action="store_true", help="print the tables of --out and draw its PNG")
    parser.add_argument("--paper-k", default="4", help="with --summary: K of the paper-layout table")
    parser.add_argument("--paper-loops", default="16", help="with --summary: L of the paper-layout table")
    args = parser.parse_args(argv)
    if args.summary:
        result = summary(load(args.out), args.out.with_suffix(".png"), args.paper_k, args.paper_loops)
        args.out.with_name(args.out.stem + "_summary.json").write_text(json.dumps(result, indent=1) + "\n")
        return
    if not args.config:
        parser.error("give --config (or --summary)")
    label = args.label or args.config
    for seed in args.seeds:
        fit = run_fit(args.config, seed, args.root / label / f"s{seed}", args.set, args.threads)
        dev = dev_grid(fit["checkpoint"], fit["results_path"], args.threads)
        record(args.out, label, args.config, seed, args.set, fit, dev, args.threads)
        test = fit["results"]
        print(
            f"{label} seed {seed}: {fit['wall_s']:.0f} s wall, {fit['cpu_s']:.0f} s CPU; source test "
            f"{test['ann_acc']:.2f}%, dev {dev['ann_acc']:.2f}%; SNN test {test['snn_acc']}"
        )


if __name__ == "__main__":
    main()

"""Appendix A.4 on SST-5: train a config through the CLI per seed (timed: the whole ``train.py fit``, whose
test grid over K and L is its ``snn_results.json``), evaluate its last checkpoint again on the dev split, and
merge both into one JSON keyed by label and seed, written after every run (docs/RNN.md is rendered from it)::

    python benchmarks/rnn_study.py --config rnn_t --seeds 0 --threads 1     # one run: 2-4 min measured (docs/RNN.md)
    python benchmarks/rnn_study.py --config rnn_t --label rnn_t_tau1 --seeds 0 --set model.model_kwargs.tau=1.0
    python benchmarks/rnn_study.py --summary                                 # tables + docs/rnn_study.png

``--set key=value`` passes ``--key=value`` to the CLI (an ablation; give it its own ``--label``).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

from study import REPO, machine, write_json  # also puts this checkout's lightning_snn first on sys.path

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


def dev_grid(fit: dict, threads: int | None) -> dict:
    """The run's SNN evaluated again on the dev split, with the run's own conversion and data settings
    (from the ``config.yaml`` the CLI saved beside its results; no diagnostics)."""
    import torch
    import yaml
    from lightning_snn.callbacks.snn_conversion import SNNConversion
    from torch.utils.data import DataLoader

    from lightning_snn.module import ConversionModule
    from lightning_snn.recurrent_evaluation import evaluate_recurrent_config
    from lightning_snn.text_data import SSTDataModule

    if threads:
        torch.set_num_threads(threads)
    config = yaml.safe_load((fit["results_path"].parent / "config.yaml").read_text())
    snn = SNNConversion(**config["snn"])  # checked as the CLI checked it
    dm = SSTDataModule(**config["data"]["init_args"])
    dm.setup("fit")
    calibration = DataLoader(dm.calibration_set(snn.calibration_samples, snn.calibration_seed), batch_size=256)
    model = ConversionModule.load_from_checkpoint(fit["checkpoint"], map_location="cpu").model
    settings = replace(snn.config, diagnostics=False, statistics=())
    data = evaluate_recurrent_config(model, calibration, DataLoader(dm.val_set, batch_size=256), settings).to_json()
    return {"ann_acc": data["ann_acc"], **{k: data["recurrent"][k] for k in ("analog_acc", "spiking_acc")}}


def load(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {"runs": {}}


def record(
    path: Path, label: str, config: str, seed: int, sets: list[str], fit: dict, dev: dict, threads: int | None
) -> None:
    res, rec = fit["results"], fit["results"]["recurrent"]
    data = load(path)  # re-read: another call may have added runs meanwhile
    data["runs"].setdefault(label, {})[str(seed)] = {
        "config": f"configs/sst/{config}.yaml",
        "set": sets,
        "command": fit["command"],
        "run_config": os.path.relpath(fit["results_path"].parent / "config.yaml", REPO),
        "wall_s": round(fit["wall_s"], 1),
        "cpu_s": round(fit["cpu_s"], 1),
        "seconds": res["seconds"],
        "test": {"ann_acc": res["ann_acc"], **{k: rec[k] for k in ("analog_acc", "spiking_acc", "spiking_ties")}},
        "dev": dev,
        **{k: res[k] for k in ("thresholds", "output_threshold", "threshold_clip_on")},
        "firing_rates": {k: v["network"] for k, v in res.get("firing_rates", {}).items()},
        "sops_per_sentence": {k: v["per_image"] for k, v in res.get("synaptic_ops", {}).items()},
        "energy_uj": {k: {"snn": v["snn_uj"], "source": v["ann_uj"]} for k, v in res.get("energy", {}).items()},
        "layer_errors": res.get("layer_errors"),
        **{k: rec[k] for k in ("source", "tau", "pool", "trained_steps_per_word")},
        **{k: res[k] for k in ("shift", "neuron")},
    }
    data["machine"] = machine(threads)
    write_json(path, data)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="configs/sst/<config>.yaml")
    parser.add_argument("--label", help="the results' key (default: the config name)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a CLI override")
    parser.add_argument("--threads", type=int, default=None, help="OMP_NUM_THREADS of the runs (default: torch's)")
    parser.add_argument("--root", type=Path, default=REPO / "runs" / "rnn_study")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--summary", action="store_true", help="print docs/RNN.md's tables of --out, draw its PNG")
    args = parser.parse_args(argv)
    if args.summary:
        from render import Page
        from sections import rnn

        data, page = load(args.out), Page(args.out.parent)
        refs = json.loads((REPO / "docs" / "paper_numbers.json").read_text())
        print(rnn.paper_layout(page, data, refs), rnn.loss(page, data), rnn.accuracy_grid(page, data), sep="\n\n")
        rnn.draw(data, args.out.with_suffix(".png"))
        return
    if not args.config:
        parser.error("give --config (or --summary)")
    label = args.label or args.config
    for seed in args.seeds:
        fit = run_fit(args.config, seed, args.root / label / f"s{seed}", args.set, args.threads)
        dev = dev_grid(fit, args.threads)
        record(args.out, label, args.config, seed, args.set, fit, dev, args.threads)
        test = fit["results"]
        print(
            f"{label} seed {seed}: {fit['wall_s']:.0f} s wall, {fit['cpu_s']:.0f} s CPU; source test "
            f"{test['ann_acc']:.2f}%, dev {dev['ann_acc']:.2f}%; SNN test {test['snn_acc']}"
        )


if __name__ == "__main__":
    main()

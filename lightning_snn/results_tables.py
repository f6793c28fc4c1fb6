"""The paper's tables from finished runs' ``snn_results.json``: repeated runs and the two losses.

Two commands (plain Python, no Trainer):

* ``runs``: several runs of one setting (e.g. the same config under several seeds, the paper's
  Fig. 2B and "repeated tests"): the ANN's and the SNN's accuracy at every T as mean +- standard
  deviation over the runs (sample std, n - 1), and the T-average of each run where it has one.
* ``losses``: the paper's Tables 4-5 layout. The conversion loss of each run against the ANN
  **with regular ReLU** (the number outside the brackets: the plain-ReLU twin's ANN accuracy minus
  the run's SNN accuracy) and, for a threshold-ReLU run, against its own ANN (in brackets).

    python -m lightning_snn.results_tables runs  runs/s0/snn_results.json runs/s1/snn_results.json ...
    python -m lightning_snn.results_tables losses --relu <relu run>/snn_results.json \\
        <S run>/snn_results.json <T run>/snn_results.json <TS run>/snn_results.json

Both print Markdown tables. A loss across two runs is only meaningful on the same test images:
runs that evaluated a different number of images are refused.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lightning_snn.results import read_results


def load(path: str | Path) -> dict[str, Any]:
    """A run's ``snn_results.json`` (or a folder holding one), with a ValueError that says what is wrong."""
    p = Path(path)
    if p.is_dir():
        p = p / "snn_results.json"
    data = dict(read_results(p))  # the schema version and shape checked (a ResultsError is a ValueError)
    data["_path"] = str(p)
    return data


def variant(run: dict[str, Any]) -> str:
    """The paper's name of a run: ReLU, S, T, TS (bias or membrane shift), TS-constant (V_th f per step)."""
    threshold = run.get("threshold_clip_on") is True
    shift, scale = run.get("shift", "none"), run.get("shift_scale", 1.0)
    shifted = shift in ("bias", "membrane") and scale != 0
    if shift == "constant":
        name = "TS-constant" if threshold else "S-constant"
    elif threshold:
        name = "TS" if shifted else "T"
    else:
        name = "S" if shifted else "ReLU"
    if shift in ("bias", "membrane") and scale not in (0, 1):
        name += f" (shift x{scale:g})"
    if shift == "membrane":
        name += " (membrane)"
    return name


def _timesteps(run: dict[str, Any]) -> list[int]:
    return sorted(int(t) for t in run["snn_acc"])


def _mean_std(values: Sequence[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{statistics.fmean(values):.2f} ± {statistics.stdev(values):.2f}"


def runs_table(runs: Sequence[dict[str, Any]]) -> list[str]:
    """Mean +- sample std over ``runs`` of the ANN's and the SNN's accuracy at every T they all have."""
    if not runs:
        raise ValueError("give at least one snn_results.json.")
    images = {r["num_test_images"] for r in runs}
    if len(images) > 1:
        raise ValueError(f"the runs evaluated different numbers of test images {sorted(images)}: not one setting.")
    common = sorted(set.intersection(*(set(_timesteps(r)) for r in runs)))
    if not common:
        raise ValueError("the runs share no simulation length T.")
    lines = [
        f"{len(runs)} run(s), {images.pop()} test images each; mean ± standard deviation over the runs (n - 1), "
        "accuracy in %:",
        "",
        "| | ANN | " + " | ".join(f"T={t}" for t in common) + " |",
        "|---|---|" + "---|" * len(common),
        "| accuracy | "
        + _mean_std([r["ann_acc"] for r in runs])
        + " | "
        + " | ".join(_mean_std([r["snn_acc"][str(t)] for r in runs]) for t in common)
        + " |",
    ]
    averages = [r.get("average_over") for r in runs]
    if all(averages) and len({(a["first"], a["last"]) for a in averages}) == 1:
        a = averages[0]
        means = [x["mean_acc"] for x in averages]
        lines += [
            "",
            f"T = {a['first']}..{a['last']}: each run's mean over the T of the range, then mean ± std over the runs: "
            f"{_mean_std(means)}% (each run's own std over T: "
            + ", ".join(f"{x['std_acc']:.2f}" for x in averages)
            + ").",
        ]
    lines += ["", "Runs: " + ", ".join(f"`{r['_path']}`" for r in runs)]
    return lines


def _cell(relu_ann: float, run: dict[str, Any], t: str) -> str:
    snn = run["snn_acc"].get(t) if t != "avg" else (run.get("average_over") or {}).get("mean_acc")
    if snn is None:
        return "—"
    outside = relu_ann - snn
    if run.get("threshold_clip_on") is True:  # against its own threshold-ReLU ANN, in brackets
        return f"{outside:.2f} ({run['ann_acc'] - snn:.2f})"
    return f"{outside:.2f}"


def losses_table(
    relu: dict[str, Any], rows: Sequence[dict[str, Any]], timesteps: Sequence[int] | None = None
) -> list[str]:
    """Tables 4-5: each row's loss against the plain-ReLU ANN of ``relu`` (outside the brackets) and,
    for a threshold-ReLU row, against its own ANN (in brackets), at every T."""
    if relu.get("threshold_clip_on") is not False:
        raise ValueError(
            f"--relu must be a run whose source ANN has plain ReLU (threshold_clip_on false); {relu['_path']!r} has "
            f"threshold_clip_on {relu.get('threshold_clip_on')!r}."
        )
    for r in rows:
        if r["num_test_images"] != relu["num_test_images"]:
            raise ValueError(
                f"{r['_path']!r} evaluated {r['num_test_images']} test images, the ReLU run {relu['num_test_images']}: "
                "a loss across runs needs the same images (the same snn.max_test_samples)."
            )
        if r.get("threshold_clip_on") is not True and r["ann_acc"] != relu["ann_acc"]:
            raise ValueError(
                f"{r['_path']!r} is a plain-ReLU run with another ANN ({r['ann_acc']:.2f}% vs {relu['ann_acc']:.2f}%): "
                "an S row converts the ReLU run's own checkpoint (train.py test --ckpt_path)."
            )
    ts = sorted({int(t) for r in rows for t in r["snn_acc"]}) if timesteps is None else sorted(timesteps)
    cols = [str(t) for t in ts]
    averages = [r.get("average_over") for r in rows if r.get("average_over")]
    if averages:
        cols.append("avg")
    head = [f"T={t}" for t in ts] + ([f"T={averages[0]['first']}-{averages[0]['last']} (mean)"] if averages else [])
    lines = [
        f"Conversion loss (points) against the ANN with regular ReLU ({relu['ann_acc']:.2f}%, `{relu['_path']}`); "
        f"in brackets, a threshold-ReLU run's loss against its own ANN. {relu['num_test_images']} test images.",
        "",
        "| method | ANN | " + " | ".join(head) + " |",
        "|---|---|" + "---|" * len(head),
    ]
    for r in rows:
        cells = " | ".join(_cell(relu["ann_acc"], r, t) for t in cols)
        lines.append(f"| {variant(r)} | {r['ann_acc']:.2f}% | {cells} |")
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m lightning_snn.results_tables", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("runs", help="mean ± std per T over several runs of one setting")
    r.add_argument("results", nargs="+", help="snn_results.json files (or run folders)")
    lo = sub.add_parser("losses", help="Tables 4-5: the loss against the plain-ReLU ANN (and the own ANN)")
    lo.add_argument("--relu", required=True, help="the plain-ReLU twin's snn_results.json")
    lo.add_argument("results", nargs="+", help="the rows: snn_results.json of S / T / TS runs on the same images")
    lo.add_argument("--timesteps", type=int, nargs="+", default=None, help="the T columns (default: every T)")
    args = p.parse_args(argv)
    try:
        if args.command == "runs":
            lines = runs_table([load(f) for f in args.results])
        else:
            lines = losses_table(load(args.relu), [load(f) for f in args.results], args.timesteps)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())

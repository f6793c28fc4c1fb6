"""docs/RNN.md from docs/rnn_study.json (benchmarks/rnn_study.py) and the paper's appendix A.4 numbers
in docs/paper_numbers.json.

The paper-layout row is read at K = the surrogate-trained SNN's own steps per word (the same simulation
length for every column, as A.4 asks) and the largest loop count L measured (rule 4: the looped output
layer closest to the fully connected readout). Mean +- sample std over the seeds each label has."""

from __future__ import annotations

import math
from pathlib import Path

from sections import table

#: The labels of the paper's comparison, in the paper's order.
COLUMNS = {"rnn_t": "threshold-ReLU RNN -> SNN", "spiking_rnn": "surrogate-gradient SNN", "rnn_relu": "ReLU-RNN -> SNN"}


def _runs(data: dict, label: str) -> list[dict]:
    return [data["runs"][label][s] for s in sorted(data["runs"].get(label, {}), key=int)]


def _ms(values: list[float]) -> str:
    m, s = mean_std(values)
    return f"{m:.2f} ± {s:.2f}" if len(values) > 1 else f"{m:.2f}"


def _ks(data: dict) -> list[str]:
    run = next(iter(next(iter(data["runs"].values())).values()))
    return sorted(run["test"]["analog_acc"], key=int)


def _loops(data: dict) -> list[str]:
    run = next(iter(next(iter(data["runs"].values())).values()))
    return sorted(next(iter(run["test"]["spiking_acc"].values())), key=int)


def paper_k(data: dict) -> str:
    """The surrogate SNN's trained steps per word (4, its config's, if it was not run), or the largest
    K measured below it where it was not measured (a tiny run)."""
    runs = _runs(data, "spiking_rnn")
    k = int(runs[0]["trained_steps_per_word"]) if runs else 4
    measured = [int(x) for x in _ks(data)]
    return str(k if k in measured else max([x for x in measured if x < k], default=measured[0]))


def _seeds(data: dict, label: str) -> str:
    seeds = sorted(data["runs"].get(label, {}), key=int)
    return f"{len(seeds)} seed{'s' if len(seeds) != 1 else ''} ({', '.join(seeds)})" if seeds else "not run"


def commands(page, data: dict) -> str:
    lines = []
    for label in data["runs"]:
        runs = _runs(data, label)
        sets = "".join(f" --set {s}" for s in runs[0]["set"])
        config = runs[0]["config"].removeprefix("configs/sst/").removesuffix(".yaml")
        named = f" --label {label}" if label != config else ""
        seeds = " ".join(sorted(data["runs"][label], key=int))
        lines.append(f"python benchmarks/rnn_study.py --config {config}{named} --seeds {seeds} --threads 1{sets}")
    example = _runs(data, next(iter(data["runs"])))[0]["command"]
    return (
        "```bash\n"
        + "\n".join(lines)
        + "\npython benchmarks/rnn_study.py --summary     # prints the grids, draws docs/rnn_study.png"
        + "\npython benchmarks/render.py docs/RNN.md      # these tables\n```\n\n"
        + f"Each (config, seed) is one CLI run, e.g. `{example}`, then its last checkpoint on the dev split. "
        + f"Machine: {data['machine']}."
    )


def paper_layout(page, data: dict, refs: dict) -> str:
    k, loops = paper_k(data), _loops(data)[-1]
    paper = refs["a4_rnn"]
    header = ["", "RNN", "converted SNN", "surrogate SNN", "ReLU-RNN -> SNN", "ReLU-RNN (its source)"]
    rows = [
        [
            f"paper (A.4, {paper['split']})",
            *(f"{100 * float(paper[c]):.2f}" for c in ("RNN", "converted SNN", "surrogate SNN", "ReLU-RNN -> SNN")),
            "not given",
        ]
    ]
    for split in ("dev", "test"):
        cells = []
        for label, readout in (("rnn_t", None), ("rnn_t", "spiking"), ("spiking_rnn", "spiking")):
            cells.append(_cell(data, label, split, readout, k, loops))
        cells += [_cell(data, "rnn_relu", split, "spiking", k, loops), _cell(data, "rnn_relu", split, None, k, loops)]
        rows.append([f"ours, {split} (sentences)", *cells])
    said = ", ".join(f"{COLUMNS[label]} {_seeds(data, label)}" for label in COLUMNS)
    return (
        f"Accuracy (%) at K = {k} steps per word (the surrogate SNN's training length) and L = {loops} loops of "
        f"the spiking output layer; mean ± std over seeds: {said}.\n\n" + table(header, rows)
    )


def _cell(data: dict, label: str, split: str, readout: str | None, k: str, loops: str) -> str:
    runs = _runs(data, label)
    if not runs:
        return "not run"
    if readout is None:
        return _ms([r[split]["ann_acc"] for r in runs])
    return _ms([grid(r, split, readout, k, loops) for r in runs])


def loss(page, data: dict) -> str:
    """The conversion loss (source minus SNN, points), paired per seed, at every K (largest L and analog)."""
    ks, loops = _ks(data), _loops(data)[-1]
    rows = []
    for label in ("rnn_t", "rnn_relu"):
        runs = _runs(data, label)
        if not runs:
            rows.append([label, "", "", "not run"])
            continue
        for split in ("dev", "test"):
            for readout, name in (("spiking", f"spiking, L = {loops}"), ("analog", "analog")):
                lp = loops if readout == "spiking" else None
                cells = [_ms([r[split]["ann_acc"] - grid(r, split, readout, k, lp) for r in runs]) for k in ks]
                rows.append([label, split, name, *cells])
    return table(["source", "split", "readout", *(f"K={k}" for k in ks)], rows)


def accuracy_grid(page, data: dict) -> str:
    """Test accuracy of each label's SNN at every K and L (and the analog readout), mean ± std."""
    ks, loops = _ks(data), _loops(data)
    parts = []
    for label in data["runs"]:
        runs = _runs(data, label)
        rows = [
            [
                k,
                _ms([grid(r, "test", "analog", k, None) for r in runs]),
                *(_ms([grid(r, "test", "spiking", k, lp) for r in runs]) for lp in loops),
            ]
            for k in ks
        ]
        source = _ms([r["test"]["ann_acc"] for r in runs])
        title = f"**{label}** ({_seeds(data, label)}; source network on test: {source})"
        parts.append(title + "\n\n" + table(["K", "analog", *(f"L={lp}" for lp in loops)], rows))
    return "\n\n".join(parts)


def cost(page, data: dict) -> str:
    k = paper_k(data)
    rows = []
    for label in data["runs"]:
        runs = _runs(data, label)
        rows.append(
            [
                label,
                _seeds(data, label),
                _ms([r["wall_s"] / 60 for r in runs]),
                _ms([r["cpu_s"] / 60 for r in runs]),
                _ms([r["firing_rates"][k] for r in runs]) if all(k in r["firing_rates"] for r in runs) else "",
                _ms([r["sops_per_sentence"][k] / 1e6 for r in runs])
                if all(k in r["sops_per_sentence"] for r in runs)
                else "",
            ]
        )
    header = ["label", "seeds", "wall min per run", "CPU min per run", f"firing rate K={k}", f"M SOPs/sentence K={k}"]
    return (
        "Wall and CPU minutes of each `train.py fit` (training, calibration, the SNN's test grid at every K and L, "
        "the dashboard; not the dev grid the study adds after it), one torch thread, taken while holding the shared "
        "heavy lock on a 2-core machine that other jobs also loaded; firing rate = spikes per neuron per step, "
        "SOPs = synaptic events per sentence:\n\n" + table(header, rows)
    )


def figure(page, data: dict) -> str:
    name = "rnn_study.png"
    if page.figures is not None:
        draw(data, page.figures / name)
    return f"![test accuracy against steps per word K and loops L]({name})"


def error_sources(page, errors: dict) -> str:
    """Where the converted recurrent layer departs from its RNN (benchmarks/rnn_error_sources.py, dev split)."""
    rows = [
        [
            k,
            *(f"{e['relative_error'][n]:.3f}" for n in ("snn", "signed", "quantised_rnn", "even_current")),
            f"{e['count_mismatch_pct']:.1f}%",
            f"{e['signed_mismatch_pct']:.1f}%",
            f"{e['remaining_outside_pct']:.1f}%",
            f"{e['snn_analog_dev_acc']:.2f}",
            f"{e['signed_analog_dev_acc']:.2f}",
        ]
        for k, e in sorted(errors["per_k"].items(), key=lambda kv: int(kv[0]))
    ]
    header = [
        "K",
        "error: IF SNN",
        "signed SNN",
        "quantised RNN",
        "even current",
        "counts != q_K: IF",
        "signed",
        "r outside [0, theta/K)",
        "dev acc: IF (analog)",
        "signed (analog)",
    ]
    intro = (
        f"`{errors['checkpoint']}` (theta = {errors['theta']:.4g}, tau = {errors['tau']}), on the "
        f"{errors['dev_sentences']} dev sentences, no shift; the RNN's dev accuracy {errors['rnn_dev_acc']:.2f}%. "
        f"A word's own input current lies beyond [-theta, theta] at {errors['input_current_beyond_theta_pct']:.1f}% "
        "of neuron-words. Error = mean |x - min(o, theta)| per neuron-word over the mean min(o, theta):\n\n"
    )
    return intro + table(header, rows)


def mean_std(values: list[float]) -> tuple[float, float]:
    m = sum(values) / len(values)
    s = math.sqrt(sum((v - m) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else float("nan")
    return m, s


def grid(run: dict, split: str, readout: str, k: str, loops: str | None) -> float:
    acc = run[split][f"{readout}_acc"][k]
    return acc[loops] if loops is not None else acc


def draw(data: dict, png: Path) -> None:
    """Test accuracy against K, one panel per label (analog, and spiking at every L)."""
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
